"""module_utils/podpath_netlink.py's VXLAN links, neighbour and FDB entries and onlink routes,
checked against pyroute2's encoding and decoding, as tests/unit/test_netlink_codec.py does
for bridges and veths.

The requests (a VXLAN link, a permanent neighbour, a permanent FDB entry and its removal,
an onlink route) are compared byte for byte with what pyroute2's message classes encode.
What the module reads (a VXLAN link's settings, a link's neighbour and FDB entries) is
compared with pyroute2's decoding of the very same bytes: hand-made ones, and real dumps of
throwaway namespaces (root only: named 'lnv' + random characters, deleted whatever happens),
which are also read back with `ip` and `bridge`, which share no code with the module.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import socket
import string
import struct
import subprocess

import pytest
from pyroute2.netlink import NLMSG_DONE
from pyroute2.netlink.rtnl import RTM_DELNEIGH, RTM_NEWLINK, RTM_NEWNEIGH, RTM_NEWROUTE
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.marshal import MarshalRtnl
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from netlink_sockets import Playback, Recorder, offline_rtnl

from podpath.model.labdir import load_module_util

nl = load_module_util("podpath_netlink")

AF_BRIDGE = 7
MAC = "0e:41:7c:29:6b:1d"
OTHER_MAC = "5a:0c:e1:93:24:b7"


def encoded(msg, kind: int, flags: int, seq: int) -> bytes:
    msg["header"]["type"] = kind
    msg["header"]["flags"] = flags
    msg["header"]["sequence_number"] = seq
    msg.encode()
    return bytes(msg.data)


def parsed(buffers: list[bytes], seq: int) -> list:
    """The messages of dump SEQ in BUFFERS, decoded by pyroute2."""
    out = []
    for data in buffers:
        for item in MarshalRtnl().parse(data):
            if item["header"]["sequence_number"] != seq:
                continue
            if item["header"]["type"] == NLMSG_DONE:
                return out
            out.append(item)
    raise AssertionError("the dump has no NLMSG_DONE")


# -- requests, byte for byte --------------------------------------------------------------------
@pytest.mark.parametrize("vxlan, mac, mtu, index", [
    ({"id": 1, "link": 3, "local": "192.168.56.11", "port": 8472, "learning": False}, MAC, 1450, 7),
    ({"id": 4096, "link": 0, "local": None, "port": 4789, "learning": True}, None, None, 0),
    ({"id": 16777215, "link": 65536, "local": "10.0.0.1", "port": None, "learning": False}, OTHER_MAC, 9000, 12),
])
def test_a_vxlan_request_is_the_bytes_pyroute2_encodes(vxlan, mac, mtu, index):
    sock = Playback()
    rtnl = offline_rtnl(sock)
    rtnl.add_vxlan("flannel.1", vxlan, mac, mtu, index)
    rtnl.flush()  # requests queue up; flush writes them
    data = [("IFLA_VXLAN_ID", vxlan["id"])]
    if vxlan["link"]:
        data.append(("IFLA_VXLAN_LINK", vxlan["link"]))
    if vxlan["local"]:
        data.append(("IFLA_VXLAN_LOCAL", vxlan["local"]))
    if vxlan["port"]:
        data.append(("IFLA_VXLAN_PORT", vxlan["port"]))
    data.append(("IFLA_VXLAN_LEARNING", int(vxlan["learning"])))
    attrs = [("IFLA_IFNAME", "flannel.1")]
    if mac:
        attrs.append(("IFLA_ADDRESS", mac))
    if mtu:
        attrs.append(("IFLA_MTU", mtu))
    attrs.append(("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "vxlan"), ("IFLA_INFO_DATA", {"attrs": data})]}))
    msg = ifinfmsg()
    msg["family"], msg["index"], msg["flags"], msg["change"] = 0, index, 1, 1
    msg["attrs"] = attrs
    assert sock.sent == [encoded(msg, RTM_NEWLINK, nl.NEW, 1)]


def neigh_msg(family: int, index: int, state: int, flags: int, kind: int, attrs: list):
    msg = ndmsg()
    msg["family"], msg["ifindex"], msg["state"], msg["flags"], msg["ndm_type"] = family, index, state, flags, kind
    msg["attrs"] = attrs
    return msg


def test_a_permanent_neighbour_is_the_bytes_pyroute2_encodes_with_flannels_flags():
    sock = Playback()
    rtnl = offline_rtnl(sock)
    rtnl.add_neighbour(9, "10.244.2.0", OTHER_MAC, "flannel.1")
    rtnl.flush()
    expected = neigh_msg(socket.AF_INET, 9, 0x80, 0, 1, [("NDA_DST", "10.244.2.0"), ("NDA_LLADDR", OTHER_MAC)])
    # NLM_F_CREATE | NLM_F_REPLACE, as flannel's netlink library's NeighSet
    assert sock.sent == [encoded(expected, RTM_NEWNEIGH, 0x1 | 0x4 | 0x400 | 0x100, 1)]


def test_a_permanent_fdb_entry_and_its_removal_are_the_bytes_pyroute2_encodes():
    sock = Playback()
    rtnl = offline_rtnl(sock)
    rtnl.add_fdb(9, OTHER_MAC, "192.168.56.12", "flannel.1")
    rtnl.flush()
    rtnl.delete_fdb(9, OTHER_MAC, "192.168.56.12", "flannel.1")
    rtnl.flush()
    attrs = [("NDA_LLADDR", OTHER_MAC), ("NDA_DST", "192.168.56.12")]
    add = neigh_msg(AF_BRIDGE, 9, 0x80, 0x02, 0, attrs)  # NUD_PERMANENT, NTF_SELF
    remove = neigh_msg(AF_BRIDGE, 9, 0, 0x02, 0, attrs)
    assert sock.sent == [encoded(add, RTM_NEWNEIGH, 0x1 | 0x4 | 0x400 | 0x100, 1),
                         encoded(remove, RTM_DELNEIGH, 0x1 | 0x4, 2)]
    # a removal that finds nothing is done already
    assert rtnl._pending[2][1] == (2,)


@pytest.mark.parametrize("dst, gateway, oif, onlink, protocol", [
    ("10.244.2.0/24", "10.244.2.0", 5, True, 3),
    ("10.244.0.0/24", "192.168.56.10", 0, False, 3),
    ("default", "192.168.56.1", 0, False, 4),
])
def test_a_route_is_the_bytes_pyroute2_encodes(dst, gateway, oif, onlink, protocol):
    sock = Playback()
    rtnl = offline_rtnl(sock)
    rtnl.add_route(dst, gateway, oif=oif, onlink=onlink, protocol=protocol)
    rtnl.flush()
    msg = rtmsg()
    prefixlen = 0 if dst == "default" else int(dst.split("/")[1])
    msg["family"], msg["dst_len"], msg["table"], msg["proto"], msg["scope"], msg["type"] = (
        socket.AF_INET, prefixlen, 254, protocol, 0, 1)
    msg["flags"] = 4 if onlink else 0  # RTNH_F_ONLINK
    attrs = [("RTA_DST", dst.split("/")[0])] if prefixlen else []
    attrs.append(("RTA_GATEWAY", gateway))
    if oif:
        attrs.append(("RTA_OIF", oif))
    msg["attrs"] = attrs
    assert sock.sent == [encoded(msg, RTM_NEWROUTE, nl.NEW, 1)]


def test_a_route_is_removed_whoever_made_it():
    sock = Playback()
    rtnl = offline_rtnl(sock)
    rtnl.delete_route("10.244.2.0/24", "10.244.2.0")
    rtnl.flush()
    protocol = struct.unpack_from("=BBBBBBBBI", sock.sent[0], 16)[5]
    assert protocol == 0, "a removal naming a protocol misses a route another protocol made"


# -- reading, on hand-made bytes ------------------------------------------------------------------
def attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def message(kind: int, seq: int, body: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), kind, 2, seq, 0) + body


def done(seq: int) -> bytes:
    return message(NLMSG_DONE, seq, struct.pack("=i", 0))


def vxlan_link_msg(seq: int, index: int, name: str, data: bytes, mtu: int = 1450) -> bytes:
    body = struct.pack("=BxHiII", 0, 1, index, 0x1043, 0)
    info = attr(1, b"vxlan\0") + attr(2 | 0x8000, data)  # IFLA_INFO_DATA, with NLA_F_NESTED
    attrs = (attr(3, name.encode() + b"\0") + attr(4, struct.pack("=I", mtu))
             + attr(1, bytes.fromhex(MAC.replace(":", ""))) + attr(18, info))
    return message(RTM_NEWLINK, seq, body + attrs)


def reference_vxlan(item) -> dict:
    data = item.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")
    learning = data.get_attr("IFLA_VXLAN_LEARNING")
    return {"id": data.get_attr("IFLA_VXLAN_ID"), "local": data.get_attr("IFLA_VXLAN_LOCAL"),
            "link": data.get_attr("IFLA_VXLAN_LINK"), "port": data.get_attr("IFLA_VXLAN_PORT"),
            "learning": None if learning is None else bool(learning), "mtu": item.get_attr("IFLA_MTU")}


def test_a_vxlan_links_settings_decode_as_pyroute2_does():
    seq = 4
    full = (attr(1, struct.pack("=I", 1)) + attr(2, socket.inet_aton("239.1.1.1"))  # IFLA_VXLAN_GROUP: not read
            + attr(3, struct.pack("=I", 2)) + attr(4, socket.inet_aton("192.168.56.11"))
            + attr(5, b"\x00") + attr(6, b"\x00") + attr(7, b"\x00") + attr(15, struct.pack(">H", 8472)))
    bare = attr(1, struct.pack("=I", 7)) + attr(7, b"\x01")  # no local, no device, the kernel's port
    buffers = [vxlan_link_msg(seq, 5, "flannel.1", full) + vxlan_link_msg(seq, 6, "vx7", bare, 1500) + done(seq)]
    rtnl = offline_rtnl(Playback(buffers))
    rtnl._seq = seq - 1
    links = rtnl.links()
    reference = {item.get_attr("IFLA_IFNAME"): reference_vxlan(item) for item in parsed(buffers, seq)}
    assert {name: link["vxlan"] for name, link in links.items()} == reference
    assert links["flannel.1"]["vxlan"] == {"id": 1, "local": "192.168.56.11", "link": 2, "port": 8472,
                                           "learning": False, "mtu": 1450}
    assert links["vx7"]["vxlan"] == {"id": 7, "local": None, "link": None, "port": None, "learning": True,
                                     "mtu": 1500}
    assert links["flannel.1"]["mac"] == MAC and links["flannel.1"]["kind"] == "vxlan"


def neigh_dump_msg(seq: int, family: int, index: int, state: int, flags: int, dst: bytes | None,
                   lladdr: str | None) -> bytes:
    body = struct.pack("=BxxxiHBB", family, index, state, flags, 1)
    if dst is not None:
        body += attr(1, dst)
    if lladdr is not None:
        body += attr(2, bytes.fromhex(lladdr.replace(":", "")))
    body += attr(3, struct.pack("=IIII", 0, 0, 0, 1))  # NDA_CACHEINFO: not read
    return message(RTM_NEWNEIGH, seq, body)


def reference_neighbours(items, index: int) -> list:
    out = []
    for item in items:
        if item["ifindex"] != index:
            continue
        dst = item.get_attr("NDA_DST")
        out.append({"family": item["family"], "ifindex": item["ifindex"], "state": item["state"],
                    "flags": item["flags"], "dst": dst if dst and ":" not in dst else None,
                    "lladdr": item.get_attr("NDA_LLADDR")})
    return out


def test_neighbour_and_fdb_dumps_decode_as_pyroute2_does():
    seq = 8
    neighbours = [neigh_dump_msg(seq, socket.AF_INET, 5, 0x80, 0, socket.inet_aton("10.244.2.0"), OTHER_MAC),
                  neigh_dump_msg(seq, socket.AF_INET, 5, 0x20, 0, socket.inet_aton("10.244.0.0"), None),  # FAILED
                  neigh_dump_msg(seq, socket.AF_INET, 3, 0x02, 0, socket.inet_aton("10.244.1.7"), MAC)]  # other link
    buffers = [neighbours[0] + neighbours[1], neighbours[2] + done(seq)]
    rtnl = offline_rtnl(Playback(buffers))
    rtnl._seq = seq - 1
    got = rtnl.neighbours(5)
    assert got == reference_neighbours(parsed(buffers, seq), 5)
    assert [(n["dst"], n["lladdr"], n["state"]) for n in got] == [("10.244.2.0", OTHER_MAC, 0x80),
                                                                  ("10.244.0.0", None, 0x20)]
    # the request names the link, so that the kernel dumps its entries only
    request = rtnl.sock.sent[0]
    assert struct.unpack_from("=BxxxiHBB", request, 16)[0] == socket.AF_INET
    assert request[28:36] == attr(8, struct.pack("=I", 5))  # NDA_IFINDEX

    seq = 9
    fdb = [neigh_dump_msg(seq, AF_BRIDGE, 5, 0x80, 0x02, socket.inet_aton("192.168.56.12"), OTHER_MAC),
           neigh_dump_msg(seq, AF_BRIDGE, 5, 0x80, 0x02, socket.inet_pton(socket.AF_INET6, "fd00::2"), MAC),
           neigh_dump_msg(seq, AF_BRIDGE, 5, 0x80, 0x02, None, "00:00:00:00:00:00")]
    buffers = [b"".join(fdb) + done(seq)]
    rtnl = offline_rtnl(Playback(buffers))
    rtnl._seq = seq - 1
    got = rtnl.fdb(5)
    assert got == reference_neighbours(parsed(buffers, seq), 5)
    assert [(f["lladdr"], f["dst"]) for f in got] == [(OTHER_MAC, "192.168.56.12"), (MAC, None),
                                                      ("00:00:00:00:00:00", None)]
    # asked as `bridge fdb show dev` asks: an ifinfomsg of family AF_BRIDGE naming the link
    length, kind = struct.unpack_from("=IH", rtnl.sock.sent[0])
    assert (length, kind) == (32, 30) and struct.unpack_from("=BxHiII", rtnl.sock.sent[0], 16)[:3] == (AF_BRIDGE, 0, 5)


# -- real namespaces (root) ----------------------------------------------------------------------
def run(*argv: str, stdin: str | None = None) -> str:
    return subprocess.run(argv, input=stdin, text=True, check=True, capture_output=True, timeout=60).stdout


@pytest.fixture
def namespace():
    """A throwaway namespace with a LAN-like veth pair, deleted whatever happens."""
    if os.geteuid() != 0:
        pytest.skip("creating network namespaces needs root")
    if shutil.which("ip") is None or shutil.which("bridge") is None:
        pytest.skip("ip and bridge (iproute2) are not installed")
    name = "lnv" + "".join(random.choices(string.ascii_lowercase + string.digits, k=8))
    run("ip", "netns", "add", name)
    try:
        run("ip", "-n", name, "-batch", "-", stdin="link add eth1 type veth peer name lanport\n"
                                                      "address add 192.168.56.11/24 dev eth1\n"
                                                      "link set lo up\nlink set eth1 up\nlink set lanport up\n")
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=30)
        assert not os.path.exists(os.path.join("/run/netns", name))


def read_recorded(rtnl, what: str, *args):
    recorder = Recorder(rtnl.sock)
    rtnl.sock = recorder
    try:
        lean = getattr(rtnl, what)(*args)
    finally:
        rtnl.sock = recorder.sock
    seq = struct.unpack_from("=IHHII", recorder.sent[-1])[3]
    return lean, parsed(recorder.received, seq)


@pytest.mark.netns
def test_what_ip_and_bridge_make_reads_as_pyroute2_decodes_it(namespace):
    run("ip", "-n", namespace, "-batch", "-", stdin=(
        f"link add flannel.1 address {MAC} mtu 1450 type vxlan id 1 local 192.168.56.11 dev eth1 dstport 8472 "
        "nolearning\n"
        "link set flannel.1 up\naddress add 10.244.1.0/32 dev flannel.1\n"
        f"neigh replace 10.244.2.0 lladdr {OTHER_MAC} dev flannel.1 nud permanent\n"
        "neigh replace 10.244.0.0 lladdr 02:00:00:00:00:01 dev flannel.1 nud stale\n"
        "neigh replace 192.168.56.12 lladdr 02:00:00:00:00:02 dev eth1 nud permanent\n"))
    run("ip", "netns", "exec", namespace, "bridge", "fdb", "append", OTHER_MAC, "dev", "flannel.1", "dst",
        "192.168.56.12", "self", "permanent")
    with nl.NamespaceSet() as nsset:
        rtnl = nsset.rtnl(namespace)
        links, items = read_recorded(rtnl, "links")
        vx = links["flannel.1"]
        assert vx["vxlan"] == next(reference_vxlan(i) for i in items if i.get_attr("IFLA_IFNAME") == "flannel.1")
        assert vx["vxlan"] == {"id": 1, "local": "192.168.56.11", "link": links["eth1"]["index"], "port": 8472,
                               "learning": False, "mtu": 1450}
        assert vx["mac"] == MAC and vx["kind"] == "vxlan" and "vxlan" not in links["eth1"]
        neighbours, items = read_recorded(rtnl, "neighbours", vx["index"])
        assert neighbours == reference_neighbours(items, vx["index"])
        assert sorted((n["dst"], n["lladdr"], n["state"]) for n in neighbours) == [
            ("10.244.0.0", "02:00:00:00:00:01", 0x04), ("10.244.2.0", OTHER_MAC, 0x80)]
        fdb, items = read_recorded(rtnl, "fdb", vx["index"])
        assert fdb == reference_neighbours(items, vx["index"])
        assert [(f["lladdr"], f["dst"], f["state"] & 0x80, f["flags"] & 0x02) for f in fdb] == [
            (OTHER_MAC, "192.168.56.12", 0x80, 0x02)]


@pytest.mark.netns
def test_what_the_module_makes_is_what_ip_and_bridge_show_as_flannels(namespace):
    with nl.NamespaceSet() as nsset:
        rtnl = nsset.rtnl(namespace)
        eth1 = rtnl.links()["eth1"]["index"]
        rtnl.add_vxlan("flannel.1", {"id": 1, "link": eth1, "local": "192.168.56.11", "port": 8472,
                                     "learning": False}, MAC, 1450, 40)
        rtnl.commit()
        rtnl.add_address(40, "10.244.1.0/32", "flannel.1")
        rtnl.add_neighbour(40, "10.244.2.0", OTHER_MAC, "flannel.1")
        rtnl.add_fdb(40, OTHER_MAC, "192.168.56.12", "flannel.1")
        rtnl.add_route("10.244.2.0/24", "10.244.2.0", oif=40, onlink=True, protocol=nl.RTPROT_BOOT)
        rtnl.commit()
        # written again (a second run's repair): replaced, not refused
        rtnl.add_neighbour(40, "10.244.2.0", OTHER_MAC, "flannel.1")
        rtnl.add_fdb(40, OTHER_MAC, "192.168.56.12", "flannel.1")
        rtnl.commit()
        assert rtnl.routes() == [{"dst": "10.244.2.0/24", "gateway": "10.244.2.0", "oif": 40}]
    link = json.loads(run("ip", "-n", namespace, "-d", "-j", "link", "show", "flannel.1"))[0]
    info = link["linkinfo"]["info_data"]
    assert (link["ifindex"], link["address"], link["mtu"], "UP" in link["flags"]) == (40, MAC, 1450, True)
    assert (info["id"], info["local"], info["link"], info["port"], info["learning"]) == (
        1, "192.168.56.11", "eth1", 8472, False)
    route = run("ip", "-n", namespace, "route", "show", "10.244.2.0/24").strip()
    assert route == "10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink", route  # proto boot is not printed
    neigh = json.loads(run("ip", "-n", namespace, "-j", "neigh", "show", "dev", "flannel.1"))
    assert [(n["dst"], n["lladdr"], n["state"]) for n in neigh] == [("10.244.2.0", OTHER_MAC, ["PERMANENT"])]
    fdb = json.loads(run("ip", "netns", "exec", namespace, "bridge", "-j", "fdb", "show", "dev", "flannel.1"))
    assert [(f["mac"], f["dst"], f["flags"], f["state"]) for f in fdb] == [
        (OTHER_MAC, "192.168.56.12", ["self"], "permanent")]
    with nl.NamespaceSet() as nsset:
        rtnl = nsset.rtnl(namespace)
        rtnl.delete_fdb(40, OTHER_MAC, "192.168.56.12", "flannel.1")
        rtnl.forget_neighbour(40, "10.244.2.0", "flannel.1")
        rtnl.delete_route("10.244.2.0/24", "10.244.2.0")
        rtnl.commit()
        rtnl.delete_fdb(40, OTHER_MAC, "192.168.56.12", "flannel.1")  # gone already: no error
        rtnl.commit()
        assert rtnl.fdb(40) == [] and rtnl.neighbours(40) == [] and rtnl.routes() == []
