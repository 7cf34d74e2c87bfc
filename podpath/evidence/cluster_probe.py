"""Evidence from a running cluster lab: kubectl on the control plane, crictl, ip and
iptables-save on each node, curl and arping from the client (the machine running pytest).

The verifier's cluster suites (tests/verify/test_cluster_*.py) ask the cluster through
`ClusterLab`. Nodes are reached with testinfra's Ansible backend, so the inventory that
built the cluster (Vagrant's, or inventory/hosts.yml) is the one that verifies it:

    pytest --hosts=ansible://all --ansible-inventory=INVENTORY tests/verify

Every command is an argv list, quoted word by word with shlex before it reaches a shell
(the node's, through Ansible, or this machine's); scripts that run inside pods or on
nodes are constants and take their values as arguments. Every parser below is a pure
function of a tool's output, so tests/unit/test_cluster_probe.py checks them without a
cluster, and each raises ProbeError naming the node or pod whose output it could not read.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import shlex
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from podpath.evidence.probe import Http, Result, parse_http
from podpath.evidence.trace import Hop as TraceHop
from podpath.evidence.trace import Trace


class ProbeError(RuntimeError):
    """The cluster did not answer as the lab expects; the message names where and what."""


# -- what the lab runs (names from the cluster roles' defaults) ---------------------------

# Labels the upstream ingress-nginx manifest gives its controller pods
# (roles/cluster_ingress_nginx/defaults/main.yml, cluster_ingress_nginx_pod_labels).
CONTROLLER_SELECTOR = ("app.kubernetes.io/name=ingress-nginx,app.kubernetes.io/instance=ingress-nginx,"
                       "app.kubernetes.io/component=controller")
# The MetalLB manifest's speaker DaemonSet (roles/cluster_metallb).
METALLB_NAMESPACE = "metallb-system"
SPEAKER_SELECTOR = "app=metallb,component=speaker"
# kubeadm puts this label on the control-plane node; MetalLB's speakers do not announce from
# a node that has it (whatever its value), so the L2 election runs among the workers only.
EXCLUDE_LB_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
# The header every controller adds (cluster_ingress_nginx_response_headers), lower-cased.
CONTROLLER_HEADER = "x-ingress-controller"
ADMIN_KUBECONFIG = "/etc/kubernetes/admin.conf"
NETNS_DIR = "/var/run/netns"


@dataclass(frozen=True)
class App:
    """A kind of pod of the lab: where it runs, how to select it, and how to talk to it."""

    key: str
    namespace: str
    selector: str
    replicas: int
    port: int  # the port it serves HTTP on
    curl_container: str | None  # a container whose image has curl (the nginx image), if any


def apps(topology: dict) -> dict[str, App]:
    """The lab's pods, as roles/cluster_workloads and roles/cluster_ingress_nginx deploy them.

    Images: the echo pods and the multi-container pod's `nginx` container run the nginx
    image (Debian based, with curl); `busybox` has wget, nc and ip; the ingress controller
    image is not used as a client.
    """
    work, ingress = topology["workloads"], topology["ingress"]
    echo, multi = work["echo"], work["multi_container_pod"]
    return {
        "echo": App("echo", echo["namespace"], f"app.kubernetes.io/name={echo['name']}", int(echo["replicas"]),
                    int(echo["target_port"]), "echo"),
        "ingress-nginx": App("ingress-nginx", ingress["namespace"], CONTROLLER_SELECTOR, int(ingress["replicas"]),
                             80, None),
        "multi-container": App("multi-container", multi["namespace"], f"app.kubernetes.io/name={multi['name']}", 1,
                               80, "nginx"),
    }


@dataclass(frozen=True)
class PodSlot:
    """The i-th pod of an app, known before the cluster is asked (so collection never connects).

    At run time it is resolved to a real pod: the pods of the app sorted by the topology's
    node order, then by name.
    """

    app: str
    index: int
    replicas: int

    @property
    def id(self) -> str:
        return self.app if self.replicas == 1 else f"{self.app}-{self.index + 1}"


def pod_slots(topology: dict, *keys: str) -> list[PodSlot]:
    table = apps(topology)
    return [PodSlot(key, i, table[key].replicas) for key in (keys or table) for i in range(table[key].replicas)]


# -- parsed objects -------------------------------------------------------------------------

@dataclass
class K8sPod:
    name: str
    namespace: str
    node: str
    ip: str
    uid: str
    phase: str
    containers: list[str]
    ready: bool
    restarts: dict[str, int] = field(default_factory=dict)
    container_ids: dict[str, str] = field(default_factory=dict)  # name -> runtime id, no "containerd://"
    app: str = ""
    port: int = 0
    curl_container: str | None = None

    def __str__(self) -> str:
        return f"{self.name} on {self.node}"


@dataclass
class K8sNode:
    name: str
    internal_ip: str
    pod_cidr: str
    ready: bool
    labels: dict[str, str]


@dataclass
class Endpoint:
    ip: str
    ready: bool
    pod: str | None
    node: str | None
    ports: dict[str, int]  # port name -> port


@dataclass
class Lease:
    holder: str | None
    renew_time: float | None  # seconds since the epoch
    duration: float | None


@dataclass
class Sandbox:
    id: str
    netns_path: str
    pid: int
    state: str


@dataclass
class NetNamespace:
    inode: int
    nprocs: int
    pid: int | None
    command: str
    nsfs: list[str]


@dataclass
class Rule:
    chain: str
    words: list[str]
    packets: int | None = None
    bytes: int | None = None

    def option(self, name: str) -> str | None:
        return self.words[self.words.index(name) + 1] if name in self.words[:-1] else None

    @property
    def target(self) -> str:
        return self.option("-j") or ""


@dataclass
class SepEntry:
    chain: str
    probability: float | None  # None: taken unconditionally (the last endpoint)
    destinations: list[str]  # the DNAT rules' --to-destination (one, when healthy)
    dnat_packets: int | None = None


@dataclass
class ServicePath:
    entry_chain: str  # KUBE-SVC-* (ClusterIP) or KUBE-EXT-* (load balancer IP, NodePort)
    svc_chain: str
    seps: list[SepEntry]


# -- parsers (pure) ---------------------------------------------------------------------------

def parse_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:
        shown = (text or "").strip()[:200]
        raise ProbeError(f"{what}: expected JSON, got {shown!r} ({exc})") from None


def _items(data: Any, what: str) -> list[dict]:
    if not isinstance(data, dict) or not isinstance(data.get("items", []), list):
        raise ProbeError(f"{what}: expected a JSON object with a list of items")
    return [i for i in data.get("items") or [] if isinstance(i, dict)]


def parse_pods(text: str, what: str = "kubectl get pods") -> list[K8sPod]:
    pods = []
    for item in _items(parse_json(text, what), what):
        meta, spec, status = item.get("metadata") or {}, item.get("spec") or {}, item.get("status") or {}
        name = meta.get("name")
        if not name:
            raise ProbeError(f"{what}: a pod without metadata.name")
        statuses = {s.get("name"): s for s in status.get("containerStatuses") or []}
        conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        pods.append(K8sPod(
            name=name, namespace=meta.get("namespace", ""), node=spec.get("nodeName") or "",
            ip=status.get("podIP") or "", uid=meta.get("uid", ""), phase=status.get("phase", "Unknown"),
            containers=[c.get("name", "") for c in spec.get("containers") or []],
            ready=conditions.get("Ready") == "True",
            restarts={n: int(s.get("restartCount", 0)) for n, s in statuses.items()},
            container_ids={n: (s.get("containerID") or "").split("://", 1)[-1] for n, s in statuses.items()
                           if s.get("containerID")}))
    return pods


def parse_nodes(text: str, what: str = "kubectl get nodes") -> dict[str, K8sNode]:
    nodes = {}
    for item in _items(parse_json(text, what), what):
        meta, spec, status = item.get("metadata") or {}, item.get("spec") or {}, item.get("status") or {}
        addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
        conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        nodes[meta.get("name", "")] = K8sNode(
            name=meta.get("name", ""), internal_ip=addresses.get("InternalIP", ""), pod_cidr=spec.get("podCIDR", ""),
            ready=conditions.get("Ready") == "True", labels=dict(meta.get("labels") or {}))
    return nodes


def parse_endpoint_slices(text: str, what: str = "kubectl get endpointslices") -> list[Endpoint]:
    endpoints = []
    for item in _items(parse_json(text, what), what):
        ports = {p.get("name") or "": int(p["port"]) for p in item.get("ports") or [] if p.get("port") is not None}
        for ep in item.get("endpoints") or []:
            ref = ep.get("targetRef") or {}
            # ready is "unknown" when absent, which consumers read as ready
            ready = (ep.get("conditions") or {}).get("ready") is not False
            for address in ep.get("addresses") or []:
                endpoints.append(Endpoint(ip=address, ready=ready, pod=ref.get("name"), node=ep.get("nodeName"),
                                          ports=ports))
    return endpoints


def parse_time(stamp: str | None) -> float | None:
    """An RFC 3339 time of the API (2026-05-20T10:00:00.123456Z) as seconds since the epoch."""
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ProbeError(f"cannot read the time {stamp!r}") from None


def parse_lease(text: str, what: str = "kubectl get lease") -> Lease:
    data = parse_json(text, what)
    spec = data.get("spec") or {} if isinstance(data, dict) else {}
    duration = spec.get("leaseDurationSeconds")
    return Lease(holder=spec.get("holderIdentity"), renew_time=parse_time(spec.get("renewTime")),
                 duration=float(duration) if duration is not None else None)


def parse_service(text: str, what: str = "kubectl get service") -> dict:
    """The fields of a Service the checks use: cluster_ip, ports {name: {...}}, lb_ips, policy."""
    data = parse_json(text, what)
    if not isinstance(data, dict):
        raise ProbeError(f"{what}: expected a JSON object")
    spec, status = data.get("spec") or {}, data.get("status") or {}
    return {"cluster_ip": spec.get("clusterIP"), "type": spec.get("type"),
            "policy": spec.get("externalTrafficPolicy"),
            "ports": {p.get("name") or "": p for p in spec.get("ports") or []},
            "lb_ips": [i["ip"] for i in (status.get("loadBalancer") or {}).get("ingress") or [] if i.get("ip")]}


def parse_crictl_pods(text: str, name: str, namespace: str, uid: str, what: str) -> list[str]:
    """Ids of the ready sandboxes of one pod in `crictl pods -o json` (its --name is a regexp)."""
    data = parse_json(text, what)
    ids = []
    for item in (data.get("items") or []) if isinstance(data, dict) else []:
        meta = item.get("metadata") or {}
        if meta.get("name") == name and meta.get("namespace") == namespace and (not uid or meta.get("uid") == uid):
            if item.get("state") == "SANDBOX_READY":
                ids.append(item["id"])
    return ids


def parse_crictl_inspectp(text: str, what: str) -> Sandbox:
    """The network namespace path and the pause pid of a sandbox (`crictl inspectp ID`)."""
    data = parse_json(text, what)
    if not isinstance(data, dict):
        raise ProbeError(f"{what}: expected a JSON object")
    status, info = data.get("status") or {}, data.get("info") or {}
    spaces = (((info.get("runtimeSpec") or {}).get("linux") or {}).get("namespaces")) or []
    paths = [n.get("path") for n in spaces if n.get("type") == "network" and n.get("path")]
    if not paths:
        raise ProbeError(f"{what}: the sandbox's runtime spec names no network namespace path "
                         "(hostNetwork pod, or a runtime that does not report info.runtimeSpec)")
    pid = info.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        raise ProbeError(f"{what}: the sandbox reports no pause pid (info.pid is {pid!r})")
    return Sandbox(id=status.get("id", ""), netns_path=paths[0], pid=pid, state=status.get("state", ""))


def parse_lsns(text: str, what: str = "lsns -t net -J") -> dict[int, NetNamespace]:
    """Network namespaces by inode. util-linux before 2.37 prints numbers as strings; both are read."""
    data = parse_json(text, what)
    if not isinstance(data, dict) or not isinstance(data.get("namespaces"), list):
        raise ProbeError(f"{what}: expected {{\"namespaces\": [...]}}")
    spaces = {}
    for entry in data["namespaces"]:
        try:
            inode = int(entry["ns"])
        except (KeyError, TypeError, ValueError):
            raise ProbeError(f"{what}: an entry without a namespace inode: {entry!r}") from None
        pid = entry.get("pid")
        nsfs = entry.get("nsfs") or ""
        spaces[inode] = NetNamespace(inode=inode, nprocs=int(entry.get("nprocs") or 0),
                                     pid=int(pid) if pid not in (None, "") else None,
                                     command=entry.get("command") or "",
                                     nsfs=[p for p in str(nsfs).split("\n") if p])
    return spaces


def parse_ns_link(text: str, what: str) -> int:
    """The inode of `readlink /proc/PID/ns/net` (net:[4026532301])."""
    match = re.fullmatch(r"net:\[(\d+)\]", text.strip())
    if not match:
        raise ProbeError(f"{what}: expected net:[INODE], got {text.strip()!r}")
    return int(match.group(1))


_COUNTERS = re.compile(r"^\[(\d+):(\d+)\]\s+")


def parse_iptables_save(text: str) -> dict[str, list[Rule]]:
    """Chain -> its rules, from `iptables-save [-c] -t TABLE` (quoting undone, counters kept)."""
    chains: dict[str, list[Rule]] = {}
    for line in text.splitlines():
        if line.startswith(":"):
            chains.setdefault(line[1:].split()[0], [])
            continue
        packets = size = None
        match = _COUNTERS.match(line)
        if match:
            packets, size = int(match.group(1)), int(match.group(2))
            line = line[match.end():]
        if line.startswith("-A "):
            words = shlex.split(line)
            chains.setdefault(words[1], []).append(Rule(words[1], words[2:], packets, size))
    return chains


def service_path(chains: dict[str, list[Rule]], ip: str, port: int) -> ServicePath | None:
    """Follow kube-proxy's chains for IP:PORT: KUBE-SERVICES -> KUBE-SVC (or KUBE-EXT -> KUBE-SVC) ->
    KUBE-SEP with their probabilities and DNAT destinations. None if KUBE-SERVICES has no rule for it."""
    entry = next((r for r in chains.get("KUBE-SERVICES", []) if r.option("-d") == f"{ip}/32"
                  and r.option("--dport") == str(port)), None)
    if entry is None:
        return None
    svc = entry.target
    if svc.startswith("KUBE-EXT-"):
        # the external chain marks for masquerade (policy Cluster), then jumps to the service chain
        jumps = [r.target for r in chains.get(svc, []) if r.target.startswith(("KUBE-SVC-", "KUBE-SVL-"))]
        svc = jumps[-1] if jumps else svc
    seps = []
    for rule in chains.get(svc, []):
        if not rule.target.startswith("KUBE-SEP-"):
            continue
        probability = rule.option("--probability")
        dnat = [r for r in chains.get(rule.target, []) if r.target == "DNAT"]
        seps.append(SepEntry(chain=rule.target, probability=float(probability) if probability else None,
                             destinations=[r.option("--to-destination") or "" for r in dnat],
                             dnat_packets=sum(r.packets or 0 for r in dnat) if any(
                                 r.packets is not None for r in dnat) else None))
    return ServicePath(entry_chain=entry.target, svc_chain=svc, seps=seps)


def elected(nodes: list[str], address: str) -> str | None:
    """MetalLB's L2 election, computed here on its own: the node with the smallest sha256("node#ip")."""
    return min(nodes, key=lambda n: hashlib.sha256(f"{n}#{address}".encode()).digest()) if nodes else None


