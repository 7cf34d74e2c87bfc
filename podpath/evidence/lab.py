"""What the verifier asks a lab, whichever way the lab is built.

The checks in tests/verify/ are written once, against the `Lab` interface below; an
adapter answers each question for one kind of lab (the way netlab's validate tests are
written once and answered per device):

- `podpath.evidence.probe.NetnsLab`: the netns lab on this host, through nsenter into its
  namespaces and the files of its processes;
- `podpath.evidence.cluster.ClusterLab`: the cluster lab, through kubectl on the control
  plane, crictl/ip/lsns/iptables-save on each node (testinfra's Ansible backend) and
  curl/arping on the machine running pytest.

The answers are plain data (addresses, names, parsed tool output). Each adapter also says
which command a student would type to see the same thing (`node_command`, `pod_command`,
`exec_command`, `client_command`), so that a failure message points at the real tool
output.

The namespace model of the pod runtime (which namespaces a pod's containers share with
its sandbox) is stated here, once per lab build: `CONTAINERD` for the cluster lab,
`NETNS_LAB` for the netns lab; docs/verifier.md shows both.
"""
from __future__ import annotations

import re
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from podpath.model.plan import Plan, Service


class ProbeError(RuntimeError):
    """The lab did not answer as expected; the message names where and what."""


class Unobservable(RuntimeError):
    """This machine cannot see what the check asks (a tool needs root, an OS lacks it).

    The verifier turns it into a skip that says why and which command to run instead.
    """

    def __init__(self, reason: str, instead: str):
        super().__init__(f"{reason}; instead run: {instead}")
        self.reason, self.instead = reason, instead


@dataclass
class Result:
    """A command's exit code and output."""

    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


@dataclass
class Http:
    """One HTTP request's outcome, as `curl -sS -D - -o -` shows it."""

    rc: int  # curl's exit code: 0 answered, 7 refused, 28 timed out
    status: int | None
    headers: dict[str, str] = field(default_factory=dict)  # names lower-cased
    body: str = ""
    error: str = ""

    def field(self, key: str) -> str | None:
        """A key=value field of the echo backend's one-line answer."""
        match = re.search(rf"(?:^|\s){re.escape(key)}=(\S*)", self.body)
        return match.group(1) if match else None


# The header every ingress controller of both labs adds to its answers, lower-cased.
CONTROLLER_HEADER = "x-ingress-controller"


# -- the runtime's namespace model ---------------------------------------------------------

NAMESPACE_KINDS = ("net", "ipc", "uts", "mnt", "pid")


@dataclass(frozen=True)
class NamespaceModel:
    """Which namespaces the containers of a pod share with its sandbox (the pause process)
    and which each container has for itself."""

    name: str
    shared: frozenset[str]  # every container is in the sandbox's namespace of this kind
    own: frozenset[str]  # every container has its own, unlike the sandbox and the other containers
    sandbox_process: str  # the comm of the process that holds the sandbox
    # whether a pod's spec.shareProcessNamespace moves "pid" from own to shared
    pid_follows_pod_spec: bool = False

    def expectation(self, kind: str, share_process_namespace: bool = False) -> str:
        """'shared' or 'own' for namespace KIND of a pod's containers."""
        if kind == "pid" and self.pid_follows_pod_spec and share_process_namespace:
            return "shared"
        if kind in self.shared:
            return "shared"
        if kind in self.own:
            return "own"
        raise ValueError(f"namespace kind {kind!r} is not one of {', '.join(NAMESPACE_KINDS)}")


# containerd's CRI plugin (and CRI-O): each container joins the sandbox's network, IPC and
# UTS namespaces; it gets its own mount namespace, and its own PID namespace unless the pod
# sets shareProcessNamespace. The sandbox process is registry.k8s.io/pause.
CONTAINERD = NamespaceModel("containerd", shared=frozenset({"net", "ipc", "uts"}),
                            own=frozenset({"mnt", "pid"}), sandbox_process="pause", pid_follows_pod_spec=True)

