"""Unit tests of podpath/evidence/cluster_probe.py: the parsers of kubectl, crictl, lsns, iptables-save
and arping output, kube-proxy's chains, MetalLB's election, and how commands are quoted.

Every sample below is HAND-WRITTEN in the shape the tool prints (field names and nesting as
documented by Kubernetes, containerd's CRI plugin, util-linux and iptables), cut down to what
the parsers read. None was captured from a cluster: no cluster runs here.
"""
from __future__ import annotations

import json
import shlex
import subprocess

import pytest

from podpath.evidence import cluster_probe as cp
from podpath.model import topology

# -- hand-written samples ----------------------------------------------------------------------

PODS = json.dumps({"apiVersion": "v1", "kind": "List", "items": [
    {"metadata": {"name": "echo-7d9c-abcde", "namespace": "default", "uid": "u-1",
                  "labels": {"app.kubernetes.io/name": "echo"}},
     "spec": {"nodeName": "worker1", "containers": [{"name": "echo"}]},
     "status": {"phase": "Running", "podIP": "10.244.1.5",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "echo", "ready": True, "restartCount": 2,
                                       "containerID": "containerd://0123abcd"}]}},
    {"metadata": {"name": "multi-container-pod", "namespace": "default", "uid": "u-2"},
     "spec": {"nodeName": "worker1", "containers": [{"name": "busybox"}, {"name": "nginx"}]},
     "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]}},
]})

NODES = json.dumps({"items": [
    {"metadata": {"name": "cp1", "labels": {cp.EXCLUDE_LB_LABEL: ""}}, "spec": {"podCIDR": "10.244.0.0/24"},
     "status": {"addresses": [{"type": "InternalIP", "address": "192.168.56.10"}, {"type": "Hostname", "address": "cp1"}],
                "conditions": [{"type": "Ready", "status": "True"}]}},
    {"metadata": {"name": "worker1", "labels": {}}, "spec": {"podCIDR": "10.244.1.0/24"},
     "status": {"addresses": [{"type": "InternalIP", "address": "192.168.56.11"}],
                "conditions": [{"type": "Ready", "status": "False"}]}},
]})

SLICES = json.dumps({"items": [
    {"addressType": "IPv4", "metadata": {"labels": {"kubernetes.io/service-name": "echo"}},
     "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
     "endpoints": [
         {"addresses": ["10.244.1.5"], "conditions": {"ready": True}, "nodeName": "worker1",
          "targetRef": {"kind": "Pod", "name": "echo-a", "namespace": "default"}},
         {"addresses": ["10.244.2.7"], "conditions": {"ready": False}, "nodeName": "worker2",
          "targetRef": {"kind": "Pod", "name": "echo-b", "namespace": "default"}},
         {"addresses": ["10.244.0.3"], "conditions": {}, "nodeName": "cp1",
          "targetRef": {"kind": "Pod", "name": "echo-c", "namespace": "default"}}]},
    {"addressType": "IPv4", "ports": None, "endpoints": None},
]})

LEASE = json.dumps({"kind": "Lease", "metadata": {"name": "ingress-nginx-leader"},
                    "spec": {"holderIdentity": "ingress-nginx-controller-5f-x1", "leaseDurationSeconds": 30,
                             "renewTime": "2026-05-20T10:00:00.500000Z", "leaseTransitions": 1}})

SERVICE = json.dumps({"spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.100", "externalTrafficPolicy": "Cluster",
                               "ports": [{"name": "http", "port": 80, "nodePort": 30080, "targetPort": "http"},
                                         {"name": "https", "port": 443, "nodePort": 30443}]},
                      "status": {"loadBalancer": {"ingress": [{"ip": "192.168.56.200", "ipMode": "VIP"}]}}})

CRICTL_PODS = json.dumps({"items": [
    {"id": "sb-old", "metadata": {"name": "echo-a", "uid": "u-1", "namespace": "default", "attempt": 0},
     "state": "SANDBOX_NOTREADY"},
    {"id": "sb-new", "metadata": {"name": "echo-a", "uid": "u-1", "namespace": "default", "attempt": 1},
     "state": "SANDBOX_READY"},
    {"id": "sb-other", "metadata": {"name": "echo-ab", "uid": "u-9", "namespace": "default"},
     "state": "SANDBOX_READY"},
]})

