"""flannel's two backends in real netns labs, read with ip, bridge and tcpdump.

One lab per backend (random names; the host-gw one from a --topology file): a node's
flannel.1, routes, neighbour and FDB entries as flannel writes them, and a ping from a pod
on one node to a pod on another, captured on the source node's LAN link (inside the lab's
namespaces): inside UDP 8472 with vxlan, plain ICMP with host-gw. A second `up` changes
nothing, and a lab switched from one backend to the other is rewired in place.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from labtools import force_remove, lab_namespaces, new_lab_name, podpath

from podpath.model import plan as plan_mod
from podpath.model import topology

pytestmark = [pytest.mark.netns, pytest.mark.slow]


def topology_file(where: Path, backend: str) -> Path:
    topo = topology.read()
    topo["flannel"] = {"backend": backend}
    path = where / f"topology-{backend}.yml"
    path.write_text(yaml.safe_dump({"podpath_topology": topo}))
    return path


def run_in(netns: str, *argv: str) -> str:
    return subprocess.run(["nsenter", f"--net=/run/netns/{netns}", "--", *argv], capture_output=True, text=True,
                          check=True, timeout=60).stdout


def up(name: str, *extra: str) -> subprocess.CompletedProcess:
    done = podpath("up", "--lab", name, *extra)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@contextlib.contextmanager
def built_lab(tmp_path_factory, backend: str | None):
    """A lab with BACKEND (None: the default topology's), removed whatever happens:
    (name, its plan, the `--topology` arguments that built it)."""
    if os.geteuid() != 0:
        pytest.skip("the netns lab needs root")
    for tool in ("ip", "bridge", "tcpdump", "nsenter"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (iproute2, tcpdump, util-linux)")
    name = new_lab_name("f")
    extra = ("--topology", str(topology_file(tmp_path_factory.mktemp(name), backend))) if backend else ()
    try:
        up(name, *extra)
        topo = topology.read(extra[1]) if extra else topology.read()
        yield name, plan_mod.build(topo, name), extra
    finally:
        down = podpath("down", "--lab", name)
        if down.returncode != 0 or lab_namespaces(name):
            force_remove(name)


@pytest.fixture(scope="module")
def vxlan_lab(tmp_path_factory):
    with built_lab(tmp_path_factory, None) as lab:  # the default topology: vxlan
        yield lab


@pytest.fixture(scope="module")
def host_gw_lab(tmp_path_factory):
    with built_lab(tmp_path_factory, "host-gw") as lab:
        yield lab


def pods_across(plan) -> tuple:
    """A pod and a pod on another node (echo pods, on the workers)."""
    a = plan.echo_pods[0]
    b = next(p for p in plan.pods if p.node != a.node)
    return a, b


def capture_ping(plan, a, b, tmp_path: Path) -> Path:
    """Ping B from A while tcpdump captures on A's node's LAN link; the pcap file."""
    node = plan.node(a.node)
    pcap = tmp_path / "lan.pcap"
    # --immediate-mode: each packet as it comes (else the kernel hands them over in blocks
    # that a stop within the first second loses)
    dump = subprocess.Popen(["nsenter", f"--net=/run/netns/{node.netns}", "--", "tcpdump", "-i", "eth1", "-nn",
                             "--immediate-mode", "-U", "-w", str(pcap)], stderr=subprocess.PIPE, text=True)
    try:
        assert "listening on eth1" in dump.stderr.readline()
        ping = subprocess.run(["nsenter", f"--net=/run/netns/{a.netns}", "--", "ping", "-c", "3", "-i", "0.2", "-W",
                               "2", b.ip], capture_output=True, text=True, timeout=30)
        assert ping.returncode == 0, f"pod {a.name} -> pod {b.name} ({b.ip}): {ping.stdout}{ping.stderr}"
        time.sleep(0.3)
    finally:
        dump.send_signal(signal.SIGINT)
        dump.wait(timeout=10)
    return pcap


def read_pcap(pcap: Path, *argv: str) -> list[str]:
    out = subprocess.run(["tcpdump", "-r", str(pcap), "-nn", *argv], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def other_nodes(plan, node):
    return [n for n in plan.nodes if n.name != node.name]


# -- vxlan ---------------------------------------------------------------------------------------
def test_each_node_has_flannel_1_as_flannel_makes_it(vxlan_lab):
    _, plan, _ = vxlan_lab
    for node in plan.nodes:
        link = json.loads(run_in(node.netns, "ip", "-d", "-j", "link", "show", "flannel.1"))[0]
        info = link["linkinfo"]
        assert info["info_kind"] == "vxlan" and "UP" in link["flags"]
        data = info["info_data"]
        assert (data["id"], data["local"], data["link"], data["port"], data["learning"]) == (
            1, node.ip, "eth1", 8472, False), data
        assert link["mtu"] == 1450 and link["address"] == node.vtep.mac
        addresses = json.loads(run_in(node.netns, "ip", "-j", "-4", "addr", "show", "flannel.1"))[0]["addr_info"]
        assert [(a["local"], a["prefixlen"]) for a in addresses] == [(node.vtep.address, 32)]


def test_each_node_routes_other_subnets_through_flannel_1_with_flannels_entries(vxlan_lab):
    _, plan, _ = vxlan_lab
    for node in plan.nodes:
        routes = {r["dst"]: r for r in json.loads(run_in(node.netns, "ip", "-j", "route"))}
        neigh = {n["dst"]: n for n in json.loads(run_in(node.netns, "ip", "-j", "neigh", "show", "dev", "flannel.1"))}
        fdb = {f["mac"]: f for f in json.loads(run_in(node.netns, "bridge", "-j", "fdb", "show", "dev", "flannel.1"))}
        for other in other_nodes(plan, node):
            route = routes[other.pod_cidr]
            assert (route["gateway"], route["dev"], route.get("flags")) == (other.vtep.address, "flannel.1",
                                                                          ["onlink"]), route
            assert "protocol" not in route, f"flannel's route shows no protocol (the kernel's boot): {route}"
            assert (neigh[other.vtep.address]["lladdr"], neigh[other.vtep.address]["state"]) == (
                other.vtep.mac, ["PERMANENT"])
            entry = fdb[other.vtep.mac]
            assert (entry["dst"], entry["flags"], entry["state"]) == (other.ip, ["self"], "permanent")
        assert len(fdb) == len(plan.nodes) - 1 and len(neigh) == len(plan.nodes) - 1
        assert not [dst for dst, r in routes.items() if r.get("gateway") in {o.ip for o in plan.nodes}]


def test_a_pods_packet_to_another_node_leaves_by_flannel_1(vxlan_lab):
    _, plan, _ = vxlan_lab
    a, b = pods_across(plan)
    node = plan.node(a.node)
    got = json.loads(run_in(node.netns, "ip", "-j", "route", "get", b.ip, "from", a.ip, "iif", "cni0"))[0]
    assert (got["dev"], got["gateway"]) == ("flannel.1", plan.node(b.node).vtep.address), got


def test_pod_to_pod_across_nodes_travels_inside_udp_8472(vxlan_lab, tmp_path):
    _, plan, _ = vxlan_lab
    a, b = pods_across(plan)
    pcap = capture_ping(plan, a, b, tmp_path)
    lines = read_pcap(pcap, "-T", "vxlan", "udp port 8472")
    src, dst = plan.node(a.node), plan.node(b.node)
    tunnelled = [i for i in range(len(lines) - 1)
                 if f"IP {src.ip}." in lines[i] and f"> {dst.ip}.8472: VXLAN" in lines[i] and "vni 1" in lines[i]
                 and f"IP {a.ip} > {b.ip}: ICMP echo request" in lines[i + 1]]
    assert len(tunnelled) >= 3, "\n".join(lines[:20])
    plain = [line for line in read_pcap(pcap, "icmp") if f"{a.ip} > {b.ip}" in line]
    assert plain == [], f"the ping crossed the LAN outside the tunnel: {plain}"


def test_a_second_up_changes_nothing_in_vxlan_mode(vxlan_lab):
    name, _, extra = vxlan_lab
    again = up(name, *extra)
    assert "(0 tasks changed)" in again.stdout, again.stdout


# -- host-gw -------------------------------------------------------------------------------------
def test_host_gw_routes_via_the_other_node_with_no_tunnel(host_gw_lab):
    _, plan, _ = host_gw_lab
    for node in plan.nodes:
        links = {link["ifname"] for link in json.loads(run_in(node.netns, "ip", "-j", "link"))}
        assert "flannel.1" not in links
        routes = {r["dst"]: r for r in json.loads(run_in(node.netns, "ip", "-j", "route"))}
        for other in other_nodes(plan, node):
            route = routes[other.pod_cidr]
            assert (route["gateway"], route["dev"], route.get("flags", [])) == (other.ip, "eth1", []), route


def test_pod_to_pod_across_nodes_is_plain_icmp_with_host_gw(host_gw_lab, tmp_path):
    _, plan, _ = host_gw_lab
    a, b = pods_across(plan)
    pcap = capture_ping(plan, a, b, tmp_path)
    plain = [line for line in read_pcap(pcap, "icmp") if f"IP {a.ip} > {b.ip}: ICMP echo request" in line]
    assert len(plain) >= 3, read_pcap(pcap)[:20]
    assert read_pcap(pcap, "udp port 8472") == []


def test_a_second_up_changes_nothing_in_host_gw_mode(host_gw_lab):
    name, _, extra = host_gw_lab
    again = up(name, *extra)
    assert "(0 tasks changed)" in again.stdout, again.stdout


# -- switching -----------------------------------------------------------------------------------
def test_a_lab_switched_between_backends_is_rewired_in_place(tmp_path_factory, tmp_path):
    with built_lab(tmp_path_factory, "host-gw") as (name, plan, extra):
        vxlan_file = topology_file(tmp_path, "vxlan")
        switched = up(name, "--topology", str(vxlan_file))
        assert "(0 tasks changed)" not in switched.stdout
        node = plan.nodes[0]
        target = plan_mod.build(topology.read(vxlan_file), name)
        other = other_nodes(target, node)[0]
        route = next(r for r in json.loads(run_in(node.netns, "ip", "-j", "route")) if r["dst"] == other.pod_cidr)
        assert (route["gateway"], route["dev"]) == (other.vtep.address, "flannel.1")
        assert "(0 tasks changed)" in up(name, "--topology", str(vxlan_file)).stdout
        up(name, *extra)  # and back
        routes = json.loads(run_in(node.netns, "ip", "-j", "route"))
        assert next(r for r in routes if r["dst"] == other.pod_cidr)["gateway"] == other.ip
        assert "flannel.1" not in {link["ifname"] for link in json.loads(run_in(node.netns, "ip", "-j", "link"))}
        verify = podpath("verify", "--lab", name, *extra, timeout=600)
        assert verify.returncode == 0, verify.stdout[-3000:]


# -- the module alone: repair, check mode and diff ------------------------------------------------
MACS = {"1": "0a:00:00:00:01:01", "2": "0a:00:00:00:02:02"}


def two_nodes(lab) -> list[dict]:
    """Two nodes on one LAN bridge, each with flannel.1 toward the other, and no pods."""
    spec = [{"name": lab.ns("lan"), "links": [{"name": "lan0", "kind": "bridge"}]}]
    for me, other in (("1", "2"), ("2", "1")):
        spec.append({"name": lab.ns(f"n{me}"), "sysctls": {"net.ipv4.ip_forward": 1}, "links": [
            {"name": "eth1", "kind": "veth", "addresses": [f"192.168.77.1{me}/24"],
             "peer": {"name": f"{lab.name}p{me}", "namespace": lab.ns("lan"), "master": "lan0"}},
            {"name": "flannel.1", "kind": "vxlan", "mtu": 1450, "mac": MACS[me],
             "vxlan": {"id": 1, "local": f"192.168.77.1{me}", "dev": "eth1"}, "addresses": [f"10.77.{me}.0/32"],
             "neighbours": [{"dst": f"10.77.{other}.0", "lladdr": MACS[other]}],
             "fdb": [{"lladdr": MACS[other], "dst": f"192.168.77.1{other}"}]}],
            "routes": [{"dst": f"10.77.{other}.0/24", "gateway": f"10.77.{other}.0", "dev": "flannel.1",
                        "onlink": True, "protocol": "boot"}]})
    return spec


def blocks(text: str) -> dict[str, dict]:
    out, title = {}, None
    for line in text.splitlines(keepends=True):
        if line.startswith("# "):
            title = line[2:].strip()
            out[title] = ""
        else:
            out[title] += line
    return {k: json.loads(v) for k, v in out.items() if v.strip().startswith("{")}


def test_the_module_repairs_flannels_entries_and_shows_it_in_check_and_diff_mode(netns_lab):
    spec = two_nodes(netns_lab)
    n1 = netns_lab.ns("n1")
    assert netns_lab.apply(spec).changed
    assert not netns_lab.apply(spec).changed
    # the tunnel carries n1's own packets to n2's subnet and back
    run_in(n1, "ping", "-c", "1", "-W", "2", "10.77.2.0")
    run_in(n1, "ip", "neigh", "del", "10.77.2.0", "dev", "flannel.1")
    run_in(n1, "ip", "neigh", "add", "10.77.9.0", "lladdr", "0a:00:00:00:09:09", "dev", "flannel.1",
           "nud", "permanent")
    run_in(n1, "bridge", "fdb", "del", MACS["2"], "dev", "flannel.1", "dst", "192.168.77.12")
    run_in(n1, "ip", "route", "del", "10.77.2.0/24")
    check = netns_lab.apply(spec, check=True, diff=True)
    expected = [f"{n1}: remove neighbour 10.77.9.0 from flannel.1",
                f"{n1}: add neighbour 10.77.2.0 lladdr {MACS['2']} to flannel.1",
                f"{n1}: add fdb entry {MACS['2']} dst 192.168.77.12 to flannel.1",
                f"{n1}: add route 10.77.2.0/24 via 10.77.2.0 dev flannel.1 onlink"]
    assert check.changed and sorted(check.module["changes"]) == sorted(expected)
    before = blocks(check.module["diff"]["before"])[n1]["links"]["flannel.1"]
    after = blocks(check.module["diff"]["after"])[n1]["links"]["flannel.1"]
    assert before["neighbours"] == [["10.77.9.0", "0a:00:00:00:09:09"]] and "fdb" not in before
    assert after["neighbours"] == [["10.77.2.0", MACS["2"]]] and after["fdb"] == [[MACS["2"], "192.168.77.12"]]
    assert after["vxlan"] == before["vxlan"] == {"id": 1, "local": "192.168.77.11", "dev": "eth1", "port": 8472,
                                                 "learning": False}
    assert run_in(n1, "ip", "route", "show", "10.77.2.0/24") == "", "check mode changed the system"
    fixed = netns_lab.apply(spec)
    assert fixed.changed and sorted(fixed.module["changes"]) == sorted(expected)
    run_in(n1, "ping", "-c", "1", "-W", "2", "10.77.2.0")
    assert not netns_lab.apply(spec).changed
    # a VXLAN changed by hand is made again, with its entries and route
    run_in(n1, "ip", "link", "set", "flannel.1", "mtu", "1400")
    again = netns_lab.apply(spec)
    assert f"{n1}: delete link flannel.1" in again.module["changes"]
    assert f"{n1}: add route 10.77.2.0/24 via 10.77.2.0 dev flannel.1 onlink" in again.module["changes"]
    link = json.loads(run_in(n1, "ip", "-d", "-j", "link", "show", "flannel.1"))[0]
    assert link["mtu"] == 1450 and link["address"] == MACS["1"]
    run_in(n1, "ping", "-c", "1", "-W", "2", "10.77.2.0")
    assert not netns_lab.apply(spec).changed


# -- podpath trace's between-nodes hop -------------------------------------------------------------

def trace_between(lab, backend_dev: str) -> None:
    from podpath.evidence.probe import NetnsLab
    from podpath.evidence.trace import between_nodes
    name, plan, extra = lab
    netns_lab = NetnsLab(name, topology.read(extra[1]) if extra else topology.read())
    a, b = pods_across(plan)
    text, ok = between_nodes(netns_lab, b.node, a.node, a.ip)
    assert ok, text
    assert f"{b.node} -> {a.node}: {a.ip} via {plan.node_hop(b.node, a.node).gateway} dev {backend_dev}" in text
    assert between_nodes(netns_lab, a.node, a.node, a.ip) == (None, True)  # one node: no hop between nodes


def test_trace_shows_the_kernels_route_through_flannel_1_between_nodes(vxlan_lab):
    trace_between(vxlan_lab, "flannel.1")


def test_trace_shows_the_route_via_the_other_node_with_host_gw(host_gw_lab):
    trace_between(host_gw_lab, "eth1")


# -- a lab built from its own topology is seen with it ----------------------------------------------

def test_a_lab_built_with_a_topology_file_is_verified_and_repaired_with_it_without_naming_it(host_gw_lab):
    name, plan, _extra = host_gw_lab
    verify = podpath("verify", "--lab", name)  # no --topology: the default (vxlan) would fail scenario 5
    assert verify.returncode == 0, verify.stdout[-3000:] + verify.stderr
    again = podpath("up", "--lab", name)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "built from its own topology" in again.stdout
    node = plan.nodes[0]
    links = run_in(node.netns, "ip", "-o", "link", "show")
    assert "flannel.1" not in links, f"up without --topology rebuilt {name} with the default (vxlan): {links}"
