"""kube-proxy's rules for one node, rendered the way kube-proxy writes them, in either mode.

iptables mode (kube-proxy's default, the article's): chain names are kube-proxy's:
KUBE-SVC-/KUBE-EXT-/KUBE-SVL-<hash of the service port name> and KUBE-SEP-<hash of the
service port name and endpoint>, 16 characters of the base32 of a sha256. Endpoint i of n
is chosen with `statistic --mode random --probability 1/(n-i)`, so each of n endpoints is
picked with probability 1/n. The result is one iptables-restore payload per node, applied
atomically.

nftables mode (kube-proxy 1.34 and later, the layout of the cluster lab's pinned release):
one table, `ip kube-proxy`. Its base chains hook into prerouting, input, forward, output
and postrouting; a Service's address, protocol and port are looked up in the verdict map
`service-ips` (NodePorts in `service-nodeports`), which sends the packet to the chain
service-<hash>-<namespace>/<name>/tcp/<port> (external-... first for a load balancer IP
or a NodePort); that chain picks an endpoint with `numgen random mod n vmap { 0 : goto
endpoint-..., ... }`, one number per endpoint, so each is picked 1 time in n, and the
endpoint's chain DNATs. The hash is 8 characters of the base32 of the sha256 of the rest
of the name. A Service without endpoints is rejected through the map
`no-endpoint-services`; the mark 0x4000 asks the `masquerading` chain for SNAT. The
payload, for `nft -f`, replaces the whole table in one transaction, as kube-proxy's full
sync rewrites its own table in one transaction. What the lab's Services never need is
left out: session affinity (affinity-* sets), loadBalancerSourceRanges (firewall-*
chains and the firewall-ips map's elements), externalIPs, internalTrafficPolicy Local,
IPv6 (table ip6 kube-proxy) and protocols other than TCP.

kube-proxy renders from Services and their endpoints, not from the whole cluster:
`inputs(plan, node)` takes from the plan what one node's rules are made of (NodeInputs,
also the file that node's kube-proxy process reads), `rules(inputs)` renders them, and
`render(plan, node)` does both.
"""
from __future__ import annotations

from podpath.model.digest import base32, sha256
from podpath.model.record import Record

# typing's TYPE_CHECKING without importing typing, memory in each node process
TYPE_CHECKING = False
if TYPE_CHECKING:  # the node processes import this module: the plan, and what it imports, only where it is built
    from typing import Any

    from podpath.model.plan import Plan, Service, ServicePort

MASQ_MARK = "0x4000"
MODES = ("iptables", "nftables")
# nftables mode: kube-proxy's table for IPv4, and the mark as kube-proxy prints it ("%#08x").
NFT_FAMILY = "ip"
NFT_TABLE = "kube-proxy"
NFT_MASQ_MARK = "0x004000"


def _hash(text: str) -> str:
    return base32(sha256(text.encode()))[:16]


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


def _nft_name(name: str, endpoint: str = "") -> str:
    """kube-proxy's nftables name base for the service port NAME (namespace/name:port), and
    one of its endpoints (ip:port): HASH-namespace/name/tcp/port[__ip/port], HASH the first 8
    characters of the base32 of the sha256 of the rest."""
    service, _, port = name.rpartition(":")
    text = f"{service}/tcp/{port}"
    if endpoint:
        ip, _, target = endpoint.rpartition(":")
        text += f"__{ip}/{target}"
    digest = base32(sha256(text.encode()))
    return f"{digest[:8]}-{text}"


def nft_service_chain(svc: Service, port: ServicePort) -> str:
    """nftables mode: the chain that picks one of the Service's endpoints (policy Cluster)."""
    return "service-" + _nft_name(port_name(svc, port))


def nft_external_chain(svc: Service, port: ServicePort) -> str:
    """nftables mode: where a load balancer IP or a NodePort enters."""
    return "external-" + _nft_name(port_name(svc, port))


def nft_local_chain(svc: Service, port: ServicePort) -> str:
    """nftables mode: the node's own endpoints, for externalTrafficPolicy Local."""
    return "local-" + _nft_name(port_name(svc, port))


def nft_endpoint_chain(svc: Service, port: ServicePort, endpoint: str) -> str:
    """nftables mode: the chain that DNATs to ENDPOINT (ip:port)."""
    return "endpoint-" + _nft_name(port_name(svc, port), endpoint)


