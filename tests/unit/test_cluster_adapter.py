"""Unit tests of podpath/evidence/cluster.py, the cluster lab's adapter, without a cluster:
how commands are quoted and where they run (a fake testinfra host records them), how pods
are found, what the scripts it runs on the nodes do, and where ARP requests come from on a
client that cannot send them."""
from __future__ import annotations

import json
import shlex
import socket
import struct
from pathlib import Path

import pytest

from podpath.evidence import cluster as cl
from podpath.evidence.lab import LabPod, PodRef, ProbeError, Unobservable
from podpath.evidence.parsers import K8sPod, parse_arping
from podpath.model import topology
from podpath.model.plan import build

PLAN = build(topology.load(), "cluster")

PODS = json.dumps({"apiVersion": "v1", "kind": "List", "items": [
    {"metadata": {"name": "echo-7d9c-abcde", "namespace": "default", "uid": "u-1"},
     "spec": {"nodeName": "worker1", "containers": [{"name": "echo"}]},
     "status": {"phase": "Running", "podIP": "10.244.1.5", "conditions": [{"type": "Ready", "status": "True"}]}},
    {"metadata": {"name": "multi-container-pod", "namespace": "default", "uid": "u-2"},
     "spec": {"nodeName": "worker1", "containers": [{"name": "busybox"}, {"name": "nginx"}]},
     "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]}},
]})


class FakeHost:
    """Stands for a testinfra host: records command lines, answers from a table."""

    def __init__(self, answers):
        self.lines, self.answers = [], answers

    def run(self, line):
        self.lines.append(line)
        for prefix, (rc, out) in self.answers.items():
            if line.startswith(prefix):
                return _Out(rc, out)
        return _Out(0, "")


class _Out:
    def __init__(self, rc, stdout, stderr=""):
        self.rc, self.stdout, self.stderr = rc, stdout, stderr


@pytest.fixture
def cluster():
    lab = cl.ClusterLab(PLAN, "ansible://all", "/nonexistent/inventory")
    cp1 = FakeHost({"id -u": (0, "1000\n"), "sudo -n test -r": (0, ""),
                    "sudo -n kubectl --kubeconfig /etc/kubernetes/admin.conf get pods": (0, PODS)})
    lab._selected = ["cp1", "worker1", "worker2"]
    lab._hosts = {"cp1": cp1, "worker1": FakeHost({"id -u": (0, "0\n")}), "worker2": FakeHost({})}
    lab.control_plane = lambda: "cp1"
    return lab


def _echo_pod():
    handle = K8sPod("echo-a", "default", "worker1", "10.244.1.5", "u", "Running", ["echo"], True)
    return LabPod("echo-a", "default", "worker1", "10.244.1.5", "echo", 8080, ["echo"], handle=handle)


def test_kubectl_exec_is_one_quoted_command_line_that_splits_back_into_its_words(cluster):
    cluster.pod_get(_echo_pod(), "http://10.96.0.20:80/", host="demo.lab.local; rm -rf /")
    line = cluster._hosts["cp1"].lines[-1]
    words = shlex.split(line)
    assert words[:4] == ["sudo", "-n", "kubectl", "--kubeconfig"]
    assert words[words.index("--") + 1:] == ["curl", "-sS", "-m", "2.0", "-D", "-", "-o", "-", "-H",
                                             "Host: demo.lab.local; rm -rf /", "http://10.96.0.20:80/"]


def test_root_commands_use_sudo_only_for_a_login_user_that_is_not_root(cluster):
    cluster.run("worker1", ["iptables-save", "-t", "nat"], root=True)
    assert cluster._hosts["worker1"].lines[-1] == "iptables-save -t nat"
    cluster.run("cp1", ["lsns", "-t", "net", "-J"], root=True)
    assert cluster._hosts["cp1"].lines[-1] == "sudo -n lsns -t net -J"


def test_pods_are_sorted_by_node_order_and_a_missing_slot_names_the_app(cluster):
    pods = cluster.pods_of("echo")
    assert [p.name for p in pods] == ["echo-7d9c-abcde"]  # the Pending multi-container pod is left out
    with pytest.raises(ProbeError, match=r"echo-2: only 1 running echo pods .*asks for 3"):
        cluster.pod(PodRef("echo", 1, "echo-2"))


def test_a_node_missing_from_the_inventory_is_named(cluster):
    cluster._selected = ["cp1"]
    cluster._hosts.pop("worker2")
    with pytest.raises(ProbeError, match="node worker2 of the topology is not among the hosts"):
        cluster.run("worker2", ["true"])


def test_other_connections_than_ansible_are_refused():
    lab = cl.ClusterLab(PLAN, "ssh://cp1", None)
    with pytest.raises(ProbeError, match="reached through Ansible"):
        lab.selected_nodes()


def test_pod_slots_follow_the_topology():
    slots = cl.pod_slots(PLAN)
    assert [s.id for s in slots] == ["echo-1", "echo-2", "echo-3", "ingress-nginx-1", "ingress-nginx-2",
                                     "ingress-nginx-3", "multi-container"]
    assert [s.id for s in cl.pod_slots(PLAN, "echo")] == ["echo-1", "echo-2", "echo-3"]


def test_a_student_is_shown_the_command_on_the_node():
    lab = cl.ClusterLab(PLAN, "ansible://all", None)
    assert lab.node_command("worker1", ["crictl", "inspectp", "abc"], root=True) == \
        "vagrant ssh worker1 -c 'sudo crictl inspectp abc'"


# -- the scripts that run on the nodes ----------------------------------------------------------

def test_node_scripts_are_valid_python_and_take_values_as_arguments():
    for script in (cl.NODE_HTTP_SCRIPT, cl.ARP_PROBE_SCRIPT):
        compile(script, "node-script", "exec")
        assert "sys.argv" in script and "10." not in script and "192.168" not in script


def test_the_arp_probe_sends_real_requests_and_prints_replies_as_arping_does(monkeypatch, capsys):
    """The node-side ARP probe against a fake packet socket: its request frame is a
    well-formed ARP who-has, and a reply from the address is printed in iputils' form."""
    sent = []
    reply = (b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00\x27\xaa\xbb\xcc" + b"\x08\x06"
             + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + b"\x08\x00\x27\xaa\xbb\xcc"
             + socket.inet_aton("192.168.56.200") + b"\x02\x00\x00\x00\x00\x01" + socket.inet_aton("192.168.56.10"))

    class FakeSocket:
        def __init__(self, *args):
            self.replies = [reply]

        def bind(self, address):
            assert address == ("eth1", 0x0806)

        def getsockname(self):
            return ("eth1", 0x0806, 0, 1, b"\x02\x00\x00\x00\x00\x01")

        def send(self, frame):
            sent.append(frame)

        def recv(self, size):
            return self.replies.pop()

    monkeypatch.setattr(socket, "socket", FakeSocket)
    monkeypatch.setattr("select.select", lambda r, w, x, t: (r if r[0].replies else [], [], []))
    monkeypatch.setattr("sys.argv", ["arp", "eth1", "192.168.56.10", "192.168.56.200", "1"])
    exec(compile(cl.ARP_PROBE_SCRIPT, "arp-probe", "exec"), {"__name__": "__main__"})
    (frame,) = sent
    assert frame[:6] == b"\xff" * 6 and frame[12:14] == b"\x08\x06" and frame[20:22] == b"\x00\x01"
    assert frame[28:32] == socket.inet_aton("192.168.56.10") and frame[38:42] == socket.inet_aton("192.168.56.200")
    assert parse_arping(capsys.readouterr().out) == ["08:00:27:aa:bb:cc"]


# -- a client without root, on every OS ------------------------------------------------------------

def test_without_root_arp_requests_come_from_a_node_outside_the_election(cluster, monkeypatch):
    monkeypatch.setattr(cluster, "host_platform", lambda: "macos")
    monkeypatch.setattr(cluster, "election_candidates", lambda: ["worker1", "worker2"])
    monkeypatch.setattr(cluster, "node_links", lambda: {"cp1": ("eth1", "08:00:27:00:00:10")})
    cluster._hosts["cp1"].answers["sudo -n python3"] = (0, "Unicast reply from 192.168.56.200 [08:00:27:AA:BB:CC]\n")
    answer = cluster.arp_answers("192.168.56.200", count=2)
    assert answer.macs == ["08:00:27:aa:bb:cc"]
    words = shlex.split(cluster._hosts["cp1"].lines[-1])
    assert words[:4] == ["sudo", "-n", "python3", "-c"] and words[-4:] == ["eth1", "192.168.56.10",
                                                                            "192.168.56.200", "2"]
    assert "vagrant ssh cp1" in answer.asked_from and "without root" in answer.asked_from


def test_wsl2_cannot_read_the_node_network_neighbours_and_says_what_to_run_instead(cluster, monkeypatch):
    monkeypatch.setattr(cluster, "host_platform", lambda: "wsl")
    with pytest.raises(Unobservable, match=r"Windows' NAT.*instead run: in a Windows terminal: .*arp -a"):
        cluster.client_neighbour("192.168.56.200")


def test_on_macos_the_client_address_is_the_plan_s(cluster, monkeypatch):
    monkeypatch.setattr(cluster, "host_platform", lambda: "macos")
    assert cluster.client_address("192.168.56.200") == PLAN.client_ip


# -- scenario 3: what a container sees, through kubectl exec -------------------------------------

def _multi_container_pod(share: bool):
    handle = K8sPod("multi-container-pod", "default", "worker1", "10.244.1.6", "u-2", "Running", ["busybox", "nginx"],
                    True, share_process_namespace=share)
    return LabPod("multi-container-pod", "default", "worker1", "10.244.1.6", "multi-container", 80,
                  ["busybox", "nginx"], share_process_namespace=share, handle=handle)


def test_a_containers_host_name_is_read_with_kubectl_exec_in_that_container(cluster):
    exec_line = "sudo -n kubectl --kubeconfig /etc/kubernetes/admin.conf exec -n default multi-container-pod -c nginx"
    cluster._hosts["cp1"].answers[exec_line] = (0, "multi-container-pod\n")
    assert cluster.container_hostname(_multi_container_pod(False), "nginx") == "multi-container-pod"
    words = shlex.split(cluster._hosts["cp1"].lines[-1])
    assert words[words.index("-c") + 1] == "nginx" and words[words.index("--") + 1:] == ["cat",
                                                                                          "/proc/sys/kernel/hostname"]


def test_a_failed_host_name_read_names_the_command_a_student_runs(cluster):
    exec_line = "sudo -n kubectl --kubeconfig /etc/kubernetes/admin.conf exec -n default multi-container-pod -c busybox"
    cluster._hosts["cp1"].answers[exec_line] = (1, "")
    with pytest.raises(ProbeError, match=r"kubectl exec -n default multi-container-pod -c busybox -- cat "
                                         r"/proc/sys/kernel/hostname failed"):
        cluster.container_hostname(_multi_container_pod(False), "busybox")


def test_the_processes_a_container_sees_leave_out_the_listing_shell(cluster):
    exec_line = "sudo -n kubectl --kubeconfig /etc/kubernetes/admin.conf exec -n default multi-container-pod -c busybox"
    cluster._hosts["cp1"].answers[exec_line] = (0, "self 21\n1 pause\n7 sleep\n8 nginx\n14 nginx\n21 sh\n")
    assert cluster.container_processes(_multi_container_pod(True), "busybox") == {1: "pause", 7: "sleep", 8: "nginx",
                                                                                  14: "nginx"}
    words = shlex.split(cluster._hosts["cp1"].lines[-1])
    assert words[words.index("--") + 1:words.index("--") + 3] == ["sh", "-c"]


# -- kube-proxy's rules in either mode (scenario 12, and the trace's DNAT hop) -----------------------

RECORDED_KUBE_PROXY = Path(__file__).resolve().parent / "recorded" / "kube_proxy"


def _lab_in_mode(mode: str, worker1: FakeHost) -> cl.ClusterLab:
    lab = cl.ClusterLab(build({**topology.load(), "kube_proxy": {"mode": mode}}, "cluster"), "ansible://all", None)
    lab._selected = ["cp1", "worker1", "worker2"]
    lab._hosts = {"cp1": FakeHost({}), "worker1": worker1, "worker2": FakeHost({})}
    return lab


def test_kube_proxys_rules_are_read_with_the_tool_of_the_topologys_mode():
    nft = (RECORDED_KUBE_PROXY / "nft-worker1.json").read_text()
    save = (RECORDED_KUBE_PROXY / "iptables-save-worker1.txt").read_text()
    host = FakeHost({"id -u": (0, "0\n"), "nft -j list table ip kube-proxy": (0, nft)})
    shown, rules = _lab_in_mode("nftables", host).kube_proxy_rules("worker1")
    assert host.lines[-1] == "nft -j list table ip kube-proxy"
    assert shown == "vagrant ssh worker1 -c 'sudo nft -j list table ip kube-proxy'"
    assert rules.mode == "nftables" and len(rules.service_path("10.96.0.20", 80).seps) == 3
    host = FakeHost({"id -u": (0, "0\n"), "iptables-save": (0, save)})
    shown, rules = _lab_in_mode("iptables", host).kube_proxy_rules("worker1")
    assert host.lines[-1] == "iptables-save" and rules.mode == "iptables"
    assert rules.rejects("10.96.0.30", 80)
    missing = FakeHost({"id -u": (0, "0\n"), "nft": (1, "")})
    with pytest.raises(ProbeError, match="nft -j list table ip kube-proxy"):
        _lab_in_mode("nftables", missing).kube_proxy_rules("worker1")


def test_in_nftables_mode_the_trace_finds_the_dnat_in_conntrack_and_names_the_nodes_endpoint_chain(monkeypatch):
    nft = (RECORDED_KUBE_PROXY / "nft-worker1.json").read_text()
    before = "tcp 6 100 TIME_WAIT src=192.168.56.1 dst=192.168.56.200 sport=40000 dport=80 src=10.244.0.2 " \
             "dst=192.168.56.11 sport=80 dport=40000 [ASSURED] mark=0 use=1\n"
    after = before + before.replace("40000", "40001").replace("10.244.0.2", "10.244.2.2")
    answers = iter([before, after])

    class Conntrack(FakeHost):
        def run(self, line):
            if line.startswith("conntrack -L"):
                self.lines.append(line)
                return _Out(0, next(answers))
            return super().run(line)

    worker1 = Conntrack({"id -u": (0, "0\n"), "nft -j list table ip kube-proxy": (0, nft)})
    lab = _lab_in_mode("nftables", worker1)
    controllers = [LabPod(f"ingress-nginx-{i}", "ingress-nginx", n, ip, "ingress-nginx", 80, ["controller"])
                   for i, (n, ip) in enumerate([("cp1", "10.244.0.2"), ("worker1", "10.244.1.2"),
                                                ("worker2", "10.244.2.2")], 1)]
    monkeypatch.setattr(lab, "pods_of", lambda app, refresh=False: controllers if app == "ingress-nginx" else [])
    monkeypatch.setattr(lab, "load_balancer_ip", lambda: "192.168.56.200")
    monkeypatch.setattr(lab, "service", lambda role: cl.ServiceView(
        "ingress-nginx-controller", "ingress-nginx", "10.96.0.100", 80, 80, 30080, "192.168.56.200", "Cluster",
        {p.name: f"{p.ip}:80" for p in controllers}))
    monkeypatch.setattr(lab, "node_macs", lambda: {"worker1": "02:00:00:00:00:11"})
    monkeypatch.setattr(lab, "arp_answers", lambda address, count=3: cl.ArpAnswer(["02:00:00:00:00:11"], "arping"))
    monkeypatch.setattr(lab, "client_get", lambda url, host=None: cl.Http(
        0, 200, {"x-ingress-controller": "ingress-nginx-3"}, "pod=echo-1 client=10.244.2.2"))
    result = lab.trace()
    dnat = result.hops[1]
    assert worker1.lines.count("conntrack -L -p tcp --orig-dst 192.168.56.200 --dport 80") == 2
    assert dnat.ok and dnat.what.endswith("endpoint-TOBOCBYS-ingress-nginx/ingress-nginx-controller/tcp/http__"
                                          "10.244.2.2/80 -> 10.244.2.2:80"), dnat
    assert dnat.what.startswith("external-") and "1 new connections" in dnat.evidence
    assert result.hops[2].ok, result.hops[2]


# -- the trace with the gateway edge (scenario 19): the Gateway, the HTTPRoute, the data-plane pod --

GATEWAY_TOPOLOGY = Path(__file__).resolve().parents[2] / "inventory" / "gateway-api.yml"


def _gateway_trace(monkeypatch, headers: dict[str, str], body: str, path_prefix: str = "/echo"):
    """A trace of a gateway-api lab in nftables mode whose request the DNAT sends to the
    data-plane pod on worker2 (10.244.2.2); the client's answer carries HEADERS and BODY.
    Returns the trace and the (url, host) the client was asked for."""
    topo = topology.load(GATEWAY_TOPOLOGY)
    topo["kube_proxy"] = {"mode": "nftables"}
    topo["gateway"]["route"]["path_prefix"] = path_prefix
    nft = (RECORDED_KUBE_PROXY / "nft-worker1.json").read_text()
    before = "tcp 6 100 TIME_WAIT src=192.168.56.1 dst=192.168.56.200 sport=40000 dport=80 src=10.244.0.2 " \
             "dst=192.168.56.11 sport=80 dport=40000 [ASSURED] mark=0 use=1\n"
    answers = iter([before, before + before.replace("40000", "40001").replace("10.244.0.2", "10.244.2.2")])

    class Conntrack(FakeHost):
        def run(self, line):
            if line.startswith("conntrack -L"):
                self.lines.append(line)
                return _Out(0, next(answers))
            return super().run(line)

    lab = cl.ClusterLab(build(topo, "cluster"), "ansible://all", None)
    lab._selected = ["cp1", "worker1", "worker2"]
    lab._hosts = {"cp1": FakeHost({}), "worker2": FakeHost({}),
                  "worker1": Conntrack({"id -u": (0, "0\n"), "nft -j list table ip kube-proxy": (0, nft)})}
    gw = lab.plan.gateway
    data_plane = [LabPod(f"{gw.service}-{i}", gw.namespace, n, ip, lab.plan.edge_app, 80, ["nginx"])
                  for i, (n, ip) in enumerate([("cp1", "10.244.0.2"), ("worker1", "10.244.1.2"),
                                               ("worker2", "10.244.2.2")], 1)]
    echo = [LabPod("echo-1", "default", "worker1", "10.244.1.5", "echo", 8080, ["echo"])]
    monkeypatch.setattr(lab, "pods_of", lambda app, refresh=False:
                        data_plane if app == lab.plan.edge_app else echo if app == "echo" else [])
    monkeypatch.setattr(lab, "load_balancer_ip", lambda: "192.168.56.200")
    monkeypatch.setattr(lab, "service", lambda role: cl.ServiceView(
        gw.service, gw.namespace, "10.96.0.110", 80, 80, 30081, "192.168.56.200", "Cluster",
        {p.name: f"{p.ip}:80" for p in data_plane}))
    monkeypatch.setattr(lab, "node_macs", lambda: {"worker1": "02:00:00:00:00:11"})
    monkeypatch.setattr(lab, "arp_answers", lambda address, count=3: cl.ArpAnswer(["02:00:00:00:00:11"], "arping"))
    asked: list[tuple[str, str | None]] = []

    def client_get(url, host=None):
        asked.append((url, host))
        return cl.Http(0, 200, headers, body)

    monkeypatch.setattr(lab, "client_get", client_get)
    return lab.trace(), asked


def test_gateway_trace_names_the_gateway_the_route_and_the_data_plane_pod_that_served(monkeypatch):
    result, asked = _gateway_trace(monkeypatch, {"x-gateway-pod": "demo-gateway-nginx-3"},
                                   "pod=echo-1 client=10.244.2.2 x-podpath-route=echo")
    assert {(url, host) for url, host in asked} == {("http://192.168.56.200:80/echo", "demo.lab.local")}, \
        "the request asks the route's path prefix of the listener's host name"
    assert result.url == "http://192.168.56.200:80/echo" and result.host == "demo.lab.local"
    served, backend = result.hops[2], result.hops[3]
    assert served.step == "gateway" and served.ok, served
    assert served.what.startswith("Gateway default/demo-gateway listener http (demo.lab.local:80) -> "
                                  "HTTPRoute default/echo (PathPrefix /echo): data-plane pod demo-gateway-nginx-3 "
                                  "on worker2"), served.what
    assert "X-Gateway-Pod: demo-gateway-nginx-3" in served.evidence
    assert result.controller == "demo-gateway-nginx-3"
    assert backend.ok and "the backend saw echo" in backend.evidence, backend
    assert result.complete, result.hops


def test_gateway_trace_fails_the_hop_whose_evidence_disagrees(monkeypatch):
    # Served by another pod than the one the DNAT chose, and the route's header never reached
    # the backend: both hops fail, and say what they saw.
    result, _ = _gateway_trace(monkeypatch, {"x-gateway-pod": "demo-gateway-nginx-1"},
                               "pod=echo-1 client=10.244.2.2", path_prefix="/")
    served, backend = result.hops[2], result.hops[3]
    assert not served.ok and "DNAT chose demo-gateway-nginx-3" in served.evidence, served
    assert not backend.ok and "X-Podpath-Route: echo, the backend saw nothing" in backend.evidence, backend
    assert result.url == "http://192.168.56.200:80/" and not result.complete
    # No X-Gateway-Pod at all (an NGF without the lab's SnippetsFilter): no pod is named.
    result, _ = _gateway_trace(monkeypatch, {"x-ingress-controller": "demo-gateway-nginx-3"},
                               "pod=echo-1 client=10.244.2.2 x-podpath-route=echo")
    assert result.controller is None and not result.hops[2].ok and "data-plane pod none" in result.hops[2].what
