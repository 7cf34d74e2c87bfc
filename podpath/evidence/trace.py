"""The path of one request from the client to a backend, with evidence for each hop.

1. ARP: the client's neighbour entry for the MetalLB address after the request (its
   MAC names the node whose speaker answered).
2. DNAT: the conntrack entry of the request on that node (the reply's source is the
   controller pod chosen by kube-proxy), and the chains of kube-proxy's rules on that node
   that lead there, in the lab's mode: KUBE-SERVICES -> KUBE-EXT-* -> KUBE-SVC-* -> KUBE-SEP-*
   (iptables), or the map service-ips -> external-* -> service-* -> endpoint-* (nftables).
3. The controller that served (its X-Ingress-Controller header); with the gateway-api edge,
   the Gateway's listener and the HTTPRoute's rule the request matched, and the data-plane
   pod that served (its X-Gateway-Pod header).
4. The backend that answered (with the gateway-api edge, and the header the HTTPRoute adds
   to the request, as the backend saw it), and the source addresses each of them saw.

Where a hop goes from one node to another (the node that answered ARP to a controller on
another node, or a controller to a backend on another node), the hop also shows the
kernel's route between them (`ip route get` on the sending node): through flannel.1, inside
VXLAN, or via the other node's address with host-gw.

The result keeps the addresses each hop showed (the MAC, the chosen controller's IP, the
source each pod saw), so that podpath/evidence/picture.py can draw the path with them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from podpath.model import gateway as gateway_mod
from podpath.model import kubeproxy
from podpath.model.plan import Plan, Service, ServicePort
from podpath.evidence.lab import ProbeError
from podpath.evidence.probe import NetnsLab, parse_http


@dataclass
class Hop:
    step: str
    what: str
    evidence: str
    ok: bool = True
    between: str | None = None  # the route to another node, when the hop crosses the LAN


@dataclass
class Trace:
    url: str
    host: str
    hops: list[Hop] = field(default_factory=list)
    node: str | None = None
    controller: str | None = None
    backend: str | None = None
    sep_chain: str | None = None  # the endpoint's chain: KUBE-SEP-* (iptables) or endpoint-* (nftables)
    expected_hops: int = 5
    mode: str = "iptables"  # kube-proxy's mode on the lab's nodes
    chains: list[str] = field(default_factory=list)  # kube-proxy's chains of the request, entry to endpoint
    # What the picture draws, as the hops found it (None: that hop did not get so far).
    plan: Plan | None = field(default=None, repr=False)
    mac: str | None = None  # the MAC that answered ARP for the MetalLB address
    client_port: int | None = None  # the client's source port, which finds the request in conntrack
    controller_ip: str | None = None  # where the DNAT sent the request (the reply's source in conntrack)
    status: int | None = None  # the HTTP status, or None when the request failed
    error: str | None = None  # curl's error when it failed
    controller_saw: str | None = None  # the source address the controller saw (X-Forwarded-For)
    backend_ip: str | None = None  # the address the backend answered from
    backend_saw: str | None = None  # the source address the backend saw

    @property
    def complete(self) -> bool:
        return len(self.hops) == self.expected_hops and all(h.ok for h in self.hops)


def between_nodes(lab: NetnsLab, src: str | None, dst: str | None, address: str | None) -> tuple[str | None, bool]:
    """The route node SRC's kernel takes to ADDRESS, a pod of node DST, when they differ:
    (text, ok), ok when it is the hop flannel's backend wires; (None, True) on one node."""
    if not (src and dst and address) or src == dst:
        return None, True
    plan = lab.plan
    want = plan.node_hop(src, dst)
    out = lab.exec_in(plan.node(src).netns, ["ip", "-o", "route", "get", address])
    route = " ".join(out.stdout.split()) if out.rc == 0 else f"no route: {out.stderr.strip()}"
    route = re.sub(r" (uid \d+|\\|cache)\b.*$", "", route)  # what the route is, not how the kernel cached it
    hop = re.search(r"\bvia (\S+) dev (\S+)", route)
    ok = bool(hop) and hop.groups() == (want.gateway, want.dev)
    how = (f"inside VXLAN (UDP {want.port}, VNI {want.vni}) to {want.underlay}" if want.lladdr
           else f"routed to node {dst} at {want.gateway}")
    text = f"{src} -> {dst}: {route}; {how}" if ok else f"{src} -> {dst}: {route}; expected via {want.gateway} dev {want.dev}"
    return text, ok


DISPATCH = {"iptables": "KUBE-SERVICES", "nftables": "services: @service-ips"}


def kube_proxy_chains(lab: NetnsLab, node: str, svc: Service, port: ServicePort,
                      endpoint: str | None) -> tuple[list[str], str]:
    """The chains of node NODE's kube-proxy rules that send SVC's load balancer IP to ENDPOINT
    (ip:port): [entry, policy chain, endpoint chain], and where the names come from. From the
    node's own rules; where they show no such path, kube-proxy's names for it, and so it says."""
    mode = lab.plan.kube_proxy_mode
    try:
        path = lab.kube_proxy_rules(node)[1].service_path(svc.load_balancer_ip, port.port)
        why = "its rules show no path for this address"
    except ProbeError as exc:
        path, why = None, f"its rules could not be read: {exc}"
    sep = next((s.chain for s in path.seps if endpoint in s.destinations), None) if path and endpoint else None
    if path and (sep or not endpoint):
        return [path.entry_chain, path.svc_chain] + ([sep] if sep else []), f"as the rules of {node} name it"
    if mode == "nftables":
        chains = [kubeproxy.nft_external_chain(svc, port),
                  (kubeproxy.nft_local_chain if svc.external_traffic_policy == "Local"
                   else kubeproxy.nft_service_chain)(svc, port)]
        named = kubeproxy.nft_endpoint_chain
    else:
        chains = [kubeproxy.ext_chain(svc, port),
                  (kubeproxy.svl_chain if svc.external_traffic_policy == "Local" else kubeproxy.svc_chain)(svc, port)]
        named = kubeproxy.sep_chain
    if path and endpoint:
        why = f"no endpoint chain of {path.svc_chain} DNATs to {endpoint}"
    return chains + ([named(svc, port, endpoint)] if endpoint else []), f"kube-proxy's name for it: {why}"