def probability(i: int, n: int) -> str:
    return "%0.10f" % (1.0 / (n - i))


class Endpoint(Record):
    __slots__ = ("pod", "ip", "port", "node")

    def __init__(self, pod: str, ip: str, port: int, node: str):
        self.pod, self.ip, self.port, self.node = pod, ip, port, node

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"


def endpoints(svc: Service, port: ServicePort) -> list[Endpoint]:
    """The endpoints of one port of SVC: each of its pods at the port's target port."""
    return [Endpoint(p.name, p.ip, port.target_port, p.node) for p in svc.pods]


class ServicePortInfo(Record):
    """One port of one Service with its endpoints: kube-proxy writes one set of chains for each."""
    __slots__ = ("name", "cluster_ip", "port", "node_port", "load_balancer_ip", "external", "local", "endpoints")

    def __init__(self, name: str, cluster_ip: str, port: int, node_port: int | None, load_balancer_ip: str | None,
                 external: bool, local: bool, endpoints: list[Endpoint]):
        self.name = name  # kube-proxy's ServicePortName, namespace/name:port
        self.cluster_ip = cluster_ip
        self.port = port
        self.node_port = node_port
        self.load_balancer_ip = load_balancer_ip
        self.external = external  # type NodePort or LoadBalancer: reachable from outside the cluster
        self.local = local  # externalTrafficPolicy: Local
        self.endpoints = endpoints

    def with_endpoints(self, endpoints: list[Endpoint]) -> ServicePortInfo:
        """This port with ENDPOINTS instead of its own."""
        return ServicePortInfo(self.name, self.cluster_ip, self.port, self.node_port, self.load_balancer_ip,
                               self.external, self.local, endpoints)


class NodeInputs(Record):
    """What one node's rules are rendered from; up writes it, as JSON, for the node's kube-proxy."""
    __slots__ = ("lab", "node", "pod_network", "ports", "mode", "node_ip", "service_network")

    def __init__(self, lab: str, node: str, pod_network: str, ports: list[ServicePortInfo], mode: str = "iptables",
                 node_ip: str = "", service_network: str = ""):
        self.lab = lab
        self.node = node
        self.pod_network = pod_network
        self.ports = ports
        self.mode = mode  # kube-proxy's mode: iptables | nftables
        self.node_ip = node_ip  # nftables mode: the node's primary address, where NodePorts are open
        self.service_network = service_network  # nftables mode: the ServiceCIDR, whose unused addresses are dropped

    def with_ready(self, ready: set[str]) -> NodeInputs:
        """These inputs with only the endpoints whose address (ip:port) is in READY."""
        ports = [info.with_endpoints([ep for ep in info.endpoints if ep.address in ready]) for info in self.ports]
        return NodeInputs(self.lab, self.node, self.pod_network, ports, self.mode, self.node_ip, self.service_network)

    def to_json(self) -> dict[str, Any]:
        return self.as_dict()

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
    """The payload of node NODE_NAME in the plan's mode: iptables-restore's (nat and filter
    tables), or nft's (the table ip kube-proxy)."""
    return rules(inputs(plan, node_name))


def _known(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"kube-proxy mode {mode!r} is not known: use one of {', '.join(MODES)}")
    return mode


def restore_argv(mode: str) -> list[str]:
    """The command that applies, from its stdin, what `rules` renders in MODE, atomically."""
    if _known(mode) == "iptables":
        return ["iptables-restore", "-w"]
    return ["nft", "-f", "-"]


def rules(node_inputs: NodeInputs) -> str:
    """The payload (for `restore_argv(node_inputs.mode)`) that NODE_INPUTS make."""
    if _known(node_inputs.mode) == "iptables":
        return iptables_rules(node_inputs)
    return nftables_rules(node_inputs)


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


# -- nftables mode -------------------------------------------------------------------------------