INSPECTP = json.dumps({
    "status": {"id": "sb-new", "state": "SANDBOX_READY", "network": {"ip": "10.244.1.5"}},
    "info": {"pid": 4321, "processStatus": "running", "netNamespaceClosed": False,
             "runtimeSpec": {"linux": {"namespaces": [
                 {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
                 {"type": "network", "path": "/var/run/netns/cni-2f1e8a4c-1111-2222-3333-444455556666"}]}}}})

# util-linux 2.38 prints numbers; before 2.37 every value was a string.
LSNS_NEW = json.dumps({"namespaces": [
    {"ns": 4026531840, "type": "net", "nprocs": 120, "pid": 1, "nsfs": None, "command": "/sbin/init"},
    {"ns": 4026532301, "type": "net", "nprocs": 3, "pid": 4321,
     "nsfs": "/run/netns/cni-2f1e8a4c-1111-2222-3333-444455556666", "command": "/pause"}]})
LSNS_OLD = json.dumps({"namespaces": [
    {"ns": "4026532301", "type": "net", "nprocs": "3", "pid": "4321", "nsfs": "/run/netns/a\n/run/netns/b",
     "command": "/pause"}]})

# kube-proxy's nat rules for one ClusterIP Service with three endpoints and one LoadBalancer
# Service with one, written as iptables-save -c prints them (chain hashes invented).
IPTABLES = """\
# Generated by iptables-save v1.8.11 (nf_tables)
*nat
:PREROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-SVC-AAAAAAAAAAAAAAAA - [0:0]
:KUBE-SEP-BBBBBBBBBBBBBBBB - [0:0]
:KUBE-SEP-CCCCCCCCCCCCCCCC - [0:0]
:KUBE-SEP-DDDDDDDDDDDDDDDD - [0:0]
:KUBE-EXT-EEEEEEEEEEEEEEEE - [0:0]
:KUBE-SVC-FFFFFFFFFFFFFFFF - [0:0]
:KUBE-SEP-GGGGGGGGGGGGGGGG - [0:0]
[10:600] -A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
[0:0] -A KUBE-SERVICES -d 10.96.0.20/32 -p tcp -m comment --comment "default/echo:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-AAAAAAAAAAAAAAAA
[0:0] -A KUBE-SERVICES -d 10.96.0.100/32 -p tcp -m comment --comment "ingress-nginx/ingress-nginx-controller:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-FFFFFFFFFFFFFFFF
[0:0] -A KUBE-SERVICES -d 192.168.56.200/32 -p tcp -m comment --comment "ingress-nginx/ingress-nginx-controller:http loadbalancer IP" -m tcp --dport 80 -j KUBE-EXT-EEEEEEEEEEEEEEEE
[0:0] -A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
[0:0] -A KUBE-NODEPORTS -p tcp -m comment --comment "ingress-nginx/ingress-nginx-controller:http" -m tcp --dport 30080 -j KUBE-EXT-EEEEEEEEEEEEEEEE
[0:0] -A KUBE-SVC-AAAAAAAAAAAAAAAA ! -s 10.244.0.0/16 -d 10.96.0.20/32 -p tcp -m comment --comment "default/echo:http cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ
[0:0] -A KUBE-SVC-AAAAAAAAAAAAAAAA -m comment --comment "default/echo:http -> 10.244.0.3:8080" -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-BBBBBBBBBBBBBBBB
[0:0] -A KUBE-SVC-AAAAAAAAAAAAAAAA -m comment --comment "default/echo:http -> 10.244.1.5:8080" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-CCCCCCCCCCCCCCCC
[0:0] -A KUBE-SVC-AAAAAAAAAAAAAAAA -m comment --comment "default/echo:http -> 10.244.2.7:8080" -j KUBE-SEP-DDDDDDDDDDDDDDDD
[0:0] -A KUBE-SEP-BBBBBBBBBBBBBBBB -s 10.244.0.3/32 -m comment --comment "default/echo:http" -j KUBE-MARK-MASQ
[4:240] -A KUBE-SEP-BBBBBBBBBBBBBBBB -p tcp -m comment --comment "default/echo:http" -m tcp -j DNAT --to-destination 10.244.0.3:8080
[0:0] -A KUBE-SEP-CCCCCCCCCCCCCCCC -p tcp -m comment --comment "default/echo:http" -m tcp -j DNAT --to-destination 10.244.1.5:8080
[0:0] -A KUBE-SEP-DDDDDDDDDDDDDDDD -p tcp -m comment --comment "default/echo:http" -m tcp -j DNAT --to-destination 10.244.2.7:8080
[0:0] -A KUBE-EXT-EEEEEEEEEEEEEEEE -m comment --comment "masquerade traffic for ingress-nginx/ingress-nginx-controller:http external destinations" -j KUBE-MARK-MASQ
[0:0] -A KUBE-EXT-EEEEEEEEEEEEEEEE -j KUBE-SVC-FFFFFFFFFFFFFFFF
[7:420] -A KUBE-SEP-GGGGGGGGGGGGGGGG -p tcp -m comment --comment "ingress-nginx/ingress-nginx-controller:http" -m tcp -j DNAT --to-destination 10.244.1.9:80
[0:0] -A KUBE-SVC-FFFFFFFFFFFFFFFF -m comment --comment "ingress-nginx/ingress-nginx-controller:http -> 10.244.1.9:80" -j KUBE-SEP-GGGGGGGGGGGGGGGG
COMMIT
"""

ARPING_HABETS = """\
ARPING 192.168.56.200
60 bytes from 08:00:27:aa:bb:cc (192.168.56.200): index=0 time=412.300 usec
60 bytes from 08:00:27:aa:bb:cc (192.168.56.200): index=1 time=388.100 usec

--- 192.168.56.200 statistics ---
2 packets transmitted, 2 packets received,   0% unanswered (0 extra)
"""
ARPING_IPUTILS = """\
ARPING 192.168.56.200 from 192.168.56.1 vboxnet0
Unicast reply from 192.168.56.200 [08:00:27:AA:BB:CC]  0.612ms
Unicast reply from 192.168.56.200 [08:00:27:DD:EE:FF]  0.701ms
Sent 2 probes (1 broadcast(s))
Received 2 response(s)
"""


# -- kubectl ------------------------------------------------------------------------------------

def test_pods_are_read_with_their_node_ip_containers_and_restarts():
    echo, multi = cp.parse_pods(PODS)
    assert (echo.name, echo.node, echo.ip, echo.uid, echo.ready) == ("echo-7d9c-abcde", "worker1", "10.244.1.5", "u-1", True)
    assert echo.containers == ["echo"] and echo.restarts == {"echo": 2}
    assert echo.container_ids == {"echo": "0123abcd"}
    assert (multi.ip, multi.phase, multi.ready, multi.containers) == ("", "Pending", False, ["busybox", "nginx"])


def test_nodes_are_read_with_address_pod_cidr_readiness_and_labels():
    nodes = cp.parse_nodes(NODES)
    assert nodes["cp1"].internal_ip == "192.168.56.10" and nodes["cp1"].ready
    assert cp.EXCLUDE_LB_LABEL in nodes["cp1"].labels
    assert (nodes["worker1"].pod_cidr, nodes["worker1"].ready) == ("10.244.1.0/24", False)


def test_endpoint_slices_give_every_address_with_readiness_and_pod():
    endpoints = cp.parse_endpoint_slices(SLICES)
    assert [(e.ip, e.ready, e.pod, e.node) for e in endpoints] == [
        ("10.244.1.5", True, "echo-a", "worker1"),
        ("10.244.2.7", False, "echo-b", "worker2"),
        ("10.244.0.3", True, "echo-c", "cp1"),  # no ready condition: unknown, read as ready
    ]
    assert endpoints[0].ports == {"http": 8080}


def test_lease_gives_holder_renew_time_and_duration():
    lease = cp.parse_lease(LEASE)
    assert lease.holder == "ingress-nginx-controller-5f-x1"
    assert lease.duration == 30.0
    assert lease.renew_time == pytest.approx(1779271200.5)


def test_lease_without_holder():
    assert cp.parse_lease(json.dumps({"spec": {}})) == cp.Lease(None, None, None)


def test_service_gives_cluster_ip_ports_policy_and_load_balancer_address():
    svc = cp.parse_service(SERVICE)
    assert svc["cluster_ip"] == "10.96.0.100" and svc["policy"] == "Cluster"
    assert svc["ports"]["http"]["nodePort"] == 30080
    assert svc["lb_ips"] == ["192.168.56.200"]


def test_service_without_an_address_yet():
    assert cp.parse_service(json.dumps({"spec": {}, "status": {"loadBalancer": {}}}))["lb_ips"] == []


@pytest.mark.parametrize("text", ["", "error: the server doesn't have a resource type", "[1, 2"])
def test_output_that_is_not_json_is_refused_naming_where_it_came_from(text):
    with pytest.raises(cp.ProbeError, match="kubectl get pods -n default on cp1: expected JSON"):
        cp.parse_pods(text, "kubectl get pods -n default on cp1")


def test_json_of_the_wrong_shape_is_refused():
    with pytest.raises(cp.ProbeError, match="list of items"):
        cp.parse_pods(json.dumps({"items": {"not": "a list"}}), "pods")


def test_announcer_comes_from_service_l2_status_first():
    statuses = json.dumps({"items": [
        {"status": {"node": "worker2", "serviceName": "other", "serviceNamespace": "default"}},
        {"status": {"node": "worker1", "serviceName": "ingress-nginx-controller",
                    "serviceNamespace": "ingress-nginx"}}]})
    assert cp.parse_announcer(statuses, None, "ingress-nginx", "ingress-nginx-controller") == "worker1"


def test_announcer_falls_back_to_the_newest_node_assigned_event():
    events = json.dumps({"items": [
        {"reason": "nodeAssigned", "message": 'announcing from node "worker1" with protocol "layer2"',
         "lastTimestamp": "2026-05-20T09:00:00Z"},
        {"reason": "nodeAssigned", "message": 'announcing from node "worker2" with protocol "layer2"',
         "lastTimestamp": "2026-05-20T10:00:00Z"},
        {"reason": "IPAllocated", "message": 'Assigned IP ["192.168.56.200"]', "lastTimestamp": "2026-05-20T11:00:00Z"}]})
    assert cp.parse_announcer(None, events, "ingress-nginx", "ingress-nginx-controller") == "worker2"
    assert cp.parse_announcer(None, None, "ingress-nginx", "ingress-nginx-controller") is None


# -- crictl, lsns, /proc -------------------------------------------------------------------------

def test_crictl_pods_keeps_the_ready_sandbox_of_exactly_that_pod():
    # crictl's --name is a regular expression: echo-ab matches too, and is dropped by name and uid
    assert cp.parse_crictl_pods(CRICTL_PODS, "echo-a", "default", "u-1", "crictl pods") == ["sb-new"]
    assert cp.parse_crictl_pods(CRICTL_PODS, "echo-a", "kube-system", "u-1", "crictl pods") == []


def test_crictl_inspectp_gives_the_namespace_path_and_the_pause_pid():
    sandbox = cp.parse_crictl_inspectp(INSPECTP, "inspectp")
    assert sandbox == cp.Sandbox("sb-new", "/var/run/netns/cni-2f1e8a4c-1111-2222-3333-444455556666", 4321,
                                 "SANDBOX_READY")


def test_crictl_inspectp_without_a_network_namespace_names_the_pod():
    data = json.loads(INSPECTP)
    data["info"]["runtimeSpec"]["linux"]["namespaces"] = [{"type": "network"}]
    with pytest.raises(cp.ProbeError, match="pod echo-a on worker1: .*no network namespace path"):
        cp.parse_crictl_inspectp(json.dumps(data), "pod echo-a on worker1")


def test_crictl_inspectp_without_a_pid():
    data = json.loads(INSPECTP)
    del data["info"]["pid"]
    with pytest.raises(cp.ProbeError, match="no pause pid"):
        cp.parse_crictl_inspectp(json.dumps(data), "inspectp")


@pytest.mark.parametrize("sample", [LSNS_NEW, LSNS_OLD], ids=["util-linux-2.38", "util-linux-2.36"])
def test_lsns_by_inode_with_numbers_or_strings(sample):
    space = cp.parse_lsns(sample)[4026532301]
    assert (space.nprocs, space.pid, space.command) == (3, 4321, "/pause")
    assert space.nsfs and all(p.startswith("/run/netns/") for p in space.nsfs)


def test_lsns_lists_every_bind_mount_and_none_for_the_host():
    assert cp.parse_lsns(LSNS_OLD)[4026532301].nsfs == ["/run/netns/a", "/run/netns/b"]
    assert cp.parse_lsns(LSNS_NEW)[4026531840].nsfs == []


def test_lsns_refuses_other_shapes():
    with pytest.raises(cp.ProbeError, match="lsns on worker2"):
        cp.parse_lsns(json.dumps({"filesystems": []}), "lsns on worker2")
    with pytest.raises(cp.ProbeError, match="without a namespace inode"):
        cp.parse_lsns(json.dumps({"namespaces": [{"type": "net"}]}))


def test_namespace_link_of_a_process():
    assert cp.parse_ns_link("net:[4026532301]\n", "readlink") == 4026532301
    with pytest.raises(cp.ProbeError, match="worker1: readlink"):
        cp.parse_ns_link("readlink: /proc/99/ns/net: No such file", "worker1: readlink")


# -- iptables-save and kube-proxy's chains ------------------------------------------------------------

def test_iptables_save_is_read_into_chains_with_counters_and_quoting_undone():
    chains = cp.parse_iptables_save(IPTABLES)
    assert set(chains) >= {"KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-SEP-GGGGGGGGGGGGGGGG"}
    first = chains["KUBE-SERVICES"][0]
    assert first.option("--comment") == "default/echo:http cluster IP"
    assert first.target == "KUBE-SVC-AAAAAAAAAAAAAAAA" and first.packets == 0
    assert chains["PREROUTING"][0].packets == 10 and chains["PREROUTING"][0].bytes == 600


def test_iptables_save_without_counters():
    plain = "\n".join(line.split("] ", 1)[1] if line.startswith("[") else line for line in IPTABLES.splitlines())
    rule = cp.parse_iptables_save(plain)["KUBE-SEP-BBBBBBBBBBBBBBBB"][1]
    assert rule.packets is None and rule.option("--to-destination") == "10.244.0.3:8080"


def test_empty_chains_are_listed():
    assert cp.parse_iptables_save(":KUBE-SVC-XXXXXXXXXXXXXXXX - [0:0]\n") == {"KUBE-SVC-XXXXXXXXXXXXXXXX": []}


def test_cluster_ip_path_has_probabilities_one_in_n_and_dnat_per_endpoint():
    path = cp.service_path(cp.parse_iptables_save(IPTABLES), "10.96.0.20", 80)
    assert path.entry_chain == path.svc_chain == "KUBE-SVC-AAAAAAAAAAAAAAAA"
    assert [s.probability for s in path.seps] == [pytest.approx(1 / 3), pytest.approx(1 / 2), None]
    assert [s.destinations for s in path.seps] == [["10.244.0.3:8080"], ["10.244.1.5:8080"], ["10.244.2.7:8080"]]
    assert [s.dnat_packets for s in path.seps] == [4, 0, 0]


def test_load_balancer_path_goes_through_kube_ext_to_the_service_chain():
    path = cp.service_path(cp.parse_iptables_save(IPTABLES), "192.168.56.200", 80)
    assert (path.entry_chain, path.svc_chain) == ("KUBE-EXT-EEEEEEEEEEEEEEEE", "KUBE-SVC-FFFFFFFFFFFFFFFF")
    assert [(s.chain, s.probability, s.destinations, s.dnat_packets) for s in path.seps] == [
        ("KUBE-SEP-GGGGGGGGGGGGGGGG", None, ["10.244.1.9:80"], 7)]


def test_no_path_for_an_address_or_port_kube_proxy_does_not_know():
    chains = cp.parse_iptables_save(IPTABLES)
    assert cp.service_path(chains, "10.96.0.30", 80) is None
    assert cp.service_path(chains, "10.96.0.20", 443) is None


def test_a_sep_chain_that_lost_its_dnat_rule_shows_no_destination():
    broken = "\n".join(line for line in IPTABLES.splitlines() if "--to-destination 10.244.1.5:8080" not in line)
    seps = cp.service_path(cp.parse_iptables_save(broken), "10.96.0.20", 80).seps
    assert [s.destinations for s in seps] == [["10.244.0.3:8080"], [], ["10.244.2.7:8080"]]


# -- MetalLB, arping ---------------------------------------------------------------------------------

def test_election_is_the_smallest_sha256_of_node_and_address():
    import hashlib

    nodes = ["worker1", "worker2"]
    digests = {n: hashlib.sha256(f"{n}#192.168.56.200".encode()).hexdigest() for n in nodes}
    assert cp.elected(nodes, "192.168.56.200") == min(digests, key=digests.get)
    assert cp.elected(list(reversed(nodes)), "192.168.56.200") == cp.elected(nodes, "192.168.56.200")
    assert cp.elected([], "192.168.56.200") is None


@pytest.mark.parametrize("text, macs", [
    (ARPING_HABETS, ["08:00:27:aa:bb:cc", "08:00:27:aa:bb:cc"]),
    (ARPING_IPUTILS, ["08:00:27:aa:bb:cc", "08:00:27:dd:ee:ff"]),
    ("ARPING 192.168.56.200\nTimeout\nTimeout\n", []),
], ids=["habets", "iputils", "no-answer"])
def test_arping_replies_of_either_arping(text, macs):
    assert cp.parse_arping(text) == macs


def test_arping_command_line_fits_the_installed_arping():
    assert cp.arping_argv("ARPing 2.23, by Thomas Habets", "vboxnet0", "192.168.56.200", 3) == [
        "arping", "-c", "3", "-w", "4", "-i", "vboxnet0", "192.168.56.200"]
    assert cp.arping_argv("Usage: arping [-AbDfhqUV] [-c count] [-w timeout] [-I device]", "eth1",
                          "192.168.56.200", 1)[-3:] == ["-I", "eth1", "192.168.56.200"]


# -- HTTP answers, addresses, slots -------------------------------------------------------------------

def test_batch_script_runs_the_command_n_times_and_each_answer_is_parsed():
    # the batch script with printf in place of curl: nothing is sent anywhere
    fake = ["printf", "HTTP/1.1 200 OK\r\nX-Ingress-Controller: c-1\r\n\r\npod=echo-a client=10.244.1.9\n"]
    done = subprocess.run(["sh", "-c", cp.BATCH_SCRIPT, "sh", "3"] + fake, capture_output=True, text=True, timeout=10)
    answers = cp.parse_http_batch(done.stdout)
    assert [(a.status, a.field("pod"), a.headers.get("x-ingress-controller")) for a in answers] == [
        (200, "echo-a", "c-1")] * 3


def test_batch_answers_keep_failures_with_their_exit_code():
    text = f"{cp.BATCH_MARK} rc=7\ncurl: (7) Failed to connect to 10.96.0.30 port 80\n{cp.BATCH_MARK} rc=0\n" \
           "HTTP/1.1 404 Not Found\n\nnope\n"
    refused, missing = cp.parse_http_batch(text)
    assert (refused.rc, refused.status) == (7, None) and "Failed to connect" in refused.error
    assert missing.status == 404


def test_node_http_script_is_valid_python_and_takes_values_as_arguments():
    compile(cp.NODE_HTTP_SCRIPT, "node-http", "exec")
    assert "sys.argv" in cp.NODE_HTTP_SCRIPT and "10." not in cp.NODE_HTTP_SCRIPT


def test_node_side_addresses_are_node_ips_cni0_and_flannel():
    assert cp.node_side_addresses(cp.parse_nodes(NODES)) == {
        "192.168.56.10", "10.244.0.0", "10.244.0.1", "192.168.56.11", "10.244.1.0", "10.244.1.1"}


def test_pod_slots_follow_the_topology():
    slots = cp.pod_slots(topology.load())
    assert [s.id for s in slots] == ["echo-1", "echo-2", "echo-3", "ingress-nginx-1", "ingress-nginx-2",
                                     "ingress-nginx-3", "multi-container"]
    assert [s.id for s in cp.pod_slots(topology.load(), "echo")] == ["echo-1", "echo-2", "echo-3"]


# -- commands are quoted, word by word ----------------------------------------------------------------

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
    lab = cp.ClusterLab(topology.load(), "ansible://all", "/nonexistent/inventory")
    cp1 = FakeHost({"id -u": (0, "1000\n"), "sudo -n test -r": (0, ""),
                    "sudo -n kubectl --kubeconfig /etc/kubernetes/admin.conf get pods": (0, PODS)})
    lab._selected = ["cp1", "worker1", "worker2"]
    lab._hosts = {"cp1": cp1, "worker1": FakeHost({"id -u": (0, "0\n")}), "worker2": FakeHost({})}
    lab.control_plane = lambda: "cp1"
    return lab


def test_kubectl_exec_is_one_quoted_command_line_that_splits_back_into_its_words(cluster):
    pod = cp.K8sPod("echo-a", "default", "worker1", "10.244.1.5", "u", "Running", ["echo"], True,
                    curl_container="echo")
    cluster.pod_curl(pod, "http://10.96.0.20:80/", host="demo.lab.local; rm -rf /")
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
    with pytest.raises(cp.ProbeError, match=r"echo-2: only 1 running echo pods .*asks for 3"):
        cluster.pod(cp.PodSlot("echo", 1, 3))


def test_a_node_missing_from_the_inventory_is_named(cluster):
    cluster._selected = ["cp1"]
    cluster._hosts.pop("worker2")
    with pytest.raises(cp.ProbeError, match="node worker2 of the topology is not among the hosts"):
        cluster.run("worker2", ["true"])


def test_other_connections_than_ansible_are_refused():
    lab = cp.ClusterLab(topology.load(), "ssh://cp1", None)
    with pytest.raises(cp.ProbeError, match="reached through Ansible"):
        lab.selected_nodes()