_MAC = re.compile(r"((?:[0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2})")


def parse_arping(text: str) -> list[str]:
    """MACs of the replies, in order, from either arping (Habets' or iputils')."""
    macs = []
    for line in text.splitlines():
        if re.search(r"bytes from|reply from", line, re.IGNORECASE):
            match = _MAC.search(line)
            if match:
                macs.append(match.group(1).lower())
    return macs


def arping_argv(help_text: str, iface: str, ip: str, count: int) -> list[str]:
    """arping's command line: Habets' arping names the interface with -i, iputils' with -I."""
    flag = "-i" if "habets" in help_text.lower() else "-I"
    return ["arping", "-c", str(count), "-w", str(count + 1), flag, iface, ip]


def parse_announcer(l2_statuses: str | None, events: str | None, namespace: str, service: str) -> str | None:
    """The node MetalLB says announces SERVICE: its ServiceL2Status, else the newest nodeAssigned event."""
    if l2_statuses:
        for item in _items(parse_json(l2_statuses, "kubectl get servicel2statuses"), "servicel2statuses"):
            status = item.get("status") or {}
            if status.get("serviceName") == service and status.get("serviceNamespace") == namespace:
                return status.get("node")
    if events:
        found = []
        for item in _items(parse_json(events, "kubectl get events"), "events"):
            match = re.search(r'announcing from node "([^"]+)"', item.get("message") or "")
            if match and item.get("reason") == "nodeAssigned":
                stamp = item.get("lastTimestamp") or item.get("eventTime") or ""
                found.append((stamp, match.group(1)))
        if found:
            return max(found)[1]
    return None