# The netns lab (library/podpath_containers.py) makes its pods as containerd does: a container
# joins the holder's network, IPC and UTS namespaces and has its own mount namespace, and its
# own PID namespace unless the pod shares its holder's (the topology's share_process_namespace,
# the holder then pid 1 of it). The holder is podpath-pause.
NETNS_LAB = NamespaceModel("podpath netns lab", shared=frozenset({"net", "ipc", "uts"}),
                           own=frozenset({"mnt", "pid"}), sandbox_process="podpath-pause", pid_follows_pod_spec=True)


# -- what a lab is made of, as the checks see it ----------------------------------------------

@dataclass(frozen=True)
class PodRef:
    """A pod known before the lab is asked, so that collecting the checks never connects.

    The netns lab knows its pods from its plan (`id` is the pod's name); the cluster lab
    knows how many pods of each app to expect (`id` is a slot such as echo-2, resolved to a
    real pod when the check runs).
    """

    app: str
    index: int
    id: str


@dataclass
class LabPod:
    """A running pod."""

    name: str
    namespace: str  # the Kubernetes namespace
    node: str
    ip: str
    app: str
    port: int | None  # the port it serves HTTP on, if any
    containers: list[str]
    prefixlen: int | None = None  # of eth0's address, where the lab knows it in advance
    share_process_namespace: bool = False
    handle: Any = None  # the adapter's own record of the pod

    def __str__(self) -> str:
        return f"{self.name} on {self.node}"


@dataclass
class ServiceView:
    """A Service and its ready endpoints."""

    name: str
    namespace: str
    cluster_ip: str
    port: int
    target_port: int
    node_port: int | None
    load_balancer_ip: str | None
    policy: str | None  # externalTrafficPolicy
    endpoints: dict[str, str]  # ready endpoint pod -> "ip:targetPort"


@dataclass
class Lease:
    """The ingress controllers' leader lease."""

    holder: str | None
    renew_time: float | None  # seconds since the epoch
    duration: float | None


@dataclass
class ArpAnswer:
    """The MACs that answered ARP requests for an address, and who asked."""

    macs: list[str]
    asked_from: str  # the command that sent the requests, where it ran


class PlanFacts:
    """The answers both adapters read from the lab's plan (podpath/model/plan.py): what the
    lab was built from, its nodes, Services and names."""

    plan: Plan

    def node_names(self) -> list[str]:
        return [n.name for n in self.plan.nodes]

    def node_ip(self, node: str) -> str:
        return self.plan.node(node).ip

    def planned_service(self, role: str) -> Service:
        """The Service that plays ROLE: echo, ingress or empty (the one with no endpoints)."""
        services = {"echo": self.plan.echo_service, "ingress": self.plan.ingress_service,
                    "empty": self.plan.empty_service}
        if role not in services:
            raise ProbeError(f"no Service plays the role {role!r} (echo, ingress, empty)")
        return services[role]

    def ingress_host(self) -> str:
        return self.plan.ingress_host

    def ingress_replicas(self) -> int:
        return len(self.plan.ingress_pods)

    def pod_network(self) -> str:
        return self.plan.pod_network

    def kube_proxy_mode(self) -> str:
        """The mode kube-proxy runs in on every node (the topology's kube_proxy.mode)."""
        return self.plan.kube_proxy_mode


# -- the interface ---------------------------------------------------------------------------

