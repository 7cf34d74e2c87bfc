"""The lab's topology file: loading it and refusing what cannot work.

`inventory/group_vars/all/topology.yml` is the single source of truth. Its shape is
checked against `inventory/topology.schema.json` (the schema editors use too); its
meaning (subnets that must not overlap, a MetalLB pool inside the node network, ...)
is checked here. Every error names the value and says how to fix it.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
from pathlib import Path
from typing import Any

from podpath.model import labdir

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGY_FILE = ROOT / "inventory" / "group_vars" / "all" / "topology.yml"
SCHEMA_FILE = ROOT / "inventory" / "topology.schema.json"
SCHEMA_PASSED = labdir.CACHE / "schema-passed"
IFNAME_MAX = labdir.lab.IFNAME_MAX  # the kernel's limit, as the modules know it


# kube-proxy's modes both labs build (kube_proxy.mode): iptables, kube-proxy's default and the
# article's, when the topology names none; nftables, GA since Kubernetes 1.33.
KUBE_PROXY_MODES = ("iptables", "nftables")
KUBE_PROXY_MODE = "iptables"

# The workloads whose pods take shareProcessNamespace (workloads.<name>.share_process_namespace):
# the project's own pods; ingress-nginx's come from its upstream manifest.
SHARE_PROCESS_NAMESPACE_WORKLOADS = ("multi_container_pod", "echo")

# The lab's edges (edge): ingress-nginx, the article's and the default, or gateway-api, NGINX
# Gateway Fabric's nginx data plane configured from a Gateway and an HTTPRoute. Only one
# exists at a time, and its Service takes the first MetalLB address.
# How a node and its pods learn each other's MAC in the netns lab (pod_neighbours): learned,
# by ARP, as the CNI bridge plugin leaves them; or static: permanent neighbour entries written
# when the pods are wired, as Calico writes one for each workload. The host's neighbour table
# is one for all its namespaces and the kernel does not count permanent entries against its
# limit (gc_thresh3): many labs on one host need static (docs/netns-lab.md).
POD_NEIGHBOURS = ("learned", "static")
POD_NEIGHBOUR = "learned"
EDGES = ("ingress-nginx", "gateway-api")
EDGE = "ingress-nginx"

# Begins the message of a refused topology wherever the check runs (the play's plan step
# included), so that `podpath up` can tell it from a failed task.
REFUSED = "topology refused: "


def static_band(network: ipaddress.IPv4Network) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address] | None:
    """The lowest addresses of a Service network, which kube-apiserver hands out dynamically
    only when the rest is full (KEP-3070): min(max(16, size / 16), 256) addresses after the
    network address. A fixed ClusterIP belongs there. None for a network too small to have one."""
    size = network.num_addresses
    if size <= 16:
        return None
    first = network.network_address + 1
    return first, first + min(max(16, size // 16), 256) - 1


class TopologyError(ValueError):
    """The topology cannot be built; the message says which value and what to do."""


def load(path: str | Path | None = None) -> dict[str, Any]:
    """Read a topology file (the default one if PATH is None) and validate it."""
    topo = read(path)
    validate(topo)
    return topo


def read(path: str | Path | None = None) -> dict[str, Any]:
    """Read a topology file (the default one if PATH is None) without checking what it says:
    for a caller that hands it to the play, which checks it."""
    import yaml  # here, not at the top: the lab's node processes import this module and never read YAML

    path = Path(path) if path else TOPOLOGY_FILE
    try:
        # PyYAML's C loader where it is built: the same data, faster
        data = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except FileNotFoundError:
        raise TopologyError(f"topology file {path} does not exist: pass the path of a topology.yml")
    except yaml.YAMLError as exc:
        raise TopologyError(f"topology file {path} is not valid YAML: {exc}")
    if not isinstance(data, dict) or "podpath_topology" not in data:
        raise TopologyError(f"topology file {path} has no top-level key podpath_topology: "
                            "see inventory/group_vars/all/topology.yml for the shape")
    return data["podpath_topology"]


def _schema_key(topo: Any, schema_text: str) -> str | None:
    """What a schema check depends on: the topology, the schema and this file's code."""
    try:
        data = json.dumps(topo, sort_keys=True)
    except (TypeError, ValueError):
        return None
    digest = hashlib.sha256()
    for part in (data, schema_text, Path(__file__).read_text()):
        digest.update(hashlib.sha256(part.encode()).digest())
    return digest.hexdigest()


