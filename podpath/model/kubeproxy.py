"""kube-proxy's iptables rules for one node, rendered the way kube-proxy writes them.

Chain names are kube-proxy's: KUBE-SVC-/KUBE-EXT-/KUBE-SVL-<hash of the service port
name> and KUBE-SEP-<hash of the service port name and endpoint>, 16 characters of the
base32 of a sha256. Endpoint i of n is chosen with `statistic --mode random
--probability 1/(n-i)`, so each of n endpoints is picked with probability 1/n. The
result is one iptables-restore payload per node, applied atomically.
"""
from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from podpath.model.plan import Plan, Service, ServicePort

MASQ_MARK = "0x4000"


def _hash(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


def port_name(svc: Service, port: ServicePort) -> str:
    """kube-proxy's ServicePortName: namespace/name:port."""
    return f"{svc.namespace}/{svc.name}:{port.name}"


def svc_chain(svc: Service, port: ServicePort) -> str:
    return "KUBE-SVC-" + _hash(port_name(svc, port) + "tcp")


def ext_chain(svc: Service, port: ServicePort) -> str:
    return "KUBE-EXT-" + _hash(port_name(svc, port) + "tcp")


def svl_chain(svc: Service, port: ServicePort) -> str:
    return "KUBE-SVL-" + _hash(port_name(svc, port) + "tcp")


def sep_chain(svc: Service, port: ServicePort, endpoint: str) -> str:
    return "KUBE-SEP-" + _hash(port_name(svc, port) + "tcp" + endpoint)



def probability(i: int, n: int) -> str:
    return "%0.10f" % (1.0 / (n - i))


@dataclass
class Endpoint:
    pod: str
    ip: str
    port: int
    node: str

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"


def endpoints(plan: Plan, svc: Service, port: ServicePort) -> list[Endpoint]:
    return [Endpoint(p.name, p.ip, port.target_port, p.node) for p in (plan.pod(n) for n in svc.endpoints)]


def render(plan: Plan, node_name: str) -> str:
    """The iptables-restore payload (nat and filter tables) for node NODE_NAME."""
    pod_network = plan.topology["pod_network"]
    node = plan.node(node_name)
    nat_chains = ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"]
    nat = [
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
        f"-A KUBE-MARK-MASQ -j MARK --set-xmark {MASQ_MARK}/{MASQ_MARK}",
        f"-A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN",
        f"-A KUBE-POSTROUTING -j MARK --set-xmark {MASQ_MARK}/0x0",
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
    ]
    filter_chains = ["KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD", "KUBE-NODEPORTS"]
    filt = [
        '-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-EXTERNAL-SERVICES',
        '-A INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS',
        '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
        '-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES',
        '-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
        f'-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark {MASQ_MARK}/{MASQ_MARK} -j ACCEPT',
        '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    ]
    services_rules: list[str] = []
    chain_rules: list[str] = []
    nodeport_rules: list[str] = []
    for svc in plan.services:
        for port in svc.ports:
            name = port_name(svc, port)
            eps = endpoints(plan, svc, port)
            match = f"-d {svc.cluster_ip}/32 -p tcp -m comment --comment \"{name} cluster IP\" -m tcp --dport {port.port}"
            if not eps:
                filt.append(f'-A KUBE-SERVICES -d {svc.cluster_ip}/32 -p tcp -m comment --comment "{name} has no '
                            f'endpoints" -m tcp --dport {port.port} -j REJECT --reject-with icmp-port-unreachable')
                continue
            svc_c = svc_chain(svc, port)
            nat_chains.append(svc_c)
            services_rules.append(f"-A KUBE-SERVICES {match} -j {svc_c}")
            chain_rules.append(f"-A {svc_c} ! -s {pod_network} {match} -j KUBE-MARK-MASQ")
            chain_rules += _balance(svc_c, name, eps)
            for ep in eps:
                sep = sep_chain(svc, port, ep.address)
                nat_chains.append(sep)
                chain_rules.append(f'-A {sep} -s {ep.ip}/32 -m comment --comment "{name}" -j KUBE-MARK-MASQ')
                chain_rules.append(f'-A {sep} -p tcp -m comment --comment "{name}" -m tcp -j DNAT --to-destination '
                                   f"{ep.address}")
            if svc.type not in ("NodePort", "LoadBalancer"):
                continue
            ext = ext_chain(svc, port)
            nat_chains.append(ext)
            if svc.load_balancer_ip:
                services_rules.append(f"-A KUBE-SERVICES -d {svc.load_balancer_ip}/32 -p tcp -m comment --comment "
                                      f"\"{name} loadbalancer IP\" -m tcp --dport {port.port} -j {ext}")
            if port.node_port:
                nodeport_rules.append(f"-A KUBE-NODEPORTS -p tcp -m comment --comment \"{name}\" -m tcp --dport "
                                      f"{port.node_port} -j {ext}")
            if svc.external_traffic_policy == "Local":
                local = [ep for ep in eps if ep.node == node.name]
                svl = svl_chain(svc, port)
                nat_chains.append(svl)
                chain_rules.append(f'-A {ext} -s {pod_network} -m comment --comment "pod traffic for {name} external '
                                   f'destinations" -j {svc_c}')
                chain_rules.append(f'-A {ext} -m comment --comment "masquerade LOCAL traffic for {name} external '
                                   f'destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ')
                chain_rules.append(f'-A {ext} -m comment --comment "route LOCAL traffic for {name} external '
                                   f'destinations" -m addrtype --src-type LOCAL -j {svc_c}')
                chain_rules.append(f"-A {ext} -j {svl}")
                if local:
                    chain_rules += _balance(svl, name, local)
                else:
                    if svc.load_balancer_ip:
                        filt.append(f'-A KUBE-EXTERNAL-SERVICES -d {svc.load_balancer_ip}/32 -p tcp -m comment '
                                    f'--comment "{name} has no local endpoints" -m tcp --dport {port.port} -j DROP')
                    if port.node_port:
                        filt.append(f'-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment "{name} has no local '
                                    f'endpoints" -m addrtype --dst-type LOCAL -m tcp --dport {port.node_port} -j DROP')
            else:
                chain_rules.append(f'-A {ext} -m comment --comment "masquerade traffic for {name} external '
                                   f'destinations" -j KUBE-MARK-MASQ')
                chain_rules.append(f"-A {ext} -j {svc_c}")
    services_rules.append('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be '
                          'the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS')
    nat += services_rules + nodeport_rules + chain_rules
    out = ["# podpath: kube-proxy rules (iptables mode) for node %s of lab %s" % (node.name, plan.lab), "*filter"]
    out += [f":{c} - [0:0]" for c in filter_chains] + filt + ["COMMIT", "*nat"]
    out += [f":{c} - [0:0]" for c in dict.fromkeys(nat_chains)] + nat + ["COMMIT"]
    return "\n".join(out) + "\n"


def _balance(chain: str, name: str, eps: list[Endpoint]) -> list[str]:
    """Jump to endpoint i of n with probability 1/(n-i): each is picked 1 time in n."""
    rules = []
    n = len(eps)
    for i, ep in enumerate(eps):
        target = "KUBE-SEP-" + _hash(name + "tcp" + ep.address)
        stat = f" -m statistic --mode random --probability {probability(i, n)}" if i < n - 1 else ""
        rules.append(f'-A {chain} -m comment --comment "{name} -> {ep.address}"{stat} -j {target}')
    return rules
