"""kube-proxy's iptables rules for one node, rendered the way kube-proxy writes them.

Chain names are kube-proxy's: KUBE-SVC-/KUBE-EXT-/KUBE-SVL-<hash of the service port
name> and KUBE-SEP-<hash of the service port name and endpoint>, 16 characters of the
base32 of a sha256. Endpoint i of n is chosen with `statistic --mode random
--probability 1/(n-i)`, so each of n endpoints is picked with probability 1/n. The
result is one iptables-restore payload per node, applied atomically.

kube-proxy renders from Services and their endpoints, not from the whole cluster:
`inputs(plan, node)` takes from the plan what one node's rules are made of (NodeInputs,
also the file that node's kube-proxy process reads), `rules(inputs)` renders them, and
`render(plan, node)` does both.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

from podpath.model.plan import Plan, Service, ServicePort

MASQ_MARK = "0x4000"


def _hash(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


def port_name(svc: Service, port: ServicePort) -> str:
    """kube-proxy's ServicePortName: namespace/name:port."""
    return f"{svc.namespace}/{svc.name}:{port.name}"


def _chain(prefix: str, name: str, endpoint: str = "") -> str:
    """A chain of the service port named NAME (and of one of its endpoints, for KUBE-SEP-)."""
    return prefix + _hash(name + "tcp" + endpoint)


def svc_chain(svc: Service, port: ServicePort) -> str:
    return _chain("KUBE-SVC-", port_name(svc, port))


def ext_chain(svc: Service, port: ServicePort) -> str:
    return _chain("KUBE-EXT-", port_name(svc, port))


def svl_chain(svc: Service, port: ServicePort) -> str:
    return _chain("KUBE-SVL-", port_name(svc, port))


def sep_chain(svc: Service, port: ServicePort, endpoint: str) -> str:
    return _chain("KUBE-SEP-", port_name(svc, port), endpoint)


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


def endpoints(svc: Service, port: ServicePort) -> list[Endpoint]:
    """The endpoints of one port of SVC: each of its pods at the port's target port."""
    return [Endpoint(p.name, p.ip, port.target_port, p.node) for p in svc.pods]


@dataclass
class ServicePortInfo:
    """One port of one Service with its endpoints: kube-proxy writes one set of chains for each."""
    name: str  # kube-proxy's ServicePortName, namespace/name:port
    cluster_ip: str
    port: int
    node_port: int | None
    load_balancer_ip: str | None
    external: bool  # type NodePort or LoadBalancer: reachable from outside the cluster
    local: bool  # externalTrafficPolicy: Local
    endpoints: list[Endpoint]


@dataclass
class NodeInputs:
    """What one node's rules are rendered from; up writes it, as JSON, for the node's kube-proxy."""
    lab: str
    node: str
    pod_network: str
    ports: list[ServicePortInfo]
    mode: str = "iptables"  # kube-proxy's mode: iptables | nftables
    node_ip: str = ""  # nftables mode: the node's primary address, where NodePorts are open
    service_network: str = ""  # nftables mode: the ServiceCIDR, whose unused addresses are dropped

    def with_ready(self, ready: set[str]) -> NodeInputs:
        """These inputs with only the endpoints whose address (ip:port) is in READY."""
        return dataclasses.replace(self, ports=[
            dataclasses.replace(info, endpoints=[ep for ep in info.endpoints if ep.address in ready])
            for info in self.ports])

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NodeInputs:
        ports = [ServicePortInfo(**{**info, "endpoints": [Endpoint(**ep) for ep in info["endpoints"]]})
                 for info in data["ports"]]
        return cls(lab=data["lab"], node=data["node"], pod_network=data["pod_network"], ports=ports,
                   mode=data.get("mode", "iptables"), node_ip=data.get("node_ip", ""),
                   service_network=data.get("service_network", ""))


def inputs(plan: Plan, node_name: str) -> NodeInputs:
    """What the rules of node NODE_NAME are made of, taken from PLAN."""
    node = plan.node(node_name)
    ports = [ServicePortInfo(name=port_name(svc, port), cluster_ip=svc.cluster_ip, port=port.port,
                             node_port=port.node_port, load_balancer_ip=svc.load_balancer_ip,
                             external=svc.type in ("NodePort", "LoadBalancer"),
                             local=svc.external_traffic_policy == "Local", endpoints=endpoints(svc, port))
             for svc in plan.services for port in svc.ports]
    return NodeInputs(lab=plan.lab, node=node.name, pod_network=plan.pod_network, ports=ports,
                      mode=plan.kube_proxy_mode, node_ip=node.ip, service_network=plan.service_network)


def render(plan: Plan, node_name: str) -> str:
    """The iptables-restore payload (nat and filter tables) for node NODE_NAME."""
    return rules(inputs(plan, node_name))


