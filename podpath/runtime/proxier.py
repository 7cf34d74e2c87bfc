"""A node of the netns lab: the kubelet's part and kube-proxy's part, in one process.

In a cluster, the kubelet of each node probes the readiness of its own pods and reports it
to the API server; the EndpointSlices carry it (each endpoint's `ready` condition) to the
kube-proxy of every node, which rewrites its rules to hold only the ready endpoints. Here
one process per node plays both parts (one Python process instead of two saves several MiB
per node), and the lab's folder stands where the API server would:

- the kubelet's part (podpath.runtime.kubelet) probes the node's own pods over the node's
  bridge, hears of a container that stops through its status file, and publishes the
  node's pods' readiness to `endpoints/<node>.json`;
- kube-proxy's part watches the folder `endpoints/` (every node's file) and, when the set of
  ready endpoints changes, renders the node's rules again (`kubeproxy.rules`, the renderer
  the playbook uses) and applies them (`kubeproxy.restore_argv` of the node's mode).

Both hear of changes through the node's doorbell (podpath.runtime.daemon.Bell, a FIFO in the
lab's folder), which the shims ring when they write a container's status and the node
processes ring when they publish, as the API server's watches tell the kubelet and
kube-proxy of a change: the process sleeps until a bell rings or one of its pods' probes is
due, and sends nothing across the LAN.

    python -m podpath.runtime.proxier KUBE-PROXY.conf KUBELET.conf   (in the node's network namespace)

(the lab starts it as `python -c "... from podpath.runtime.proxier import main ..."`, which
loads less than -m: podpath.model.workloads.NODE_PROCESS_CODE)

KUBE-PROXY.conf is what `podpath up` rendered for kube-proxy (podpath.model.kubeproxy.NodeInputs:
the lab's Services' ports with their endpoints, the pod network, the node's name, the mode);
KUBELET.conf the node's pods with their containers and readiness probes
(podpath.model.workloads). Neither part reads the lab's topology.
"""
from __future__ import annotations

import os
import sys
import time

from podpath.model import kubeproxy
from podpath.runtime import daemon
from podpath.runtime import kubelet as kubelet_mod
from podpath.runtime.daemon import READ, Bell, Waiter, log, read_json, refuse_outside, ring_bells, start_many

# typing's TYPE_CHECKING without importing typing, memory in each node process
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable


def apply(rules: str, mode: str, run: Callable[[list[str], bytes], tuple[int, str]] = daemon.run) -> bool:
    """Apply RULES (what `kubeproxy.rules` rendered) with the command of MODE; whether it worked."""
    argv = kubeproxy.restore_argv(mode)
    code, said = run(argv, rules.encode())
    if code != 0:
        log(f"{argv[0]} failed (exit code {code}): {said.strip()}")
    return code == 0


def read_documents(folder: str) -> dict[str, dict]:
    """Every node's published readiness in FOLDER: {node: its document}. A file being written
    (its temporary name starts with a dot) or not whole JSON is left out."""
    found = {}
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return found
    for name in sorted(names):
        if name.startswith(".") or not name.endswith(".json"):
            continue
        doc = read_json(os.path.join(folder, name))
        if isinstance(doc, dict) and isinstance(doc.get("pods"), dict):
            found[name[:-len(".json")]] = doc
    return found


class KubeProxy:
    """kube-proxy's part: the node's rules follow the published readiness of the endpoints."""

    def __init__(self, inputs: kubeproxy.NodeInputs, apply_rules: Callable[[str, str], Any] = apply):
        self.inputs = inputs
        self.endpoints = {ep.address: ep for info in inputs.ports for ep in info.endpoints}
        # The playbook applied the rules with every endpoint: start from that.
        self.current = set(self.endpoints)
        self.documents: dict[str, dict] | None = None  # what the nodes had published at the last sync
        self.apply_rules = apply_rules

    def ready(self, documents: dict[str, dict]) -> set[str]:
        """The addresses of the endpoints that are ready, as EndpointSlices' consumers read them:
        an endpoint whose pod's `ready` condition is false is left out; one its node has not
        published (or whose condition is unknown) counts as ready."""
        ready = set()
        for address, ep in self.endpoints.items():
            entry = (documents.get(ep.node, {}).get("pods") or {}).get(ep.pod)
            condition = (entry.get("conditions") or {}).get("ready") if isinstance(entry, dict) else None
            if condition is False and entry.get("ip") == ep.ip:
                continue
            ready.add(address)
        return ready

    def sync(self, documents: dict[str, dict]) -> bool:
        """Render and apply the node's rules if the set of ready endpoints changed, or if what
        the nodes published changed at all; whether it did. The second case renders whole
        rules again even when this process believes the set unchanged: `podpath up` applies
        the rules with every endpoint, so the kernel may no longer hold what this process
        last applied (kube-proxy, too, writes its whole state again on a sync)."""
        now_ready = self.ready(documents)
        first, self.documents, before = self.documents is None, documents, self.documents
        if now_ready == self.current and (first or documents == before):
            return False  # the first look only learns what is published: the playbook applied the rules
        if now_ready == self.current:
            self.apply_rules(kubeproxy.rules(self.inputs.with_ready(now_ready)), self.inputs.mode)
            return True
        gone = sorted(self.endpoints[a].pod for a in self.current - now_ready)
        back = sorted(self.endpoints[a].pod for a in now_ready - self.current)
        self.apply_rules(kubeproxy.rules(self.inputs.with_ready(now_ready)), self.inputs.mode)
        log(f"{self.inputs.node}: endpoints not ready: {gone or '-'}; ready again: {back or '-'}; rules applied")
        self.current = now_ready
        return True