@runtime_checkable
class Lab(Protocol):
    """The questions the verifier's checks ask a lab. See the module's docstring."""

    kind: str  # "netns" or "cluster"
    name: str
    runtime: NamespaceModel

    # where a student sees the same thing
    def node_command(self, node: str, argv: list[str], root: bool = False) -> str: ...
    def pod_command(self, pod: LabPod, argv: list[str]) -> str: ...
    def exec_command(self, pod: LabPod, container: str, argv: list[str]) -> str: ...
    def client_command(self, argv: list[str]) -> str: ...

    # what the lab is made of
    def node_names(self) -> list[str]: ...
    def node_ip(self, node: str) -> str: ...
    def pod(self, ref: PodRef, refresh: bool = False) -> LabPod: ...
    def pods_of(self, app: str) -> list[LabPod]: ...
    def clients(self) -> list[LabPod]: ...
    def service(self, role: str) -> ServiceView: ...
    def ingress_host(self) -> str: ...
    def ingress_replicas(self) -> int: ...
    def pod_network(self) -> str: ...

    # scenarios 1-4: a pod on its node
    def netns_path(self, pod: LabPod) -> str: ...
    def netns_files(self, node: str) -> list[str]: ...
    def pod_addresses(self, pod: LabPod, dev: str = "eth0") -> list[str]: ...
    def netns_bind_mounts(self, pod: LabPod) -> list[str]: ...
    def sandbox_pid(self, pod: LabPod) -> int | None: ...
    def process_name(self, node: str, pid: int) -> str: ...
    def namespace_of_pid(self, node: str, pid: int, kind: str = "net") -> str: ...
    def namespace_of_netns_file(self, pod: LabPod) -> str: ...
    def processes_in_netns(self, pod: LabPod) -> int: ...
    def container_namespaces(self, pod: LabPod, container: str) -> dict[str, str]: ...
    def container_hostname(self, pod: LabPod, container: str) -> str: ...
    def container_processes(self, pod: LabPod, container: str) -> dict[int, str]: ...  # pid -> comm, as it sees them
    def container_ipv4(self, pod: LabPod, container: str) -> list[str] | None: ...
    def container_get(self, pod: LabPod, container: str, url: str) -> Http: ...
    def page_mark(self, pod: LabPod, container: str) -> str: ...
    def pod_links(self, pod: LabPod) -> tuple[dict, dict | None]: ...

    # scenarios 5-11 and 18: traffic
    def pod_get(self, pod: LabPod, url: str, host: str | None = None, timeout: float = 2.0) -> Http: ...
    def node_get(self, node: str, ip: str, port: int, host: str | None = None) -> Http: ...
    def client_get(self, url: str, host: str | None = None) -> Http: ...
    def answered_by(self, pod: LabPod, url: str, expect: set[str], host: str | None = None,
                    field_name: str = "pod") -> tuple[dict[str, int], list[str]]: ...
    def pod_reaches_node(self, pod: LabPod, node: str) -> tuple[bool, str]: ...
    def forget_traffic(self, pod: LabPod) -> None: ...
    def route_get(self, node: str, ip: str) -> dict: ...
    def pod_subnet_next_hops(self, node: str) -> set[str]: ...
    def vxlan_destination(self, node: str, gateway: str) -> tuple[str | None, str | None]: ...
    def node_side_addresses(self) -> set[str]: ...
    def client_address(self, toward: str) -> str: ...

    # scenario 12: kube-proxy's rules
    def nat_rules(self, node: str) -> tuple[str, str]: ...
    def kube_proxy_mode(self) -> str: ...
    def kube_proxy_rules(self, node: str) -> tuple[str, Any]: ...  # (the command, parsers.KubeProxyRules)

    # scenarios 13-17 and 19: MetalLB, the ingress controllers, the traced path
    def node_addresses(self, node: str) -> list[tuple[str, str]]: ...
    def node_macs(self) -> dict[str, str]: ...
    def arp_probe(self, address: str, count: int = 3) -> Future: ...
    def client_neighbour(self, address: str) -> str | None: ...
    def election_candidates(self) -> list[str]: ...
    def reported_announcers(self) -> list[str] | None: ...
    def speakers_not_running(self) -> list[str]: ...
    def leader_lease(self) -> Lease | None: ...
    def clock(self) -> float: ...
    def trace(self) -> Any: ...

    # the disruptive checks: break one thing, and put it back
    def stop_container(self, pod: LabPod, container: str) -> str: ...
    def fail_announcer(self, node: str) -> str: ...
    def repair(self, node: str | None = None) -> None: ...


def owners(macs: list[str] | set[str], node_macs: dict[str, str]) -> list[str]:
    """The nodes whose MACs are among MACS; a MAC of no node is named as such."""
    by_mac = {mac: node for node, mac in node_macs.items()}
    return sorted({by_mac.get(m, f"unknown MAC {m}") for m in macs})
