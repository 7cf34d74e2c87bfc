"""The podpath_netns module's pure logic for flannel's wiring: a VXLAN link, its permanent
neighbour and FDB entries, and routes that name their link and are onlink.

normalize() refuses what cannot be made, with the value and the fix; compare() turns what
is read (built here by hand in link_view's shape, as tests/unit/test_netns_spec.py does) into
exactly the missing changes, and into none when all is in place.
"""
from __future__ import annotations

import copy

import pytest

from podpath.model.labdir import load_module_util

spec_mod = load_module_util("podpath_netns_spec")
SpecError, normalize, compare, describe = spec_mod.SpecError, spec_mod.normalize, spec_mod.compare, spec_mod.describe

MAC1, MAC2 = "0e:41:7c:29:6b:1d", "5a:0c:e1:93:24:b7"


def base() -> list[dict]:
    """Node n1 of a two-node lab as flannel's vxlan backend wires it, with its LAN."""
    return [
        {"name": "lan", "links": [{"name": "lan0", "kind": "bridge"}]},
        {"name": "n1", "links": [
            {"name": "cni0", "kind": "bridge", "addresses": ["10.244.1.1/24"]},
            {"name": "eth1", "kind": "veth", "addresses": ["192.168.56.11/24"],
             "peer": {"name": "n1", "namespace": "lan", "master": "lan0"}},
            {"name": "flannel.1", "kind": "vxlan", "mtu": 1450, "mac": MAC1,
             "vxlan": {"id": 1, "local": "192.168.56.11", "dev": "eth1", "port": 8472, "learning": False},
             "addresses": ["10.244.1.0/32"],
             "neighbours": [{"dst": "10.244.2.0", "lladdr": MAC2}],
             "fdb": [{"lladdr": MAC2, "dst": "192.168.56.12"}]}],
         "routes": [{"dst": "10.244.2.0/24", "gateway": "10.244.2.0", "dev": "flannel.1", "onlink": True,
                     "protocol": "boot"},
                    {"dst": "default", "gateway": "192.168.56.1"}]},
    ]


def flannel(spec: list[dict]) -> dict:
    return next(link for link in spec[1]["links"] if link["name"] == "flannel.1")


def observed_from(desired: dict) -> dict:
    """What the module would read if DESIRED were in place (link_view's shape, and the
    entries of the links whose entries it manages)."""
    indices = {ns: {name: i for i, name in enumerate(["lo"] + sorted(spec["links"]), start=1)}
               for ns, spec in desired.items()}
    observed = {}
    for ns, spec in desired.items():
        links = {"lo": {"kind": "loopback", "addresses": [], "master": None, "hairpin": None, "up": True,
                        "index": 1, "link": None}}
        neighbours, fdb = {}, {}
        for name, want in spec["links"].items():
            peer = indices[want["peer"][0]][want["peer"][1]] if want["peer"] else None
            links[name] = {"kind": want["kind"], "addresses": list(want["addresses"]), "master": want["master"],
                           "hairpin": want["hairpin"] if want["master"] else None, "up": True,
                           "index": indices[ns][name], "link": peer}
            if want["kind"] == "vxlan":
                links[name].update(mac=want["mac"], mtu=want["mtu"], vxlan=dict(want["vxlan"]))
                neighbours[name] = [list(e) for e in want["neighbours"]]
                fdb[name] = [list(e) for e in want["fdb"]]
        routes = [{"dst": r["dst"], "gateway": r["gateway"],
                   "oif": indices[ns][r["dev"]] if r.get("dev") else indices[ns].get("eth1", 2)}
                  for r in spec["routes"]]
        observed[ns] = {"links": links, "routes": routes, "sysctls": dict(spec["sysctls"]),
                        "neighbours": neighbours, "fdb": fdb}
    return observed


@pytest.fixture
def desired():
    return normalize(base())


# -- normalize ---------------------------------------------------------------------------------
def _on_flannel(**fields):
    def mutate(spec):
        flannel(spec).update(fields)
    return mutate


def _on_cni0(**fields):
    def mutate(spec):
        spec[1]["links"][0].update(fields)
    return mutate


def _route(**fields):
    def mutate(spec):
        spec[1]["routes"][0].update(fields)
        for key in [k for k, v in fields.items() if v is None]:
            del spec[1]["routes"][0][key]
    return mutate


