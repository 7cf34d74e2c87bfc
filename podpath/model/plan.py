"""From a topology and a lab name to every name, address and process of the netns lab.

The plan is deterministic: the same topology and lab name give the same pod UIDs,
namespace names, veth names and addresses on every run, which is what lets a second
`up` find everything in place and report no change.
"""
from __future__ import annotations

import hashlib
import ipaddress
import uuid
from dataclasses import dataclass, field
from typing import Any

from podpath.model import topology as topology_mod

POD_NAMESPACE_UUID = uuid.UUID("6f1c2d0e-7a52-4f0b-9a57-3c9d2b1e8a40")

# flannel's backends: vxlan (its default, the cluster lab's) tunnels pod traffic between
# nodes through the VXLAN device flannel.1; host-gw routes each node's pod subnet via that
# node's address. The topology's flannel.backend picks one for both labs.
FLANNEL_BACKENDS = ("vxlan", "host-gw")
FLANNEL_BACKEND = "vxlan"
FLANNEL_DEVICE = "flannel.1"  # flannel names it flannel.<VNI>
VXLAN_VNI = 1  # flannel's default VNI on Linux
VXLAN_PORT = 8472  # flannel leaves the port to the kernel, whose default is 8472
# The node's LAN link (a veth) has the kernel's default MTU; flannel gives flannel.1 that
# MTU less the 50 bytes VXLAN's outer Ethernet, IPv4, UDP and VXLAN headers take.
LAN_MTU = 1500
VXLAN_OVERHEAD = 50


@dataclass
class Container:
    name: str
    kind: str  # nginx | sleep | controller (ingress-nginx's: nginx as its child, and the leader election)


@dataclass
class Pod:
    name: str
    namespace: str  # the Kubernetes namespace
    node: str
    ip: str
    prefixlen: int
    gateway: str
    app: str
    uid: str
    netns: str  # cni-<uuid>, as containerd names it
    host_veth: str  # vethXXXXXXXX, as the CNI bridge plugin names it
    containers: list[Container] = field(default_factory=list)
    port: int | None = None  # the port the app listens on
    # Kubernetes' shareProcessNamespace: the containers share the pause process's PID namespace
    share_process_namespace: bool = False


@dataclass
class Vtep:
    """A node's end of flannel's VXLAN tunnel: what flannel publishes of it in the node's
    annotations (flannel.alpha.coreos.com/backend-data's VtepMAC, public-ip) and what every
    other node writes its neighbour, FDB entry and route with."""
    mac: str  # flannel.1's MAC
    address: str  # flannel.1's address: the node's pod subnet's network address (a /32)
    public_ip: str  # where the other nodes send the encapsulated packets: the node's LAN address


@dataclass
class NodeHop:
    """How a node reaches another node's pods, as flannel wires it: the route (`dst` via
    `gateway` dev `dev`) and, through flannel.1, the neighbour entry (`gateway` lladdr
    `lladdr`) and FDB entry (`lladdr` dst `underlay`) that send it inside UDP `port`."""
    backend: str
    dst: str
    dev: str
    gateway: str
    lladdr: str | None = None
    underlay: str | None = None
    port: int | None = None
    vni: int | None = None

    def __str__(self) -> str:
        route = f"{self.dst} via {self.gateway} dev {self.dev}"
        if self.lladdr is None:
            return route
        return (f"{route} onlink; {self.gateway} lladdr {self.lladdr}; {self.lladdr} dst {self.underlay}: "
                f"inside UDP {self.port} (VNI {self.vni})")


@dataclass
class Node:
    name: str
    role: str
    ip: str
    prefixlen: int
    pod_cidr: str
    gateway: str  # cni0's address: the first host of pod_cidr
    netns: str
    vtep: Vtep | None = None  # flannel.1, with the vxlan backend


@dataclass
class ServicePort:
    name: str
    port: int
    target_port: int
    node_port: int | None = None


@dataclass
class Service:
    name: str
    namespace: str
    cluster_ip: str
    ports: list[ServicePort]
    pods: list[Pod]  # its endpoints: the pods its selector picks, in the plan's order
    app: str | None  # the app its selector picks; None for a selector that matches no pod
    type: str = "ClusterIP"
    load_balancer_ip: str | None = None
    external_traffic_policy: str = "Cluster"

    @property
    def endpoints(self) -> list[str]:
        """The endpoint pods' names (for callers not yet moved to `pods`)."""
        return [p.name for p in self.pods]


