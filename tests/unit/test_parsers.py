"""Unit tests of podpath/evidence/parsers.py: the parsers of kubectl, crictl, lsns, iptables-save,
arping, ip, arp, curl and /proc output, and kube-proxy's chains.

The cluster samples below are HAND-WRITTEN in the shape the tool prints (field names and
nesting as documented by Kubernetes, containerd's CRI plugin, util-linux and iptables), cut
down to what the parsers read: no cluster runs here. The samples of ip, mountinfo and arp
are in the shape this host's tools print them.
"""
from __future__ import annotations

import json
import subprocess

import pytest

from podpath.evidence import parsers
from podpath.evidence.cluster import EXCLUDE_LB_LABEL
from podpath.evidence.lab import Lease, ProbeError, Result

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
    {"metadata": {"name": "cp1", "labels": {EXCLUDE_LB_LABEL: ""}}, "spec": {"podCIDR": "10.244.0.0/24"},
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
    echo, multi = parsers.parse_pods(PODS)
    assert (echo.name, echo.node, echo.ip, echo.uid, echo.ready) == ("echo-7d9c-abcde", "worker1", "10.244.1.5", "u-1", True)
    assert echo.containers == ["echo"] and echo.restarts == {"echo": 2}
    assert echo.container_ids == {"echo": "0123abcd"}
    assert (multi.ip, multi.phase, multi.ready, multi.containers) == ("", "Pending", False, ["busybox", "nginx"])


def test_nodes_are_read_with_address_pod_cidr_readiness_and_labels():
    nodes = parsers.parse_nodes(NODES)
    assert nodes["cp1"].internal_ip == "192.168.56.10" and nodes["cp1"].ready
    assert EXCLUDE_LB_LABEL in nodes["cp1"].labels
    assert (nodes["worker1"].pod_cidr, nodes["worker1"].ready) == ("10.244.1.0/24", False)


def test_a_pod_that_shares_its_process_namespace_says_so():
    data = json.loads(PODS)
    data["items"][1]["spec"]["shareProcessNamespace"] = True
    echo, multi = parsers.parse_pods(json.dumps(data))
    assert (echo.share_process_namespace, multi.share_process_namespace) == (False, True)


def test_a_node_whose_network_is_unavailable_says_so():
    data = json.loads(NODES)
    data["items"][1]["status"]["conditions"].append({"type": "NetworkUnavailable", "status": "True"})
    nodes = parsers.parse_nodes(json.dumps(data))
    assert (nodes["cp1"].network_unavailable, nodes["worker1"].network_unavailable) == (False, True)


def test_endpoint_slices_give_every_address_with_readiness_and_pod():
    endpoints = parsers.parse_endpoint_slices(SLICES)
    assert [(e.ip, e.ready, e.pod, e.node) for e in endpoints] == [
        ("10.244.1.5", True, "echo-a", "worker1"),
        ("10.244.2.7", False, "echo-b", "worker2"),
        ("10.244.0.3", True, "echo-c", "cp1"),  # no ready condition: unknown, read as ready
    ]
    assert endpoints[0].ports == {"http": 8080}


def test_lease_gives_holder_renew_time_and_duration():
    lease = parsers.parse_lease(LEASE)
    assert lease.holder == "ingress-nginx-controller-5f-x1"
    assert lease.duration == 30.0
    assert lease.renew_time == pytest.approx(1779271200.5)


def test_lease_without_holder():
    assert parsers.parse_lease(json.dumps({"spec": {}})) == Lease(None, None, None)


def test_service_gives_cluster_ip_ports_policy_and_load_balancer_address():
    svc = parsers.parse_service(SERVICE)
    assert svc["cluster_ip"] == "10.96.0.100" and svc["policy"] == "Cluster"
    assert svc["ports"]["http"]["nodePort"] == 30080
    assert svc["lb_ips"] == ["192.168.56.200"]


def test_service_without_an_address_yet():
    assert parsers.parse_service(json.dumps({"spec": {}, "status": {"loadBalancer": {}}}))["lb_ips"] == []


@pytest.mark.parametrize("text", ["", "error: the server doesn't have a resource type", "[1, 2"])
def test_output_that_is_not_json_is_refused_naming_where_it_came_from(text):
    with pytest.raises(ProbeError, match="kubectl get pods -n default on cp1: expected JSON"):
        parsers.parse_pods(text, "kubectl get pods -n default on cp1")


def test_json_of_the_wrong_shape_is_refused():
    with pytest.raises(ProbeError, match="list of items"):
        parsers.parse_pods(json.dumps({"items": {"not": "a list"}}), "pods")


def test_announcer_comes_from_service_l2_status_first():
    statuses = json.dumps({"items": [
        {"status": {"node": "worker2", "serviceName": "other", "serviceNamespace": "default"}},
        {"status": {"node": "worker1", "serviceName": "ingress-nginx-controller",
                    "serviceNamespace": "ingress-nginx"}}]})
    assert parsers.parse_announcer(statuses, None, "ingress-nginx", "ingress-nginx-controller") == "worker1"


def test_announcer_falls_back_to_the_newest_node_assigned_event():
    events = json.dumps({"items": [
        {"reason": "nodeAssigned", "message": 'announcing from node "worker1" with protocol "layer2"',
         "lastTimestamp": "2026-05-20T09:00:00Z"},
        {"reason": "nodeAssigned", "message": 'announcing from node "worker2" with protocol "layer2"',
         "lastTimestamp": "2026-05-20T10:00:00Z"},
        {"reason": "IPAllocated", "message": 'Assigned IP ["192.168.56.200"]', "lastTimestamp": "2026-05-20T11:00:00Z"}]})
    assert parsers.parse_announcer(None, events, "ingress-nginx", "ingress-nginx-controller") == "worker2"
    assert parsers.parse_announcer(None, None, "ingress-nginx", "ingress-nginx-controller") is None


# -- crictl, lsns, /proc -------------------------------------------------------------------------

def test_crictl_pods_keeps_the_ready_sandbox_of_exactly_that_pod():
    # crictl's --name is a regular expression: echo-ab matches too, and is dropped by name and uid
    assert parsers.parse_crictl_pods(CRICTL_PODS, "echo-a", "default", "u-1", "crictl pods") == ["sb-new"]
    assert parsers.parse_crictl_pods(CRICTL_PODS, "echo-a", "kube-system", "u-1", "crictl pods") == []


def test_crictl_inspectp_gives_the_namespace_path_and_the_pause_pid():
    sandbox = parsers.parse_crictl_inspectp(INSPECTP, "inspectp")
    assert sandbox == parsers.Sandbox("sb-new", "/var/run/netns/cni-2f1e8a4c-1111-2222-3333-444455556666", 4321,
                                 "SANDBOX_READY")


def test_crictl_inspectp_without_a_network_namespace_names_the_pod():
    data = json.loads(INSPECTP)
    data["info"]["runtimeSpec"]["linux"]["namespaces"] = [{"type": "network"}]
    with pytest.raises(ProbeError, match="pod echo-a on worker1: .*no network namespace path"):
        parsers.parse_crictl_inspectp(json.dumps(data), "pod echo-a on worker1")


def test_crictl_inspectp_without_a_pid():
    data = json.loads(INSPECTP)
    del data["info"]["pid"]
    with pytest.raises(ProbeError, match="no pause pid"):
        parsers.parse_crictl_inspectp(json.dumps(data), "inspectp")


@pytest.mark.parametrize("sample", [LSNS_NEW, LSNS_OLD], ids=["util-linux-2.38", "util-linux-2.36"])
def test_lsns_by_inode_with_numbers_or_strings(sample):
    space = parsers.parse_lsns(sample)[4026532301]
    assert (space.nprocs, space.pid, space.command) == (3, 4321, "/pause")
    assert space.nsfs and all(p.startswith("/run/netns/") for p in space.nsfs)


def test_lsns_lists_every_bind_mount_and_none_for_the_host():
    assert parsers.parse_lsns(LSNS_OLD)[4026532301].nsfs == ["/run/netns/a", "/run/netns/b"]
    assert parsers.parse_lsns(LSNS_NEW)[4026531840].nsfs == []


def test_lsns_refuses_other_shapes():
    with pytest.raises(ProbeError, match="lsns on worker2"):
        parsers.parse_lsns(json.dumps({"filesystems": []}), "lsns on worker2")
    with pytest.raises(ProbeError, match="without a namespace inode"):
        parsers.parse_lsns(json.dumps({"namespaces": [{"type": "net"}]}))


def test_namespace_link_of_a_process():
    assert parsers.parse_ns_link("net:[4026532301]\n", "readlink") == 4026532301
    with pytest.raises(ProbeError, match="worker1: readlink"):
        parsers.parse_ns_link("readlink: /proc/99/ns/net: No such file", "worker1: readlink")


def test_namespace_link_of_each_kind_is_read_only_as_that_kind():
    assert parsers.parse_ns_link("uts:[4026532305]", "readlink", "uts") == 4026532305
    with pytest.raises(ProbeError, match="expected uts:\\[INODE\\], got 'net:\\[4026532301\\]'"):
        parsers.parse_ns_link("net:[4026532301]", "readlink", "uts")


# -- iptables-save and kube-proxy's chains ------------------------------------------------------------

def test_iptables_save_is_read_into_chains_with_counters_and_quoting_undone():
    chains = parsers.parse_iptables_save(IPTABLES)
    assert set(chains) >= {"KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-SEP-GGGGGGGGGGGGGGGG"}
    first = chains["KUBE-SERVICES"][0]
    assert first.option("--comment") == "default/echo:http cluster IP"
    assert first.target == "KUBE-SVC-AAAAAAAAAAAAAAAA" and first.packets == 0
    assert chains["PREROUTING"][0].packets == 10 and chains["PREROUTING"][0].bytes == 600


def test_iptables_save_without_counters():
    plain = "\n".join(line.split("] ", 1)[1] if line.startswith("[") else line for line in IPTABLES.splitlines())
    rule = parsers.parse_iptables_save(plain)["KUBE-SEP-BBBBBBBBBBBBBBBB"][1]
    assert rule.packets is None and rule.option("--to-destination") == "10.244.0.3:8080"


def test_empty_chains_are_listed():
    assert parsers.parse_iptables_save(":KUBE-SVC-XXXXXXXXXXXXXXXX - [0:0]\n") == {"KUBE-SVC-XXXXXXXXXXXXXXXX": []}


def test_cluster_ip_path_has_probabilities_one_in_n_and_dnat_per_endpoint():
    path = parsers.service_path(parsers.parse_iptables_save(IPTABLES), "10.96.0.20", 80)
    assert path.entry_chain == path.svc_chain == "KUBE-SVC-AAAAAAAAAAAAAAAA"
    assert [s.probability for s in path.seps] == [pytest.approx(1 / 3), pytest.approx(1 / 2), None]
    assert [s.destinations for s in path.seps] == [["10.244.0.3:8080"], ["10.244.1.5:8080"], ["10.244.2.7:8080"]]
    assert [s.dnat_packets for s in path.seps] == [4, 0, 0]


def test_load_balancer_path_goes_through_kube_ext_to_the_service_chain():
    path = parsers.service_path(parsers.parse_iptables_save(IPTABLES), "192.168.56.200", 80)
    assert (path.entry_chain, path.svc_chain) == ("KUBE-EXT-EEEEEEEEEEEEEEEE", "KUBE-SVC-FFFFFFFFFFFFFFFF")
    assert [(s.chain, s.probability, s.destinations, s.dnat_packets) for s in path.seps] == [
        ("KUBE-SEP-GGGGGGGGGGGGGGGG", None, ["10.244.1.9:80"], 7)]


def test_no_path_for_an_address_or_port_kube_proxy_does_not_know():
    chains = parsers.parse_iptables_save(IPTABLES)
    assert parsers.service_path(chains, "10.96.0.30", 80) is None
    assert parsers.service_path(chains, "10.96.0.20", 443) is None


def test_a_sep_chain_that_lost_its_dnat_rule_shows_no_destination():
    broken = "\n".join(line for line in IPTABLES.splitlines() if "--to-destination 10.244.1.5:8080" not in line)
    seps = parsers.service_path(parsers.parse_iptables_save(broken), "10.96.0.20", 80).seps
    assert [s.destinations for s in seps] == [["10.244.0.3:8080"], [], ["10.244.2.7:8080"]]


# -- MetalLB, arping ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, macs", [
    (ARPING_HABETS, ["08:00:27:aa:bb:cc", "08:00:27:aa:bb:cc"]),
    (ARPING_IPUTILS, ["08:00:27:aa:bb:cc", "08:00:27:dd:ee:ff"]),
    ("ARPING 192.168.56.200\nTimeout\nTimeout\n", []),
], ids=["habets", "iputils", "no-answer"])
def test_arping_replies_of_either_arping(text, macs):
    assert parsers.parse_arping(text) == macs