BAD = [
    ("vxlan-without-settings", _on_flannel(vxlan=None), "has no vxlan options: give at least vxlan.id"),
    ("vni-too-big", _on_flannel(vxlan={"id": 1 << 24}), "VNI 16777216: a VXLAN id is 0 to 16777215"),
    ("port-zero", _on_flannel(vxlan={"id": 1, "port": 0}), "UDP port 0: use 1 to 65535"),
    ("local-not-an-address", _on_flannel(vxlan={"id": 1, "local": "node1"}), "'node1' is not an IPv4 address"),
    ("dev-not-listed", _on_flannel(vxlan={"id": 1, "dev": "eth9"}), "sends its packets by 'eth9'"),
    ("dev-itself", _on_flannel(vxlan={"id": 1, "dev": "flannel.1"}), "sends its packets by 'flannel.1'"),
    ("mtu-too-small", _on_flannel(mtu=40), "MTU 40: use 68 to 65535"),
    ("mac-not-one", _on_flannel(mac="0e:41:7c:29:6b"), "'0e:41:7c:29:6b' of link flannel.1 in namespace n1 is not "
                                                       "one"),
    ("mac-multicast", _on_flannel(mac="01:00:5e:00:00:01"), "is a multicast one"),
    ("neighbour-mac", _on_flannel(neighbours=[{"dst": "10.244.2.0", "lladdr": "zz"}]), "'zz' of neighbour 10.244.2.0"),
    ("neighbour-twice", _on_flannel(neighbours=[{"dst": "10.244.2.0", "lladdr": MAC2}] * 2),
     "lists neighbour 10.244.2.0 twice"),
    ("fdb-dst", _on_flannel(fdb=[{"lladdr": MAC2, "dst": "node2"}]), "destination of fdb entry"),
    ("mtu-on-a-bridge", _on_cni0(mtu=1450), "is a bridge and sets mtu, which the module sets only on a vxlan link"),
    ("fdb-on-a-bridge", _on_cni0(fdb=[{"lladdr": MAC2, "dst": "192.168.56.12"}]), "is a bridge and sets fdb"),
    ("onlink-without-dev", _route(dev=None), "is onlink but names no link: give dev"),
    ("route-dev-not-listed", _route(dev="flannel.9"), "leaves by 'flannel.9', which is not a link"),
    ("gateway-off-link", _route(onlink=False), "is not in any subnet of that namespace"),
    ("protocol", _route(protocol="kernel"), "protocol 'kernel': use one of static, boot"),
]


@pytest.mark.parametrize("mutate, words", [pytest.param(m, w, id=i) for i, m, w in BAD])
def test_normalize_refuses_what_cannot_be_made(mutate, words):
    spec = base()
    mutate(spec)
    with pytest.raises(SpecError) as caught:
        normalize(spec)
    assert words in str(caught.value)


def test_a_host_address_inside_another_links_subnet_is_not_an_overlap(desired):
    assert desired["n1"]["links"]["flannel.1"]["addresses"] == ["10.244.1.0/32"]
    spec = base()
    flannel(spec)["addresses"] = ["10.244.1.5/25"]  # a subnet inside cni0's is one
    with pytest.raises(SpecError, match="subnets overlap"):
        normalize(spec)


def test_normalize_spells_macs_and_defaults_one_way():
    spec = base()
    flannel(spec).update(mac=MAC1.upper(), vxlan={"id": 1})
    link = normalize(spec)["n1"]["links"]["flannel.1"]
    assert link["mac"] == MAC1
    assert link["vxlan"] == {"id": 1, "local": None, "dev": None, "port": 8472, "learning": False}


# -- compare -------------------------------------------------------------------------------------
def test_compare_creates_the_tunnel_in_a_fresh_namespace(desired):
    changes = compare(desired, {})
    assert changes["n1"]["vxlans"] == ["flannel.1"]
    lines = describe(changes)
    for line in ["n1: create vxlan flannel.1", "n1: add 10.244.1.0/32 to flannel.1", "n1: set flannel.1 up",
                 f"n1: add neighbour 10.244.2.0 lladdr {MAC2} to flannel.1",
                 f"n1: add fdb entry {MAC2} dst 192.168.56.12 to flannel.1",
                 "n1: add route 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink"]:
        assert line in lines


def test_compare_finds_nothing_to_do_when_the_tunnel_is_in_place(desired):
    assert compare(desired, observed_from(desired)) == {}


def _lose_neighbour(o):
    o["n1"]["neighbours"]["flannel.1"] = []


def _other_lladdr(o):
    o["n1"]["neighbours"]["flannel.1"] = [["10.244.2.0", MAC1]]


def _extra_neighbour(o):
    o["n1"]["neighbours"]["flannel.1"].append(["10.244.9.0", MAC1])


def _lose_fdb(o):
    o["n1"]["fdb"]["flannel.1"] = []


def _fdb_elsewhere(o):
    o["n1"]["fdb"]["flannel.1"] = [[MAC2, "192.168.56.99"]]


def _route_off_flannel(o):
    o["n1"]["routes"][0]["oif"] = o["n1"]["links"]["cni0"]["index"]


def _lose_route(o):
    del o["n1"]["routes"][0]


def _host_gw_route(o):
    o["n1"]["routes"][0] = {"dst": "10.244.2.0/24", "gateway": "192.168.56.12", "oif": 3}


def _lose_address(o):
    o["n1"]["links"]["flannel.1"]["addresses"] = []


def _down(o):
    o["n1"]["links"]["flannel.1"]["up"] = False


