"""kube-proxy's sync loop for one node of the netns lab.

In a cluster, the kubelet probes each pod's readiness, the endpoint controller drops
unready pods from the Service's EndpointSlices, and kube-proxy on every node rewrites
its rules. In the netns lab this process plays those parts for one node: every
`period` seconds it opens a TCP connection to each endpoint (a readiness probe), and
when the set of ready endpoints changes it renders the node's rules again (the same
renderer the playbook uses) and applies them with one iptables-restore.

    python -m podpath.runtime.proxier CONFIG.json    (run in the node's network namespace)

CONFIG holds the lab name, the node name and the topology.
"""
from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
import time

from podpath.model import kubeproxy
from podpath.runtime.daemon import log, start
from podpath.model.plan import Plan, build


def ready(ip: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


def with_ready_endpoints(plan: Plan, ready_pods: set[str]) -> Plan:
    services = [dataclasses.replace(s, pods=[p for p in s.pods if p.name in ready_pods]) for s in plan.services]
    return dataclasses.replace(plan, services=services)


def probe_all(plan: Plan, timeout: float) -> set[str]:
    targets = {p for s in plan.services for p in s.endpoints}
    result = set()
    for name in sorted(targets):
        pod = plan.pod(name)
        port = next(sp.target_port for s in plan.services if name in s.endpoints for sp in s.ports)
        if ready(pod.ip, port, timeout):
            result.add(name)
    return result


def apply(rules: str) -> None:
    done = subprocess.run(["iptables-restore", "-w"], input=rules, text=True, capture_output=True)
    if done.returncode != 0:
        log(f"iptables-restore failed: {done.stderr.strip()}")


def main(argv: list[str]) -> int:
    config = start(argv, "proxier")
    plan = build(config["topology"], config["lab"])
    node = config["node"]
    period = float(config.get("period", 0.5))
    timeout = float(config.get("timeout", 0.3))
    # The playbook applied the rules with every endpoint: start from that.
    current = {p for s in plan.services for p in s.endpoints}
    log(f"{node}: watching {len(current)} endpoints every {period} s")
    while True:
        now_ready = probe_all(plan, timeout)
        if now_ready != current:
            gone, back = sorted(current - now_ready), sorted(now_ready - current)
            apply(kubeproxy.render(with_ready_endpoints(plan, now_ready), node))
            log(f"{node}: endpoints not ready: {gone or '-'}; ready again: {back or '-'}; rules applied")
            current = now_ready
        time.sleep(period)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