class Node:
    """The node process: one loop, woken by its doorbell, by its probes' sockets and by the
    next probe that is due; nothing else wakes it."""

    def __init__(self, inputs: kubeproxy.NodeInputs, kubelet_config: dict[str, Any],
                 apply_rules: Callable[[str, str], Any] = apply, endpoints_dir: str | None = None,
                 bells_dir: str | None = None):
        self.kubelet = kubelet_mod.Kubelet(kubelet_config)
        self.proxy = KubeProxy(inputs, apply_rules)
        # every node publishes beside this one
        self.endpoints_dir = endpoints_dir or os.path.dirname(self.kubelet.publish_path)
        self.bells_dir = bells_dir or self.kubelet.bells
        if not self.bells_dir:
            raise ValueError(f"the kubelet's inputs of node {inputs.node} name no folder of doorbells (bells): "
                             "run podpath up again to render them")
        os.makedirs(self.endpoints_dir, exist_ok=True)
        for folder in self.kubelet.folders():
            os.makedirs(folder, exist_ok=True)
        # the bell is open before the first read of the status files (Kubelet.begin): a
        # change after that read rings it
        self.bell = Bell(self.bells_dir, inputs.node)
        self.selector = Waiter()
        self.selector.register(self.bell, READ, None)
        self.runs: set[kubelet_mod.ProbeRun] = set()
        self.link = kubelet_mod.NodeLink(self.kubelet.link) if self.kubelet.link else None
        if self.link:
            self.selector.register(self.link, READ, "link")
            self.kubelet.link_changed(self.link.up())
        self.kubelet.begin(time.monotonic(), time.time())
        self.endpoints_changed = True

    def close(self) -> None:
        for run in list(self.runs):
            self._finish(run, False, time.monotonic())
        self.selector.close()
        self.bell.close()
        if self.link:
            self.link.close()

    def _start_probes(self, now: float) -> None:
        for container in self.kubelet.due(now):
            run = kubelet_mod.ProbeRun(container, now)
            if run.failed_at_once:
                run.close()
                self.kubelet.result(container, run.generation, False, now)
                continue
            self.runs.add(run)
            self.selector.register(run.sock, run.events, run)

    def _finish(self, run: kubelet_mod.ProbeRun, ok: bool, now: float) -> None:
        self.runs.discard(run)
        self.selector.unregister(run.sock)
        run.close()
        self.kubelet.result(run.container, run.generation, ok, now)

    def _on_bell(self, now: float, wall: float) -> None:
        """A bell rang: read again every status file of the node's containers (the kubelet's
        part keeps what did not change) and, later in the round, every node's publication."""
        self.bell.drain()
        for path in list(self.kubelet.by_status):
            self.kubelet.status_changed(path, now, wall)
        self.endpoints_changed = True

    def step(self, limit: float | None = None) -> None:
        """One round: start the probes that are due, wait (at most LIMIT seconds) for a file's
        change, a probe's socket or the next due probe, act on what came, publish, follow."""
        now = time.monotonic()
        self._start_probes(now)
        timeout = self.wait_time(now)
        if limit is not None:
            timeout = limit if timeout is None else min(timeout, limit)
        ready = self.selector.select(timeout)
        now, wall = time.monotonic(), time.time()
        for data in ready:
            if data is None:
                self._on_bell(now, wall)
            elif data == "link":
                self.link.drain()
                self.kubelet.link_changed(self.link.up())
            elif data in self.runs:
                result = data.step()
                if result is not None:
                    self._finish(data, result, now)
                else:
                    self.selector.modify(data.sock, data.events, data)
        for run in [r for r in self.runs if now >= r.deadline]:
            self._finish(run, False, now)
        try:
            if self.kubelet.publish():
                ring_bells(self.bells_dir)  # every node's, this one's too
        except OSError as err:  # the lab's folder is being removed: nothing to publish to, and nothing made again
            log(f"{self.kubelet.node}: cannot publish the node's readiness: {err}")
        # the kubelet's own publication comes back as a ring of this node's bell; any other node's too
        if self.endpoints_changed and not self.bell_pending():
            self.endpoints_changed = False
            self.proxy.sync(read_documents(self.endpoints_dir))

    def wait_time(self, now: float) -> float | None:
        """How long the loop may sleep when nothing happens: until the next probe is due or a
        running probe's timeout; None (until an event) when none is."""
        wake = [t for t in [self.kubelet.next_due(), *(r.deadline for r in self.runs)] if t is not None]
        return max(0.0, min(wake) - now) if wake else None

    def bell_pending(self) -> bool:
        """Whether the bell has rings waiting (a burst of changes is read whole before the rules
        are rendered)."""
        return any(data is None for data in self.selector.select(0))

    def run(self) -> None:
        while True:
            self.step()


def main(argv: list[str]) -> int:
    proxy_config, kubelet_config = start_many(argv, "proxier", ["KUBE-PROXY.conf", "KUBELET.conf"])
    refuse_outside(kubelet_config.get("netns"), "proxier")  # before any rule is applied or packet sent
    inputs = kubeproxy.NodeInputs.from_json(proxy_config)
    node = Node(inputs, kubelet_config)
    probed = [c for p in node.kubelet.pods for c in p.containers if c.probe]
    log(f"{inputs.node}: one process, the kubelet's part and kube-proxy's part. "
        f"kube-proxy ({inputs.mode} mode) following {len(node.proxy.endpoints)} endpoints in "
        f"{node.endpoints_dir}; kubelet probing {len(probed)} container(s) of {len(node.kubelet.pods)} pod(s) "
        "on this node: " + (", ".join(f"{c.key} {c.probe.describe()}" for c in probed) or "none"))
    try:
        node.run()
    finally:
        node.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
