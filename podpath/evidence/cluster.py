"""The cluster lab's adapter: kubectl on the control plane, crictl, ip, lsns and
iptables-save on each node, curl (and arping where it can) on the client, the machine
running pytest.

The verifier's checks (tests/verify/) ask the cluster through `ClusterLab`, which answers
the `Lab` interface (podpath/evidence/lab.py). Nodes are reached with testinfra's Ansible
backend, so the inventory that built the cluster (Vagrant's, or inventory/hosts.yml) is
the one that verifies it:

    pytest --hosts=ansible://all --ansible-inventory=INVENTORY tests/verify

Every command is an argv list, quoted word by word with shlex before it reaches a shell
(the node's, through Ansible, or this machine's); the scripts that run on nodes are
constants and take their values as arguments. What the tools print is read by the pure
parsers of podpath/evidence/parsers.py.

The client needs no root: where ARP requests cannot be sent from it (arping needs root,
and macOS and WSL2 have none or cannot reach the node network's layer 2), they are sent
from a node that does not take part in MetalLB's election, with sudo there.
"""
from __future__ import annotations

import ipaddress
import os
import platform
import re
import shlex
import shutil
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from podpath.evidence.lab import (CONTAINERD, CONTROLLER_HEADER, NAMESPACE_KINDS, ArpAnswer, Http, LabPod, Lease,
                                  PlanFacts, PodRef, ProbeError, Result, ServiceView, Unobservable)
from podpath.evidence.parsers import (K8sNode, K8sPod, KubeProxyRules, NetNamespace, Sandbox, arping_argv,
                                      classify_host, kube_proxy_rules, node_side_addresses, parse_announcer,
                                      parse_arp_an, parse_arping, parse_conntrack, parse_crictl_inspectp,
                                      parse_crictl_pods, parse_endpoint_slices, parse_http, parse_http_batch,
                                      parse_ip_neigh, parse_iptables_save, parse_json, parse_lease, parse_lsns,
                                      parse_nodes, parse_ns_link, parse_pods, processes_seen, parse_service,
                                      service_path, BATCH_SCRIPT, PROCESSES_SCRIPT)
from podpath.evidence.scenarios import spread
from podpath.evidence.trace import Hop as TraceHop
from podpath.evidence.trace import Trace
from podpath.model.election import order
from podpath.model.gateway import GATEWAY_HEADER
from podpath.model.plan import Plan

# -- what the lab runs (names from the cluster roles' defaults) ---------------------------

# Labels the upstream ingress-nginx manifest gives its controller pods
# (roles/cluster_ingress_nginx/defaults/main.yml, cluster_ingress_nginx_pod_labels).
CONTROLLER_SELECTOR = ("app.kubernetes.io/name=ingress-nginx,app.kubernetes.io/instance=ingress-nginx,"
                       "app.kubernetes.io/component=controller")
# NGINX Gateway Fabric's data plane (edge gateway-api, roles/cluster_gateway): NGF names the
# Deployment and the Service it provisions for a Gateway <gateway>-<class> and labels their pods
# with this key set to that name, which is also what the Service selects them by.
GATEWAY_POD_LABEL = "app.kubernetes.io/name"
# The MetalLB manifest's speaker DaemonSet (roles/cluster_metallb).
METALLB_NAMESPACE = "metallb-system"
SPEAKER_SELECTOR = "app=metallb,component=speaker"
# kubeadm puts this label on the control-plane node; MetalLB's speakers do not announce from
# a node that has it (whatever its value), so the L2 election runs among the workers only.
EXCLUDE_LB_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
ADMIN_KUBECONFIG = "/etc/kubernetes/admin.conf"
NETNS_DIR = "/var/run/netns"
# kubelet's port: it listens on every node address, so any pod can be answered by any node.
KUBELET_PORT = 10250


@dataclass(frozen=True)
class App:
    """A kind of pod of the lab: where it runs, how to select it, and how to talk to it."""

    key: str
    namespace: str
    selector: str
    replicas: int
    port: int  # the port it serves HTTP on
    curl_container: str | None  # a container whose image has curl (the nginx image), if any


def apps(plan: Plan) -> dict[str, App]:
    """The lab's pods, as roles/cluster_workloads and roles/cluster_ingress_nginx deploy them
    from the same topology as the plan.

    Images: the echo pods and the multi-container pod's `nginx` container run the nginx
    image (Debian based, with curl); `busybox` has wget, nc and ip; the ingress controller
    image is not used as a client.
    """
    echo = plan.echo_service
    multi = next(p for p in plan.pods if p.app == "multi-container")
    return {
        "echo": App("echo", echo.namespace, f"app.kubernetes.io/name={echo.name}", len(echo.pods),
                    echo.ports[0].target_port, "echo"),
        plan.edge_app: edge_app(plan),
        "multi-container": App("multi-container", multi.namespace, f"app.kubernetes.io/name={multi.name}", 1,
                               multi.port or 80, "nginx"),
    }


# -- the lab's edge: which pods stand behind the MetalLB address ---------------------------

def edge_app(plan: Plan) -> App:
    """The pods of the lab's edge (the topology's edge), under the plan's app name for them:
    ingress-nginx's controllers (roles/cluster_ingress_nginx), or with gateway-api the data
    plane NGINX Gateway Fabric provisions for the Gateway (roles/cluster_gateway), in the
    Gateway's namespace, selected by the label NGF gives them; neither image is a client."""
    service = plan.edge_service
    if plan.edge == "gateway-api" and plan.gateway is not None:
        return App(plan.edge_app, plan.gateway.namespace, f"{GATEWAY_POD_LABEL}={plan.gateway.service}",
                   len(plan.edge_pods), plan.gateway.listener_port, None)
    return App(plan.edge_app, service.namespace, CONTROLLER_SELECTOR, len(plan.edge_pods), 80, None)


