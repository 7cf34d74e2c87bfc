"""Permanent neighbour entries between a node and its pods (the topology's pod_neighbours:
static), for real.

The host's neighbour table is one for every namespace, and the kernel counts every entry
that is not permanent against its limit (gc_thresh3). The module's part: a bridge and a
pod's veth get the MACs asked for, in place; the permanent entries asked for are written,
kept when a pod is made again, and removed when the spec lists none. The lab's part: a lab
built with `pod_neighbours: static` holds no neighbour entry but permanent ones while it is
left alone (its nodes' probes included), and passes the verifier; `up` with learned takes
the entries away again.
"""
from __future__ import annotations

import os
import subprocess
import time

import pytest
from labtools import DEFAULT_TOPOLOGY, failed, ip_json, lab_from_topology, lab_namespaces, podpath, verify

from podpath.model import topology
from podpath.model.plan import build, pod_mac

pytestmark = pytest.mark.netns

SUBNET = "10.250.7"
GATEWAY = f"{SUBNET}.1"


def spec(lab, static: bool, pods=(1, 2)) -> list[dict]:
    """A node's bridge and PODS wired to it, with permanent entries both ways if STATIC."""
    ips = {i: f"{SUBNET}.{i + 1}" for i in pods}
    bridge = {"name": "cni0", "kind": "bridge", "addresses": [f"{GATEWAY}/24"],
              "neighbours": [{"dst": ips[i], "lladdr": pod_mac(ips[i])} for i in pods] if static else []}
    if static:
        bridge["mac"] = pod_mac(GATEWAY)
    out = [{"name": lab.ns("node"), "links": [bridge]}]
    for i in pods:
        eth0 = {"name": "eth0", "kind": "veth", "addresses": [f"{ips[i]}/24"],
                "peer": {"name": f"{lab.name}h{i}", "namespace": lab.ns("node"), "master": "cni0"},
                "neighbours": [{"dst": GATEWAY, "lladdr": pod_mac(GATEWAY)}] if static else []}
        if static:
            eth0["mac"] = pod_mac(ips[i])
        out.append({"name": lab.ns(f"pod{i}"), "holder": True,
                    "links": [eth0], "routes": [{"dst": "default", "gateway": GATEWAY}]})
    return out


def entries(netns: str, dev: str) -> dict[str, tuple[str, tuple]]:
    """dst -> (lladdr, states) of DEV's neighbour entries in NETNS."""
    return {n["dst"]: (n.get("lladdr", ""), tuple(n.get("state", []))) for n in
            ip_json("-n", netns, "neigh", "show", "dev", dev)}


def mac_of(netns: str, dev: str) -> str:
    return ip_json("-n", netns, "link", "show", "dev", dev)[0]["address"]


def test_macs_and_permanent_entries_are_as_asked_and_a_second_run_changes_nothing(netns_lab):
    lab = netns_lab
    lab.apply(spec(lab, static=True))
    node = lab.ns("node")
    assert mac_of(node, "cni0") == pod_mac(GATEWAY)
    for i in (1, 2):
        address = f"{SUBNET}.{i + 1}"
        assert mac_of(lab.ns(f"pod{i}"), "eth0") == pod_mac(address)
        assert entries(node, "cni0")[address] == (pod_mac(address), ("PERMANENT",))
        assert entries(lab.ns(f"pod{i}"), "eth0")[GATEWAY] == (pod_mac(GATEWAY), ("PERMANENT",))
    again = lab.apply(spec(lab, static=True))
    assert not again.changed, again.module["changes"]