def test_arping_command_line_fits_the_installed_arping():
    assert parsers.arping_argv("ARPing 2.23, by Thomas Habets", "vboxnet0", "192.168.56.200", 3) == [
        "arping", "-c", "3", "-w", "4", "-i", "vboxnet0", "192.168.56.200"]
    assert parsers.arping_argv("Usage: arping [-AbDfhqUV] [-c count] [-w timeout] [-I device]", "eth1",
                          "192.168.56.200", 1)[-3:] == ["-I", "eth1", "192.168.56.200"]


# -- HTTP answers, addresses -------------------------------------------------------------------

def test_batch_script_runs_the_command_n_times_and_each_answer_is_parsed():
    # the batch script with printf in place of curl: nothing is sent anywhere
    fake = ["printf", "HTTP/1.1 200 OK\r\nX-Ingress-Controller: c-1\r\n\r\npod=echo-a client=10.244.1.9\n"]
    done = subprocess.run(["sh", "-c", parsers.BATCH_SCRIPT, "sh", "3"] + fake, capture_output=True, text=True, timeout=10)
    answers = parsers.parse_http_batch(done.stdout)
    assert [(a.status, a.field("pod"), a.headers.get("x-ingress-controller")) for a in answers] == [
        (200, "echo-a", "c-1")] * 3