def pod_slots(plan: Plan, *keys: str) -> list[PodRef]:
    """The i-th pod of each app (echo-2), known from the plan before the cluster is asked.

    At run time a slot is resolved to a real pod: the pods of the app sorted by the
    plan's node order, then by name.
    """
    table = apps(plan)
    return [PodRef(key, i, key if table[key].replicas == 1 else f"{key}-{i + 1}")
            for key in (keys or table) for i in range(table[key].replicas)]


# -- scripts that run on the nodes (python3 is there: Ansible needs it) -----------------------

# A small HTTP(S) client for the nodes, which need not have curl. It prints what
# `curl -D - -o -` prints and exits with curl's codes (7 refused, 28 timed out). With
# "https" it does not check the certificate (as curl -k).
NODE_HTTP_SCRIPT = """
import http.client, socket, ssl, sys
ip, port, host, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
scheme, path = (sys.argv[5], sys.argv[6]) if len(sys.argv) > 6 else ("http", "/")
try:
    if scheme == "https":
        conn = http.client.HTTPSConnection(ip, port, timeout=timeout, context=ssl._create_unverified_context())
    else:
        conn = http.client.HTTPConnection(ip, port, timeout=timeout)
    conn.request("GET", path, headers={"Host": host} if host else {})
    answer = conn.getresponse()
    body = answer.read().decode("utf-8", "replace")
except (socket.timeout, TimeoutError) as exc:
    sys.stderr.write("timed out: %s\\n" % exc); sys.exit(28)
except (OSError, http.client.HTTPException) as exc:
    sys.stderr.write("%s\\n" % exc); sys.exit(7)
sys.stdout.write("HTTP/1.1 %d %s\\r\\n" % (answer.status, answer.reason))
for key, value in answer.getheaders():
    sys.stdout.write("%s: %s\\r\\n" % (key, value))
sys.stdout.write("\\r\\n" + body)
"""

# ARP requests from a node, as `arping -c COUNT -I IFACE TARGET` sends them, for nodes that
# have no arping: python3 with a packet socket (root). It prints one line per reply in
# iputils arping's form ("Unicast reply from IP [MAC]"), which parse_arping reads.
ARP_PROBE_SCRIPT = """
import select, socket, struct, sys, time
iface, source, target, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind((iface, 0x0806))
mac = s.getsockname()[4]
request = (b"\\xff" * 6 + mac + b"\\x08\\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac
           + socket.inet_aton(source) + b"\\x00" * 6 + socket.inet_aton(target))
for i in range(count):
    s.send(request)
    end = time.monotonic() + (0.3 if i < count - 1 else 1.0)
    while True:
        left = end - time.monotonic()
        if left <= 0 or not select.select([s], [], [], left)[0]:
            break
        frame = s.recv(2048)
        if len(frame) >= 42 and frame[12:14] == b"\\x08\\x06" and frame[20:22] == b"\\x00\\x02" \\
                and frame[28:32] == socket.inet_aton(target):
            print("Unicast reply from %s [%s]" % (target, ":".join("%02x" % b for b in frame[22:28])))
"""


class ClusterTrace(Trace):
    """The traced path in the cluster: four hops (ARP, DNAT, the edge pod that served: an
    ingress-nginx controller or a Gateway's data-plane pod, backend)."""

    def __init__(self, url: str, host: str):
        super().__init__(url=url, host=host, expected_hops=4)


