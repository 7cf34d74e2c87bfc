"""The podpath_netns module's pure logic: normalize() refuses bad input before any change,
and compare() turns what is on the system into exactly the changes that are missing.

module_utils/podpath_netns_spec.py has no system calls, so these tests build the
"observed" side by hand in the shape the module reads it (link_view per namespace).
The shape and types of the arguments are the module's ARGUMENT_SPEC's job
(tests/unit/test_module_arguments.py); normalize() checks what a spec cannot say.
"""
from __future__ import annotations

import copy
import sys

import pytest

from podpath.play import inprocess

# loaded as Ansible ships it, with the module_utils it imports (podpath_lab's IFNAME_MAX)
inprocess.load_library("podpath_netns")
spec_mod = sys.modules["ansible.module_utils.podpath_netns_spec"]

SpecError = spec_mod.SpecError
ROOT = spec_mod.ROOT
normalize = spec_mod.normalize
compare = spec_mod.compare
describe = spec_mod.describe


def base() -> list[dict]:
    """A node with its bridge and two pods, as the netns lab wires a worker."""
    def pod(name: str, ip: str, host_veth: str) -> dict:
        return {
            "name": name,
            "holder": True,
            "links": [{"name": "eth0", "kind": "veth", "addresses": [f"{ip}/24"],
                       "peer": {"name": host_veth, "namespace": "node1", "master": "cni0", "hairpin": True}}],
            "routes": [{"dst": "default", "gateway": "10.244.1.1"}],
        }
    return [
        {"name": "node1", "sysctls": {"net.ipv4.ip_forward": 1},
         "links": [{"name": "cni0", "kind": "bridge", "addresses": ["10.244.1.1/24"]}]},
        pod("pod1", "10.244.1.2", "veth1"),
        pod("pod2", "10.244.1.3", "veth2"),
    ]


def ns(spec: list[dict], name: str) -> dict:
    return next(n for n in spec if n["name"] == name)


def link(spec: list[dict], namespace: str, name: str) -> dict:
    return next(lk for lk in ns(spec, namespace)["links"] if lk["name"] == name)


# -- normalize: bad input --------------------------------------------------------------
# Each case mutates a fresh copy of base() and names the text the error must contain.
def _set_addr(value):
    def mutate(s):
        link(s, "pod1", "eth0")["addresses"] = [value]
    return mutate


def _set_peer(**fields):
    def mutate(s):
        link(s, "pod1", "eth0")["peer"].update(fields)
    return mutate


def _add_node_link(**fields):
    def mutate(s):
        ns(s, "node1")["links"].append(fields)
    return mutate


def _set_route(**fields):
    def mutate(s):
        ns(s, "pod1")["routes"] = [dict({"dst": "default", "gateway": "10.244.1.1"}, **fields)]
    return mutate


def _drop_peer_namespace(s):
    del link(s, "pod1", "eth0")["peer"]["namespace"]


def _duplicate_namespace(s):
    s.append(copy.deepcopy(ns(s, "pod2")))


def _same_host_veth(s):
    link(s, "pod2", "eth0")["peer"]["name"] = "veth1"


def _veth_without_peer(s):
    del link(s, "pod1", "eth0")["peer"]


def _duplicate_route(s):
    ns(s, "pod1")["routes"].append({"dst": "0.0.0.0/0", "gateway": "10.244.1.1"})


def _overlap(s):
    ns(s, "node1")["links"].append({"name": "cni1", "kind": "bridge", "addresses": ["10.244.1.129/25"]})


def _address_twice(s):
    link(s, "pod1", "eth0")["addresses"] = ["10.244.1.2/24", "10.244.1.2/24"]


def _bad_sysctl(s):
    ns(s, "node1")["sysctls"] = {"kernel.pid_max": 4096}


def _rename_namespace(name):
    def mutate(s):
        ns(s, "pod1")["name"] = name
    return mutate