def test_pods_talk_to_their_node_and_each_other_and_the_node_sends_no_arp(netns_lab):
    lab = netns_lab
    lab.apply(spec(lab, static=True))
    node = lab.ns("node")
    for i, target in ((1, GATEWAY), (2, f"{SUBNET}.2")):
        done = subprocess.run(["ip", "netns", "exec", lab.ns(f"pod{i}"), "ping", "-c", "1", "-W", "2", target],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, f"pod{i} cannot reach {target}: {done.stdout}{done.stderr}"
    learned = {dst: e for dst, e in entries(node, "cni0").items() if e[1] != ("PERMANENT",)}
    assert not learned, f"the node learned entries by ARP although it was given them: {learned}"


def test_a_pod_made_again_keeps_its_permanent_entry_on_the_node(netns_lab):
    lab = netns_lab
    lab.apply(spec(lab, static=True))
    subprocess.run(["ip", "-n", lab.ns("pod1"), "link", "del", "eth0"], check=True, timeout=30)
    lab.apply(spec(lab, static=True))
    address = f"{SUBNET}.2"
    assert mac_of(lab.ns("pod1"), "eth0") == pod_mac(address)
    assert entries(lab.ns("node"), "cni0").get(address) == (pod_mac(address), ("PERMANENT",))


def test_a_changed_mac_is_set_in_place(netns_lab):
    lab = netns_lab
    lab.apply(spec(lab, static=True))
    index = ip_json("-n", lab.ns("pod1"), "link", "show", "dev", "eth0")[0]["ifindex"]
    subprocess.run(["ip", "-n", lab.ns("pod1"), "link", "set", "eth0", "address", "0a:00:00:00:00:99"],
                   check=True, timeout=30)
    result = lab.apply(spec(lab, static=True))
    said = result.module["changes"]
    assert f"{lab.ns('pod1')}: set the MAC of eth0 to {pod_mac(f'{SUBNET}.2')}" in said, said
    link = ip_json("-n", lab.ns("pod1"), "link", "show", "dev", "eth0")[0]
    assert link["address"] == pod_mac(f"{SUBNET}.2") and link["ifindex"] == index, "the link was made again"


def test_an_empty_list_removes_the_permanent_entries(netns_lab):
    lab = netns_lab
    lab.apply(spec(lab, static=True))
    lab.apply(spec(lab, static=False))
    node = lab.ns("node")
    assert not [d for d, e in entries(node, "cni0").items() if "PERMANENT" in e[1]]
    for i in (1, 2):
        assert not [d for d, e in entries(lab.ns(f"pod{i}"), "eth0").items() if "PERMANENT" in e[1]]


# -- a whole lab ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def static_lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the netns lab needs root")
    with lab_from_topology("nbr", tmp_path_factory.mktemp("static"),
                           lambda topo: topo.update(pod_neighbours="static")) as built:
        yield built


def counted_entries(lab: str) -> list[str]:
    """The lab's neighbour entries that the host's limit counts: all but the permanent ones."""
    found = []
    for ns in lab_namespaces(lab):
        for n in ip_json("-n", ns, "neigh", "show"):
            if "PERMANENT" not in n.get("state", []):
                found.append(f"{ns}: {n['dst']} on {n.get('dev')} {n.get('state')}")
    return found


def test_a_static_lab_left_alone_holds_only_permanent_entries(static_lab):
    name, path = static_lab
    plan = build(topology.load(path), name)
    time.sleep(4)  # the nodes' readiness probes run each second meanwhile
    assert not counted_entries(name), "entries the host's limit counts: " + "; ".join(counted_entries(name))
    for node in plan.nodes:
        on_node = entries(node.netns, "cni0")
        for pod in plan.pods_on(node.name):
            assert on_node.get(pod.ip) == (pod_mac(pod.ip), ("PERMANENT",)), (node.name, pod.name, on_node)


def test_a_static_lab_passes_the_verifier(static_lab, tmp_path):
    name, _ = static_lab
    result = verify(name, tmp_path)
    assert not failed(result), f"scenarios {failed(result)} fail with static neighbours\n{result['_output'][-3000:]}"


def test_up_with_learned_removes_the_permanent_entries_and_the_lab_still_passes(static_lab, tmp_path):
    name, _ = static_lab
    up = podpath("up", "--lab", name, "--topology", str(DEFAULT_TOPOLOGY), "--quiet")
    assert up.returncode == 0, f"podpath up failed:\n{up.stdout}\n{up.stderr}"
    plan = build(topology.load(DEFAULT_TOPOLOGY), name)
    left = [f"{ns}: {n['dst']}" for ns in [n.netns for n in plan.nodes] + [p.netns for p in plan.pods]
            for n in ip_json("-n", ns, "neigh", "show", "dev", "cni0" if ns.startswith(name) else "eth0")
            if "PERMANENT" in n.get("state", [])]
    assert not left, f"permanent entries left after up with learned: {left}"
    result = verify(name, tmp_path)
    assert not failed(result), f"scenarios {failed(result)} fail after the switch\n{result['_output'][-3000:]}"