# kube-proxy's base chains (name, type, hook, priority): the pre-DNAT filter chains run just
# before DNAT (dstnat - 10), on the Service's own address; the others at the filter priority,
# after it; DNAT at dstnat, SNAT at srcnat. Written as numbers, as kube-proxy's library
# (knftables) writes them, because older nft refuses some names in some hooks (dstnat in output).
NFT_BASE_CHAINS = (
    ("filter-prerouting-pre-dnat", "filter", "prerouting", -110),
    ("filter-output-pre-dnat", "filter", "output", -110),
    ("filter-input", "filter", "input", 0),
    ("filter-forward", "filter", "forward", 0),
    ("filter-output", "filter", "output", 0),
    ("nat-prerouting", "nat", "prerouting", -100),
    ("nat-output", "nat", "output", -100),
    ("nat-postrouting", "nat", "postrouting", 100),
)
# The regular chains the base chains jump to (the jump's source, and its match), in kube-proxy's order.
NFT_JUMPS = (
    ("nodeport-endpoints-check", "filter-input", "ct state new"),
    ("service-endpoints-check", "filter-input", "ct state new"),
    ("service-endpoints-check", "filter-forward", "ct state new"),
    ("service-endpoints-check", "filter-output", "ct state new"),
    ("firewall-check", "filter-prerouting-pre-dnat", "ct state new"),
    ("firewall-check", "filter-output-pre-dnat", "ct state new"),
    ("services", "nat-output", ""),
    ("services", "nat-prerouting", ""),
    ("masquerading", "nat-postrouting", ""),
    ("cluster-ips-check", "filter-forward", "ct state new"),
    ("cluster-ips-check", "filter-output", "ct state new"),
)
_ADDR_MAP = "ipv4_addr . inet_proto . inet_service : verdict"
_PORT_MAP = "inet_proto . inet_service : verdict"
NFT_SETS = (  # (set or map, name, type, comment)
    ("set", "cluster-ips", "ipv4_addr", "Active ClusterIPs"),
    ("set", "nodeport-ips", "ipv4_addr", "IPs that accept NodePort traffic"),
    ("map", "firewall-ips", _ADDR_MAP, "destinations that are subject to LoadBalancerSourceRanges"),
    ("map", "no-endpoint-nodeports", _PORT_MAP,
     "vmap to drop or reject packets to service nodeports with no endpoints"),
    ("map", "no-endpoint-services", _ADDR_MAP, "vmap to drop or reject packets to services with no endpoints"),
    ("map", "service-ips", _ADDR_MAP, "ClusterIP, ExternalIP and LoadBalancer IP traffic"),
    ("map", "service-nodeports", _PORT_MAP, "NodePort traffic"),
)


def nftables_rules(node_inputs: NodeInputs) -> str:
    """The `nft -f` payload that NODE_INPUTS make: the table ip kube-proxy, replaced whole in
    one transaction (it is added first, so that deleting it cannot fail, then made again)."""
    t = f"{NFT_FAMILY} {NFT_TABLE}"
    pod_network = node_inputs.pod_network
    out = [f"# podpath: kube-proxy rules (nftables mode) for node {node_inputs.node} of lab {node_inputs.lab}",
           f'add table {t} {{ comment "rules for kube-proxy" ; }}',
           f"delete table {t}",
           f'add table {t} {{ comment "rules for kube-proxy" ; }}']
    out += [f'add {kind} {t} {name} {{ type {type_} ; comment "{comment}" ; }}'
            for kind, name, type_, comment in NFT_SETS]
    out += [f"add chain {t} {name} {{ type {type_} hook {hook} priority {priority} ; }}"
            for name, type_, hook, priority in NFT_BASE_CHAINS]
    regular = dict.fromkeys([dst for dst, _, _ in NFT_JUMPS] + ["mark-for-masquerade"])
    out += [f"add chain {t} {name}" for name in regular]
    out.append(f'add chain {t} reject-chain {{ comment "helper for @no-endpoint-services / '
               '@no-endpoint-nodeports" ; }')
    out += [f"add rule {t} {src} {match + ' ' if match else ''}jump {dst}" for dst, src, match in NFT_JUMPS]
    out += [f"add rule {t} mark-for-masquerade mark set mark or {NFT_MASQ_MARK}",
            f"add rule {t} masquerading mark and {NFT_MASQ_MARK} == 0 return",
            f"add rule {t} masquerading mark set mark xor {NFT_MASQ_MARK}",
            f"add rule {t} masquerading masquerade fully-random",
            f'add rule {t} cluster-ips-check ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of '
            'ClusterIPs"']
    if node_inputs.service_network:
        out.append(f"add rule {t} cluster-ips-check ip daddr {{ {node_inputs.service_network} }} drop comment "
                   '"Drop traffic to unallocated ClusterIPs"')
    out += [f"add rule {t} firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips",
            f"add rule {t} reject-chain reject",
            f"add rule {t} service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
            f"add rule {t} nodeport-endpoints-check ip daddr @nodeport-ips meta l4proto . th dport vmap "
            "@no-endpoint-nodeports",
            f"add rule {t} services ip daddr . meta l4proto . th dport vmap @service-ips",
            f"add rule {t} services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports"]
    if node_inputs.node_ip:  # --nodeport-addresses primary, nftables mode's default
        out.append(f"add element {t} nodeport-ips {{ {node_inputs.node_ip} }}")
    for info in node_inputs.ports:
        out += _nft_service(t, info, node_inputs.node, pod_network)
    return "\n".join(out) + "\n"