@dataclass
class GatewayRoute:
    """The Gateway API edge (edge: gateway-api): the GatewayClass, the Gateway with its one HTTP
    listener, and the HTTPRoute to the echo Service, as NGINX Gateway Fabric's control plane
    reads them to render its data plane's nginx configuration."""
    gateway_class: str
    name: str  # the Gateway's
    namespace: str
    service: str  # the data plane's Deployment and Service: <gateway>-<class>
    listener_name: str
    listener_port: int
    hostname: str  # the listener's hostname, which the HTTPRoute inherits
    route: str  # the HTTPRoute's name
    path_prefix: str  # its one rule's PathPrefix match
    backend: str  # the Service its rule's backendRef names (the echo Service)
    backend_port: int
    add_header: tuple[str, str] | None  # RequestHeaderModifier add: (name, value) on the request to the backend


@dataclass
class Plan:
    """The lab as its callers see it: they read these, never the topology it was built from."""
    lab: str
    lan_netns: str
    client_name: str  # the client's port on the LAN bridge is named after it
    client_netns: str
    client_ip: str
    node_network: str
    node_prefixlen: int
    pod_network: str
    service_network: str
    ingress_host: str  # the host name the Ingress rule (or the Gateway's listener) routes to the echo Service
    election_id: str  # the lease the ingress controllers elect their leader with
    nodes: list[Node]
    pods: list[Pod]
    services: list[Service]
    flannel_backend: str = FLANNEL_BACKEND
    kube_proxy_mode: str = topology_mod.KUBE_PROXY_MODE  # iptables | nftables, on every node
    edge: str = topology_mod.EDGE  # ingress-nginx | gateway-api: what stands behind the MetalLB address
    pod_neighbours: str = topology_mod.POD_NEIGHBOUR  # learned | static (topology.POD_NEIGHBOURS)
    gateway: GatewayRoute | None = None  # the Gateway, its listener and its HTTPRoute, with edge gateway-api

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def pod_subnet_next_hop(self, name: str) -> str:
        """The gateway other nodes route node NAME's pod subnet via: its flannel.1 address
        (vxlan), or its LAN address (host-gw)."""
        node = self.node(name)
        return node.vtep.address if node.vtep else node.ip

    def node_hop(self, src: str, dst: str) -> NodeHop:
        """The hop a packet from node SRC (or one of its pods) takes to a pod of node DST."""
        there = self.node(dst)
        if there.vtep is None:
            return NodeHop(self.flannel_backend, there.pod_cidr, NODE_LINK, there.ip)
        return NodeHop(self.flannel_backend, there.pod_cidr, FLANNEL_DEVICE, there.vtep.address,
                       lladdr=there.vtep.mac, underlay=there.vtep.public_ip, port=VXLAN_PORT, vni=VXLAN_VNI)

    def pod(self, name: str) -> Pod:
        return next(p for p in self.pods if p.name == name)

    def service(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name)

    def pods_on(self, node: str) -> list[Pod]:
        return [p for p in self.pods if p.node == node]

    @property
    def ingress_pods(self) -> list[Pod]:
        return [p for p in self.pods if p.app == "ingress-nginx"]

    @property
    def echo_pods(self) -> list[Pod]:
        return [p for p in self.pods if p.app == "echo"]

    @property
    def gateway_pods(self) -> list[Pod]:
        """NGINX Gateway Fabric's data-plane pods (edge gateway-api; none with ingress-nginx)."""
        return [p for p in self.pods if p.app == GATEWAY_APP]

    @property
    def edge_pods(self) -> list[Pod]:
        """The pods behind the edge's Service: the ingress controllers or the gateway's data plane."""
        return [p for p in self.pods if p.app == self.edge_app]

    @property
    def edge_app(self) -> str:
        """The app label of the edge's pods: ingress-nginx, or gateway with edge gateway-api."""
        return GATEWAY_APP if self.edge == "gateway-api" else "ingress-nginx"

    @property
    def edge_service(self) -> Service:
        """The LoadBalancer Service MetalLB gives the first address of its pool: the ingress
        controller's, or with edge gateway-api the Gateway's data plane's."""
        return next(s for s in self.services if s.app == self.edge_app)

    @property
    def ingress_service(self) -> Service:
        """The edge's Service (edge_service), under the name its callers know it by: whatever
        reaches the lab from the client through MetalLB and kube-proxy goes to it."""
        return self.edge_service

    @property
    def echo_service(self) -> Service:
        return next(s for s in self.services if s.app == "echo")

    @property
    def empty_service(self) -> Service:
        """The Service whose selector matches no pod."""
        return next(s for s in self.services if s.app is None)

    @property
    def netns_names(self) -> list[str]:
        """Every network namespace of the lab: the LAN, the client, the nodes, the pods."""
        return [self.lan_netns, self.client_netns] + [n.netns for n in self.nodes] + [p.netns for p in self.pods]


