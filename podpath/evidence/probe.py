"""The netns lab's adapter: real traffic and real tools, run in the lab's namespaces.

Every check of the verifier (through the `Lab` interface, podpath/evidence/lab.py),
`podpath trace` and the drills ask the lab through `NetnsLab`. It runs commands (curl,
arping, ip -j, iptables-save, conntrack) inside the lab's namespaces with nsenter, through
a runner: testinfra's `host.run` in the suites (this machine, or a fleet's host over SSH),
subprocess elsewhere. What a check asks of every pod (eth0, the veth, the holder, the
containers' namespaces and host names, an echo from the pod to every node) comes in one
batch per node: `podpath.evidence.nodeprobe` run once per node namespace on the lab's host,
through the same runner, with the Python that runs the lab there; the node batches run in
parallel, in the background from the first question on. The files the lab's processes keep
(pidfiles, the speakers' status, the lease) are read by the same probe on a remote host, and
directly on this one. Nothing here sends traffic from, or changes, the host's own namespace.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from podpath.evidence import status as lab_status
from podpath.evidence.lab import (NAMESPACE_KINDS, NETNS_LAB, ArpAnswer, Http, LabPod, Lease, PlanFacts, PodRef,
                                  ProbeError, Result, ServiceView)
from podpath.evidence.parsers import (CURL_ERRORS, PROCESSES_SCRIPT, KubeProxyRules, kube_proxy_rules, parse_http,
                                      processes_seen)
from podpath.evidence import inhttp, nodeprobe
from podpath.evidence.scenarios import spread
from podpath.model.plan import Plan, Pod, build

# Names other modules import from here (trace, faults, bench): the types and curl's parser.
__all__ = ["CURL_ERRORS", "Http", "NetnsLab", "Result", "local_runner", "neighbour_table_limit", "parse_http",
           "pod_refs", "testinfra_runner"]

NETNS_DIR = "/var/run/netns"
# What shows kube-proxy's rules on a node, per mode (a whole iptables-save: the nat and filter tables).
KUBE_PROXY_RULES = {"iptables": ["iptables-save"], "nftables": ["nft", "-j", "list", "table", "ip", "kube-proxy"]}

Runner = Callable[[list[str]], Result]


def local_runner(argv: list[str]) -> Result:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    return Result(done.returncode, done.stdout, done.stderr)


def testinfra_runner(host) -> Runner:
    """A runner over a testinfra host: the command line is quoted word by word."""
    def run(argv: list[str]) -> Result:
        out = host.run(" ".join(shlex.quote(a) for a in argv))
        return Result(out.rc, out.stdout, out.stderr)
    return run


neighbour_table_limit = nodeprobe.neighbour_table_limit


def arp_table_fulls(text: str | None = None) -> int | None:
    """How often the kernel found the host's ARP table full (summed over the CPUs of
    /proc/net/stat/arp_cache, or of TEXT), or None where it cannot be read. The table and its
    limit (gc_thresh3) are shared by every network namespace of the host."""
    try:
        lines = (Path("/proc/net/stat/arp_cache").read_text() if text is None else text).splitlines()
        column = lines[0].split().index("table_fulls")
        return sum(int(line.split()[column], 16) for line in lines[1:] if line.strip())
    except (OSError, ValueError, IndexError):
        return None


def arp_table_fulls_since(before: int | None) -> int:
    """How often the kernel found the host's ARP table full since the count BEFORE
    (arp_table_fulls); 0 when either count cannot be read."""
    after = arp_table_fulls()
    return after - before if before is not None and after is not None and after > before else 0


# How arp_table_warning starts: `podpath verify --inventory` finds it in each host's answer.
ARP_TABLE_FULL = "podpath: the host's neighbour (ARP) table was full "


# The fixes: the labs' own entries made permanent, which the limit does not count; or the
# host's limit, which podpath never changes
LARGER_ARP_TABLE = ("Fewer labs at once; or `pod_neighbours: static` in the labs' topology (their nodes' and pods' "
                    "entries then permanent, which the limit does not count; docs/netns-lab.md); or a larger table "
                    "(as root, for the whole host): sysctl -w net.ipv4.neigh.default.gc_thresh2=4096 "
                    "net.ipv4.neigh.default.gc_thresh3=8192")


def arp_table_warning(fulls: int, limit: int | None) -> str:
    """What to tell someone whose verifier ran while the host's ARP table was full FULLS times."""
    return (f"{ARP_TABLE_FULL}{fulls} times while the verifier ran: the kernel "
            "dropped neighbour entries, so a check that sends a packet may have failed for that reason, not because "
            f"of the lab. The table is shared by every network namespace of the host (labs of every user); its "
            f"limit net.ipv4.neigh.default.gc_thresh3 is {limit or 'unknown'}, and a verified reference lab holds "
            f"about 50 entries. {LARGER_ARP_TABLE}")


