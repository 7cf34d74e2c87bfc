"""The plan of flannel's two backends: what each node of the netns lab gets between nodes.

vxlan (the default): each node has flannel.1 (VNI 1, UDP 8472, its LAN address as source,
no learning, the LAN's MTU - 50, a stable MAC, its pod subnet's network address as a /32),
and for every other node the neighbour entry, FDB entry and onlink route flannel writes.
host-gw: each other node's pod subnet is routed via that node's LAN address. Both plans are
checked by the module's own normalize(), which is what the play hands them to.
"""
from __future__ import annotations

import copy
import ipaddress

import pytest

from podpath.model import plan as plan_mod
from podpath.model import topology
from podpath.model.labdir import load_module_util

spec_mod = load_module_util("podpath_netns_spec")


def with_backend(backend: str | None) -> dict:
    topo = copy.deepcopy(topology.load())
    if backend is None:
        topo.pop("flannel", None)
    else:
        topo["flannel"] = {"backend": backend}
    topology.validate(topo)
    return topo


def node_spec(spec: list[dict], netns: str) -> dict:
    return next(ns for ns in spec if ns["name"] == netns)


@pytest.fixture(scope="module")
def vxlan():
    plan = plan_mod.build(with_backend("vxlan"), "fl1")
    return plan, plan_mod.netns_spec(plan)


@pytest.fixture(scope="module")
def host_gw():
    plan = plan_mod.build(with_backend("host-gw"), "fl1")
    return plan, plan_mod.netns_spec(plan)


def test_vxlan_is_the_default_as_in_the_cluster_lab():
    assert topology.load()["flannel"]["backend"] == "vxlan"
    assert plan_mod.build(with_backend(None), "fl1").flannel_backend == "vxlan"
    assert all(node.vtep for node in plan_mod.build(with_backend(None), "fl1").nodes)


def test_each_node_has_flannel_1_as_flannel_makes_it(vxlan):
    plan, spec = vxlan
    for node in plan.nodes:
        links = {link["name"]: link for link in node_spec(spec, node.netns)["links"]}
        device = links["flannel.1"]
        assert device["kind"] == "vxlan"
        assert device["vxlan"] == {"id": 1, "local": node.ip, "dev": "eth1", "port": 8472, "learning": False}
        assert device["mtu"] == 1500 - 50
        network = ipaddress.IPv4Network(node.pod_cidr).network_address
        assert device["addresses"] == [f"{network}/32"] and node.vtep.address == str(network)
        assert device["mac"] == node.vtep.mac and node.vtep.public_ip == node.ip
        assert links["eth1"]["addresses"] == [f"{node.ip}/{node.prefixlen}"]


def test_each_node_has_one_neighbour_fdb_entry_and_onlink_route_per_other_node(vxlan):
    plan, spec = vxlan
    for node in plan.nodes:
        ns = node_spec(spec, node.netns)
        device = next(link for link in ns["links"] if link["name"] == "flannel.1")
        others = [n for n in plan.nodes if n is not node]
        assert sorted((e["dst"], e["lladdr"]) for e in device["neighbours"]) == sorted(
            (str(ipaddress.IPv4Network(o.pod_cidr).network_address), o.vtep.mac) for o in others)
        assert sorted((e["lladdr"], e["dst"]) for e in device["fdb"]) == sorted((o.vtep.mac, o.ip) for o in others)
        between = [r for r in ns["routes"] if r["dst"] != "default"]
        assert sorted(between, key=lambda r: r["dst"]) == sorted(
            [{"dst": o.pod_cidr, "gateway": str(ipaddress.IPv4Network(o.pod_cidr).network_address),
              "dev": "flannel.1", "onlink": True, "protocol": "boot"} for o in others], key=lambda r: r["dst"])
        assert [r for r in ns["routes"] if r["dst"] == "default"] == [{"dst": "default", "gateway": plan.client_ip}]
        assert {plan.pod_subnet_next_hop(o.name) for o in others} == {r["gateway"] for r in between}


def test_host_gw_routes_each_pod_subnet_via_its_node_and_has_no_tunnel(host_gw):
    plan, spec = host_gw
    assert plan.flannel_backend == "host-gw"
    for node in plan.nodes:
        ns = node_spec(spec, node.netns)
        assert node.vtep is None
        assert [link["name"] for link in ns["links"]] == ["cni0", "eth1"]
        between = sorted((r for r in ns["routes"] if r["dst"] != "default"), key=lambda r: r["dst"])
        assert between == sorted([{"dst": o.pod_cidr, "gateway": o.ip, "protocol": "boot"}
                                  for o in plan.nodes if o is not node], key=lambda r: r["dst"])
        assert {plan.pod_subnet_next_hop(o.name) for o in plan.nodes if o is not node} == {
            r["gateway"] for r in between}