def restore_argv(mode: str) -> list[str]:
    """The command that applies, from its stdin, what `rules` renders in MODE, atomically."""
    if mode == "iptables":
        return ["iptables-restore", "-w"]
    raise ValueError(f"kube-proxy mode {mode!r} is not known: use iptables")


def rules(node_inputs: NodeInputs) -> str:
    """The payload (for `restore_argv(node_inputs.mode)`) that NODE_INPUTS make."""
    if node_inputs.mode != "iptables":
        raise ValueError(f"kube-proxy mode {node_inputs.mode!r} is not known: use iptables")
    return iptables_rules(node_inputs)


def iptables_rules(node_inputs: NodeInputs) -> str:
    """The iptables-restore payload (nat and filter tables) that NODE_INPUTS make."""
    pod_network = node_inputs.pod_network
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
    for info in node_inputs.ports:
        name, eps = info.name, info.endpoints
        match = f"-d {info.cluster_ip}/32 -p tcp -m comment --comment \"{name} cluster IP\" -m tcp --dport {info.port}"
        if not eps:
            filt.append(f'-A KUBE-SERVICES -d {info.cluster_ip}/32 -p tcp -m comment --comment "{name} has no '
                        f'endpoints" -m tcp --dport {info.port} -j REJECT --reject-with icmp-port-unreachable')
            continue
        svc_c = _chain("KUBE-SVC-", name)
        nat_chains.append(svc_c)
        services_rules.append(f"-A KUBE-SERVICES {match} -j {svc_c}")
        chain_rules.append(f"-A {svc_c} ! -s {pod_network} {match} -j KUBE-MARK-MASQ")
        chain_rules += _balance(svc_c, name, eps)
        for ep in eps:
            sep = _chain("KUBE-SEP-", name, ep.address)
            nat_chains.append(sep)
            chain_rules.append(f'-A {sep} -s {ep.ip}/32 -m comment --comment "{name}" -j KUBE-MARK-MASQ')
            chain_rules.append(f'-A {sep} -p tcp -m comment --comment "{name}" -m tcp -j DNAT --to-destination '
                               f"{ep.address}")
        if not info.external:
            continue
        ext = _chain("KUBE-EXT-", name)
        nat_chains.append(ext)
        if info.load_balancer_ip:
            services_rules.append(f"-A KUBE-SERVICES -d {info.load_balancer_ip}/32 -p tcp -m comment --comment "
                                  f"\"{name} loadbalancer IP\" -m tcp --dport {info.port} -j {ext}")
        if info.node_port:
            nodeport_rules.append(f"-A KUBE-NODEPORTS -p tcp -m comment --comment \"{name}\" -m tcp --dport "
                                  f"{info.node_port} -j {ext}")
        if info.local:
            local = [ep for ep in eps if ep.node == node_inputs.node]
            svl = _chain("KUBE-SVL-", name)
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
                if info.load_balancer_ip:
                    filt.append(f'-A KUBE-EXTERNAL-SERVICES -d {info.load_balancer_ip}/32 -p tcp -m comment '
                                f'--comment "{name} has no local endpoints" -m tcp --dport {info.port} -j DROP')
                if info.node_port:
                    filt.append(f'-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment "{name} has no local '
                                f'endpoints" -m addrtype --dst-type LOCAL -m tcp --dport {info.node_port} -j DROP')
        else:
            chain_rules.append(f'-A {ext} -m comment --comment "masquerade traffic for {name} external '
                               f'destinations" -j KUBE-MARK-MASQ')
            chain_rules.append(f"-A {ext} -j {svc_c}")
    services_rules.append('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be '
                          'the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS')
    nat += services_rules + nodeport_rules + chain_rules
    out = ["# podpath: kube-proxy rules (iptables mode) for node %s of lab %s" % (node_inputs.node, node_inputs.lab),
           "*filter"]
    out += [f":{c} - [0:0]" for c in filter_chains] + filt + ["COMMIT", "*nat"]
    out += [f":{c} - [0:0]" for c in dict.fromkeys(nat_chains)] + nat + ["COMMIT"]
    return "\n".join(out) + "\n"


def _balance(chain: str, name: str, eps: list[Endpoint]) -> list[str]:
    """Jump to endpoint i of n with probability 1/(n-i): each is picked 1 time in n."""
    rules = []
    n = len(eps)
    for i, ep in enumerate(eps):
        target = _chain("KUBE-SEP-", name, ep.address)
        stat = f" -m statistic --mode random --probability {probability(i, n)}" if i < n - 1 else ""
        rules.append(f'-A {chain} -m comment --comment "{name} -> {ep.address}"{stat} -j {target}')
    return rules
