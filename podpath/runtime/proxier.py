"""kube-proxy's sync loop for one node of the netns lab.

In a cluster, the kubelet probes each pod's readiness, the endpoint slice controller drops
unready pods from the Service's EndpointSlices, and kube-proxy on every node rewrites
its rules. In the netns lab this process plays those parts for one node: every
PERIOD seconds it opens a TCP connection to each endpoint (a readiness probe), and
when the set of ready endpoints changes it renders the node's rules again (the same
renderer the playbook uses) and applies them with one iptables-restore.

    python -m podpath.runtime.proxier INPUTS.json    (run in the node's network namespace)

INPUTS is what `podpath up` rendered for this node (podpath.model.kubeproxy.NodeInputs):
the ports of the lab's Services with their endpoints, the pod network and the node's
name; the node's kube-proxy does not read the lab's topology.
"""
from __future__ import annotations

import socket
import subprocess
import sys
import time

from podpath.model import kubeproxy
from podpath.runtime.daemon import log, start

PERIOD = 0.5  # seconds between two rounds of probes
TIMEOUT = 0.3  # seconds a probe waits for the connection


def ready(ip: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


def probe_all(endpoints: dict[str, kubeproxy.Endpoint], timeout: float) -> set[str]:
    """The addresses (ip:port) of ENDPOINTS that accept a connection now."""
    return {address for address, ep in sorted(endpoints.items()) if ready(ep.ip, ep.port, timeout)}


def apply(rules: str, mode: str) -> None:
    argv = kubeproxy.restore_argv(mode)
    done = subprocess.run(argv, input=rules, text=True, capture_output=True)
    if done.returncode != 0:
        log(f"{argv[0]} failed: {done.stderr.strip()}")


def main(argv: list[str]) -> int:
    inputs = kubeproxy.NodeInputs.from_json(start(argv, "proxier"))
    endpoints = {ep.address: ep for info in inputs.ports for ep in info.endpoints}
    # The playbook applied the rules with every endpoint: start from that.
    current = set(endpoints)
    log(f"{inputs.node}: watching {len(current)} endpoints every {PERIOD} s")
    while True:
        now_ready = probe_all(endpoints, TIMEOUT)
        if now_ready != current:
            gone = sorted(endpoints[a].pod for a in current - now_ready)
            back = sorted(endpoints[a].pod for a in now_ready - current)
            apply(kubeproxy.rules(inputs.with_ready(now_ready)), inputs.mode)
            log(f"{inputs.node}: endpoints not ready: {gone or '-'}; ready again: {back or '-'}; rules applied")
            current = now_ready
        time.sleep(PERIOD)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