def arp_table_full_while_waiting(fulls: int, limit: int | None) -> str:
    """Why the pods of a lab that `up` waited for may not have become ready: the host's ARP
    table was full FULLS times meanwhile, so its nodes' probes could not reach them."""
    return (f"the host's neighbour (ARP) table was full {fulls} times meanwhile, so the nodes' readiness probes "
            "may not have reached the pods: the table is shared by every network namespace of the host, its limit "
            f"net.ipv4.neigh.default.gc_thresh3 is {limit or 'unknown'}, and every reference lab that is up holds "
            f"about 12 entries its probes keep in use. {LARGER_ARP_TABLE}")


def pod_refs(plan: Plan, *apps: str) -> list[PodRef]:
    """The plan's pods (of APPS, or all), as the checks name them: by the pod's own name."""
    pods = [p for p in plan.pods if not apps or p.app in apps]
    index: dict[str, int] = {}
    refs = []
    for pod in pods:
        refs.append(PodRef(pod.app, index.setdefault(pod.app, 0), pod.name))
        index[pod.app] += 1
    return refs


class NetnsLab(PlanFacts):
    """One netns lab, seen from inside its namespaces."""

    kind = "netns"
    runtime = NETNS_LAB

    def __init__(self, lab: str, topology: dict, run: Runner = local_runner, remote: bool = False,
                 python: str | None = None, where: str | None = None):
        """LAB built from TOPOLOGY, asked through RUN. REMOTE: the lab is on another host (RUN
        reaches it), so its files are read there too, by the probe, with PYTHON (the Python
        that runs the lab there); WHERE names that host in messages."""
        self.name = lab
        self.topology = topology
        self.plan: Plan = build(topology, lab)
        self.run = run
        self.remote = remote
        self.python = python or sys.executable
        self.where = where
        self._views: dict[str, LabPod] = {}
        self._plan_pods = {p.name: p for p in self.plan.pods}  # a check per pod looks its pod up: not a scan
        self._rules: dict[str, tuple[str, KubeProxyRules]] = {}
        self._batches: dict[str, Future] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._clock: float | None = None

    # -- the batches: one probe process per node namespace, on the lab's host ----------------
    def probe(self, request: dict) -> dict:
        """One run of podpath.evidence.nodeprobe on the lab's host; its JSON answer."""
        argv = [self.python, "-m", "podpath.evidence.nodeprobe", nodeprobe.encode(request)]
        out = self.run(argv)
        where = f" on {self.where}" if self.where else ""
        if not out.ok:
            raise ProbeError(f"the lab's probe ({request['op']}) failed{where} with exit {out.rc} "
                             f"({self.python} -m podpath.evidence.nodeprobe): {out.stderr.strip()[-400:]}")
        try:
            return json.loads(out.stdout)
        except ValueError:
            raise ProbeError(f"the lab's probe ({request['op']}){where} printed no JSON: {out.stdout[:200]!r} "
                             f"{out.stderr.strip()[-300:]}") from None

    def prefetch(self) -> None:
        """Start the batches in the background: the lab's files and one per node."""
        if self._batches:
            return
        self._pool = ThreadPoolExecutor(max_workers=len(self.plan.nodes) + 1, thread_name_prefix="podpath-probe")
        self._batches["lab"] = self._pool.submit(self.probe, {"op": "lab", "lab": self.name,
                                                              "topology": self.topology})
        for node in self.plan.nodes:
            self._batches[node.name] = self._pool.submit(
                self.probe, {"op": "node", "lab": self.name, "topology": self.topology, "node": node.name,
                             "ping": True, "forget": None})

    def _batch(self, key: str) -> dict:
        self.prefetch()
        return self._batches[key].result()

    def lab_facts(self) -> dict:
        """The lab's files as one look saw them (nodeprobe's op lab)."""
        return self._batch("lab")

    def node_facts(self, node: str) -> dict:
        """Everything a check asks of NODE's pods, from one probe in its namespaces (op node)."""
        return self._batch(node)

    def pod_facts(self, pod: LabPod) -> dict:
        facts = self.node_facts(pod.node)
        if facts.get("node_error"):
            raise ProbeError(f"pod {pod}: {facts['node_error']}")
        return facts["pods"][pod.name]

    def forget_batches(self) -> None:
        """After a disruptive step: the next question looks again."""
        self._batches = {}
        self._rules = {}
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # -- where things are ------------------------------------------------------------
    def node_netns(self, node: str) -> str:
        return self.plan.node(node).netns

    def pods(self) -> list[Pod]:
        return list(self.plan.pods)

    def exec_in(self, netns: str, argv: list[str]) -> Result:
        return self.run(["nsenter", f"--net=/run/netns/{netns}", "--"] + argv)

    def exec_in_pid(self, pid: int, argv: list[str]) -> Result:
        """Run in the network namespace of process PID (a container), as `nsenter -t PID -n` does."""
        return self.run(["nsenter", "-t", str(pid), "-n", "--"] + argv)

    # -- traffic ---------------------------------------------------------------------
    def curl(self, netns: str, url: str, host: str | None = None, timeout: float = 2.0) -> Http:
        """What `curl` in NETNS shows of URL: on this host, the same request sent by the verifier
        itself from a socket of that namespace (podpath/evidence/inhttp.py), no process started."""
        if not self.remote:
            answer = inhttp.get(f"/run/netns/{netns}", url, host=host, timeout=timeout)
            if answer is not None:
                return answer
        argv = ["curl", "-sS", "-m", str(timeout), "-D", "-", "-o", "-"]
        if host:
            argv += ["-H", f"Host: {host}"]
        return parse_http(self.exec_in(netns, argv + [url]))

    def curl_pid(self, pid: int, url: str, timeout: float = 2.0) -> Http:
        if not self.remote:
            answer = inhttp.get(f"/proc/{pid}/ns/net", url, timeout=timeout)
            if answer is not None:
                return answer
        return parse_http(self.exec_in_pid(pid, ["curl", "-sS", "-m", str(timeout), "-D", "-", "-o", "-", url]))

    def ping(self, netns: str, ip: str) -> Result:
        return self.exec_in(netns, ["ping", "-c", "1", "-W", "1", ip])

    def arping(self, netns: str, iface: str, ip: str, count: int = 3) -> set[str]:
        """MAC addresses that answered ARP requests for IP (arping from iputils or Debian's arping)."""
        # -W: 0.2 s between requests, so a check takes well under a second
        out = self.exec_in(netns, self._arping_argv(iface, ip, count))
        return {m.lower() for m in re.findall(r"((?:[0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2})", out.stdout)}

    @staticmethod
    def _arping_argv(iface: str, ip: str, count: int) -> list[str]:
        return ["arping", "-c", str(count), "-W", "0.2", "-w", "2", "-i", iface, ip]

    # -- state -----------------------------------------------------------------------
    def ip_json(self, netns: str, *args: str) -> list:
        out = self.exec_in(netns, ["ip", "-j", *args])
        return json.loads(out.stdout or "[]") if out.ok else []

    def link(self, netns: str, name: str) -> dict | None:
        links = self.ip_json(netns, "-d", "link", "show", "dev", name)
        return links[0] if links else None

    def ipv4(self, netns: str, dev: str) -> list[str]:
        return [f"{a['local']}/{a['prefixlen']}" for link in self.ip_json(netns, "addr", "show", "dev", dev)
                for a in link.get("addr_info", []) if a.get("family") == "inet"]

    def iptables_save(self, netns: str, table: str = "nat") -> str:
        return self.exec_in(netns, ["iptables-save", "-t", table]).stdout

    def conntrack(self, netns: str, dst: str) -> list[str]:
        out = self.exec_in(netns, ["conntrack", "-L", "-p", "tcp", "--orig-dst", dst])
        return [line for line in out.stdout.splitlines() if line.startswith("tcp")]

    def neighbours(self, netns: str, dev: str) -> dict[str, str]:
        return {n["dst"]: n.get("lladdr", "").lower() for n in self.ip_json(netns, "neigh", "show", "dev", dev)
                if n.get("lladdr")}

    def fills_neighbour_table(self) -> bool:
        """Whether a check of every pod could fill half of the host's neighbour table."""
        return nodeprobe.fills_neighbour_table(len(self.plan.pods))

    def forget_neighbours(self, pod: Pod | LabPod) -> None:
        """Delete the neighbour entries that traffic between POD and its node made: the pod's
        (for its gateway) and its node's on cni0 (for the pod)."""
        netns = self.plan.pod(pod.name).netns
        # flush leaves the permanent entries of pod_neighbours: static alone
        self.run(["ip", "-n", netns, "neigh", "flush", "dev", "eth0"])
        self.run(["ip", "-n", self.node_netns(pod.node), "neigh", "flush", "to", pod.ip, "dev", "cni0"])

    def release_neighbours(self) -> bool:
        """Once this lab's checks are done, on a host whose neighbour table is crowded (half its
        limit or more, nodeprobe.neighbour_table_crowded): delete the lab's neighbour entries, all
        but the permanent ones (`ip neigh flush all` in each of its namespaces). Its checks' traffic
        left them REACHABLE, and the table, shared by every namespace of the host, would fill up
        while other labs are checked (a class verified at once). The lab's next packet to a
        neighbour asks ARP again, as after the kernel's own garbage collection. Whether it
        deleted them; a lab on another host has a table of its own and is left as it is."""
        if self.remote or not nodeprobe.neighbour_table_crowded():
            return False
        script = 'for ns; do ip -n "$ns" neigh flush all >/dev/null 2>&1; done'
        self.run(["sh", "-c", script, "sh"] + [ns for ns in self.plan.netns_names if ns != self.plan.lan_netns])
        return True

    def node_macs(self) -> dict[str, str]:
        """Node name -> MAC of its eth1, read from the node's namespace."""
        macs = {}
        for node in self.plan.nodes:
            link = self.link(node.netns, "eth1")
            if link:
                macs[node.name] = link["address"].lower()
        return macs

    def containers(self) -> dict[str, dict]:
        if self.remote:  # read there, by the probe: a fresh look each time
            return self.probe({"op": "lab", "lab": self.name, "topology": self.topology, "brief": True}
                              ).get("containers", {})
        return lab_status.containers(self.name)

    def container_pid(self, pod: str, container: str) -> int | None:
        """The pid of the container's first process (for nsenter -t), or None if it is not running."""
        record = self.containers().get(f"{pod}/{container}")
        if not record or not record["running"]:
            return None
        if self.remote:  # the probe there gave the container's first process with the look that says it runs
            return record.get("init")
        return record.get("init") or lab_status.container_init(record["pid"]) or record["pid"]

    def holder(self, netns: str) -> int | None:
        if self.remote:
            pod = next((p for p in self.plan.pods if p.netns == netns), None)
            return self.pod_facts(self._view(pod)).get("holder") if pod else None
        return lab_status.holders(self.name, [netns])[netns]

    def _remote_lab(self) -> dict:
        facts = self.probe({"op": "lab", "lab": self.name, "topology": self.topology, "brief": True})
        self._clock = facts.get("time")
        return facts

    def speakers(self) -> dict[str, dict | None]:
        if self.remote:
            return self._remote_lab().get("speakers") or {}
        return lab_status.speakers(self.name, [n.name for n in self.plan.nodes])

    def lease(self) -> dict | None:
        if self.remote:
            return self._remote_lab().get("lease")
        return lab_status.lease(self.plan)

    # == the verifier's interface (podpath.evidence.lab.Lab) ===========================
    # -- where a student sees the same thing
    def node_command(self, node: str, argv: list[str], root: bool = False) -> str:
        # the netns lab runs as root already
        return f"ip netns exec {self.node_netns(node)} {shlex.join(argv)}"

    def pod_command(self, pod: LabPod, argv: list[str]) -> str:
        return f"ip netns exec {pod.handle.netns} {shlex.join(argv)}"

    def exec_command(self, pod: LabPod, container: str, argv: list[str]) -> str:
        """ARGV in every namespace of the container, as `kubectl exec` runs it in the cluster."""
        return f"nsenter -t {self.container_pid(pod.name, container) or 'PID'} -a {shlex.join(argv)}"

    def client_command(self, argv: list[str]) -> str:
        return f"ip netns exec {self.plan.client_netns} {shlex.join(argv)}"

    # -- what the lab is made of (its plan; PlanFacts answers the rest)
    def _view(self, pod: Pod) -> LabPod:
        if pod.name not in self._views:
            self._views[pod.name] = LabPod(name=pod.name, namespace=pod.namespace, node=pod.node, ip=pod.ip,
                                           app=pod.app, port=pod.port, containers=[c.name for c in pod.containers],
                                           prefixlen=pod.prefixlen, share_process_namespace=pod.share_process_namespace,
                                           handle=pod)
        return self._views[pod.name]

    def pod(self, ref: PodRef, refresh: bool = False) -> LabPod:
        if ref.id not in self._plan_pods:
            raise ProbeError(f"lab {self.name} has no pod {ref.id} in its plan")
        return self._view(self._plan_pods[ref.id])

    def pods_of(self, app: str) -> list[LabPod]:
        return [self._view(p) for p in self.plan.pods if p.app == app]

    def clients(self) -> list[LabPod]:
        """Every pod: curl runs in any pod's namespace through nsenter."""
        return [self._view(p) for p in self.plan.pods]

    def service(self, role: str) -> ServiceView:
        svc = self.planned_service(role)
        port = svc.ports[0]
        return ServiceView(name=svc.name, namespace=svc.namespace, cluster_ip=svc.cluster_ip, port=port.port,
                           target_port=port.target_port, node_port=port.node_port,
                           load_balancer_ip=svc.load_balancer_ip, policy=svc.external_traffic_policy,
                           endpoints={p.name: f"{p.ip}:{port.target_port}" for p in svc.pods})

    # -- scenarios 1-4: from the node's batch
    def netns_path(self, pod: LabPod) -> str:
        return f"{NETNS_DIR}/{pod.handle.netns}"

    def netns_files(self, node: str) -> list[str]:
        # one /var/run/netns for every node: the nodes are namespaces of the lab's host
        return self.lab_facts()["netns_files"]

    def pod_addresses(self, pod: LabPod, dev: str = "eth0") -> list[str]:
        if dev == "eth0":
            return self.pod_facts(pod)["addrs"]
        return self.ipv4(pod.handle.netns, dev)

    def netns_bind_mounts(self, pod: LabPod) -> list[str]:
        """Where the pod's namespace file is a mount of nsfs, from the host's mountinfo."""
        name = pod.handle.netns
        return [point for point in self.lab_facts()["nsfs_mounts"] if point.rpartition("/")[2] == name]

    def sandbox_pid(self, pod: LabPod) -> int | None:
        return self.pod_facts(pod).get("holder")

    def _proc(self, node: str, pid: int) -> dict | None:
        return self.node_facts(node)["procs"].get(str(pid))

    def process_name(self, node: str, pid: int) -> str:
        proc = self._proc(node, pid)
        if proc is not None:
            return proc["comm"]
        out = self.run(["cat", f"/proc/{pid}/comm"])
        return out.stdout.strip() if out.ok else ""

    def namespace_of_pid(self, node: str, pid: int, kind: str = "net") -> str:
        proc = self._proc(node, pid)
        link = proc["ns"].get(kind) if proc is not None else None
        if link is None:
            out = self.run(["readlink", f"/proc/{pid}/ns/{kind}"])
            if not out.ok:
                raise ProbeError(f"cannot read /proc/{pid}/ns/{kind}: {out.stderr.strip()[:200]}")
            link = out.stdout.strip()
        return link

    def namespace_of_netns_file(self, pod: LabPod) -> str:
        facts = self.pod_facts(pod)
        if "bound" not in facts:
            raise ProbeError(f"pod {pod}: {facts.get('bound_error') or 'its namespace file cannot be read'}")
        return facts["bound"]

    def processes_in_netns(self, pod: LabPod) -> int:
        # lsns walks every process of the host: read once a run, by the lab's batch, and only
        # the two columns used, so that no other process's command line is read
        facts = self.lab_facts()
        if "lsns" not in facts:
            raise ProbeError(facts.get("lsns_error") or "lsns -t net -J failed")
        inode = self.namespace_of_netns_file(pod)[5:-1]
        return facts["lsns"].get(inode, 0)

    def container_namespaces(self, pod: LabPod, container: str) -> dict[str, str]:
        init = self.pod_facts(pod)["inits"].get(container)
        if not init:
            raise ProbeError(f"pod {pod}: container {container} is not running")
        return {kind: self.namespace_of_pid(pod.node, init, kind) for kind in NAMESPACE_KINDS}

    def container_exec(self, pod: LabPod, container: str, argv: list[str]) -> Result:
        """ARGV in every namespace of the container (exec_command), as kubectl exec runs it."""
        pid = self.container_pid(pod.name, container)
        if not pid:
            raise ProbeError(f"pod {pod}: container {container} is not running")
        return self.run(["nsenter", "-t", str(pid), "-a", "--", *argv])

    def container_hostname(self, pod: LabPod, container: str) -> str:
        """The host name the container sees: its UTS namespace's, read by the node's batch."""
        facts = self.pod_facts(pod)
        if not facts["inits"].get(container):
            raise ProbeError(f"pod {pod}: container {container} is not running")
        name = facts["hostnames"].get(container)
        if name is None:
            raise ProbeError(f"pod {pod}: the UTS namespace of container {container} could not be entered "
                             f"({self.exec_command(pod, container, ['hostname'])})")
        return name

    def container_processes(self, pod: LabPod, container: str) -> dict[int, str]:
        out = self.container_exec(pod, container, ["sh", "-c", PROCESSES_SCRIPT])
        shown = self.exec_command(pod, container, ["ps", "-e"])
        return processes_seen(out, f"pod {pod}, container {container}: {shown}")

    def container_ipv4(self, pod: LabPod, container: str) -> list[str] | None:
        pid = self.container_pid(pod.name, container)
        if not pid:
            raise ProbeError(f"pod {pod}: container {container} is not running")
        out = self.exec_in_pid(pid, ["ip", "-4", "-o", "addr", "show", "dev", "eth0"])
        return re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", out.stdout)

    def container_get(self, pod: LabPod, container: str, url: str) -> Http:
        pid = self.container_pid(pod.name, container)
        if not pid:
            return Http(rc=1, status=None, error=f"container {container} is not running")
        return self.curl_pid(pid, url)

    def page_mark(self, pod: LabPod, container: str) -> str:
        # the lab's nginx containers name themselves in their answer (nginx-web.conf.j2)
        return f"container={container}"

    def pod_links(self, pod: LabPod) -> tuple[dict, dict | None]:
        """(eth0 in the pod's namespace, the host-side veth the plan names on its node), as
        `ip -j -d link` shows them, from the node's batch (rtnetlink in each namespace)."""
        facts = self.pod_facts(pod)
        return (facts.get("eth0") or {}), facts.get("veth")

    # -- scenarios 5-11 and 18
    def pod_get(self, pod: LabPod, url: str, host: str | None = None, timeout: float = 2.0) -> Http:
        return self.curl(pod.handle.netns, url, host=host, timeout=timeout)

    def node_get(self, node: str, ip: str, port: int, host: str | None = None) -> Http:
        return self.curl(self.node_netns(node), f"http://{ip}:{port}/", host=host)

    def client_get(self, url: str, host: str | None = None) -> Http:
        return self.curl(self.plan.client_netns, url, host=host)

    def answered_by(self, pod: LabPod, url: str, expect: set[str], host: str | None = None,
                    field_name: str = "pod") -> tuple[dict[str, int], list[str]]:
        """Ask URL from POD until every name of EXPECT answered (scenarios.spread): kube-proxy
        picks an endpoint at random."""
        return spread(lambda: [self.pod_get(pod, url, host=host)], lambda a: a.field(field_name), expect)

    def forget_traffic(self, pod: LabPod) -> None:
        """Nothing left to do: the node's batch sends the pods' echoes a group at a time and,
        on a lab big enough to fill the host's neighbour table, deletes the two entries each
        pod's echoes made before the next group. That table and its limit (gc_thresh3) are
        shared by every namespace on the host, and an entry stays REACHABLE, which the kernel
        cannot reclaim, for 15 to 45 s: echoes from every pod at once would fill it near 1,000
        pods, and fail for want of room, not for a fault of the lab."""

    def pod_reaches_node(self, pod: LabPod, node: str) -> tuple[bool, str]:
        """An ICMP echo from the pod's namespace to the node's address, sent by the node's
        batch (a raw socket in the pod's namespace), answered within 1 s."""
        ip = self.node_ip(node)
        answer = self.pod_facts(pod).get("pings", {}).get(ip, "not sent")
        return answer == "ok", f"echo request to {ip}: {answer} (by hand: " \
                               f"{self.pod_command(pod, ['ping', '-c', '1', '-W', '1', ip])})"

    def route_get(self, node: str, ip: str) -> dict:
        routes = self.ip_json(self.node_netns(node), "route", "get", ip)
        return routes[0] if routes else {}

    def pod_subnet_next_hops(self, node: str) -> set[str]:
        # as flannel routes it: via the node's flannel.1 (vxlan) or the node's address (host-gw)
        return {self.plan.pod_subnet_next_hop(node)}

    def vxlan_destination(self, node: str, gateway: str) -> tuple[str | None, str | None]:
        netns = self.node_netns(node)
        mac = self.neighbours(netns, "flannel.1").get(gateway)
        out = self.exec_in(netns, ["bridge", "-j", "fdb", "show", "dev", "flannel.1"])
        fdb = {(f.get("mac") or "").lower(): f.get("dst") for f in json.loads(out.stdout or "[]")} if out.ok else {}
        return mac, fdb.get(mac or "")

    def node_side_addresses(self) -> set[str]:
        # a node SNATs to the address of the link a packet leaves by: eth1, cni0, or flannel.1
        return ({n.ip for n in self.plan.nodes} | {n.gateway for n in self.plan.nodes}
                | {n.vtep.address for n in self.plan.nodes if n.vtep})

    def client_address(self, toward: str) -> str:
        return self.plan.client_ip

    # -- scenario 12
    def nat_rules(self, node: str) -> tuple[str, str]:
        out = self.exec_in(self.node_netns(node), ["iptables-save", "-t", "nat"])
        if not out.ok:
            raise ProbeError(f"{self.node_command(node, ['iptables-save', '-t', 'nat'])} failed: {out.stderr.strip()}")
        return "iptables-save", out.stdout

    def kube_proxy_rules(self, node: str) -> tuple[str, KubeProxyRules]:
        """(the command, what it showed) of kube-proxy's rules on NODE, in the lab's mode: the
        whole iptables-save, or nft's JSON of the table ip kube-proxy. Read once a node for the
        checks of scenario 12 (a disruptive step reads them again)."""
        if node not in self._rules:
            self._rules[node] = self._read_kube_proxy_rules(node)
        return self._rules[node]

    def _read_kube_proxy_rules(self, node: str) -> tuple[str, KubeProxyRules]:
        argv = KUBE_PROXY_RULES[self.kube_proxy_mode()]
        shown = self.node_command(node, argv)
        out = self.exec_in(self.node_netns(node), argv)
        if not out.ok:
            raise ProbeError(f"{shown} failed: {out.stderr.strip()}")
        return shown, kube_proxy_rules(self.kube_proxy_mode(), out.stdout, f"node {node}: {shown}")

    # -- scenarios 13-17 and 19
    def node_addresses(self, node: str) -> list[tuple[str, str]]:
        return [(link.get("ifname", ""), a.get("local", "")) for link in self.ip_json(self.node_netns(node), "addr")
                for a in link.get("addr_info", [])]

    def arp_probe(self, address: str, count: int = 3) -> Future:
        """ARP requests from the client for ADDRESS, sent in the background: most of the
        probe's time is spent waiting between requests, which the HTTP checks can use."""
        argv = self._arping_argv("eth0", address, count)

        def probe() -> ArpAnswer:
            return ArpAnswer(sorted(self.arping(self.plan.client_netns, "eth0", address, count)),
                             self.client_command(argv))

        pool = ThreadPoolExecutor(max_workers=1)
        try:
            return pool.submit(probe)
        finally:
            pool.shutdown(wait=False)

    def client_neighbour(self, address: str) -> str | None:
        return self.neighbours(self.plan.client_netns, "eth0").get(address)

    def election_candidates(self) -> list[str]:
        """Nodes whose speaker runs and whose link is up (what the speakers report)."""
        return sorted(n for n, s in self.speakers().items() if s and s.get("link_ok"))

    def reported_announcers(self) -> list[str] | None:
        address = self.plan.ingress_service.load_balancer_ip
        return sorted(n for n, s in self.speakers().items() if s and address in s.get("announcing", []))

    def speakers_not_running(self) -> list[str]:
        return sorted(n for n, s in self.speakers().items() if not s)

    def leader_lease(self) -> Lease | None:
        lease = self.lease()
        if not lease:
            return None
        renew, duration = lease.get("renewTime"), lease.get("leaseDurationSeconds")
        return Lease(holder=lease.get("holderIdentity"), renew_time=float(renew) if renew is not None else None,
                     duration=float(duration) if duration is not None else None)

    def clock(self) -> float:
        """Now, on the lab's host: the time of the last look at its files there, or this host's."""
        return self._clock if self.remote and self._clock is not None else time.time()

    def trace(self):
        from podpath.evidence import trace as trace_mod

        return trace_mod.trace(self.name, self.topology, lab=self)

    # -- the disruptive checks
    def stop_container(self, pod: LabPod, container: str) -> str:
        """SIGKILL the container's first process and wait for it to be gone (its shim starts it
        again, at once the first time, as the kubelet does; `repair` restarts it in any case)."""
        pid = self.container_pid(pod.name, container)
        if not pid:
            raise ProbeError(f"pod {pod}: container {container} is not running")
        if self.remote:
            raise ProbeError(f"the disruptive checks run on this host's labs only, not on {self.where}")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
            time.sleep(0.05)
        self.forget_batches()
        return f"killed container {container} of pod {pod.name} (pid {pid}, SIGKILL)"

    def fail_announcer(self, node: str) -> str:
        argv = ["ip", "link", "set", "eth1", "down"]
        out = self.exec_in(self.node_netns(node), argv)
        self.forget_batches()
        if not out.ok:
            raise ProbeError(f"could not take {node}'s eth1 down: {out.stderr.strip()}")
        return self.node_command(node, argv)

    def repair(self, node: str | None = None) -> None:
        """`podpath up` puts back whatever a disruptive check broke."""
        self.forget_batches()
        if self.remote:
            raise ProbeError(f"lab {self.name} on {self.where} is repaired by its playbook: ansible-playbook -i "
                             f"INVENTORY playbooks/netns-lab.yml --limit {self.where}")
        done = subprocess.run([sys.executable, "-m", "podpath.cli", "up", "--lab", self.name, "-q"],
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise ProbeError(f"podpath up could not restore lab {self.name}: {done.stderr.strip()[-500:]}")