class ClusterLab(PlanFacts):
    """The cluster lab, seen through kubectl on the control plane and tools on each node."""

    kind = "cluster"
    runtime = CONTAINERD

    def __init__(self, plan: Plan, hosts, ansible_inventory: str | None):
        self.name = "cluster"
        self.plan = plan  # what the cluster was built from: names, addresses, counts
        if isinstance(hosts, str):
            hosts = hosts.split(",")
        self.hostspecs = [h for h in (hosts or []) if h]
        self.inventory = ansible_inventory
        self.apps = apps(plan)
        self._hosts: dict[str, Any] = {}
        self._selected: list[str] | None = None
        self._sudo: dict[str, list[str]] = {}
        self._kubectl: list[str] | None = None
        self._pods: dict[str, list[LabPod]] = {}
        self._arping: tuple[list[str], str, str] | None | bool = False  # False: not decided yet

    # -- the plan (what the cluster was built from; PlanFacts answers the rest) ----------
    @property
    def ingress_namespace(self) -> str:
        return self.plan.ingress_service.namespace

    @property
    def ingress_service(self) -> str:
        return self.plan.ingress_service.name

    def edge_pods(self) -> list[LabPod]:
        """The running pods behind the MetalLB address: the ingress controllers, or the
        Gateway's data-plane pods (edge_app)."""
        return self.pods_of(self.plan.edge_app)

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
        planes = self.control_planes()
        if not planes:
            raise ProbeError("no control-plane node: neither the inventory group control_plane nor the topology "
                             "names one")
        return planes[0]

    # -- where a student sees the same thing ------------------------------------------------
    def node_command(self, node: str, argv: list[str], root: bool = False) -> str:
        line = shlex.join((["sudo"] if root else []) + argv)
        return f"vagrant ssh {node} -c {shlex.quote(line)}"

    def pod_command(self, pod: LabPod, argv: list[str]) -> str:
        """The command in the pod's network namespace, from its node."""
        netns = self._netns_name(pod)
        return self.node_command(pod.node, ["ip", "netns", "exec", netns, *argv], root=True)

    def exec_command(self, pod: LabPod, container: str, argv: list[str]) -> str:
        return shlex.join(["kubectl", "exec", "-n", pod.namespace, pod.name, "-c", container, "--", *argv])

    def client_command(self, argv: list[str]) -> str:
        return shlex.join(argv)

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

    # -- what the lab is made of ----------------------------------------------------------
    def pods_of(self, app: str, refresh: bool = False) -> list[LabPod]:
        """The running pods of APP, sorted by the plan's node order, then by name."""
        if refresh or app not in self._pods:
            spec = self.apps[app]
            text = self.kubectl_json("get", "pods", "-n", spec.namespace, "-l", spec.selector,
                                     what=f"kubectl get pods -n {spec.namespace} -l {spec.selector}")
            order_of = {n: i for i, n in enumerate(self.node_names())}
            pods = [self._view(p, app) for p in parse_pods(text) if p.phase == "Running"]
            self._pods[app] = sorted(pods, key=lambda p: (order_of.get(p.node, len(order_of)), p.name))
        return self._pods[app]

    def _view(self, pod: K8sPod, app: str) -> LabPod:
        return LabPod(name=pod.name, namespace=pod.namespace, node=pod.node, ip=pod.ip, app=app,
                      port=self.apps[app].port, containers=list(pod.containers),
                      share_process_namespace=pod.share_process_namespace, handle=pod)

    def pod(self, ref: PodRef, refresh: bool = False) -> LabPod:
        pods = self.pods_of(ref.app, refresh=refresh)
        if ref.index >= len(pods):
            spec = self.apps[ref.app]
            raise ProbeError(f"{ref.id}: only {len(pods)} running {ref.app} pods in namespace {spec.namespace} "
                             f"({', '.join(str(p) for p in pods) or 'none'}); the topology asks for {spec.replicas}")
        pod = pods[ref.index]
        if not pod.ip:
            raise ProbeError(f"pod {pod}: has no IP yet (status.podIP is empty)")
        return pod

    def all_pods(self) -> list[LabPod]:
        return [p for app in self.apps for p in self.pods_of(app)]

    def clients(self) -> list[LabPod]:
        """Pods that can send HTTP requests (a container with curl)."""
        return [p for p in self.all_pods() if self.apps[p.app].curl_container]

    def endpoints(self, namespace: str, service: str):
        return parse_endpoint_slices(self.kubectl_json(
            "get", "endpointslices", "-n", namespace, "-l", f"kubernetes.io/service-name={service}",
            what=f"EndpointSlices of Service {namespace}/{service}"))

    def service_json(self, namespace: str, name: str) -> dict:
        return parse_service(self.kubectl_json("get", "service", "-n", namespace, name,
                                               what=f"Service {namespace}/{name}"))

    def service(self, role: str) -> ServiceView:
        """The Service of ROLE as Kubernetes has it, its port "http" and its ready endpoints."""
        planned = self.planned_service(role)
        namespace, name = planned.namespace, planned.name
        svc = self.service_json(namespace, name)
        port = svc["ports"].get("http") or next(iter(svc["ports"].values()), {})
        endpoints = {}
        target = port.get("targetPort")
        for e in self.endpoints(namespace, name) if role != "empty" else []:
            if e.ready and e.pod and "http" in e.ports:
                endpoints[e.pod] = f"{e.ip}:{e.ports['http']}"
                target = e.ports["http"]
        return ServiceView(name=f"{namespace}/{name}", namespace=namespace, cluster_ip=svc["cluster_ip"] or "",
                           port=int(port.get("port", 0)), target_port=target if isinstance(target, int) else 0,
                           node_port=port.get("nodePort"), load_balancer_ip=(svc["lb_ips"] or [None])[0],
                           policy=svc["policy"], endpoints=endpoints)

    def load_balancer_ip(self) -> str:
        svc = self.service_json(self.ingress_namespace, self.ingress_service)
        if not svc["lb_ips"]:
            raise ProbeError(f"Service {self.ingress_namespace}/{self.ingress_service} has no load balancer "
                             "address in its status: MetalLB has not assigned one")
        return svc["lb_ips"][0]

    # -- scenarios 1-4: a pod on its node ---------------------------------------------------
    def sandbox(self, pod: LabPod) -> Sandbox:
        what = f"crictl pods on {pod.node} for pod {pod.name}"
        text = self.must(pod.node, ["crictl", "pods", "--name", f"^{re.escape(pod.name)}$", "--namespace",
                                    pod.namespace, "-o", "json"], root=True, what="crictl pods")
        ids = parse_crictl_pods(text, pod.name, pod.namespace, pod.handle.uid, what)
        if len(ids) != 1:
            raise ProbeError(f"pod {pod}: crictl lists {len(ids)} ready sandboxes for it, not 1")
        return parse_crictl_inspectp(self.must(pod.node, ["crictl", "inspectp", "-o", "json", ids[0]], root=True,
                                               what=f"crictl inspectp {ids[0]}"),
                                     f"crictl inspectp of pod {pod.name} on {pod.node}")

    def netns_path(self, pod: LabPod) -> str:
        return self.sandbox(pod).netns_path

    def _netns_name(self, pod: LabPod) -> str:
        return self.netns_path(pod).rpartition("/")[2]

    def netns_files(self, node: str) -> list[str]:
        out = self.run(node, ["ls", "-1", NETNS_DIR])
        return out.stdout.split() if out.ok else []

    def ip_json(self, node: str, *args: str, netns: str | None = None) -> list:
        argv = ["ip"] + (["-n", netns] if netns else []) + ["-j", *args]
        out = self.run(node, argv, root=bool(netns))
        where = f"{node}{' netns ' + netns if netns else ''}"
        if not out.ok:
            raise ProbeError(f"{where}: {shlex.join(argv)} failed: {out.stderr.strip()[:300]}")
        data = parse_json(out.stdout or "[]", f"{where}: {shlex.join(argv)}")
        return data if isinstance(data, list) else []

    def pod_addresses(self, pod: LabPod, dev: str = "eth0") -> list[str]:
        return [f"{a.get('local')}/{a.get('prefixlen')}"
                for link in self.ip_json(pod.node, "addr", "show", "dev", dev, netns=self._netns_name(pod))
                for a in link.get("addr_info", []) if a.get("family") == "inet"]

    def lsns(self, node: str) -> dict[int, NetNamespace]:
        text = self.must(node, ["lsns", "-t", "net", "-J", "-o", "NS,TYPE,NPROCS,PID,NSFS,COMMAND"], root=True)
        return parse_lsns(text, f"lsns -t net -J on {node}")

    def inode_of(self, node: str, path: str) -> int:
        text = self.must(node, ["stat", "-L", "-c", "%i", path], root=True).strip()
        if not text.isdigit():
            raise ProbeError(f"{node}: stat {path} printed {text!r}")
        return int(text)

    def netns_bind_mounts(self, pod: LabPod) -> list[str]:
        path = self.netns_path(pod)
        space = self.lsns(pod.node).get(self.inode_of(pod.node, path))
        return space.nsfs if space else []

    def sandbox_pid(self, pod: LabPod) -> int | None:
        return self.sandbox(pod).pid

    def process_name(self, node: str, pid: int) -> str:
        return self.must(node, ["cat", f"/proc/{pid}/comm"], root=True).strip()

    def namespace_of_pid(self, node: str, pid: int, kind: str = "net") -> str:
        text = self.must(node, ["readlink", f"/proc/{pid}/ns/{kind}"], root=True)
        return f"{kind}:[{parse_ns_link(text, f'{node}: readlink /proc/{pid}/ns/{kind}', kind)}]"

    def namespace_of_netns_file(self, pod: LabPod) -> str:
        return f"net:[{self.inode_of(pod.node, self.netns_path(pod))}]"

    def processes_in_netns(self, pod: LabPod) -> int:
        space = self.lsns(pod.node).get(self.inode_of(pod.node, self.netns_path(pod)))
        return space.nprocs if space else 0

    def exec_in_pod(self, pod: LabPod, container: str, argv: list[str], timeout: int = 30) -> Result:
        return self.kubectl("exec", "-n", pod.namespace, pod.name, "-c", container,
                            f"--request-timeout={timeout}s", "--", *argv)

    def container_namespaces(self, pod: LabPod, container: str) -> dict[str, str]:
        """`readlink /proc/self/ns/KIND` inside the container, for every kind, in one exec."""
        script = 'for k in "$@"; do readlink "/proc/self/ns/$k"; done'
        out = self.exec_in_pod(pod, container, ["sh", "-c", script, "sh", *NAMESPACE_KINDS])
        lines = out.stdout.split()
        if not out.ok or len(lines) != len(NAMESPACE_KINDS):
            raise ProbeError(f"pod {pod}: {self.exec_command(pod, container, ['readlink', '/proc/self/ns/net'])} "
                             f"and the other kinds failed (exit {out.rc}): {out.stderr.strip()[:200]}")
        return {kind: f"{kind}:[{parse_ns_link(line, f'pod {pod}, container {container}', kind)}]"
                for kind, line in zip(NAMESPACE_KINDS, lines)}

    def container_hostname(self, pod: LabPod, container: str) -> str:
        """The host name the container sees (its UTS namespace's), read as a file: every image has cat."""
        out = self.exec_in_pod(pod, container, ["cat", "/proc/sys/kernel/hostname"])
        if not out.ok:
            raise ProbeError(f"pod {pod}: {self.exec_command(pod, container, ['cat', '/proc/sys/kernel/hostname'])} "
                             f"failed (exit {out.rc}): {out.stderr.strip()[:200]}")
        return out.stdout.strip()

    def container_processes(self, pod: LabPod, container: str) -> dict[int, str]:
        """PID -> comm of every process the container sees, listed from /proc by its sh (busybox's
        and the nginx image's)."""
        out = self.exec_in_pod(pod, container, ["sh", "-c", PROCESSES_SCRIPT])
        shown = self.exec_command(pod, container, ["ps", "-e"])
        return processes_seen(out, f"pod {pod}, container {container}: {shown}")

    def container_ipv4(self, pod: LabPod, container: str) -> list[str] | None:
        """The addresses on eth0 as the container sees them, or None if its image has no `ip`
        (the nginx image has none; busybox has)."""
        out = self.exec_in_pod(pod, container, ["ip", "-4", "addr", "show", "dev", "eth0"])
        if not out.ok and re.search(r"not found|no such file", out.stderr + out.stdout, re.IGNORECASE):
            return None
        return re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", out.stdout)

    def container_get(self, pod: LabPod, container: str, url: str) -> Http:
        """GET URL from inside CONTAINER: curl where its image has it, else busybox's wget."""
        if container == self.apps[pod.app].curl_container:
            return parse_http(self.exec_in_pod(pod, container, self.curl_argv(url)))
        out = self.exec_in_pod(pod, container, ["wget", "-q", "-T", "3", "-O", "-", url])
        if out.ok:
            return Http(rc=0, status=200, body=out.stdout)
        return Http(rc=out.rc, status=None, error=(out.stderr or out.stdout).strip()[:200] or f"wget exit {out.rc}")

    def page_mark(self, pod: LabPod, container: str) -> str:
        # the multi-container pod's nginx serves the image's default page
        return "nginx"

    def pod_links(self, pod: LabPod) -> tuple[dict, dict | None]:
        """(eth0 in the pod's namespace, the node link whose ifindex is eth0's peer, or None)."""
        eth0 = self.ip_json(pod.node, "-d", "link", "show", "dev", "eth0", netns=self._netns_name(pod))
        if not eth0:
            raise ProbeError(f"pod {pod}: its network namespace has no eth0")
        peer_index = eth0[0].get("link_index")
        peers = [link for link in self.ip_json(pod.node, "-d", "link", "show") if link.get("ifindex") == peer_index]
        return eth0[0], (peers[0] if peers else None)

    # -- scenarios 5-11 and 18: traffic -----------------------------------------------------
    @staticmethod
    def curl_argv(url: str, host: str | None = None, timeout: float = 2.0, insecure: bool = False) -> list[str]:
        argv = ["curl", "-sS", "-m", str(timeout), "-D", "-", "-o", "-"]
        if insecure:
            argv.append("-k")
        if host:
            argv += ["-H", f"Host: {host}"]
        return argv + [url]

    def pod_get(self, pod: LabPod, url: str, host: str | None = None, timeout: float = 2.0) -> Http:
        container = self.apps[pod.app].curl_container
        if not container:
            raise ProbeError(f"pod {pod}: no container of it has curl")
        out = self.exec_in_pod(pod, container, self.curl_argv(url, host, timeout))
        if out.rc not in (0, 6, 7, 28, 52, 56) and "curl:" not in out.stderr:
            raise ProbeError(f"kubectl exec into pod {pod} failed (exit {out.rc}): {out.stderr.strip()[:300]}")
        return parse_http(out)

    def pod_curl_batch(self, pod: LabPod, url: str, count: int, host: str | None = None) -> list[Http]:
        """COUNT requests from POD in one kubectl exec (one exec per request would take seconds each)."""
        argv = ["sh", "-c", BATCH_SCRIPT, "sh", str(count)] + self.curl_argv(url, host)
        out = self.exec_in_pod(pod, self.apps[pod.app].curl_container or "", argv, timeout=30 + 3 * count)
        answers = parse_http_batch(out.stdout)
        if not answers:
            raise ProbeError(f"kubectl exec into pod {pod} gave no answers (exit {out.rc}): "
                             f"{out.stderr.strip()[:300]}")
        return answers

    def answered_by(self, pod: LabPod, url: str, expect: set[str], host: str | None = None,
                    field_name: str = "pod") -> tuple[dict[str, int], list[str]]:
        """Ask URL from POD, 10 requests an exec, until every name of EXPECT answered
        (scenarios.spread): kube-proxy picks an endpoint at random."""
        return spread(lambda: self.pod_curl_batch(pod, url, 10, host), lambda a: a.field(field_name), expect)

    def node_get(self, node: str, ip: str, port: int, host: str | None = None) -> Http:
        return parse_http(self.run(node, ["python3", "-c", NODE_HTTP_SCRIPT, ip, str(port), host or "", "2.0"]))

    def pod_reaches_node(self, pod: LabPod, node: str) -> tuple[bool, str]:
        """An HTTPS request from the pod's network namespace to NODE's kubelet: any answer (401
        without a token) proves the path. Sent from the pod's node, with nsenter into the
        namespace, so that every pod is covered whatever its image holds."""
        ip = self.node_ip(node)
        path = self.netns_path(pod)
        argv = ["nsenter", f"--net={path}", "--", "python3", "-c", NODE_HTTP_SCRIPT, ip, str(KUBELET_PORT), "",
                "3.0", "https", "/healthz"]
        answer = parse_http(self.run(pod.node, argv, root=True))
        shown = self.pod_command(pod, ["curl", "-k", f"https://{ip}:{KUBELET_PORT}/healthz"])
        return answer.status is not None, f"{shown}: {answer.status or answer.error}"

    def forget_traffic(self, pod: LabPod) -> None:
        """Nothing to forget: each node of a cluster has its own neighbour table."""

    def route_get(self, node: str, ip: str) -> dict:
        routes = self.ip_json(node, "route", "get", ip)
        return routes[0] if routes else {}

    def pod_subnet_next_hops(self, node: str) -> set[str]:
        """flannel VXLAN: the node's flannel.1 (its subnet's network address); host-gw: the node."""
        target = self.k8s_nodes()[node]
        return {str(ipaddress.ip_network(target.pod_cidr).network_address), target.internal_ip}

    def vxlan_destination(self, node: str, gateway: str) -> tuple[str | None, str | None]:
        neigh = {n.get("dst"): (n.get("lladdr") or "").lower()
                 for n in self.ip_json(node, "neigh", "show", "dev", "flannel.1")}
        mac = neigh.get(gateway)
        out = self.run(node, ["bridge", "-j", "fdb", "show", "dev", "flannel.1"])
        fdb = parse_json(out.stdout or "[]", f"{node}: bridge -j fdb show dev flannel.1") if out.ok else []
        return mac, {(f.get("mac") or "").lower(): f.get("dst") for f in fdb}.get(mac or "")

    def node_side_addresses(self) -> set[str]:
        return node_side_addresses(self.k8s_nodes())

    # -- scenario 12 ------------------------------------------------------------------------
    def nat_rules(self, node: str, counters: bool = False) -> tuple[str, str]:
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

    def kube_proxy_rules(self, node: str) -> tuple[str, KubeProxyRules]:
        """(the command, what it showed) of kube-proxy's rules on NODE, in the topology's mode:
        the whole iptables-save (iptables-legacy-save when kube-proxy wrote its rules through
        that backend), or nft's JSON of the table ip kube-proxy."""
        mode = self.kube_proxy_mode()
        if mode == "nftables":
            argv = ["nft", "-j", "list", "table", "ip", "kube-proxy"]
            out = self.run(node, argv, root=True)
            shown = self.node_command(node, argv, root=True)
            if not out.ok:
                raise ProbeError(f"{shown} failed: {out.stderr.strip()[:200]}")
            return shown, kube_proxy_rules(mode, out.stdout, f"{node}: {shown}")
        tried = []
        for tool in ("iptables-save", "iptables-legacy-save"):
            out = self.run(node, [tool], root=True)
            if out.ok and ":KUBE-SERVICES" in out.stdout:
                return self.node_command(node, [tool], root=True), kube_proxy_rules(mode, out.stdout)
            tried.append(f"{tool}: {'no KUBE-SERVICES chain' if out.ok else out.stderr.strip()[:100]}")
        raise ProbeError(f"{node}: kube-proxy's rules are in neither iptables backend ({'; '.join(tried)})")

    # -- scenarios 13-17 and 19 -------------------------------------------------------------
    def node_addresses(self, node: str) -> list[tuple[str, str]]:
        return [(link.get("ifname", ""), a.get("local", "")) for link in self.ip_json(node, "addr", "show")
                for a in link.get("addr_info", [])]

    def node_links(self) -> dict[str, tuple[str, str]]:
        """Node -> (interface, MAC) of the interface that carries its topology address."""
        found = {}
        for node in self.node_names():
            for link in self.ip_json(node, "addr", "show"):
                if any(a.get("local") == self.node_ip(node) for a in link.get("addr_info", [])):
                    found[node] = (link.get("ifname", ""), (link.get("address") or "").lower())
        return found

    def node_macs(self) -> dict[str, str]:
        return {node: mac for node, (_, mac) in self.node_links().items()}

    def host_platform(self) -> str:
        return classify_host(platform.system(), platform.release())

    def local(self, argv: list[str]) -> Result:
        import testinfra

        out = testinfra.get_host("local://").run(shlex.join(argv))
        return Result(out.rc, out.stdout, out.stderr)

    def client_get(self, url: str, host: str | None = None) -> Http:
        return parse_http(self.local(self.curl_argv(url, host, timeout=3.0)))

    def client_route(self, ip: str) -> dict:
        """`ip -j route get IP` on this machine (Linux only)."""
        out = self.local(["ip", "-j", "route", "get", ip])
        routes = parse_json(out.stdout or "[]", f"ip route get {ip} on this machine") if out.ok else []
        if not routes:
            raise ProbeError(f"this machine (the client) has no route to {ip}: {out.stderr.strip()}")
        return routes[0]

    def client_address(self, toward: str) -> str:
        """The source address the cluster sees from this machine. On Linux, the route's; on
        macOS, and from WSL2 (behind Windows' NAT), the host-only address the topology gives
        the client (VirtualBox and libvirt give the host the network's first address)."""
        if self.host_platform() == "linux":
            return self.client_route(toward).get("prefsrc") or self.plan.client_ip
        return self.plan.client_ip

    def _client_arping(self, address: str) -> tuple[list[str], str, str] | None:
        """(sudo prefix, arping's --help, interface) for ARP requests from this machine, or None
        where it cannot send them: not Linux (macOS has no arping; WSL2 is behind Windows'
        NAT), no arping, no root and no password-less sudo. Decided once a run."""
        if self._arping is False:
            self._arping = None
            if self.host_platform() == "linux" and shutil.which("arping"):
                prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
                if not prefix or self.local(["sudo", "-n", "true"]).ok:
                    help_text = self.local(["arping", "--help"])
                    iface = self.client_route(address).get("dev", "")
                    self._arping = (prefix, help_text.stdout + help_text.stderr, iface)
        return self._arping

    def arp_sender(self) -> str:
        """The node that sends ARP requests when this machine cannot: one that takes no part
        in the election (the control plane), else the one ranked last for the address."""
        candidates = self.election_candidates()
        others = [n for n in self.node_names() if n not in candidates]
        if others:
            return others[0]
        return order(candidates, self.load_balancer_ip())[-1]

    def arp_answers(self, address: str, count: int = 3) -> ArpAnswer:
        """The MACs that answer ARP requests for ADDRESS: from this machine where it can send
        them, else from `arp_sender()` with python3 on that node (root through sudo)."""
        client = self._client_arping(address)
        if client:
            prefix, help_text, iface = client
            argv = prefix + arping_argv(help_text, iface, address, count)
            out = self.local(argv)
            if out.rc not in (0, 1) or "sudo:" in out.stderr:
                raise ProbeError(f"{shlex.join(argv)} on this machine failed (exit {out.rc}): "
                                 f"{out.stderr.strip()[:300]}")
            return ArpAnswer(parse_arping(out.stdout), self.client_command(argv))
        node = self.arp_sender()
        iface, _ = self.node_links()[node]
        argv = ["python3", "-c", ARP_PROBE_SCRIPT, iface, self.node_ip(node), address, str(count)]
        out = self.run(node, argv, root=True)
        shown = self.node_command(node, ["arping", "-c", str(count), "-I", iface, address], root=True)
        if not out.ok:
            raise ProbeError(f"ARP requests from {node} failed (exit {out.rc}): {out.stderr.strip()[:300]}; "
                             f"what they do: {shown}")
        return ArpAnswer(parse_arping(out.stdout), f"{shown} (this machine cannot send ARP requests without root)")

    def arp_probe(self, address: str, count: int = 3) -> Future:
        """The ARP probe, run at once: its commands go through Ansible, which the checks
        running meanwhile use too."""
        future: Future = Future()
        try:
            future.set_result(self.arp_answers(address, count))
        except Exception as exc:  # handed to the check that waits for the answer
            future.set_exception(exc)
        return future

    def client_neighbour(self, address: str) -> str | None:
        """The MAC this machine's neighbour table holds for ADDRESS (read without root)."""
        system = self.host_platform()
        if system == "linux":
            out = self.local(["ip", "-j", "neigh", "show", "to", address])
            return parse_ip_neigh(out.stdout, f"ip -j neigh show to {address}").get(address) if out.ok else None
        if system == "macos":
            return parse_arp_an(self.local(["arp", "-n", address]).stdout).get(address)
        if system == "wsl":
            raise Unobservable("WSL2 reaches the node network through Windows' NAT, so its neighbour table holds "
                               "the Windows host's MAC, not a node's",
                               f"in a Windows terminal: curl.exe -s -o NUL http://{address}/ ; arp -a {address}")
        raise Unobservable(f"no reader of the neighbour table on {platform.system()}",
                           f"after a request to http://{address}/, the OS's arp table (arp -a {address})")

    def speakers(self) -> list[K8sPod]:
        return parse_pods(self.kubectl_json("get", "pods", "-n", METALLB_NAMESPACE, "-l", SPEAKER_SELECTOR,
                                            what="MetalLB speaker pods"))

    def control_planes(self) -> list[str]:
        return [n.name for n in self.plan.nodes if n.role == "control-plane"]

    def excluded_from_load_balancers(self) -> list[str]:
        return sorted(n for n, info in self.k8s_nodes().items() if EXCLUDE_LB_LABEL in info.labels)

    def election_candidates(self) -> list[str]:
        """Nodes that take part in MetalLB's L2 election, as MetalLB chooses them: Ready, with a
        ready speaker (standing for the member list), no NetworkUnavailable condition, no
        exclude label; with externalTrafficPolicy Local, only nodes with a ready controller."""
        nodes = self.k8s_nodes()
        speaking = {p.node for p in self.speakers() if p.ready}
        found = {n for n, info in nodes.items() if info.ready and n in speaking and not info.network_unavailable
                 and EXCLUDE_LB_LABEL not in info.labels}
        svc = self.service_json(self.ingress_namespace, self.ingress_service)
        if svc["policy"] == "Local":
            found &= {e.node for e in self.endpoints(self.ingress_namespace, self.ingress_service) if e.ready}
        return sorted(found)

    def announcer(self) -> str | None:
        """The node MetalLB reports as announcing the ingress Service."""
        statuses = self.kubectl("get", "servicel2statuses.metallb.io", "-n", METALLB_NAMESPACE, "-o", "json")
        events = self.kubectl("get", "events", "-n", self.ingress_namespace, "--field-selector",
                              f"involvedObject.kind=Service,involvedObject.name={self.ingress_service}",
                              "-o", "json")
        return parse_announcer(statuses.stdout if statuses.ok else None, events.stdout if events.ok else None,
                               self.ingress_namespace, self.ingress_service)

    def reported_announcers(self) -> list[str] | None:
        """MetalLB's own word: its ServiceL2Status, else its nodeAssigned event; None when it
        says nothing (events expire after an hour)."""
        node = self.announcer()
        return [node] if node else None

    def speakers_not_running(self) -> list[str]:
        """Nodes that could announce (Ready, not excluded) but have no ready speaker."""
        nodes = self.k8s_nodes()
        speaking = {p.node for p in self.speakers() if p.ready}
        return sorted(n for n, info in nodes.items() if info.ready and EXCLUDE_LB_LABEL not in info.labels
                      and n not in speaking)

    def leader_lease(self) -> Lease | None:
        election = self.plan.election_id
        out = self.kubectl("get", "lease", "-n", self.ingress_namespace, election, "-o", "json")
        if not out.ok:
            if "NotFound" in out.stderr:
                return None
            raise ProbeError(f"kubectl get lease {election} failed: {out.stderr.strip()[:300]}")
        return parse_lease(out.stdout, f"Lease {self.ingress_namespace}/{election}")

    def clock(self) -> float:
        """The control plane's clock, which renewed the lease."""
        text = self.must(self.control_plane(), ["date", "+%s.%N"]).strip()
        try:
            return float(text)
        except ValueError:
            raise ProbeError(f"{self.control_plane()}: date printed {text!r}") from None

    # -- the traced path (scenario 19) -------------------------------------------------------
    def _connections(self, node: str, address: str, port: int) -> dict[tuple[str, str], str]:
        """(client, client port) -> the reply's source, of NODE's conntrack entries to ADDRESS:PORT."""
        out = self.run(node, ["conntrack", "-L", "-p", "tcp", "--orig-dst", address, "--dport", str(port)], root=True)
        return {(e.get("orig_src", ""), e.get("orig_sport", "")): e.get("reply_src", "")
                for e in parse_conntrack(out.stdout if out.ok else "")}

    def _trace_arp(self) -> tuple[ClusterTrace, str, int, str, str | None]:
        """The start of a trace: (the trace with its ARP hop, the MetalLB address, the edge
        Service's port, the Host header, the node whose MAC answered ARP, or None)."""
        address = self.load_balancer_ip()
        port = self.service("ingress").port or 80
        host = self._trace_host()
        result = ClusterTrace(url=self._trace_url(address, port), host=host)
        arp = self.arp_answers(address, count=2)
        owners = {mac: n for n, mac in self.node_macs().items()}
        node = owners.get(arp.macs[0]) if arp.macs else None
        result.node = node
        result.hops.append(TraceHop("ARP", f"{node or 'no node'} answered for {address}",
                                    f"MAC {arp.macs[0] if arp.macs else 'none'} ({arp.asked_from})",
                                    ok=node is not None and len(set(arp.macs)) == 1))
        return result, address, port, host, node

    def _trace_nftables(self, tries: int) -> ClusterTrace:
        """trace() in nftables mode: the DNAT hop from conntrack and the node's table ip kube-proxy."""
        result, address, port, host, node = self._trace_arp()
        if node is None:
            return result
        controllers = {p.ip: p for p in self.edge_pods()}
        new: list[str] = []
        answer = Http(rc=1, status=None, error="no request sent")
        for _ in range(tries):
            before = self._connections(node, address, port)
            answer = self.client_get(result.url, host=host)
            new = [reply for key, reply in self._connections(node, address, port).items() if key not in before]
            if len(new) == 1:
                break
        chosen = controllers.get(new[0]) if len(new) == 1 else None
        shown, rules = self.kube_proxy_rules(node)
        path = rules.service_path(address, port)
        target_port = self.service("ingress").target_port
        dest = f"{new[0]}:{target_port}" if len(new) == 1 else ""
        chain = next((s.chain for s in path.seps if dest in s.destinations), None) if path and dest else None
        result.hops.append(TraceHop(
            "DNAT", f"{' -> '.join([path.entry_chain, path.svc_chain]) if path else 'no path'} -> "
                    f"{chain or 'no endpoint chain'} -> {dest or '?'}",
            f"conntrack on {node}: {len(new)} new connections to {address}:{port}; the chain as {shown} names it",
            ok=chosen is not None and chain is not None))
        return self._served_hops(result, answer, chosen)

    def _gateway(self):
        """The Gateway and HTTPRoute of the lab's edge, or None when the edge is ingress-nginx."""
        return self.plan.gateway if self.plan.edge == "gateway-api" else None

    def _trace_host(self) -> str:
        """The Host of the traced request: the Gateway listener's hostname, or the Ingress rule's."""
        gw = self._gateway()
        return gw.hostname if gw is not None else self.ingress_host()

    def _trace_url(self, address: str, port: int) -> str:
        """The traced request's URL: with the gateway edge the HTTPRoute's path prefix (/ may
        be no rule's, and get the listener's 404), else /."""
        gw = self._gateway()
        return f"http://{address}:{port}{gw.path_prefix if gw is not None else '/'}"

    def _served_hops(self, result: ClusterTrace, answer, chosen) -> ClusterTrace:
        """The trace's last two hops, the same in both kube-proxy modes: the edge pod that
        served (it must be the one the DNAT CHOSE) and the backend that answered it. With the
        gateway edge the served hop names the Gateway, its listener and the HTTPRoute, the
        data-plane pod comes from X-Gateway-Pod, and the backend must have seen the header the
        route adds; with ingress-nginx the controller comes from X-Ingress-Controller."""
        gw = self._gateway()
        header = GATEWAY_HEADER if gw is not None else CONTROLLER_HEADER
        shown = "X-Gateway-Pod" if gw is not None else "X-Ingress-Controller"
        served = answer.headers.get(header)
        result.controller = served
        on = chosen.node if chosen is not None else "?"
        status = f"HTTP {answer.status or answer.error}"
        if gw is not None:
            what = (f"Gateway {gw.namespace}/{gw.name} listener {gw.listener_name} ({gw.hostname}:{gw.listener_port})"
                    f" -> HTTPRoute {gw.namespace}/{gw.route} (PathPrefix {gw.path_prefix}): data-plane pod "
                    f"{served or 'none'} on {on} served ({status})")
            step, role = "gateway", "data-plane pod"
        else:
            what = f"{served or 'none'} served ({status})"
            step, role = "controller", "controller"
        result.hops.append(TraceHop(
            step, what, f"{shown}: {served}; DNAT chose {chosen.name if chosen else '?'}",
            ok=answer.status == 200 and chosen is not None and chosen.name == served))
        result.backend = answer.field("pod")
        echo = {p.name for p in self.pods_of("echo")}
        seen = answer.field("client")
        ok = result.backend in echo and chosen is not None and seen == chosen.ip
        evidence = f"echo pods {sorted(echo)}; {role} IP {chosen.ip if chosen else '?'}"
        if gw is not None and gw.add_header:  # the HTTPRoute's RequestHeaderModifier, as the backend got it
            name, value = gw.add_header
            got = answer.field(name.lower())
            ok = ok and got == value
            evidence += f"; HTTPRoute {gw.route} added {name}: {value}, the backend saw {got or 'nothing'}"
        result.hops.append(TraceHop(
            "backend", f"{result.backend or 'none'} answered, saw source {seen}", evidence, ok=ok))
        return result

    def trace(self, tries: int = 3) -> ClusterTrace:
        """One request from the client to a backend, with evidence for each hop.

        The DNAT hop is found on the node that answered ARP. In iptables mode, from the packet
        counters of the KUBE-SEP rules: the one whose counter grew by the request. In nftables
        mode kube-proxy's rules count nothing: from the node's conntrack table, the connection
        to the address that is new after the request, whose reply comes from the endpoint, and
        the endpoint-* chain of the node's rules that DNATs there. If other traffic went through
        the Service meanwhile (more than one grew, or is new), the request is repeated, up to
        TRIES times.
        """
        if self.kube_proxy_mode() == "nftables":
            return self._trace_nftables(tries)
        result, address, port, host, node = self._trace_arp()
        if node is None:
            return result
        controllers = {p.ip: p for p in self.edge_pods()}
        grown: list = []
        answer = Http(rc=1, status=None, error="no request sent")
        for _ in range(tries):
            before = service_path(parse_iptables_save(self.nat_rules(node, counters=True)[1]), address, port)
            answer = self.client_get(result.url, host=host)
            after = service_path(parse_iptables_save(self.nat_rules(node, counters=True)[1]), address, port)
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
        return self._served_hops(result, answer, chosen)

    # -- the disruptive checks ---------------------------------------------------------------
    def stop_container(self, pod: LabPod, container: str, timeout: float = 120.0) -> str:
        """`crictl stop` the container; kubelet restarts it (restartPolicy Always) in the same
        sandbox. Returns once the pod is ready again with the container restarted."""
        before = pod.handle.restarts.get(container, 0)
        cid = pod.handle.container_ids.get(container)
        if not cid:
            raise ProbeError(f"pod {pod}: container {container} has no container id")
        self.must(pod.node, ["crictl", "stop", "--timeout", "2", cid], root=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            again = next((p for p in self.pods_of(pod.app, refresh=True) if p.name == pod.name), None)
            if again and again.handle.ready and again.handle.restarts.get(container, 0) > before:
                return f"{self.node_command(pod.node, ['crictl', 'stop', cid], root=True)}; kubelet restarted it"
            time.sleep(3)
        raise ProbeError(f"pod {pod}: container {container} was not restarted within {timeout:.0f} s after "
                         "crictl stop")

    def fail_announcer(self, node: str) -> str:
        """Make NODE fail as MetalLB sees it: stop its kubelet (so nothing restarts the speaker),
        then stop its speaker container, which leaves MetalLB's member list at once."""
        self.must(node, ["systemctl", "stop", "kubelet"], root=True)
        ids = self.must(node, ["crictl", "ps", "-q", "--name", "^speaker$", "--label",
                               f"io.kubernetes.pod.namespace={METALLB_NAMESPACE}"], root=True).split()
        if not ids:
            raise ProbeError(f"{node}: no running speaker container to stop")
        for cid in ids:
            self.must(node, ["crictl", "stop", "--timeout", "5", cid], root=True)
        return f"stopped kubelet and the MetalLB speaker ({', '.join(i[:12] for i in ids)}) on {node}"

    def repair(self, node: str | None = None, timeout: float = 180.0) -> None:
        """Start NODE's kubelet again and wait until its speaker pod is ready. (A stopped
        container needs nothing: kubelet restarted it already.)"""
        if node is None:
            return
        self.must(node, ["systemctl", "start", "kubelet"], root=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(p.node == node and p.ready for p in self.speakers()) and self.k8s_nodes()[node].ready:
                return
            time.sleep(3)
        raise ProbeError(f"{node}: its speaker is not ready {timeout:.0f} s after kubelet started again; check "
                         f"`systemctl status kubelet` and `kubectl -n {METALLB_NAMESPACE} get pods -o wide`")
