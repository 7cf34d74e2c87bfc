"""The path of one request from the client to a backend, with evidence for each hop.

1. ARP: the client's neighbour entry for the MetalLB address after the request (its
   MAC names the node whose speaker answered).
2. DNAT: the conntrack entry of the request on that node (the reply's source is the
   controller pod chosen by kube-proxy), mapped to its KUBE-SEP chain.
3. The controller that served (its X-Ingress-Controller header).
4. The backend that answered, and the source addresses each of them saw.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from podpath.model import kubeproxy
from podpath.evidence.probe import NetnsLab, parse_http


@dataclass
class Hop:
    step: str
    what: str
    evidence: str
    ok: bool = True


@dataclass
class Trace:
    url: str
    host: str
    hops: list[Hop] = field(default_factory=list)
    node: str | None = None
    controller: str | None = None
    backend: str | None = None
    sep_chain: str | None = None
    expected_hops: int = 5

    @property
    def complete(self) -> bool:
        return len(self.hops) == self.expected_hops and all(h.ok for h in self.hops)


def trace(lab_name: str, topology: dict, host: str | None = None, lab: NetnsLab | None = None) -> Trace:
    lab = lab or NetnsLab(lab_name, topology)
    plan = lab.plan
    svc = plan.ingress_service
    port = svc.ports[0]
    host = host or plan.ingress_host
    url = f"http://{svc.load_balancer_ip}:{port.port}/"
    result = Trace(url=url, host=host)
    client = plan.client_netns
    # Forget the address's MAC first, so that this request's ARP exchange is the evidence.
    lab.exec_in(client, ["ip", "neigh", "flush", "to", svc.load_balancer_ip])
    out = lab.exec_in(client, ["curl", "-sS", "-m", "3", "-D", "-", "-H", f"Host: {host}", "-w",
                               "\nlocal_port=%{local_port}\n", url])
    local_port = re.search(r"\nlocal_port=(\d+)\n?$", out.stdout)
    if local_port:
        out.stdout = out.stdout[: local_port.start()]
    answer = parse_http(out)
    mac = lab.neighbours(client, "eth0").get(svc.load_balancer_ip)
    macs = lab.node_macs()
    node = next((n for n, m in macs.items() if m == mac), None)
    result.node = node
    result.hops.append(Hop("1 ARP", f"client {plan.client_ip} -> {svc.load_balancer_ip}",
                           f"{svc.load_balancer_ip} is-at {mac or '?'}: node {node or 'unknown'} answered",
                           ok=node is not None))
    if answer.status is None:
        result.hops.append(Hop("2 DNAT", "kube-proxy", f"the request failed: {answer.error}", ok=False))
        return result
    controller_ip = None
    if node and local_port:
        for line in lab.conntrack(plan.node(node).netns, svc.load_balancer_ip):
            if f"sport={local_port.group(1)} " in line:
                sources = re.findall(r"src=(\S+)", line)
                controller_ip = sources[1] if len(sources) > 1 else None
                break
    controller_pod = next((p for p in plan.pods if p.ip == controller_ip), None)
    if controller_pod:
        result.sep_chain = kubeproxy.sep_chain(svc, port, f"{controller_pod.ip}:{port.target_port}")
    result.hops.append(Hop("2 DNAT", f"node {node}: KUBE-SERVICES -> {kubeproxy.ext_chain(svc, port)} -> "
                                     f"{kubeproxy.svc_chain(svc, port)}",
                           f"conntrack: {svc.load_balancer_ip}:{port.port} -> {controller_ip or '?'}:{port.target_port}"
                           f" ({result.sep_chain or 'no KUBE-SEP matched'})", ok=controller_pod is not None))
    served_by = answer.headers.get("x-ingress-controller")
    result.controller = served_by
    result.hops.append(Hop("3 controller", f"{served_by} on {controller_pod.node if controller_pod else '?'}",
                           f"X-Ingress-Controller: {served_by}; DNAT went to "
                           f"{controller_pod.name if controller_pod else '?'}",
                           ok=bool(controller_pod and served_by == controller_pod.name)))
    backend = answer.field("pod")
    result.backend = backend
    backend_pod = next((p for p in plan.pods if p.name == backend), None)
    result.hops.append(Hop("4 backend", f"{backend} ({answer.field('ip')}) on {answer.field('node')}",
                           f"HTTP {answer.status}: {answer.body}",
                           ok=answer.status == 200 and backend_pod is not None and backend_pod.app == "echo"))
    result.hops.append(Hop("5 source", "addresses seen on the way",
                           f"the controller saw {answer.field('forwarded_for')} (client {plan.client_ip}, "
                           f"externalTrafficPolicy {svc.external_traffic_policy}); the backend saw "
                           f"{answer.field('client')} (the controller's pod IP)",
                           ok=answer.field("client") == (controller_pod.ip if controller_pod else None)))
    return result


def render_text(result: Trace) -> str:
    lines = [f"trace: curl -H 'Host: {result.host}' {result.url}"]
    for hop in result.hops:
        lines.append(f"  {'ok ' if hop.ok else 'BAD'} {hop.step:<13} {hop.what}")
        lines.append(f"      {'':<13} {hop.evidence}")
    lines.append("complete" if result.complete else "incomplete: see the hops marked BAD")
    return "\n".join(lines)


def render_mermaid(result: Trace) -> str:
    lines = ["flowchart LR", f'  client["client"] -->|"ARP: {_esc(result.hops[0].evidence)}"| node["node {result.node}"]']
    if len(result.hops) > 2:
        lines.append(f'  node -->|"{_esc(result.hops[1].evidence)}"| ctrl["{result.controller}"]')
        lines.append(f'  ctrl -->|"proxy_pass to endpoints"| backend["{result.backend}"]')
    return "\n".join(lines) + "\n"


def render_dot(result: Trace) -> str:
    lines = ["digraph trace {", "  rankdir=LR;", '  client [label="client"];',
             f'  node [label="node {result.node}"];', f'  ctrl [label="{result.controller}"];',
             f'  backend [label="{result.backend}"];',
             f'  client -> node [label="{_esc(result.hops[0].evidence)}"];']
    if len(result.hops) > 2:
        lines.append(f'  node -> ctrl [label="{_esc(result.hops[1].evidence)}"];')
        lines.append('  ctrl -> backend [label="proxy_pass to endpoints"];')
    return "\n".join(lines + ["}"]) + "\n"


def _esc(text: str) -> str:
    return text.replace('"', "'")