def trace(lab_name: str, topology: dict, host: str | None = None, lab: NetnsLab | None = None) -> Trace:
    lab = lab or NetnsLab(lab_name, topology)
    plan = lab.plan
    svc = plan.ingress_service
    port = svc.ports[0]
    host = host or plan.ingress_host
    path = plan.gateway.path_prefix if plan.gateway else "/"  # the HTTPRoute's prefix, with the gateway edge
    url = f"http://{svc.load_balancer_ip}:{port.port}{path}"
    result = Trace(url=url, host=host, plan=plan, mode=plan.kube_proxy_mode)
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
    result.node, result.mac = node, mac
    result.client_port = int(local_port.group(1)) if local_port else None
    result.status, result.error = answer.status, answer.error or None
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
    result.controller_ip = controller_ip
    controller_pod = next((p for p in plan.pods if p.ip == controller_ip), None)
    endpoint = f"{controller_pod.ip}:{port.target_port}" if controller_pod else None
    result.chains, named_by = kube_proxy_chains(lab, node, svc, port, endpoint) if node else ([], "no node")
    result.sep_chain = result.chains[2] if len(result.chains) > 2 else None
    result.hops.append(Hop("2 DNAT", f"node {node}: {' -> '.join([DISPATCH[result.mode]] + result.chains[:2])}",
                           f"conntrack: {svc.load_balancer_ip}:{port.port} -> {controller_ip or '?'}:{port.target_port}"
                           f" ({result.sep_chain or 'no endpoint chain matched'}, {named_by})",
                           ok=controller_pod is not None))
    text, ok = between_nodes(lab, node, controller_pod.node if controller_pod else None, controller_ip)
    result.hops[-1].between, result.hops[-1].ok = text, result.hops[-1].ok and ok
    gw = plan.gateway
    header = gateway_mod.GATEWAY_HEADER if gw else "x-ingress-controller"
    served_by = answer.headers.get(header)
    result.controller = served_by
    on = controller_pod.node if controller_pod else "?"
    went = f"DNAT went to {controller_pod.name if controller_pod else '?'}"
    if gw:
        what = (f"Gateway {gw.namespace}/{gw.name} listener {gw.listener_name} ({gw.hostname}:{gw.listener_port}) "
                f"-> HTTPRoute {gw.namespace}/{gw.route} (PathPrefix {gw.path_prefix}): data-plane pod {served_by} "
                f"on {on}")
        result.hops.append(Hop("3 gateway", what,
                               f"X-Gateway-Pod: {served_by}; {went}",
                               ok=bool(controller_pod and served_by == controller_pod.name)))
    else:
        result.hops.append(Hop("3 controller", f"{served_by} on {on}", f"X-Ingress-Controller: {served_by}; {went}",
                               ok=bool(controller_pod and served_by == controller_pod.name)))
    backend = answer.field("pod")
    result.backend = backend
    result.backend_ip, result.backend_saw = answer.field("ip"), answer.field("client")
    result.controller_saw = answer.field("forwarded_for")
    backend_pod = next((p for p in plan.pods if p.name == backend), None)
    ok = answer.status == 200 and backend_pod is not None and backend_pod.app == "echo"
    evidence = f"HTTP {answer.status}: {answer.body}"
    if gw and gw.add_header:  # the HTTPRoute's RequestHeaderModifier, as the backend received it
        name, value = gw.add_header
        seen = answer.field(name.lower())
        ok = ok and seen == value
        evidence += f" (the HTTPRoute added {name}: {value}; the backend saw {seen or 'nothing'})"
    result.hops.append(Hop("4 backend", f"{backend} ({answer.field('ip')}) on {answer.field('node')}",
                           evidence, ok=ok))
    text, ok = between_nodes(lab, controller_pod.node if controller_pod else None,
                             backend_pod.node if backend_pod else None, backend_pod.ip if backend_pod else None)
    result.hops[-1].between, result.hops[-1].ok = text, result.hops[-1].ok and ok
    result.hops.append(Hop("5 source", "addresses seen on the way",
                           f"the {'data-plane pod' if gw else 'controller'} saw {answer.field('forwarded_for')} "
                           f"(client {plan.client_ip}, externalTrafficPolicy {svc.external_traffic_policy}); the "
                           f"backend saw {answer.field('client')} (the {'data-plane pod' if gw else 'controller'}'s "
                           "pod IP)",
                           ok=answer.field("client") == (controller_pod.ip if controller_pod else None)))
    return result


def render_text(result: Trace) -> str:
    lines = [f"trace: curl -H 'Host: {result.host}' {result.url}"]
    for hop in result.hops:
        lines.append(f"  {'ok ' if hop.ok else 'BAD'} {hop.step:<13} {hop.what}")
        lines.append(f"      {'':<13} {hop.evidence}")
        if hop.between:
            lines.append(f"      {'':<13} between nodes {hop.between}")
    lines.append("complete" if result.complete else "incomplete: see the hops marked BAD")
    return "\n".join(lines)