# Marks the start of each answer in a batch of curl runs inside a pod.
BATCH_MARK = "@@podpath-answer"
# Runs "$@" (a curl command) $1 times; each answer follows a line "@@podpath-answer rc=N".
BATCH_SCRIPT = ('n=$1; shift; i=0; while [ "$i" -lt "$n" ]; do i=$((i+1)); out=$("$@" 2>&1); rc=$?; '
                'printf "%s rc=%s\\n" "' + BATCH_MARK + '" "$rc"; printf "%s\\n" "$out"; done')


def parse_http_batch(text: str) -> list[Http]:
    answers = []
    for chunk in text.split(BATCH_MARK + " rc=")[1:]:
        rc_text, _, out = chunk.partition("\n")
        rc = int(rc_text.strip() or 1)
        answers.append(parse_http(Result(rc, out if rc == 0 else "", out if rc else "")))
    return answers


# A small HTTP client for the nodes, which have python3 (Ansible needs it) but maybe not curl.
# It prints what `curl -D - -o -` prints and exits with curl's codes (7 refused, 28 timed out).
NODE_HTTP_SCRIPT = """
import http.client, socket, sys
ip, port, host, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
try:
    conn = http.client.HTTPConnection(ip, port, timeout=timeout)
    conn.request("GET", "/", headers={"Host": host} if host else {})
    answer = conn.getresponse()
    body = answer.read().decode("utf-8", "replace")
except (socket.timeout, TimeoutError) as exc:
    sys.stderr.write("timed out: %s\\n" % exc); sys.exit(28)
except OSError as exc:
    sys.stderr.write("%s\\n" % exc); sys.exit(7)
sys.stdout.write("HTTP/1.1 %d %s\\r\\n" % (answer.status, answer.reason))
for key, value in answer.getheaders():
    sys.stdout.write("%s: %s\\r\\n" % (key, value))
sys.stdout.write("\\r\\n" + body)
"""