# The app label of NGINX Gateway Fabric's data-plane pods in the plan, and their container
GATEWAY_APP = "gateway"
GATEWAY_CONTAINER = "nginx"


def pod_uid(lab: str, namespace: str, name: str) -> str:
    return str(uuid.uuid5(POD_NAMESPACE_UUID, f"{lab}/{namespace}/{name}"))


def host_veth_name(netns: str) -> str:
    return "veth" + hashlib.sha256(netns.encode()).hexdigest()[:8]


def vtep_mac(lab: str, node: str) -> str:
    """flannel.1's MAC on node NODE of lab LAB.

    flannel picks a random locally administered unicast MAC when it makes flannel.1 and
    publishes it in the node's annotation, where the other nodes read it; nothing derives it
    from a name. The lab has no API server to publish through, so it derives one from the
    lab's and the node's names instead: the same on every run (a second `up` finds it in
    place) and locally administered and unicast as flannel's (first byte: bit 1 set, bit 0 clear)."""
    raw = bytearray(hashlib.sha256(f"{lab}/{node}/{FLANNEL_DEVICE}".encode()).digest()[:6])
    raw[0] = (raw[0] & 0xFE) | 0x02
    return raw.hex(":")


def pod_mac(ip: str) -> str:
    """The MAC of the pod link (or cni0) with address IP, with pod_neighbours: static: 0a:58
    and the address's four bytes, as the CNI plugins once gave each pod (and ovn-kubernetes
    does): locally administered, unicast, and unique on a node's bridge as the addresses are."""
    return "0a:58:" + ipaddress.IPv4Address(ip).packed.hex(":")