def test_batch_answers_keep_failures_with_their_exit_code():
    text = f"{parsers.BATCH_MARK} rc=7\ncurl: (7) Failed to connect to 10.96.0.30 port 80\n{parsers.BATCH_MARK} rc=0\n" \
           "HTTP/1.1 404 Not Found\n\nnope\n"
    refused, missing = parsers.parse_http_batch(text)
    assert (refused.rc, refused.status) == (7, None) and "Failed to connect" in refused.error
    assert missing.status == 404


def test_node_side_addresses_are_node_ips_cni0_and_flannel():
    assert parsers.node_side_addresses(parsers.parse_nodes(NODES)) == {
        "192.168.56.10", "10.244.0.0", "10.244.0.1", "192.168.56.11", "10.244.1.0", "10.244.1.1"}


# -- curl, /proc, ip, arp, the client's OS --------------------------------------------------------

def test_curl_output_gives_status_headers_and_the_echo_fields():
    out = Result(0, "HTTP/1.1 200 OK\r\nX-Ingress-Controller: ingress-nginx-controller-2\r\n\r\n"
                    "pod=echo-1 ip=10.244.1.3 node=worker1 client=10.244.2.2 forwarded_for=192.168.56.11\n", "")
    answer = parsers.parse_http(out)
    assert (answer.status, answer.headers["x-ingress-controller"]) == (200, "ingress-nginx-controller-2")
    assert (answer.field("pod"), answer.field("client"), answer.field("missing")) == ("echo-1", "10.244.2.2", None)