def node_side_addresses(nodes: dict[str, K8sNode]) -> set[str]:
    """Addresses a node SNATs to: its node IP, its cni0 (first address of its pod CIDR) and its
    flannel.1 (the pod CIDR's network address, which flannel's VXLAN device carries)."""
    found = set()
    for node in nodes.values():
        if node.internal_ip:
            found.add(node.internal_ip)
        if node.pod_cidr:
            net = ipaddress.ip_network(node.pod_cidr, strict=False)
            found |= {str(net.network_address), str(net.network_address + 1)}
    return found


# -- the lab ----------------------------------------------------------------------------------

Runner = Callable[[list[str]], Result]


@dataclass
class ClusterTrace(Trace):
    """The traced path in the cluster: four hops (ARP, DNAT, controller, backend)."""

    expected_hops: int = 4

    def text(self) -> str:
        lines = [f"GET {self.url} Host: {self.host}"]
        lines += [f"  {'ok ' if h.ok else 'BAD'} {h.step}: {h.what} ({h.evidence})" for h in self.hops]
        return "\n".join(lines)


class ClusterLab:
    """The cluster lab, seen through kubectl on the control plane and tools on each node."""

    kind = "cluster"

    def __init__(self, topology: dict, hosts, ansible_inventory: str | None):
        self.name = "cluster"
        self.topology = topology
        if isinstance(hosts, str):
            hosts = hosts.split(",")
        self.hostspecs = [h for h in (hosts or []) if h]
        self.inventory = ansible_inventory
        self.apps = apps(topology)
        self._hosts: dict[str, Any] = {}
        self._selected: list[str] | None = None
        self._sudo: dict[str, list[str]] = {}
        self._kubectl: list[str] | None = None
        self._pods: dict[str, list[K8sPod]] = {}

    # -- topology -----------------------------------------------------------------------
    def node_names(self) -> list[str]:
        return [n["name"] for n in self.topology["nodes"]]

    def node_ip(self, node: str) -> str:
        return next(n["ip"] for n in self.topology["nodes"] if n["name"] == node)

    @property
    def ingress_namespace(self) -> str:
        return self.topology["ingress"]["namespace"]

    @property
    def ingress_service(self) -> str:
        return self.topology["ingress"]["service"]

    # -- hosts ----------------------------------------------------------------------------
    def selected_nodes(self) -> list[str]:
        """Inventory hosts matched by --hosts (ansible://PATTERN), without connecting to them."""
        if self._selected is None:
            from testinfra.backend import parse_hostspec
            from testinfra.backend.ansible import AnsibleBackend

            names: set[str] = set()
            for spec in self.hostspecs:
                pattern, kw = parse_hostspec(spec)
                if kw.get("connection") != "ansible":
                    raise ProbeError(f"--hosts={spec}: the cluster lab is reached through Ansible; use "
                                     "--hosts=ansible://all --ansible-inventory=INVENTORY")
                names |= set(AnsibleBackend.get_hosts(pattern or "all", ansible_inventory=self.inventory))
            self._selected = sorted(names)
        return self._selected

    def host(self, node: str):
        """The testinfra host of NODE, through the Ansible inventory."""
        if node not in self._hosts:
            if node not in self.selected_nodes():
                raise ProbeError(f"node {node} of the topology is not among the hosts of this run "
                                 f"({', '.join(self.selected_nodes()) or 'none'}): check --hosts and the inventory")
            import testinfra

            self._hosts[node] = testinfra.get_host(f"ansible://{node}", ansible_inventory=self.inventory)
        return self._hosts[node]

    def run(self, node: str, argv: list[str], root: bool = False) -> Result:
        """Run ARGV on NODE (as root with sudo -n when ROOT and the login user is not root)."""
        if root:
            argv = self._root_prefix(node) + argv
        out = self.host(node).run(shlex.join(argv))
        return Result(out.rc, out.stdout, out.stderr)

    def _root_prefix(self, node: str) -> list[str]:
        if node not in self._sudo:
            uid = self.host(node).run("id -u").stdout.strip()
            self._sudo[node] = [] if uid == "0" else ["sudo", "-n"]
        return self._sudo[node]

    def must(self, node: str, argv: list[str], root: bool = False, what: str = "") -> str:
        out = self.run(node, argv, root)
        if not out.ok:
            raise ProbeError(f"{node}: {what or shlex.join(argv)} failed (exit {out.rc}): "
                             f"{(out.stderr or out.stdout).strip()[:300]}")
        return out.stdout

    def control_plane(self) -> str:
        """The node kubectl runs on: the first host of the inventory group control_plane."""
        from testinfra.backend.ansible import AnsibleBackend

        try:
            group = AnsibleBackend.get_hosts("control_plane", ansible_inventory=self.inventory)
        except RuntimeError:
            group = []
        group = [h for h in group if h in self.node_names()]
        if group:
            return group[0]
        planes = [n["name"] for n in self.topology["nodes"] if n["role"] == "control-plane"]
        if not planes:
            raise ProbeError("no control-plane node: neither the inventory group control_plane nor the topology "
                             "names one")
        return planes[0]

    # -- kubectl ------------------------------------------------------------------------
    def kubectl(self, *args: str) -> Result:
        cp = self.control_plane()
        if self._kubectl is None:
            # kubeadm's admin kubeconfig, readable by root; else the login user's ~/.kube/config
            probe = self.run(cp, ["test", "-r", ADMIN_KUBECONFIG], root=True)
            self._kubectl = (self._root_prefix(cp) + ["kubectl", "--kubeconfig", ADMIN_KUBECONFIG]
                             if probe.ok else ["kubectl"])
        out = self.host(cp).run(shlex.join(self._kubectl + list(args)))
        return Result(out.rc, out.stdout, out.stderr)

    def kubectl_json(self, *args: str, what: str = "") -> Any:
        what = what or "kubectl " + " ".join(args)
        out = self.kubectl(*args, "-o", "json")
        if not out.ok:
            raise ProbeError(f"{what} on {self.control_plane()} failed (exit {out.rc}): {out.stderr.strip()[:300]}")
        return out.stdout

    def k8s_nodes(self) -> dict[str, K8sNode]:
        return parse_nodes(self.kubectl_json("get", "nodes"))

    def pods_of(self, app: str, refresh: bool = False) -> list[K8sPod]:
        """The running pods of APP, sorted by the topology's node order, then by name."""
        if refresh or app not in self._pods:
            spec = self.apps[app]
            text = self.kubectl_json("get", "pods", "-n", spec.namespace, "-l", spec.selector,
                                     what=f"kubectl get pods -n {spec.namespace} -l {spec.selector}")
            order = {n: i for i, n in enumerate(self.node_names())}
            pods = [p for p in parse_pods(text) if p.phase == "Running"]
            for pod in pods:
                pod.app, pod.port, pod.curl_container = app, spec.port, spec.curl_container
            self._pods[app] = sorted(pods, key=lambda p: (order.get(p.node, len(order)), p.name))
        return self._pods[app]

    def pod(self, slot: PodSlot) -> K8sPod:
        pods = self.pods_of(slot.app)
        if slot.index >= len(pods):
            spec = self.apps[slot.app]
            raise ProbeError(f"{slot.id}: only {len(pods)} running {slot.app} pods in namespace {spec.namespace} "
                             f"({', '.join(str(p) for p in pods) or 'none'}); the topology asks for {spec.replicas}")
        pod = pods[slot.index]
        if not pod.ip:
            raise ProbeError(f"pod {pod}: has no IP yet (status.podIP is empty)")
        return pod

    def all_pods(self) -> list[K8sPod]:
        return [p for app in self.apps for p in self.pods_of(app)]

    def clients(self) -> list[K8sPod]:
        """Pods that can send HTTP requests (a container with curl)."""
        return [p for p in self.all_pods() if p.curl_container]

    def endpoints(self, namespace: str, service: str) -> list[Endpoint]:
        return parse_endpoint_slices(self.kubectl_json(
            "get", "endpointslices", "-n", namespace, "-l", f"kubernetes.io/service-name={service}",
            what=f"EndpointSlices of Service {namespace}/{service}"))

    def service(self, namespace: str, name: str) -> dict:
        return parse_service(self.kubectl_json("get", "service", "-n", namespace, name,
                                               what=f"Service {namespace}/{name}"))

    def load_balancer_ip(self) -> str:
        svc = self.service(self.ingress_namespace, self.ingress_service)
        if not svc["lb_ips"]:
            raise ProbeError(f"Service {self.ingress_namespace}/{self.ingress_service} has no load balancer "
                             "address in its status: MetalLB has not assigned one")
        return svc["lb_ips"][0]

    def lease(self) -> Lease | None:
        election = self.topology["ingress"]["election_id"]
        out = self.kubectl("get", "lease", "-n", self.ingress_namespace, election, "-o", "json")
        if not out.ok:
            if "NotFound" in out.stderr:
                return None
            raise ProbeError(f"kubectl get lease {election} failed: {out.stderr.strip()[:300]}")
        return parse_lease(out.stdout, f"Lease {self.ingress_namespace}/{election}")

    def control_plane_time(self) -> float:
        text = self.must(self.control_plane(), ["date", "+%s.%N"]).strip()
        try:
            return float(text)
        except ValueError:
            raise ProbeError(f"{self.control_plane()}: date printed {text!r}") from None

    def announcer(self) -> str | None:
        """The node MetalLB reports as announcing the ingress Service."""
        statuses = self.kubectl("get", "servicel2statuses.metallb.io", "-n", METALLB_NAMESPACE, "-o", "json")
        events = self.kubectl("get", "events", "-n", self.ingress_namespace, "--field-selector",
                              f"involvedObject.kind=Service,involvedObject.name={self.ingress_service}",
                              "-o", "json")
        return parse_announcer(statuses.stdout if statuses.ok else None, events.stdout if events.ok else None,
                               self.ingress_namespace, self.ingress_service)

    def speakers(self) -> list[K8sPod]:
        return parse_pods(self.kubectl_json("get", "pods", "-n", METALLB_NAMESPACE, "-l", SPEAKER_SELECTOR,
                                            what="MetalLB speaker pods"))

    def election_set(self) -> list[str]:
        """Nodes that take part in MetalLB's L2 election: Ready, with a ready speaker, not excluded."""
        nodes = self.k8s_nodes()
        speaking = {p.node for p in self.speakers() if p.ready}
        return sorted(n for n, info in nodes.items()
                      if info.ready and n in speaking and EXCLUDE_LB_LABEL not in info.labels)

    # -- pods -----------------------------------------------------------------------------
    def exec_in_pod(self, pod: K8sPod, container: str, argv: list[str], timeout: int = 30) -> Result:
        return self.kubectl("exec", "-n", pod.namespace, pod.name, "-c", container,
                            f"--request-timeout={timeout}s", "--", *argv)

    @staticmethod
    def curl_argv(url: str, host: str | None = None, timeout: float = 2.0, insecure: bool = False) -> list[str]:
        argv = ["curl", "-sS", "-m", str(timeout), "-D", "-", "-o", "-"]
        if insecure:
            argv.append("-k")
        if host:
            argv += ["-H", f"Host: {host}"]
        return argv + [url]

    def pod_curl(self, pod: K8sPod, url: str, host: str | None = None, timeout: float = 2.0,
                 insecure: bool = False) -> Http:
        if not pod.curl_container:
            raise ProbeError(f"pod {pod}: no container of it has curl")
        out = self.exec_in_pod(pod, pod.curl_container, self.curl_argv(url, host, timeout, insecure))
        if out.rc not in (0, 6, 7, 28, 52, 56) and "curl:" not in out.stderr:
            raise ProbeError(f"kubectl exec into pod {pod} failed (exit {out.rc}): {out.stderr.strip()[:300]}")
        return parse_http(out)

    def pod_curl_batch(self, pod: K8sPod, url: str, count: int, host: str | None = None) -> list[Http]:
        """COUNT requests from POD in one kubectl exec (one exec per request would take seconds each)."""
        argv = ["sh", "-c", BATCH_SCRIPT, "sh", str(count)] + self.curl_argv(url, host)
        out = self.exec_in_pod(pod, pod.curl_container or "", argv, timeout=30 + 3 * count)
        answers = parse_http_batch(out.stdout)
        if not answers:
            raise ProbeError(f"kubectl exec into pod {pod} gave no answers (exit {out.rc}): "
                             f"{out.stderr.strip()[:300]}")
        return answers

    def answered_by(self, pod: K8sPod, url: str, expect: set[str], host: str | None = None,
                    field_name: str = "pod") -> tuple[dict[str, int], list[str]]:
        """Ask URL from POD, 10 at a time, until every name of EXPECT answered or MAX_TRIES were sent.

        kube-proxy picks an endpoint at random: the loop stops as soon as the set is complete.
        Returns {name: count} and the errors."""
        from podpath.evidence.scenarios import MAX_TRIES

        seen: dict[str, int] = {}
        errors: list[str] = []
        sent = 0
        while sent < MAX_TRIES and not expect <= set(seen):
            batch = min(10, MAX_TRIES - sent)
            for answer in self.pod_curl_batch(pod, url, batch, host):
                if answer.status != 200:
                    errors.append(answer.error or f"HTTP {answer.status}")
                    continue
                name = answer.field(field_name) or "?"
                seen[name] = seen.get(name, 0) + 1
            sent += batch
        return seen, errors

    # -- nodes ------------------------------------------------------------------------------
    def node_http(self, node: str, ip: str, port: int, host: str = "", timeout: float = 2.0) -> Http:
        return parse_http(self.run(node, ["python3", "-c", NODE_HTTP_SCRIPT, ip, str(port), host, str(timeout)]))

    def ip_json(self, node: str, *args: str, netns: str | None = None) -> list:
        argv = ["ip"] + (["-n", netns] if netns else []) + ["-j", *args]
        out = self.run(node, argv, root=bool(netns))
        where = f"{node}{' netns ' + netns if netns else ''}"
        if not out.ok:
            raise ProbeError(f"{where}: {shlex.join(argv)} failed: {out.stderr.strip()[:300]}")
        data = parse_json(out.stdout or "[]", f"{where}: {shlex.join(argv)}")
        return data if isinstance(data, list) else []

    def netns_names(self, node: str) -> list[str]:
        out = self.run(node, ["ls", "-1", NETNS_DIR])
        return out.stdout.split() if out.ok else []

    def sandbox(self, pod: K8sPod) -> Sandbox:
        what = f"crictl pods on {pod.node} for pod {pod.name}"
        text = self.must(pod.node, ["crictl", "pods", "--name", f"^{re.escape(pod.name)}$", "--namespace",
                                    pod.namespace, "-o", "json"], root=True, what="crictl pods")
        ids = parse_crictl_pods(text, pod.name, pod.namespace, pod.uid, what)
        if len(ids) != 1:
            raise ProbeError(f"pod {pod}: crictl lists {len(ids)} ready sandboxes for it, not 1")
        return parse_crictl_inspectp(self.must(pod.node, ["crictl", "inspectp", "-o", "json", ids[0]], root=True,
                                               what=f"crictl inspectp {ids[0]}"),
                                     f"crictl inspectp of pod {pod.name} on {pod.node}")

    def lsns(self, node: str) -> dict[int, NetNamespace]:
        text = self.must(node, ["lsns", "-t", "net", "-J", "-o", "NS,TYPE,NPROCS,PID,NSFS,COMMAND"], root=True)
        return parse_lsns(text, f"lsns -t net -J on {node}")

    def ns_inode_of_pid(self, node: str, pid: int) -> int:
        text = self.must(node, ["readlink", f"/proc/{pid}/ns/net"], root=True)
        return parse_ns_link(text, f"{node}: readlink /proc/{pid}/ns/net")

    def inode_of(self, node: str, path: str) -> int:
        text = self.must(node, ["stat", "-L", "-c", "%i", path], root=True).strip()
        if not text.isdigit():
            raise ProbeError(f"{node}: stat {path} printed {text!r}")
        return int(text)

    def comm(self, node: str, pid: int) -> str:
        return self.must(node, ["cat", f"/proc/{pid}/comm"], root=True).strip()

    def iptables_save(self, node: str, counters: bool = False) -> tuple[str, str]:
        """(tool, text) of the nat table: iptables-save, else iptables-legacy-save when kube-proxy
        wrote its rules through the other backend."""
        extra = ["-c"] if counters else []
        tried = []
        for tool in ("iptables-save", "iptables-legacy-save"):
            out = self.run(node, [tool, *extra, "-t", "nat"], root=True)
            if out.ok and ":KUBE-SERVICES" in out.stdout:
                return tool, out.stdout
            tried.append(f"{tool}: {'no KUBE-SERVICES chain' if out.ok else out.stderr.strip()[:100]}")
        raise ProbeError(f"{node}: kube-proxy's nat rules are in neither iptables backend ({'; '.join(tried)})")

    def node_macs(self) -> dict[str, tuple[str, str]]:
        """Node -> (interface, MAC) of the interface that carries its topology address."""
        found = {}
        for node in self.node_names():
            for link in self.ip_json(node, "addr", "show"):
                if any(a.get("local") == self.node_ip(node) for a in link.get("addr_info", [])):
                    found[node] = (link.get("ifname", ""), (link.get("address") or "").lower())
        return found

    def host_veth(self, pod: K8sPod, netns: str) -> tuple[dict, dict | None]:
        """(eth0 in the pod's namespace, its peer on the node or None)."""
        eth0 = self.ip_json(pod.node, "-d", "link", "show", "dev", "eth0", netns=netns)
        if not eth0:
            raise ProbeError(f"pod {pod}: its namespace {netns} has no eth0")
        peer_index = eth0[0].get("link_index")
        peers = [link for link in self.ip_json(pod.node, "-d", "link", "show") if link.get("ifindex") == peer_index]
        return eth0[0], (peers[0] if peers else None)

    # -- the client (this machine) --------------------------------------------------------
    def local(self, argv: list[str]) -> Result:
        import testinfra

        out = testinfra.get_host("local://").run(shlex.join(argv))
        return Result(out.rc, out.stdout, out.stderr)

    def client_route(self, ip: str) -> dict:
        out = self.local(["ip", "-j", "route", "get", ip])
        routes = parse_json(out.stdout or "[]", f"ip route get {ip} on this machine") if out.ok else []
        if not routes:
            raise ProbeError(f"this machine (the client) has no route to {ip}: {out.stderr.strip()}")
        return routes[0]

    def client_curl(self, url: str, host: str | None = None, timeout: float = 3.0) -> Http:
        return parse_http(self.local(self.curl_argv(url, host, timeout)))

    def client_arping(self, ip: str, count: int = 3) -> list[str]:
        """MACs that answered ARP requests for IP from this machine's interface toward it."""
        iface = self.client_route(ip).get("dev", "")
        help_text = self.local(["arping", "--help"])
        argv = arping_argv(help_text.stdout + help_text.stderr, iface, ip, count)
        if os.geteuid() != 0:
            argv = ["sudo", "-n"] + argv  # arping needs a raw socket
        out = self.local(argv)
        if out.rc not in (0, 1) or "sudo:" in out.stderr:
            raise ProbeError(f"arping on this machine failed (exit {out.rc}): {out.stderr.strip()[:300]} "
                             "(arping needs root: run pytest as root or allow sudo -n arping)")
        return parse_arping(out.stdout)

    # -- the traced path (scenario 19) -------------------------------------------------------
    def trace(self, tries: int = 3) -> ClusterTrace:
        """One request from the client to a backend, with evidence for each hop.

        The DNAT hop is found from the packet counters of the KUBE-SEP rules on the node that
        answered ARP: the one whose counter grew by the request. If other traffic went through
        the Service meanwhile (more than one grew), the request is repeated, up to TRIES times.
        """
        address = self.load_balancer_ip()
        port = int(self.service(self.ingress_namespace, self.ingress_service)["ports"].get("http", {}).get("port", 80))
        host = self.topology["ingress"]["host"]
        result = ClusterTrace(url=f"http://{address}:{port}/", host=host)
        macs = self.client_arping(address, count=2)
        owners = {mac: n for n, (_, mac) in self.node_macs().items()}
        node = owners.get(macs[0]) if macs else None
        result.node = node
        result.hops.append(TraceHop("ARP", f"{node or 'no node'} answered for {address}",
                                    f"MAC {macs[0] if macs else 'none'}", ok=node is not None and len(set(macs)) == 1))
        if node is None:
            return result
        controllers = {p.ip: p for p in self.pods_of("ingress-nginx")}
        for _ in range(tries):
            before = service_path(parse_iptables_save(self.iptables_save(node, counters=True)[1]), address, port)
            answer = self.client_curl(result.url, host=host)
            after = service_path(parse_iptables_save(self.iptables_save(node, counters=True)[1]), address, port)
            grown = []
            if before and after:
                old = {s.chain: s.dnat_packets or 0 for s in before.seps}
                grown = [s for s in after.seps if (s.dnat_packets or 0) > old.get(s.chain, 0)]
            if len(grown) == 1:
                break
        dest = grown[0].destinations[0] if len(grown) == 1 and grown[0].destinations else ""
        chosen = controllers.get(dest.rsplit(":", 1)[0]) if dest else None
        result.hops.append(TraceHop(
            "DNAT", f"{grown[0].chain if len(grown) == 1 else 'no single KUBE-SEP rule'} -> {dest or '?'}",
            f"packet counters on {node}: {len(grown)} KUBE-SEP DNAT rules of the ingress Service grew",
            ok=chosen is not None))
        result.controller = answer.headers.get(CONTROLLER_HEADER)
        result.hops.append(TraceHop(
            "controller", f"{result.controller or 'none'} served (HTTP {answer.status or answer.error})",
            f"{CONTROLLER_HEADER}: {result.controller}; DNAT chose {chosen.name if chosen else '?'}",
            ok=answer.status == 200 and chosen is not None and chosen.name == result.controller))
        result.backend = answer.field("pod")
        echo = {p.name for p in self.pods_of("echo")}
        seen = answer.field("client")
        result.hops.append(TraceHop(
            "backend", f"{result.backend or 'none'} answered, saw source {seen}",
            f"echo pods {sorted(echo)}; controller IP {chosen.ip if chosen else '?'}",
            ok=result.backend in echo and chosen is not None and seen == chosen.ip))
        return result

    # -- MetalLB failover (scenario 14, disruptive) ---------------------------------------
    def stop_node_speaker(self, node: str) -> str:
        """Make NODE fail as MetalLB sees it: stop its kubelet (so nothing restarts the speaker),
        then stop its speaker container. Undone by start_node_speaker."""
        self.must(node, ["systemctl", "stop", "kubelet"], root=True)
        ids = self.must(node, ["crictl", "ps", "-q", "--name", "^speaker$", "--label",
                               f"io.kubernetes.pod.namespace={METALLB_NAMESPACE}"], root=True).split()
        if not ids:
            raise ProbeError(f"{node}: no running speaker container to stop")
        for cid in ids:
            self.must(node, ["crictl", "stop", "--timeout", "5", cid], root=True)
        return f"stopped kubelet and the MetalLB speaker ({', '.join(i[:12] for i in ids)}) on {node}"

    def start_node_speaker(self, node: str, timeout: float = 180.0) -> None:
        """Start NODE's kubelet again and wait until its speaker pod is ready."""
        self.must(node, ["systemctl", "start", "kubelet"], root=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(p.node == node and p.ready for p in self.speakers()) and self.k8s_nodes()[node].ready:
                return
            time.sleep(3)
        raise ProbeError(f"{node}: its speaker is not ready {timeout:.0f} s after kubelet started again; check "
                         f"`systemctl status kubelet` and `kubectl -n {METALLB_NAMESPACE} get pods -o wide`")