def _hostname(value):
    def mutate(s):
        ns(s, "pod1")["hostname"] = value
    return mutate


def _lo(s):
    ns(s, "pod1")["links"].append({"name": "lo", "kind": "bridge"})


def _bridge_with_peer(s):
    link(s, "node1", "cni0")["peer"] = {"name": "x", "namespace": "pod1"}


BAD = [
    ("malformed-cidr", _set_addr("10.244.1.300/24"), "'10.244.1.300/24'"),
    ("address-without-prefix", _set_addr("10.244.1.2"), "'10.244.1.2'"),
    ("address-not-an-ip", _set_addr("pod-ip/24"), "'pod-ip/24'"),
    ("ipv6-address", _set_addr("fd00::2/64"), "'fd00::2/64'"),
    ("network-address", _set_addr("10.244.1.0/24"), "10.244.1.0/24 on eth0 in namespace pod1 is the network address"),
    ("broadcast-address", _set_addr("10.244.1.255/24"), "10.244.1.255/24 on eth0 in namespace pod1 is the broadcast"),
    ("address-twice", _address_twice, "lists an address twice"),
    ("overlapping-subnets", _overlap, "10.244.1.129/25 on cni1 and 10.244.1.1/24 on cni0"),
    ("ifname-16-bytes", _add_node_link(name="veth0123456789ab", kind="bridge"), "'veth0123456789ab' in namespace node1 is 16 bytes"),
    ("ifname-16-bytes-multibyte", _add_node_link(name="abcdefghijklmn\u00e9", kind="bridge"), "is 16 bytes"),
    ("ifname-space", _add_node_link(name="br 0", kind="bridge"), "'br 0'"),
    ("ifname-slash", _add_node_link(name="br/0", kind="bridge"), "'br/0'"),
    ("ifname-missing", _add_node_link(kind="bridge"), "has no name"),
    ("unknown-kind", _add_node_link(name="mv0", kind="macvlan"), "kind 'macvlan': use one of bridge, veth, vxlan"),
    ("missing-kind", _add_node_link(name="br1"), "link br1 in namespace node1 has kind None"),
    ("bridge-with-peer", _bridge_with_peer, "bridge cni0 in namespace node1 cannot have a peer"),
    ("loopback-listed", _lo, "link lo in namespace pod1"),
    ("master-not-listed", _set_peer(master="br9"), "master 'br9'"),
    ("master-not-a-bridge", _set_peer(master="veth2"), "master 'veth2'"),
    ("hairpin-without-master", _set_peer(master=None), "link veth1 in namespace node1 sets hairpin but has no master"),
    ("veth-without-peer", _veth_without_peer, "veth eth0 in namespace pod1 has no peer"),
    ("peer-namespace-not-listed", _set_peer(namespace="node9"), "in namespace node9, which is not listed"),
    ("peer-namespace-bad-name", _set_peer(namespace="no/de"), "'no/de'"),
    ("root-peer-not-allowed", _drop_peer_namespace, "the peer of veth eth0 in namespace pod1 has no namespace"),
    ("duplicate-namespace", _duplicate_namespace, "namespace pod2 is listed twice"),
    ("duplicate-link", _same_host_veth, "link veth1 is declared twice in namespace node1"),
    ("gateway-outside-subnets", _set_route(gateway="10.9.9.1"), "gateway 10.9.9.1 of route default"),
    ("gateway-not-an-ip", _set_route(gateway="10.244.1.x"), "'10.244.1.x'"),
    ("route-dst-host-bits", _set_route(dst="10.244.2.5/24"), "'10.244.2.5/24'"),
    ("route-dst-garbage", _set_route(dst="elsewhere"), "'elsewhere'"),
    ("duplicate-route", _duplicate_route, "route to default is listed twice in namespace pod1"),
    ("sysctl-outside-net", _bad_sysctl, "'kernel.pid_max'"),
    ("namespace-name-slash", _rename_namespace("a/b"), "'a/b'"),
    ("namespace-name-dotdot", _rename_namespace(".."), "'..'"),
    ("namespace-name-empty", _rename_namespace(""), "''"),
    ("hostname-invalid", _hostname("Bad_Host"), "'Bad_Host'"),
]