def test_the_vtep_mac_is_stable_per_lab_and_node_and_locally_administered_unicast(vxlan):
    plan, _ = vxlan
    again = plan_mod.build(with_backend("vxlan"), "fl1")
    other_lab = plan_mod.build(with_backend("vxlan"), "fl2")
    macs = [n.vtep.mac for n in plan.nodes]
    assert macs == [n.vtep.mac for n in again.nodes], "a second up must find the same MACs"
    assert len(set(macs)) == len(macs), "two nodes with one VTEP MAC would take each other's traffic"
    assert not set(macs) & {n.vtep.mac for n in other_lab.nodes}
    for mac in macs:
        first = int(mac[:2], 16)
        assert first & 0x02 and not first & 0x01, f"{mac} is not locally administered unicast, as flannel's"


@pytest.mark.parametrize("mode", ["vxlan", "host-gw"])
def test_the_module_takes_the_plan_as_it_is(mode, vxlan, host_gw):
    """normalize() accepts the plan (flannel.1's /32 inside cni0's subnet, gateways outside
    every subnet of the node on onlink routes) and keeps what the plan says."""
    plan, spec = vxlan if mode == "vxlan" else host_gw
    desired = spec_mod.normalize(spec)
    for node in plan.nodes:
        wanted = node_spec(spec, node.netns)
        assert desired[node.netns]["routes"] == sorted(wanted["routes"], key=lambda r: r["dst"])
        device = desired[node.netns]["links"].get("flannel.1")
        if mode == "host-gw":
            assert device is None
            continue
        raw = next(link for link in wanted["links"] if link["name"] == "flannel.1")
        assert device["vxlan"] == raw["vxlan"] and (device["mtu"], device["mac"]) == (raw["mtu"], raw["mac"])
        assert device["neighbours"] == sorted([e["dst"], e["lladdr"]] for e in raw["neighbours"])
        assert device["fdb"] == sorted([e["lladdr"], e["dst"]] for e in raw["fdb"])


def test_the_backend_changes_the_nodes_only_not_the_pods(vxlan, host_gw):
    """The tunnel's entries are per node: a lab's pods are wired the same in both modes."""
    nodes = {n.netns for n in vxlan[0].nodes}
    assert [ns for ns in vxlan[1] if ns["name"] not in nodes] == [ns for ns in host_gw[1] if ns["name"] not in nodes]


def test_an_unknown_backend_is_refused_with_the_choices():
    topo = copy.deepcopy(topology.load())
    topo["flannel"] = {"backend": "udp"}
    with pytest.raises(topology.TopologyError) as caught:
        topology.validate(topo)
    assert "flannel.backend" in str(caught.value) and "'udp'" in str(caught.value)
    assert "vxlan" in str(caught.value) and "host-gw" in str(caught.value)


@pytest.mark.parametrize("mode", ["vxlan", "host-gw"])
def test_the_hop_between_nodes_is_what_the_nodes_are_given(mode, vxlan, host_gw):
    """node_hop (what trace and the docs name) says what the wiring makes: the route, and
    with vxlan the neighbour and FDB entry of the source node's flannel.1."""
    plan, spec = vxlan if mode == "vxlan" else host_gw
    for src in plan.nodes:
        ns = node_spec(spec, src.netns)
        device = next((link for link in ns["links"] if link["name"] == "flannel.1"), None)
        for dst in (n for n in plan.nodes if n is not src):
            hop = plan.node_hop(src.name, dst.name)
            route = next(r for r in ns["routes"] if r["dst"] == dst.pod_cidr)
            assert (hop.dst, hop.gateway, hop.backend) == (route["dst"], route["gateway"], mode)
            assert hop.dev == route.get("dev", "eth1")
            if mode == "host-gw":
                assert (hop.lladdr, hop.underlay, str(hop)) == (None, None, f"{dst.pod_cidr} via {dst.ip} dev eth1")
                continue
            assert {"dst": hop.gateway, "lladdr": hop.lladdr} in device["neighbours"]
            assert {"lladdr": hop.lladdr, "dst": hop.underlay} in device["fdb"]
            assert (hop.port, hop.vni) == (device["vxlan"]["port"], device["vxlan"]["id"])
            assert "inside UDP 8472 (VNI 1)" in str(hop) and f"dst {dst.ip}" in str(hop)