def build(topo: dict[str, Any], lab: str) -> Plan:
    """The plan of lab LAB for the (already validated) topology TOPO."""
    node_net = ipaddress.IPv4Network(topo["node_network"])
    backend = (topo.get("flannel") or {}).get("backend", FLANNEL_BACKEND)
    nodes = []
    for raw in topo["nodes"]:
        cidr = ipaddress.IPv4Network(raw["pod_cidr"])
        vtep = (Vtep(mac=vtep_mac(lab, raw["name"]), address=str(cidr.network_address), public_ip=raw["ip"])
                if backend == "vxlan" else None)
        nodes.append(Node(name=raw["name"], role=raw["role"], ip=raw["ip"], prefixlen=node_net.prefixlen,
                          pod_cidr=str(cidr), gateway=str(cidr.network_address + 1), netns=f"{lab}-{raw['name']}",
                          vtep=vtep))
    next_host = {n.name: 2 for n in nodes}  # .1 is cni0, as host-local's range starts after the gateway

    pods: list[Pod] = []

    def add_pod(name: str, namespace: str, node: Node, app: str, containers: list[Container], port: int | None,
                share_process_namespace: bool = False):
        cidr = ipaddress.IPv4Network(node.pod_cidr)
        ip = cidr.network_address + next_host[node.name]
        next_host[node.name] += 1
        uid = pod_uid(lab, namespace, name)
        netns = f"cni-{uid}"
        pods.append(Pod(name=name, namespace=namespace, node=node.name, ip=str(ip), prefixlen=cidr.prefixlen,
                        gateway=node.gateway, app=app, uid=uid, netns=netns, host_veth=host_veth_name(netns),
                        containers=containers, port=port, share_process_namespace=share_process_namespace))

    ingress = topo["ingress"]
    edge = topology_mod.edge(topo)
    gw = topo.get("gateway") if edge == "gateway-api" else None
    if gw:
        # NGF's data plane: the nginx Deployment <gateway>-<class> the control plane provisions
        # for the Gateway, one pod per node (as ingress-nginx's controllers); no leader election
        for i in range(gw["replicas"]):
            add_pod(f"{gw['service']}-{i + 1}", gw["namespace"], nodes[i % len(nodes)], GATEWAY_APP,
                    [Container(GATEWAY_CONTAINER, "gateway")], gw["listener"]["port"])
    else:
        for i in range(ingress["replicas"]):
            node = nodes[i % len(nodes)]
            add_pod(f"{ingress['service']}-{i + 1}", ingress["namespace"], node, "ingress-nginx",
                    [Container("controller", "controller")], 80)
    # Like the cluster's scheduler with the control plane's taint: echo pods go to workers.
    workers = [n for n in nodes if n.role == "worker"] or nodes
    echo = topo["workloads"]["echo"]
    for i in range(echo["replicas"]):
        add_pod(f"{echo['name']}-{i + 1}", echo["namespace"], workers[i % len(workers)], "echo",
                [Container("echo", "nginx")], echo["target_port"], topology_mod.share_process_namespace(topo, "echo"))
    # Scale runs: pods that are only a sandbox (the pause process and the network), per node.
    for node in nodes:
        for i in range(topo["workloads"].get("idle_pods_per_node", 0)):
            add_pod(f"idle-{node.name}-{i + 1}", "default", node, "idle", [], None)
    mcp = topo["workloads"]["multi_container_pod"]
    add_pod(mcp["name"], mcp["namespace"], next(n for n in nodes if n.name == mcp["node"]), "multi-container",
            [Container("container-1", "sleep"), Container("container-2", "nginx")], 80,
            topology_mod.share_process_namespace(topo, "multi_container_pod"))

    empty = topo["workloads"]["empty_service"]
    first_address = str(topology_mod.pool_range(topo["metallb"]["pool"])[0])
    if gw:
        port = gw["listener"]["port"]
        edge_service = Service(name=gw["service"], namespace=gw["namespace"], cluster_ip=gw["cluster_ip"],
                               ports=[ServicePort("http", port, port, gw["http_node_port"])],
                               pods=[p for p in pods if p.app == GATEWAY_APP], app=GATEWAY_APP,
                               type="LoadBalancer", load_balancer_ip=first_address,
                               external_traffic_policy=gw["external_traffic_policy"])
        header = gw["route"].get("add_header")
        route = GatewayRoute(gateway_class=gw["class"], name=gw["name"], namespace=gw["namespace"],
                             service=gw["service"], listener_name=gw["listener"]["name"], listener_port=port,
                             hostname=gw["listener"]["hostname"], route=gw["route"]["name"],
                             path_prefix=gw["route"]["path_prefix"], backend=echo["name"],
                             backend_port=echo["port"],
                             add_header=(header["name"], header["value"]) if header else None)
    else:
        edge_service = Service(name=ingress["service"], namespace=ingress["namespace"],
                               cluster_ip=ingress["cluster_ip"],
                               ports=[ServicePort("http", 80, 80, ingress["http_node_port"])],
                               pods=[p for p in pods if p.app == "ingress-nginx"], app="ingress-nginx",
                               type="LoadBalancer", load_balancer_ip=first_address,
                               external_traffic_policy=ingress["external_traffic_policy"])
        route = None
    services = [
        edge_service,
        Service(name=echo["name"], namespace=echo["namespace"], cluster_ip=echo["cluster_ip"],
                ports=[ServicePort("http", echo["port"], echo["target_port"])],
                pods=[p for p in pods if p.app == "echo"], app="echo"),
        Service(name=empty["name"], namespace=empty["namespace"], cluster_ip=empty["cluster_ip"],
                ports=[ServicePort("http", empty["port"], empty["port"])], pods=[], app=None),
    ]
    return Plan(lab=lab, lan_netns=f"{lab}-lan", client_name=topo["client"]["name"],
                client_netns=f"{lab}-{topo['client']['name']}", client_ip=topo["client"]["ip"],
                node_network=str(node_net), node_prefixlen=node_net.prefixlen, pod_network=topo["pod_network"],
                service_network=topo["service_network"],
                ingress_host=route.hostname if route else ingress["host"],
                election_id=ingress["election_id"], nodes=nodes, pods=pods, services=services,
                flannel_backend=backend, kube_proxy_mode=topology_mod.kube_proxy_mode(topo), edge=edge, gateway=route,
                pod_neighbours=topology_mod.pod_neighbours(topo))


LAN_BRIDGE = "lan0"
NODE_LINK = "eth1"  # a node's link on the LAN, as on a Vagrant VM's host-only network
# The lab is IPv4 only, as the reference cluster. With IPv6 on, every link brought up in any
# namespace costs the kernel more the more of the lab's links exist (1.7 ms per link at 900
# pods against 0.45 ms at 300, measured here), so the cost per pod would grow with the lab.
IPV4_ONLY = {"net.ipv6.conf.all.disable_ipv6": 1, "net.ipv6.conf.default.disable_ipv6": 1}