@pytest.mark.parametrize("mutate, expected", [pytest.param(m, e, id=i) for i, m, e in BAD])
def test_normalize_refuses_bad_input(mutate, expected):
    spec = base()
    mutate(spec)
    with pytest.raises(SpecError) as err:
        normalize(spec)
    assert expected in str(err.value)


def test_normalize_refuses_root_links_unless_allowed():
    with pytest.raises(SpecError) as err:
        normalize([], [{"name": "br0", "kind": "bridge"}])
    assert "set allow_root_namespace: true" in str(err.value)


# -- normalize: what good input becomes ------------------------------------------------
def test_normalize_records_the_peer_in_its_own_namespace():
    state = normalize(base())
    assert state["node1"]["links"]["veth1"]["peer"] == ["pod1", "eth0"]
    assert state["node1"]["links"]["veth1"]["creates_pair"] is False
    assert state["pod1"]["links"]["eth0"]["peer"] == ["node1", "veth1"]
    assert state["pod1"]["links"]["eth0"]["creates_pair"] is True


@pytest.mark.parametrize("name", ["a", "veth0123456789a", "eth0.100", "br_lan-0"], ids=lambda n: f"ifname-{n}")
def test_normalize_accepts_interface_names_up_to_15_bytes(name):
    spec = base()
    ns(spec, "node1")["links"].append({"name": name, "kind": "bridge"})
    assert name in normalize(spec)["node1"]["links"]


@pytest.mark.parametrize("cidr", ["10.9.0.0/31", "10.9.0.1/31", "10.9.0.7/32"], ids=["slash31-low", "slash31-high", "slash32"])
def test_normalize_accepts_point_to_point_addresses(cidr):
    spec = base()
    ns(spec, "node1")["links"].append({"name": "p2p", "kind": "bridge", "addresses": [cidr]})
    assert normalize(spec)["node1"]["links"]["p2p"]["addresses"] == [cidr]


@pytest.mark.parametrize("value, expected", [(1, "1"), (True, "1"), (False, "0"), ("2", "2")],
                         ids=["int", "true", "false", "string"])
def test_normalize_writes_sysctls_as_the_kernel_prints_them(value, expected):
    spec = base()
    ns(spec, "node1")["sysctls"] = {"net.ipv4.ip_forward": value}
    assert normalize(spec)["node1"]["sysctls"] == {"net.ipv4.ip_forward": expected}


@pytest.mark.parametrize("dst", ["default", "0.0.0.0/0"])
def test_normalize_spells_the_default_route_one_way(dst):
    spec = base()
    ns(spec, "pod1")["routes"][0]["dst"] = dst
    assert normalize(spec)["pod1"]["routes"] == [{"dst": "default", "gateway": "10.244.1.1"}]


def test_normalize_puts_a_root_peer_in_the_root_namespace_when_allowed():
    spec = base()
    del link(spec, "pod1", "eth0")["peer"]["namespace"]
    del link(spec, "pod1", "eth0")["peer"]["master"]
    del link(spec, "pod1", "eth0")["peer"]["hairpin"]
    state = normalize(spec, allow_root_namespace=True)
    assert state[ROOT]["links"]["veth1"]["peer"] == ["pod1", "eth0"]
    assert state["pod1"]["links"]["eth0"]["peer"] == [ROOT, "veth1"]