def _schema_errors(topo: Any) -> None:
    """Check TOPO against the schema. A topology that passed is remembered by a file named
    by _schema_key in SCHEMA_PASSED: each play, verify, status and trace checks the topology
    in a new process, and importing jsonschema alone takes 0.07 to 0.13 s of each."""
    schema_text = SCHEMA_FILE.read_text()
    key = _schema_key(topo, schema_text)
    if key and (SCHEMA_PASSED / key).exists():
        return
    import jsonschema

    schema = json.loads(schema_text)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(topo), key=lambda e: list(e.path))
    if errors:
        err = errors[0]
        where = ".".join(str(p) for p in err.path) or "(top level)"
        raise TopologyError(f"topology value at {where} is not valid: {err.message}. "
                            "See inventory/topology.schema.json for what is allowed")
    if key:
        try:  # best effort: only root can write there, and a missing mark only costs the check
            SCHEMA_PASSED.mkdir(parents=True, exist_ok=True, mode=0o755)
            (SCHEMA_PASSED / key).touch(mode=0o644)
        except OSError:
            pass


def _net(value: str, what: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(value)
    except ValueError as exc:
        raise TopologyError(f"{what} {value!r} is not a valid IPv4 network ({exc}): "
                            "write it as a network address with its prefix, such as 10.244.0.0/16")


def _ip(value: str, what: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        raise TopologyError(f"{what} {value!r} is not a valid IPv4 address: write it as 192.168.56.10")


def _host_in(ip: ipaddress.IPv4Address, net: ipaddress.IPv4Network, what: str) -> None:
    if ip not in net:
        raise TopologyError(f"{what} {ip} is outside {net}: pick an address inside it")
    if ip in (net.network_address, net.broadcast_address):
        raise TopologyError(f"{what} {ip} is the network or broadcast address of {net}: pick a host address")


def _service_ip(value, what: str, svc_net, band, service_ips: dict):
    """The ClusterIP VALUE of Service WHAT, checked: in the service network, in its static band
    (BAND: first and last address, or None), not the kubernetes Service's, not SERVICE_IPS' (ip -> whose)."""
    ip = _ip(value, f"cluster_ip of {what}")
    _host_in(ip, svc_net, f"cluster_ip of {what}")
    if band and not band[0] <= ip <= band[1]:
        raise TopologyError(f"cluster_ip {ip} of {what} is in the dynamic band of {svc_net}, where another "
                            f"Service may take it first: pick one in the static band {band[0]}-{band[1]}")
    if band and ip == band[0]:
        raise TopologyError(f"cluster_ip {ip} of {what} is the kubernetes Service's address: pick another in "
                            f"the static band {band[0] + 1}-{band[1]}")
    if ip in service_ips:
        raise TopologyError(f"cluster_ip {ip} of {what} is already used by {service_ips[ip]}: "
                            "give each Service its own address")
    return ip


def pool_range(pool: str) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    first, _, last = pool.partition("-")
    return _ip(first.strip(), "MetalLB pool start"), _ip(last.strip(), "MetalLB pool end")


def kube_proxy_mode(topo: dict[str, Any]) -> str:
    """The kube-proxy mode TOPO asks for (kube_proxy.mode), iptables when it names none."""
    return (topo.get("kube_proxy") or {}).get("mode", KUBE_PROXY_MODE)


def _kube_proxy_mode(topo: Any) -> None:
    """A mode podpath does not build (ipvs, a typo), named with the choices before the schema's
    more general message."""
    section = topo.get("kube_proxy") if isinstance(topo, dict) else None
    mode = section.get("mode", KUBE_PROXY_MODE) if isinstance(section, dict) else KUBE_PROXY_MODE
    if mode not in KUBE_PROXY_MODES:
        raise TopologyError(f"kube_proxy.mode {mode!r} is not a mode podpath builds: use one of "
                            f"{', '.join(KUBE_PROXY_MODES)} (iptables, the default, is the article's)")


def pod_neighbours(topo: dict[str, Any]) -> str:
    """How the netns lab's pods and nodes learn each other's MAC (pod_neighbours), learned
    when the topology names none."""
    return topo.get("pod_neighbours", POD_NEIGHBOUR) if isinstance(topo, dict) else POD_NEIGHBOUR


def _pod_neighbours(topo: Any) -> None:
    value = pod_neighbours(topo)
    if value not in POD_NEIGHBOURS:
        raise TopologyError(f"pod_neighbours {value!r} is not a choice: use learned (by ARP, the default) or "
                            "static (permanent entries, for many labs on one host)")


def edge(topo: dict[str, Any]) -> str:
    """The edge TOPO asks for (edge), ingress-nginx when it names none."""
    return topo.get("edge", EDGE) if isinstance(topo, dict) else EDGE


def edge_replicas(topo: dict[str, Any]) -> int:
    """How many pods the lab's edge runs: ingress-nginx controllers or gateway data-plane pods."""
    return topo["gateway"]["replicas"] if edge(topo) == "gateway-api" else topo["ingress"]["replicas"]


def _edge(topo: Any) -> None:
    """An edge podpath does not build, or gateway-api without its gateway section, named with
    the choices before the schema's more general message."""
    value = edge(topo)
    if value not in EDGES:
        raise TopologyError(f"edge {value!r} is not an edge podpath builds: use one of {', '.join(EDGES)} "
                            "(ingress-nginx, the default, is the article's)")
    if value == "gateway-api" and not isinstance(topo.get("gateway"), dict):
        raise TopologyError("edge is gateway-api but the topology has no gateway section: add one (class, name, "
                            "namespace, service, replicas, cluster_ip, http_node_port, listener, route), as in "
                            "inventory/gateway-api.yml")


def _gateway(topo: dict[str, Any], svc_net: ipaddress.IPv4Network, band: Any, service_ips: dict,
             ports: dict, port_range: tuple[int, int]) -> None:
    """The gateway section's meaning: what the schema cannot say."""
    gw = topo["gateway"]
    replicas = gw["replicas"]
    if replicas < 1:
        raise TopologyError(f"gateway replicas is {replicas}: the Gateway needs at least 1 data-plane pod "
                            "(3 by default)")
    if gw.get("spread", True) and replicas > len(topo["nodes"]):
        raise TopologyError(f"gateway replicas is {replicas} with spread: true, but there are only "
                            f"{len(topo['nodes'])} nodes: lower replicas, add nodes, or set spread: false")
    expected = f"{gw['name']}-{gw['class']}"
    if gw["service"] != expected:
        raise TopologyError(f"gateway service {gw['service']!r} is not the name NGINX Gateway Fabric gives the "
                            f"data plane of Gateway {gw['name']} of class {gw['class']}: write {expected!r} "
                            "(<gateway>-<class>)")
    ip = _service_ip(gw["cluster_ip"], "gateway", svc_net, band, service_ips)
    low, high = port_range
    port = gw["http_node_port"]
    if not low <= port <= high:
        raise TopologyError(f"gateway http_node_port {port} is outside node_port_range {low}-{high}: "
                            "pick a port inside it")
    if port in ports:
        raise TopologyError(f"gateway http_node_port {port} is already used by ingress {ports[port]}: "
                            "pick another port")
    prefix = gw["route"]["path_prefix"]
    if "//" in prefix or (len(prefix) > 1 and prefix.endswith("/")):
        raise TopologyError(f"gateway route path_prefix {prefix!r} is not a path prefix HTTPRoute accepts: "
                            "write it as / or /echo (no doubled or trailing slash)")


def share_process_namespace(topo: dict[str, Any], workload: str) -> bool:
    """Whether WORKLOAD's pods share one PID namespace among their containers (Kubernetes'
    shareProcessNamespace; false when the topology does not say)."""
    return bool((topo["workloads"].get(workload) or {}).get("share_process_namespace", False))


def _share_process_namespace(topo: Any) -> None:
    """A share_process_namespace that is not true or false, named with its place before the
    schema's more general message."""
    workloads = topo.get("workloads") if isinstance(topo, dict) else None
    for name in SHARE_PROCESS_NAMESPACE_WORKLOADS:
        section = workloads.get(name) if isinstance(workloads, dict) else None
        value = section.get("share_process_namespace", False) if isinstance(section, dict) else False
        if not isinstance(value, bool):
            raise TopologyError(f"workloads.{name}.share_process_namespace {value!r} is not true or false: write "
                                "true to give the pod's containers one PID namespace, the pause process's "
                                "(Kubernetes' shareProcessNamespace), or false, the default, for one each")


def validate(topo: Any) -> None:
    """Raise TopologyError for the first problem found; return None if the lab can be built."""
    _kube_proxy_mode(topo)
    _pod_neighbours(topo)
    _edge(topo)
    _share_process_namespace(topo)
    _schema_errors(topo)
    node_net = _net(topo["node_network"], "node_network")
    pod_net = _net(topo["pod_network"], "pod_network")
    svc_net = _net(topo["service_network"], "service_network")
    for (a_name, a), (b_name, b) in (
        (("node_network", node_net), ("pod_network", pod_net)),
        (("node_network", node_net), ("service_network", svc_net)),
        (("pod_network", pod_net), ("service_network", svc_net)),
    ):
        if a.overlaps(b):
            raise TopologyError(f"{a_name} {a} overlaps {b_name} {b}: the three networks must be disjoint")

    client_ip = _ip(topo["client"]["ip"], "client ip")
    _host_in(client_ip, node_net, "client ip")
    names, ips, cidrs = set(), {client_ip: "the client"}, []
    for node in topo["nodes"]:
        name = node["name"]
        if name in names:
            raise TopologyError(f"node name {name!r} is used twice: give every node its own name")
        names.add(name)
        if len(name.encode()) > IFNAME_MAX:
            raise TopologyError(f"node name {name!r} is {len(name.encode())} bytes; it names the node's port on the "
                                f"LAN bridge, and Linux interface names are at most {IFNAME_MAX} bytes: shorten it")
        ip = _ip(node["ip"], f"ip of node {name}")
        _host_in(ip, node_net, f"ip of node {name}")
        if ip in ips:
            raise TopologyError(f"ip {ip} of node {name} is already used by {ips[ip]}: give each node its own address")
        ips[ip] = f"node {name}"
        cidr = _net(node["pod_cidr"], f"pod_cidr of node {name}")
        if not cidr.subnet_of(pod_net):
            raise TopologyError(f"pod_cidr {cidr} of node {name} is outside pod_network {pod_net}: "
                                "pick a subnet of the pod network")
        if cidr.prefixlen > 28:
            raise TopologyError(f"pod_cidr {cidr} of node {name} is too small for the lab's pods: use a /28 or larger")
        for other_name, other in cidrs:
            if cidr.overlaps(other):
                raise TopologyError(f"pod_cidr {cidr} of node {name} overlaps {other} of node {other_name}: "
                                    "give each node its own subnet")
        cidrs.append((name, cidr))

    dns = _ip(topo["cluster_dns"], "cluster_dns")
    _host_in(dns, svc_net, "cluster_dns")
    low, _, high = topo["node_port_range"].partition("-")
    low, high = int(low), int(high)
    if not 1 <= low < high <= 65535:
        raise TopologyError(f"node_port_range {topo['node_port_range']!r} is not a range of ports: "
                            "write it as 30000-32767")

    first, last = pool_range(topo["metallb"]["pool"])
    if first > last:
        raise TopologyError(f"MetalLB pool {topo['metallb']['pool']} starts after it ends: write it as first-last")
    for end in (first, last):
        _host_in(end, node_net, "MetalLB pool address")
    for ip, owner in ips.items():
        if first <= ip <= last:
            raise TopologyError(f"MetalLB pool {topo['metallb']['pool']} contains {ip}, the address of {owner}: "
                                "move the pool past the node addresses")

    ingress = topo["ingress"]
    replicas = ingress["replicas"]
    if replicas < 1:
        raise TopologyError(f"ingress replicas is {replicas}: the lab needs at least 1 controller (3 by default)")
    if ingress.get("spread", True) and replicas > len(topo["nodes"]):
        raise TopologyError(f"ingress replicas is {replicas} with spread: true, but there are only "
                            f"{len(topo['nodes'])} nodes: lower replicas, add nodes, or set spread: false")
    service_ips = {dns: "cluster_dns"}
    band = static_band(svc_net)
    checks = [("ingress", ingress["cluster_ip"]),
              ("echo", topo["workloads"]["echo"]["cluster_ip"]),
              ("empty_service", topo["workloads"]["empty_service"]["cluster_ip"])]
    for what, value in checks:
        service_ips[_service_ip(value, what, svc_net, band, service_ips)] = what
    ports = {}
    for key in ("http_node_port", "https_node_port"):
        port = ingress[key]
        if not low <= port <= high:
            raise TopologyError(f"ingress {key} {port} is outside node_port_range {low}-{high}: pick a port inside it")
        if port in ports:
            raise TopologyError(f"ingress {key} {port} is already used by {ports[port]}: pick another port")
        ports[port] = key
    if isinstance(topo.get("gateway"), dict):
        _gateway(topo, svc_net, band, service_ips, ports, (low, high))

    mcp = topo["workloads"]["multi_container_pod"]
    if mcp["node"] not in names:
        raise TopologyError(f"multi_container_pod node {mcp['node']!r} is not a node of the topology: "
                            f"use one of {', '.join(sorted(names))}")
    workers = [n for n in topo["nodes"] if n["role"] == "worker"] or topo["nodes"]
    echo = topo["workloads"]["echo"]
    per_node = (-(-echo["replicas"] // len(workers)) + edge_replicas(topo) + 1
                + topo["workloads"].get("idle_pods_per_node", 0))
    smallest = max(cidr.prefixlen for _, cidr in cidrs)
    if per_node > 2 ** (32 - smallest) - 3:
        raise TopologyError(f"echo replicas {echo['replicas']} do not fit in the smallest pod subnet (/{smallest}): "
                            "lower replicas or give the nodes larger pod_cidr")