def test_curl_failures_keep_their_exit_code_and_say_what_happened():
    refused = parsers.parse_http(Result(7, "", ""))
    assert (refused.rc, refused.status, refused.error) == (7, None, "connection refused or no route")
    assert parsers.parse_http(Result(28, "", "curl: (28) timed out after 2001 ms")).error.startswith("curl: (28)")


# Lines of /proc/self/mountinfo on this host with a netns lab up: two namespace bind mounts
# and an ordinary mount.
MOUNTINFO = """24 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
43 42 0:4 net:[4026532177] /run/netns/hv2-lan rw shared:2 - nsfs nsfs rw
61 42 0:4 net:[4026532600] /run/netns/cni-5daa89a9-dc95-5c8a-a8f1-9e3376fd1513 rw shared:20 - nsfs nsfs rw
"""


def test_mountinfo_gives_every_namespace_bind_mount_and_its_namespace():
    assert parsers.parse_mountinfo_nsfs(MOUNTINFO) == {
        "/run/netns/hv2-lan": "net:[4026532177]",
        "/run/netns/cni-5daa89a9-dc95-5c8a-a8f1-9e3376fd1513": "net:[4026532600]"}


@pytest.mark.parametrize("mac", ["08:00:27:aa:bb:cc", "8:0:27:aa:bb:cc", "08-00-27-AA-BB-CC"],
                         ids=["linux", "macos", "windows"])
def test_macs_are_written_one_way_whatever_tool_printed_them(mac):
    assert parsers.normalize_mac(mac) == "08:00:27:aa:bb:cc"


def test_a_mac_that_is_not_one_is_refused():
    with pytest.raises(ProbeError, match="'08:00:27' is not a MAC address"):
        parsers.normalize_mac("08:00:27")


def test_linux_neighbour_table_gives_addresses_with_a_mac():
    text = json.dumps([{"dst": "192.168.56.200", "dev": "vboxnet0", "lladdr": "08:00:27:AA:BB:CC",
                        "state": ["REACHABLE"]},
                       {"dst": "192.168.56.201", "dev": "vboxnet0", "state": ["FAILED"]}])
    assert parsers.parse_ip_neigh(text) == {"192.168.56.200": "08:00:27:aa:bb:cc"}


def test_macos_arp_table_gives_addresses_with_a_mac():
    text = ("? (192.168.56.200) at 8:0:27:aa:bb:cc on vboxnet0 ifscope [ethernet]\n"
            "? (192.168.56.201) at (incomplete) on vboxnet0 ifscope [ethernet]\n")
    assert parsers.parse_arp_an(text) == {"192.168.56.200": "08:00:27:aa:bb:cc"}


@pytest.mark.parametrize("system, release, kind", [
    ("Linux", "6.1.0-28-amd64", "linux"),
    ("Linux", "5.15.153.1-microsoft-standard-WSL2", "wsl"),
    ("Darwin", "24.1.0", "macos"),
    ("Windows", "10", "windows"),
])
def test_the_client_os_is_told_apart_wsl2_included(system, release, kind):
    assert parsers.classify_host(system, release) == kind