# -- compare ---------------------------------------------------------------------------
def observed_from(desired: dict) -> dict:
    """What the module would read if DESIRED were fully applied (link_view's shape)."""
    indices = {}
    for name, spec in desired.items():
        indices[name] = {"lo": 1}
        for i, link_name in enumerate(sorted(spec["links"]), start=2):
            indices[name][link_name] = i
    observed = {}
    for name, spec in desired.items():
        links = {"lo": {"kind": "loopback", "addresses": ["127.0.0.1/8"], "master": None, "hairpin": None,
                        "up": True, "index": 1, "link": None}}
        for link_name, want in spec["links"].items():
            peer_index = None
            if want["peer"]:
                peer_ns, peer_name = want["peer"]
                peer_index = indices[peer_ns][peer_name]
            links[link_name] = {"kind": want["kind"], "addresses": list(want["addresses"]), "master": want["master"],
                                "hairpin": want["hairpin"] if want["master"] else None, "up": want["up"],
                                "index": indices[name][link_name], "link": peer_index}
        observed[name] = {"links": links, "routes": [dict(r, oif=2) for r in spec["routes"]],
                          "sysctls": dict(spec["sysctls"])}
    return observed


@pytest.fixture
def desired():
    return normalize(base())


def test_compare_creates_everything_in_fresh_namespaces(desired):
    changes = compare(desired, {})
    assert sorted(changes) == ["node1", "pod1", "pod2"]
    assert all(c["create"] for c in changes.values())
    lines = describe(changes)
    for line in ["node1: create namespace", "node1: set net.ipv4.ip_forward=1", "node1: create bridge cni0",
                 "node1: add 10.244.1.1/24 to cni0", "node1: attach veth1 to cni0", "node1: set hairpin on on veth1",
                 "node1: attach veth2 to cni0", "node1: set lo up", "node1: set cni0 up",
                 "pod1: create veth eth0 <-> node1/veth1", "pod1: add 10.244.1.2/24 to eth0",
                 "pod1: add route default via 10.244.1.1", "pod1: set eth0 up",
                 "pod2: create veth eth0 <-> node1/veth2", "pod2: add route default via 10.244.1.1"]:
        assert line in lines


def test_compare_creates_each_veth_pair_once(desired):
    changes = compare(desired, {})
    assert changes["node1"]["veths"] == []
    assert changes["pod1"]["veths"] == [["eth0", "node1", "veth1"]]
    assert changes["pod2"]["veths"] == [["eth0", "node1", "veth2"]]


def test_compare_finds_nothing_to_do_when_everything_is_in_place(desired):
    assert compare(desired, observed_from(desired)) == {}


def _drop_address(o):
    o["pod1"]["links"]["eth0"]["addresses"] = []


def _extra_address(o):
    o["pod1"]["links"]["eth0"]["addresses"].append("10.244.1.99/24")


def _drop_route(o):
    o["pod2"]["routes"] = []


def _extra_route(o):
    o["pod2"]["routes"].append({"dst": "10.244.2.0/24", "gateway": "10.244.1.1", "oif": 2})


def _wrong_gateway(o):
    o["pod2"]["routes"] = [{"dst": "default", "gateway": "10.244.1.7", "oif": 2}]


def _hairpin_off(o):
    o["node1"]["links"]["veth2"]["hairpin"] = False


def _detached(o):
    o["node1"]["links"]["veth1"].update(master=None, hairpin=None)


def _down(o):
    o["node1"]["links"]["cni0"]["up"] = False


def _lo_down(o):
    o["pod1"]["links"]["lo"]["up"] = False


def _sysctl(o):
    o["node1"]["sysctls"]["net.ipv4.ip_forward"] = "0"


def _stray_link(o):
    o["pod1"]["links"]["dummy0"] = {"kind": "dummy", "addresses": [], "master": None, "hairpin": None,
                                    "up": False, "index": 40, "link": None}


def _bridge_is_a_dummy(o):
    # a dummy cannot be a master: the ports are detached, as the kernel would show them
    o["node1"]["links"]["cni0"]["kind"] = "dummy"
    for port in ("veth1", "veth2"):
        o["node1"]["links"][port].update(master=None, hairpin=None)