RECREATE = ["n1: delete link flannel.1", "n1: create vxlan flannel.1", "n1: add 10.244.1.0/32 to flannel.1",
            "n1: set flannel.1 up",
            f"n1: add neighbour 10.244.2.0 lladdr {MAC2} to flannel.1",
            f"n1: add fdb entry {MAC2} dst 192.168.56.12 to flannel.1",
            "n1: remove route 10.244.2.0/24 via 10.244.2.0",
            "n1: add route 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink"]


def _setting(**fields):
    def damage(o):
        o["n1"]["links"]["flannel.1"]["vxlan"].update(fields)
    return damage


def _link_field(**fields):
    def damage(o):
        o["n1"]["links"]["flannel.1"].update(fields)
    return damage


SINGLE_CHANGES = [
    ("neighbour-missing", _lose_neighbour, [f"n1: add neighbour 10.244.2.0 lladdr {MAC2} to flannel.1"]),
    ("neighbour-other-mac", _other_lladdr, [f"n1: add neighbour 10.244.2.0 lladdr {MAC2} to flannel.1"]),
    ("neighbour-extra", _extra_neighbour, ["n1: remove neighbour 10.244.9.0 from flannel.1"]),
    ("fdb-missing", _lose_fdb, [f"n1: add fdb entry {MAC2} dst 192.168.56.12 to flannel.1"]),
    ("fdb-elsewhere", _fdb_elsewhere, [f"n1: remove fdb entry {MAC2} dst 192.168.56.99 from flannel.1",
                                       f"n1: add fdb entry {MAC2} dst 192.168.56.12 to flannel.1"]),
    ("route-missing", _lose_route, ["n1: add route 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink"]),
    ("route-on-another-link", _route_off_flannel, ["n1: remove route 10.244.2.0/24 via 10.244.2.0",
                                                   "n1: add route 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink"]),
    ("host-gw-route-left", _host_gw_route, ["n1: remove route 10.244.2.0/24 via 192.168.56.12",
                                            "n1: add route 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink"]),
    ("address-missing", _lose_address, ["n1: add 10.244.1.0/32 to flannel.1"]),
    ("link-down", _down, ["n1: set flannel.1 up"]),
    ("other-vni", _setting(id=2), RECREATE),
    ("other-port", _setting(port=4789), RECREATE),
    ("learning-on", _setting(learning=True), RECREATE),
    ("other-local", _setting(local="192.168.56.99"), RECREATE),
    ("other-dev", _setting(dev="cni0"), RECREATE),
    ("other-mtu", _link_field(mtu=1500), RECREATE),
    ("other-mac", _link_field(mac=MAC2), RECREATE),
]


@pytest.mark.parametrize("damage, expected", [pytest.param(d, e, id=i) for i, d, e in SINGLE_CHANGES])
def test_compare_asks_for_exactly_the_missing_change(desired, damage, expected):
    observed = observed_from(desired)
    damage(observed)
    assert sorted(describe(compare(desired, observed))) == sorted(expected)


def test_a_vxlan_goes_with_the_link_it_sends_by(desired):
    """The kernel removes a VXLAN whose underlying link goes: when eth1's pair is made again,
    flannel.1 is made again on it, with its entries and route."""
    observed = observed_from(desired)
    del observed["lan"]["links"]["n1"]  # the LAN end of eth1's pair was deleted by hand
    changes = compare(desired, observed)
    assert "flannel.1" in changes["n1"]["delete_links"] and changes["n1"]["vxlans"] == ["flannel.1"]
    assert changes["n1"]["veths"] == [["eth1", "lan", "n1"]]
    assert changes["n1"]["add_fdb"] == [["flannel.1", MAC2, "192.168.56.12"]]


def test_switching_to_host_gw_removes_the_tunnel_and_its_routes(desired):
    observed = observed_from(desired)
    spec = base()
    spec[1]["links"] = spec[1]["links"][:2]
    spec[1]["routes"][0] = {"dst": "10.244.2.0/24", "gateway": "192.168.56.12", "protocol": "boot"}
    assert sorted(describe(compare(normalize(spec), observed))) == sorted([
        "n1: delete link flannel.1", "n1: remove route 10.244.2.0/24 via 10.244.2.0",
        "n1: add route 10.244.2.0/24 via 192.168.56.12"])


def test_entries_of_links_the_module_does_not_manage_are_left_alone(desired):
    observed = observed_from(desired)
    observed["n1"]["neighbours"]["cni0"] = [["10.244.1.5", MAC1]]  # not read for cni0; ignored if it were
    assert compare(desired, observed) == {}
    spec = copy.deepcopy(base())
    spec[1]["links"][0]["neighbours"] = [{"dst": "10.244.1.9", "lladdr": MAC2}]  # now cni0's are managed
    changes = compare(normalize(spec), observed)
    assert sorted(describe(changes)) == sorted(["n1: remove neighbour 10.244.1.5 from cni0",
                                                f"n1: add neighbour 10.244.1.9 lladdr {MAC2} to cni0"])