def _nft_service(t: str, info: ServicePortInfo, node: str, pod_network: str) -> list[str]:
    """The chains, map elements and rules of one service port, in the order kube-proxy's sync
    writes them: the chains first (endpoints, service, local, external), then the elements,
    then the rules."""
    base = _nft_name(info.name)
    service, external, local = "service-" + base, "external-" + base, "local-" + base
    eps = info.endpoints
    local_eps = [ep for ep in eps if ep.node == node] if info.local else []
    ep_chains = ["endpoint-" + _nft_name(info.name, ep.address) for ep in eps]
    key = f"tcp . {info.port}"
    out = [f"# {info.name}"]
    out += [f"add chain {t} {chain}" for chain in ep_chains]
    if eps:
        out.append(f"add chain {t} {service}")
    if local_eps:
        out.append(f"add chain {t} {local}")
    if eps and info.external:
        out.append(f"add chain {t} {external}")
    out.append(f"add element {t} cluster-ips {{ {info.cluster_ip} }}")
    if eps:
        out.append(f"add element {t} service-ips {{ {info.cluster_ip} . {key} : goto {service} }}")
    else:  # no endpoints at all: every address of the Service is rejected
        out.append(f'add element {t} no-endpoint-services {{ {info.cluster_ip} . {key} comment "{info.name}" : '
                   "goto reject-chain }")
    # externally: no endpoints at all, reject; Local with none on this node, drop what is not short-circuited
    external_verdict = "goto reject-chain" if not eps else ("drop" if info.local and not local_eps else None)
    if info.external and info.load_balancer_ip:
        if eps:
            out.append(f"add element {t} service-ips {{ {info.load_balancer_ip} . {key} : goto {external} }}")
        if external_verdict:
            out.append(f'add element {t} no-endpoint-services {{ {info.load_balancer_ip} . {key} comment '
                       f'"{info.name}" : {external_verdict} }}')
    if info.external and info.node_port:
        if eps:
            out.append(f"add element {t} service-nodeports {{ tcp . {info.node_port} : goto {external} }}")
        if external_verdict:
            out.append(f'add element {t} no-endpoint-nodeports {{ tcp . {info.node_port} comment "{info.name}" : '
                       f"{external_verdict} }}")
    if not eps:
        return out
    out.append(f"add rule {t} {service} ip daddr {info.cluster_ip} ip saddr != {pod_network} jump mark-for-masquerade")
    if info.external and info.local:
        out += [f'add rule {t} {external} ip saddr {pod_network} goto {service} comment "short-circuit pod traffic"',
                f'add rule {t} {external} fib saddr type local jump mark-for-masquerade comment "masquerade local '
                'traffic"',
                f'add rule {t} {external} fib saddr type local goto {service} comment "short-circuit local traffic"']
        if local_eps:
            out.append(f"add rule {t} {external} goto {local}")
    elif info.external:
        out += [f"add rule {t} {external} jump mark-for-masquerade", f"add rule {t} {external} goto {service}"]
    out.append(_nft_pick(t, service, info.name, eps))
    if local_eps:
        out.append(_nft_pick(t, local, info.name, local_eps))
    for ep, chain in zip(eps, ep_chains):
        out += [f"add rule {t} {chain} ip saddr {ep.ip} jump mark-for-masquerade",
                f"add rule {t} {chain} meta l4proto tcp dnat to {ep.address}"]
    return out


def _nft_pick(t: str, chain: str, name: str, eps: list[Endpoint]) -> str:
    """One random number in 0..n-1 per packet, and one number per endpoint: each is picked 1 time in n."""
    choices = " , ".join(f"{i} : goto endpoint-{_nft_name(name, ep.address)}" for i, ep in enumerate(eps))
    return f"add rule {t} {chain} numgen random mod {len(eps)} vmap {{ {choices} }}"