SINGLE_CHANGES = [
    ("missing-address", _drop_address, ["pod1: add 10.244.1.2/24 to eth0"]),
    ("extra-address", _extra_address, ["pod1: remove 10.244.1.99/24 from eth0"]),
    ("missing-route", _drop_route, ["pod2: add route default via 10.244.1.1"]),
    ("extra-route", _extra_route, ["pod2: remove route 10.244.2.0/24 via 10.244.1.1"]),
    ("wrong-gateway", _wrong_gateway, ["pod2: remove route default via 10.244.1.7",
                                       "pod2: add route default via 10.244.1.1"]),
    ("hairpin-off", _hairpin_off, ["node1: set hairpin on on veth2"]),
    # a port taken off its bridge loses its hairpin flag with it
    ("missing-master", _detached, ["node1: attach veth1 to cni0", "node1: set hairpin on on veth1"]),
    ("link-down", _down, ["node1: set cni0 up"]),
    ("loopback-down", _lo_down, ["pod1: set lo up"]),
    ("sysctl-differs", _sysctl, ["node1: set net.ipv4.ip_forward=1"]),
    ("stray-link", _stray_link, ["pod1: delete link dummy0"]),
    ("wrong-kind", _bridge_is_a_dummy, ["node1: delete link cni0", "node1: create bridge cni0",
                                       "node1: attach veth1 to cni0", "node1: attach veth2 to cni0",
                                       "node1: set hairpin on on veth1", "node1: set hairpin on on veth2",
                                       "node1: add 10.244.1.1/24 to cni0", "node1: set cni0 up"]),
]


@pytest.mark.parametrize("damage, expected", [pytest.param(d, e, id=i) for i, d, e in SINGLE_CHANGES])
def test_compare_asks_for_exactly_the_missing_change(desired, damage, expected):
    observed = observed_from(desired)
    damage(observed)
    assert sorted(describe(compare(desired, observed))) == sorted(expected)


def test_compare_recreates_a_broken_veth_pair(desired):
    observed = observed_from(desired)
    del observed["node1"]["links"]["veth1"]  # the host end was deleted by hand
    changes = compare(desired, observed)
    assert changes["pod1"]["delete_links"] == ["eth0"]
    assert changes["pod1"]["veths"] == [["eth0", "node1", "veth1"]]
    lines = describe(changes)
    assert "pod1: add 10.244.1.2/24 to eth0" in lines
    assert "pod1: set eth0 up" in lines
    assert "node1: attach veth1 to cni0" in lines
    assert "node1: set hairpin on on veth1" in lines
    assert not any(line.startswith("pod2:") for line in lines)


def test_compare_recreates_a_pair_whose_ends_point_elsewhere(desired):
    observed = observed_from(desired)
    observed["pod1"]["links"]["eth0"]["link"] = 99  # a veth whose peer is not veth1
    changes = compare(desired, observed)
    assert changes["pod1"]["veths"] == [["eth0", "node1", "veth1"]]
    assert "veth1" in changes["node1"]["delete_links"]


def test_compare_creates_only_the_missing_namespace(desired):
    observed = observed_from(desired)
    del observed["pod2"]
    del observed["node1"]["links"]["veth2"]
    changes = compare(desired, observed)
    assert sorted(changes) == ["node1", "pod2"]
    assert changes["pod2"]["create"] is True
    assert changes["node1"]["create"] is False
    assert changes["node1"]["bridges"] == []


def test_compare_leaves_unlisted_links_and_routes_of_the_root_namespace_alone():
    # root_links makes the root entry up front, which avoids the KeyError above
    spec = [{"name": "pod1", "links": [{"name": "eth0", "kind": "veth", "addresses": ["10.9.0.2/24"],
                                        "peer": {"name": "vethroot"}}]}]
    desired = normalize(spec, [{"name": "br9", "kind": "bridge"}], allow_root_namespace=True)
    observed = observed_from(desired)
    observed[ROOT]["links"]["eth0"] = {"kind": "device", "addresses": ["192.0.2.5/24"], "master": None,
                                       "hairpin": None, "up": True, "index": 30, "link": None}
    observed[ROOT]["routes"] = [{"dst": "default", "gateway": "192.0.2.1", "oif": 30}]
    assert compare(desired, observed) == {}