def vtep_link(plan: Plan, node: Node) -> dict[str, Any]:
    """Node NODE's flannel.1 as flannel's vxlan backend makes it: VNI 1, sending from the node's
    LAN address by its LAN link, no learning, the LAN's MTU less VXLAN's 50 bytes, the pod
    subnet's network address as a /32 (flannel's source address for the node's own traffic to
    other nodes' pods); and per other node the neighbour entry (its flannel.1 address -> its
    flannel.1 MAC) and FDB entry (that MAC -> its LAN address) flannel writes when it learns of
    the node."""
    others = [other for other in plan.nodes if other is not node and other.vtep]
    return {
        "name": FLANNEL_DEVICE, "kind": "vxlan", "mtu": LAN_MTU - VXLAN_OVERHEAD, "mac": node.vtep.mac,
        "vxlan": {"id": VXLAN_VNI, "local": node.vtep.public_ip, "dev": NODE_LINK, "port": VXLAN_PORT,
                  "learning": False},
        "addresses": [f"{node.vtep.address}/32"],
        "neighbours": [{"dst": other.vtep.address, "lladdr": other.vtep.mac} for other in others],
        "fdb": [{"lladdr": other.vtep.mac, "dst": other.vtep.public_ip} for other in others],
    }


def pod_subnet_routes(plan: Plan, node: Node) -> list[dict[str, Any]]:
    """Node NODE's routes to the other nodes' pod subnets, as flannel writes them (with no
    protocol: the kernel's `boot`, which `ip route` does not print). vxlan: via the other
    node's flannel.1 address, on flannel.1, onlink (that address is in none of the node's
    subnets); host-gw: via the other node's LAN address."""
    routes = []
    for other in plan.nodes:
        if other is node:
            continue
        if other.vtep:
            routes.append({"dst": other.pod_cidr, "gateway": other.vtep.address, "dev": FLANNEL_DEVICE,
                           "onlink": True, "protocol": "boot"})
        else:
            routes.append({"dst": other.pod_cidr, "gateway": other.ip, "protocol": "boot"})
    return routes


def netns_spec(plan: Plan) -> list[dict[str, Any]]:
    """The podpath_netns module's `namespaces` argument for the whole lab."""
    lan = {"name": plan.lan_netns, "sysctls": dict(IPV4_ONLY), "links": [{"name": LAN_BRIDGE, "kind": "bridge"}]}
    client = {"name": plan.client_netns, "sysctls": dict(IPV4_ONLY), "links": [{
        "name": "eth0", "kind": "veth", "addresses": [f"{plan.client_ip}/{plan.node_prefixlen}"],
        "peer": {"name": plan.client_name, "namespace": plan.lan_netns, "master": LAN_BRIDGE}}]}
    spec = [lan, client]
    static = plan.pod_neighbours == "static"
    for node in plan.nodes:
        # the node's permanent entries for its pods with static, none with learned (where an
        # entry that static left is removed)
        entries = [{"dst": p.ip, "lladdr": pod_mac(p.ip)} for p in plan.pods_on(node.name)] if static else []
        cni0 = {"name": "cni0", "kind": "bridge",
                "addresses": [f"{node.gateway}/{ipaddress.IPv4Network(node.pod_cidr).prefixlen}"],
                "neighbours": entries}
        if static:
            cni0["mac"] = pod_mac(node.gateway)
        links = [
            cni0,
            {"name": NODE_LINK, "kind": "veth", "addresses": [f"{node.ip}/{node.prefixlen}"],
             "peer": {"name": node.name, "namespace": plan.lan_netns, "master": LAN_BRIDGE}},
        ]
        if node.vtep:
            links.append(vtep_link(plan, node))
        spec.append({
            "name": node.netns,
            "sysctls": {"net.ipv4.ip_forward": 1, "net.bridge.bridge-nf-call-iptables": 1, **IPV4_ONLY},
            "links": links,
            # Other nodes' pod subnets as flannel routes them; a default route via the client,
            # which stands where a VM's host is, so that the node has a route for Service IPs,
            # as a real node has through its gateway.
            "routes": pod_subnet_routes(plan, node) + [{"dst": "default", "gateway": plan.client_ip}],
        })
    for pod in plan.pods:
        node = plan.node(pod.node)
        spec.append({
            # the pause process sets the pod's name as its host name, as the kubelet asks containerd
            "name": pod.netns, "holder": True, "hostname": pod.name, "share_pid": pod.share_process_namespace,
            "sysctls": dict(IPV4_ONLY),
            "links": [{"name": "eth0", "kind": "veth", "addresses": [f"{pod.ip}/{pod.prefixlen}"],
                       "peer": {"name": pod.host_veth, "namespace": node.netns, "master": "cni0", "hairpin": True},
                       # its permanent entry for its gateway with static, none with learned
                       "neighbours": [{"dst": pod.gateway, "lladdr": pod_mac(pod.gateway)}] if static else [],
                       **({"mac": pod_mac(pod.ip)} if static else {})}],
            "routes": [{"dst": "default", "gateway": pod.gateway}],
        })
    return spec
