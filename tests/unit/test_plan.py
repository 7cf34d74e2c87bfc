"""The netns lab's plan: every pod gets its own address in its node's pod_cidr, namespace
names as containerd makes them (cni-<uuid>), stable within a lab and distinct between
labs, host veth names that Linux accepts, and one ingress controller per node."""
from __future__ import annotations

import copy
import ipaddress
import re
from typing import Any

import pytest

from podpath.model import plan as plan_mod, topology as topology_mod
from podpath.model.labdir import load_module_util

CNI_NETNS = re.compile(r"^cni-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TOPOLOGY = topology_mod.load()
PLAN = plan_mod.build(TOPOLOGY, "podpath")
POD_IDS = [p.name for p in PLAN.pods]


@pytest.fixture(scope="module")
def plan() -> plan_mod.Plan:
    return plan_mod.build(TOPOLOGY, "podpath")


def test_pod_ips_are_unique(plan):
    ips = [p.ip for p in plan.pods]
    assert len(ips) == len(set(ips))


@pytest.mark.parametrize("name", POD_IDS)
def test_pod_ip_is_a_host_of_its_nodes_pod_cidr(plan, name):
    pod = plan.pod(name)
    node = plan.node(pod.node)
    cidr = ipaddress.IPv4Network(node.pod_cidr)
    ip = ipaddress.IPv4Address(pod.ip)
    assert ip in cidr
    assert ip not in (cidr.network_address, cidr.broadcast_address)
    assert pod.ip != node.gateway, "the first host is cni0's"
    assert pod.prefixlen == cidr.prefixlen
    assert pod.gateway == node.gateway


@pytest.mark.parametrize("name", POD_IDS)
def test_pod_namespace_is_named_as_containerd_names_it(plan, name):
    pod = plan.pod(name)
    assert CNI_NETNS.match(pod.netns)
    assert pod.netns == f"cni-{pod.uid}"


def test_pod_namespaces_are_the_same_for_the_same_lab():
    again = plan_mod.build(copy.deepcopy(TOPOLOGY), "podpath")
    assert [p.netns for p in again.pods] == [p.netns for p in PLAN.pods]
    assert [p.ip for p in again.pods] == [p.ip for p in PLAN.pods]


def test_pod_namespaces_differ_between_labs():
    other = plan_mod.build(TOPOLOGY, "student07")
    assert not {p.netns for p in other.pods} & {p.netns for p in PLAN.pods}
    assert not {p.host_veth for p in other.pods} & {p.host_veth for p in PLAN.pods}


def test_node_lan_and_client_namespaces_carry_the_lab_name():
    other = plan_mod.build(TOPOLOGY, "student07")
    names = [n.netns for n in other.nodes] + [other.lan_netns, other.client_netns]
    assert all(name.startswith("student07-") for name in names)


@pytest.mark.parametrize("name", POD_IDS)
def test_host_veth_name_fits_in_15_bytes(plan, name):
    veth = plan.pod(name).host_veth
    assert len(veth.encode()) <= topology_mod.IFNAME_MAX
    assert re.match(r"^veth[0-9a-f]{8}$", veth)


@pytest.mark.parametrize("node", [n["name"] for n in TOPOLOGY["nodes"]])
def test_host_veth_names_are_unique_on_a_node(plan, node):
    veths = [p.host_veth for p in plan.pods_on(node)]
    assert len(veths) == len(set(veths))


def test_ingress_controllers_run_one_per_node(plan):
    assert len(plan.ingress_pods) == TOPOLOGY["ingress"]["replicas"]
    assert sorted(p.node for p in plan.ingress_pods) == sorted(n.name for n in plan.nodes)


def test_echo_pods_run_on_workers_only(plan):
    roles = {n.name: n.role for n in plan.nodes}
    assert plan.echo_pods
    assert all(roles[p.node] == "worker" for p in plan.echo_pods)


def test_the_multi_container_pod_runs_where_the_topology_says(plan):
    mcp = TOPOLOGY["workloads"]["multi_container_pod"]
    pod = plan.pod(mcp["name"])
    assert pod.node == mcp["node"]
    assert len(pod.containers) == 2


def test_node_gateway_is_the_first_host_of_its_pod_cidr(plan):
    for node in plan.nodes:
        assert node.gateway == str(ipaddress.IPv4Network(node.pod_cidr).network_address + 1)


def test_more_pods_than_before_keep_the_first_pods_addresses():
    topo: dict[str, Any] = copy.deepcopy(TOPOLOGY)
    topo["workloads"]["echo"]["replicas"] += 4
    topology_mod.validate(topo)
    bigger = plan_mod.build(topo, "podpath")
    ips = [p.ip for p in bigger.pods]
    assert len(ips) == len(set(ips))
    for pod in PLAN.pods:
        if pod.app == "ingress-nginx":
            assert bigger.pod(pod.name).ip == pod.ip


def test_the_plans_netns_spec_is_accepted_by_the_module():
    spec = load_module_util("podpath_netns_spec")
    state = spec.normalize(plan_mod.netns_spec(PLAN))
    assert None not in state, "the netns lab must not touch the host's own namespace"
    assert set(state) == ({n.netns for n in PLAN.nodes} | {p.netns for p in PLAN.pods}
                          | {PLAN.lan_netns, PLAN.client_netns})


def test_every_namespace_of_the_lab_is_ipv4_only(plan):
    spec = plan_mod.netns_spec(plan)
    assert len(spec) == 2 + len(plan.nodes) + len(plan.pods)
    for ns in spec:
        sysctls = ns.get("sysctls", {})
        assert sysctls.get("net.ipv6.conf.all.disable_ipv6") == 1, ns["name"]
        assert sysctls.get("net.ipv6.conf.default.disable_ipv6") == 1, ns["name"]


def test_services_hold_their_endpoint_pods(plan):
    assert [p.name for p in plan.ingress_service.pods] == [p.name for p in plan.ingress_pods]
    assert [p.name for p in plan.echo_service.pods] == [p.name for p in plan.echo_pods]
    assert plan.empty_service.pods == []
    for svc in plan.services:
        assert all(pod is plan.pod(pod.name) for pod in svc.pods), f"{svc.name}: endpoints are the plan's own pods"


def test_the_plan_says_what_callers_used_to_read_from_the_topology(plan):
    assert (plan.node_network, plan.pod_network, plan.service_network) == (
        TOPOLOGY["node_network"], TOPOLOGY["pod_network"], TOPOLOGY["service_network"])
    assert (plan.client_name, plan.client_ip) == (TOPOLOGY["client"]["name"], TOPOLOGY["client"]["ip"])
    assert plan.ingress_host == TOPOLOGY["ingress"]["host"]
    assert plan.election_id == TOPOLOGY["ingress"]["election_id"]
    assert plan.ingress_service.name == TOPOLOGY["ingress"]["service"]
    assert plan.echo_service.name == TOPOLOGY["workloads"]["echo"]["name"]
    assert plan.empty_service.cluster_ip == TOPOLOGY["workloads"]["empty_service"]["cluster_ip"]


def test_the_plans_namespaces_are_the_ones_its_netns_spec_makes(plan):
    names = plan.netns_names
    assert len(names) == len(set(names))
    assert sorted(names) == sorted(ns["name"] for ns in plan_mod.netns_spec(plan))


# -- pod_neighbours ---------------------------------------------------------------------
def _links(spec: list[dict], netns: str) -> dict:
    return {link["name"]: link for link in next(n for n in spec if n["name"] == netns)["links"]}


def test_static_neighbours_give_each_node_an_entry_per_pod_and_each_pod_one_for_its_gateway():
    topo = copy.deepcopy(TOPOLOGY)
    topo["pod_neighbours"] = "static"
    plan = plan_mod.build(topo, "podpath")
    spec = plan_mod.netns_spec(plan)
    for node in plan.nodes:
        cni0 = _links(spec, node.netns)["cni0"]
        assert cni0["mac"] == plan_mod.pod_mac(node.gateway)
        assert {e["dst"]: e["lladdr"] for e in cni0["neighbours"]} == {
            p.ip: plan_mod.pod_mac(p.ip) for p in plan.pods_on(node.name)}
    for pod in plan.pods:
        eth0 = _links(spec, pod.netns)["eth0"]
        assert eth0["mac"] == plan_mod.pod_mac(pod.ip)
        assert eth0["neighbours"] == [{"dst": pod.gateway, "lladdr": plan_mod.pod_mac(pod.gateway)}]


def test_learned_neighbours_ask_for_no_mac_and_no_permanent_entry(plan):
    assert plan.pod_neighbours == "learned", "the reference topology's pods learn by ARP"
    spec = plan_mod.netns_spec(plan)
    for netns, name in [(n.netns, "cni0") for n in plan.nodes] + [(p.netns, "eth0") for p in plan.pods]:
        link = _links(spec, netns)[name]
        assert "mac" not in link and link["neighbours"] == [], (netns, name)


@pytest.mark.parametrize("ip, mac", [("10.244.1.2", "0a:58:0a:f4:01:02"), ("10.244.0.1", "0a:58:0a:f4:00:01"),
                                     ("192.168.1.255", "0a:58:c0:a8:01:ff")])
def test_pod_mac_is_0a58_and_the_address(ip, mac):
    assert plan_mod.pod_mac(ip) == mac
    first = int(mac[:2], 16)
    assert first & 1 == 0 and first & 2, "a unicast, locally administered MAC"