# -- MACs of bridges and veths, and the permanent entries a link is given ------------------
def _static(spec: list[dict]) -> list[dict]:
    """base() with permanent entries both ways, as a lab with pod_neighbours: static."""
    link(spec, "node1", "cni0").update(mac="0a:58:0a:f4:01:01", neighbours=[
        {"dst": "10.244.1.2", "lladdr": "0a:58:0a:f4:01:02"}, {"dst": "10.244.1.3", "lladdr": "0a:58:0a:f4:01:03"}])
    for pod, ip in (("pod1", "10.244.1.2"), ("pod2", "10.244.1.3")):
        link(spec, pod, "eth0").update(mac="0a:58:" + ":".join("%02x" % int(b) for b in ip.split(".")),
                                       neighbours=[{"dst": "10.244.1.1", "lladdr": "0a:58:0a:f4:01:01"}])
    return spec


def test_normalize_takes_a_mac_for_a_bridge_and_a_veth():
    desired = normalize(_static(base()))
    assert desired["node1"]["links"]["cni0"]["mac"] == "0a:58:0a:f4:01:01"
    assert desired["pod1"]["links"]["eth0"]["mac"] == "0a:58:0a:f4:01:02"


def test_normalize_refuses_a_multicast_mac_on_a_veth_naming_it():
    spec = base()
    link(spec, "pod1", "eth0")["mac"] = "01:00:5e:00:00:01"
    with pytest.raises(SpecError) as err:
        normalize(spec)
    assert "01:00:5e:00:00:01" in str(err.value) and "multicast" in str(err.value)


def test_compare_sets_a_mac_that_differs_in_place_and_writes_the_entries_asked_for():
    desired = normalize(_static(base()))
    observed = observed_from(normalize(base()))
    for ns_name, name in (("node1", "cni0"), ("pod1", "eth0"), ("pod2", "eth0")):
        observed[ns_name]["links"][name]["mac"] = "aa:bb:cc:00:00:01"
    lines = describe(compare(desired, observed))
    assert "pod1: set the MAC of eth0 to 0a:58:0a:f4:01:02" in lines
    assert "node1: set the MAC of cni0 to 0a:58:0a:f4:01:01" in lines
    assert "node1: add neighbour 10.244.1.2 lladdr 0a:58:0a:f4:01:02 to cni0" in lines
    assert "pod2: add neighbour 10.244.1.1 lladdr 0a:58:0a:f4:01:01 to eth0" in lines
    assert not [line for line in lines if "delete link" in line or "create" in line], lines


def test_compare_leaves_a_mac_alone_where_none_is_asked_for(desired):
    observed = observed_from(desired)
    observed["pod1"]["links"]["eth0"]["mac"] = "aa:bb:cc:00:00:01"
    assert compare(desired, observed) == {}


def test_an_empty_list_of_neighbours_removes_the_links_permanent_entries():
    spec = base()
    link(spec, "node1", "cni0")["neighbours"] = []
    desired = normalize(spec)
    observed = observed_from(desired)
    observed["node1"]["neighbours"] = {"cni0": [["10.244.1.2", "0a:58:0a:f4:01:02"]]}
    assert describe(compare(desired, observed)) == ["node1: remove neighbour 10.244.1.2 from cni0"]


def test_a_link_without_the_option_keeps_its_permanent_entries(desired):
    observed = observed_from(desired)
    observed["node1"]["neighbours"] = {"cni0": [["10.244.1.2", "0a:58:0a:f4:01:02"]]}
    assert compare(desired, observed) == {}
