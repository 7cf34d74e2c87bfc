"""module_utils/podpath_netlink.py's own rtnetlink codec, checked against pyroute2's.

The module reads links, addresses and routes by walking the dump's attributes with
struct, and packs its link requests with struct too. These tests decode the very same
bytes with pyroute2 and the decoding the module used before (kept below as the
reference, as it was), and compare the results; the requests are compared byte for byte
with what pyroute2's message classes encode.

Two kinds of input: hand-made buffers (several messages per buffer, a dump over several
buffers, odd attribute lengths, NLA_F_NESTED set, messages of other requests, an error
in a dump), and real dumps of throwaway namespaces built with `ip` (root only: those
are named 'lnc' + random characters and are deleted whatever happens).
"""
from __future__ import annotations

import errno
import os
import random
import shutil
import socket
import string
import struct
import subprocess

import pytest
from pyroute2.netlink import NLMSG_DONE, NLMSG_ERROR
from pyroute2.netlink.rtnl import RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

from netlink_sockets import Playback, Recorder, offline_rtnl

from podpath.model.labdir import load_module_util

nl = load_module_util("podpath_netlink")

NLA_F_NESTED = 1 << 15
IFF_UP = 1


# -- the reference: pyroute2's decoding, as the module did it before ---------------------
def pyroute2_dump(buffers: list[bytes], seq: int) -> list:
    """The messages of dump SEQ in the received BUFFERS, decoded by pyroute2 (old _dump)."""
    marshal = MarshalRtnl()
    out = []
    for data in buffers:
        for item in marshal.parse(data):
            if item["header"]["sequence_number"] != seq:
                continue
            if item["header"]["type"] == NLMSG_DONE:
                return out
            if item["header"]["type"] == NLMSG_ERROR:
                raise nl.NetlinkError(abs(item["header"]["error"].code), "dump")
            out.append(item)
    raise AssertionError("the dump has no NLMSG_DONE")


def old_links(items) -> dict:
    result = {}
    for item in items:
        info = item.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info else None
        slave = info.get_attr("IFLA_INFO_SLAVE_DATA") if info else None
        hairpin = None
        if slave is not None and info.get_attr("IFLA_INFO_SLAVE_KIND") == "bridge":
            hairpin = bool(slave.get_attr("IFLA_BRPORT_MODE"))
        result[item.get_attr("IFLA_IFNAME")] = {
            "index": item["index"],
            "kind": kind or ("loopback" if item.get_attr("IFLA_IFNAME") == "lo" else "device"),
            "up": bool(item["flags"] & IFF_UP),
            "master": item.get_attr("IFLA_MASTER"),
            "link": item.get_attr("IFLA_LINK"),
            "hairpin": hairpin,
            "mac": item.get_attr("IFLA_ADDRESS"),
        }
    return result


def old_addresses(items) -> dict:
    result = {}
    for item in items:
        if item["family"] != socket.AF_INET:
            continue
        cidr = "%s/%d" % (item.get_attr("IFA_LOCAL") or item.get_attr("IFA_ADDRESS"), item["prefixlen"])
        result.setdefault(item["index"], []).append(cidr)
    return {index: sorted(value) for index, value in result.items()}


def old_routes(items) -> list:
    result = []
    for item in items:
        table = item.get_attr("RTA_TABLE") or item["table"]
        gateway = item.get_attr("RTA_GATEWAY")
        if table != 254 or item["family"] != socket.AF_INET or not gateway:
            continue
        dst = "default" if item["dst_len"] == 0 else "%s/%d" % (item.get_attr("RTA_DST"), item["dst_len"])
        result.append({"dst": dst, "gateway": gateway, "oif": item.get_attr("RTA_OIF")})
    return result


OLD = {"links": old_links, "addresses": old_addresses, "routes": old_routes}


# -- sockets that record, or play back ----------------------------------------------------
def read_both(rtnl, what: str):
    """Call rtnl.WHAT() through a Recorder; return its result and pyroute2's on the same bytes."""
    recorder = Recorder(rtnl.sock)
    rtnl.sock = recorder
    try:
        lean = getattr(rtnl, what)()
    finally:
        rtnl.sock = recorder.sock
    seq = struct.unpack_from("=IHHII", recorder.sent[-1])[3]
    return lean, OLD[what](pyroute2_dump(recorder.received, seq)), recorder


# -- hand-made messages ----------------------------------------------------------------------
def attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def message(kind: int, seq: int, body: bytes, flags: int = 2) -> bytes:  # NLM_F_MULTI
    return struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body


def done(seq: int) -> bytes:
    return message(NLMSG_DONE, seq, struct.pack("=i", 0))


def link_msg(seq: int, index: int, name: str, *, up=True, kind=None, master=None, peer=None, mac=None,
             slave_kind=None, mode=None, nested_flag=False) -> bytes:
    body = struct.pack("=BxHiII", 0, 1, index, 0x1043 if up else 0x1002, 0)
    attrs = attr(3, name.encode() + b"\0") + attr(4, struct.pack("=I", 1500))  # IFLA_IFNAME, IFLA_MTU
    if mac is not None:
        attrs += attr(1, mac)
    if peer is not None:
        attrs += attr(5, struct.pack("=I", peer))
    if master is not None:
        attrs += attr(10, struct.pack("=I", master))
    info = b""
    if kind is not None:
        info += attr(1, kind.encode() + b"\0")
    if slave_kind is not None:
        info += attr(4, slave_kind.encode() + b"\0")
        slave = attr(1, b"\x03") + attr(2, struct.pack("=H", 32))  # IFLA_BRPORT_STATE, _PRIORITY
        if mode is not None:
            slave += attr(4, bytes([mode]))
        slave += attr(6, b"\x00")  # IFLA_BRPORT_GUARD, after the mode
        info += attr(5 | (NLA_F_NESTED if nested_flag else 0), slave)
    if info:
        attrs += attr(18 | (NLA_F_NESTED if nested_flag else 0), info)
    attrs += attr(20, b"an alias")  # IFLA_IFALIAS: not read, to be skipped
    return message(RTM_NEWLINK, seq, body + attrs)


def addr_msg(seq: int, index: int, local: str, prefixlen: int, *, family=socket.AF_INET, address=None,
             with_local=True) -> bytes:
    if family == socket.AF_INET6:
        packed = socket.inet_pton(family, local)
        return message(RTM_NEWADDR, seq, struct.pack("=BBBBI", family, prefixlen, 0, 0, index)
                       + attr(1, packed))
    attrs = attr(1, socket.inet_aton(address or local))
    if with_local:
        attrs += attr(2, socket.inet_aton(local))
    attrs += attr(3, b"eth0\0")  # IFA_LABEL
    return message(RTM_NEWADDR, seq, struct.pack("=BBBBI", family, prefixlen, 0, 0, index) + attrs)


def route_msg(seq: int, dst_len: int, *, dst=None, gateway=None, oif=None, table=254, big_table=None) -> bytes:
    body = struct.pack("=BBBBBBBBI", socket.AF_INET, dst_len, 0, 0, table if big_table is None else 252,
                       4, 0, 1, 0)
    attrs = b""
    if big_table is not None or table == 254:
        attrs += attr(15, struct.pack("=I", big_table or table))  # RTA_TABLE
    if dst is not None:
        attrs += attr(1, socket.inet_aton(dst))
    if gateway is not None:
        attrs += attr(5, socket.inet_aton(gateway))
    if oif is not None:
        attrs += attr(4, struct.pack("=I", oif))
    return message(RTM_NEWROUTE, seq, body + attrs)


# -- pure unit tests on hand-made bytes ----------------------------------------------------------
def test_attributes_of_odd_lengths_are_read_on_4_byte_boundaries_and_the_nested_flag_is_masked():
    data = (attr(3, b"abcde\0") + attr(1, b"\x01\x02\x03\x04\x05\x06\x07") + attr(10 | NLA_F_NESTED, b"")
            + attr(5, b"\x09\x00\x00\x00"))
    spans = nl._attrs(data, 0, len(data))
    assert sorted(spans) == [1, 3, 5, 10]
    assert nl._string(data, spans[3]) == "abcde"
    assert data[slice(*spans[1])] == b"\x01\x02\x03\x04\x05\x06\x07"
    assert spans[10][0] == spans[10][1]
    assert nl._u32(data, spans[5]) == 9
    # the first of two attributes of a type wins, as pyroute2's get_attr
    twice = attr(3, b"one\0") + attr(3, b"two\0")
    assert nl._string(twice, nl._attrs(twice, 0, len(twice))[3]) == "one"
    # a truncated attribute ends the walk instead of reading past the message
    assert nl._attrs(data + struct.pack("=HH", 40, 7), 0, len(data) + 4).keys() == spans.keys()


def test_a_link_dump_over_several_buffers_with_other_requests_messages_decodes_as_pyroute2_does():
    seq = 7
    mac = bytes.fromhex("02a1b2c3d4e5")
    first = (link_msg(seq, 1, "lo", mac=bytes(6))
             + link_msg(seq, 2, "cni0", kind="bridge", mac=mac, nested_flag=True)
             + link_msg(seq - 1, 99, "stale", kind="veth")  # a message of an earlier request
             + link_msg(seq, 3, "veth1", kind="veth", master=2, peer=2, mac=mac,
                        slave_kind="bridge", mode=1, nested_flag=True))
    second = (link_msg(seq, 4, "veth22", kind="veth", master=2, peer=5, slave_kind="bridge", mode=0)
              + link_msg(seq, 5, "eth0", up=False, mac=mac)
              + link_msg(seq, 6, "bond-port", kind="veth", master=9, slave_kind="bond")
              + link_msg(seq, 7, "noportmode", kind="veth", master=2, slave_kind="bridge"))
    third = done(seq) + link_msg(seq, 8, "after-done", kind="veth")
    sock = Playback([first, second, third])
    rtnl = offline_rtnl(sock)
    rtnl._seq = seq - 1
    links = rtnl.links()
    assert sock.reads == 3
    assert links == old_links(pyroute2_dump([first, second, third], seq))
    assert links["veth1"] == {"index": 3, "kind": "veth", "up": True, "master": 2, "link": 2, "hairpin": True,
                              "mac": "02:a1:b2:c3:d4:e5"}
    assert links["veth22"]["hairpin"] is False and links["noportmode"]["hairpin"] is False
    assert links["bond-port"]["hairpin"] is None and links["cni0"]["hairpin"] is None
    assert links["lo"]["kind"] == "loopback" and links["eth0"]["kind"] == "device"
    assert links["eth0"]["up"] is False and links["eth0"]["master"] is None and links["eth0"]["link"] is None
    assert "stale" not in links and "after-done" not in links
    # the request: an ifinfomsg, family 0, as a dump
    length, kind, flags, sent_seq, _ = struct.unpack_from("=IHHII", sock.sent[0])
    assert (length, kind, flags & 0x300, sent_seq) == (32, 18, 0x300, seq)


def test_address_and_route_dumps_decode_as_pyroute2_does():
    seq = 3
    addrs = [addr_msg(seq, 2, "10.0.0.9", 24), addr_msg(seq, 2, "10.0.0.1", 24),
             addr_msg(seq, 3, "10.1.0.1", 32, address="10.1.0.2"),  # point to point: the local one
             addr_msg(seq, 4, "10.2.0.1", 16, with_local=False),
             addr_msg(seq, 2, "fd00::1", 64, family=socket.AF_INET6)]
    buffers = [addrs[0] + addrs[1], addrs[2] + addrs[3] + addrs[4] + done(seq)]
    rtnl = offline_rtnl(Playback(buffers))
    rtnl._seq = seq - 1
    got = rtnl.addresses()
    assert got == old_addresses(pyroute2_dump(buffers, seq))
    assert got == {2: ["10.0.0.1/24", "10.0.0.9/24"], 3: ["10.1.0.1/32"], 4: ["10.2.0.1/16"]}

    routes = [route_msg(seq, 0, gateway="10.0.0.1", oif=2),
              route_msg(seq, 16, dst="10.9.0.0", gateway="10.0.0.2", oif=2),
              route_msg(seq, 24, dst="10.0.0.0", oif=2),  # no gateway
              route_msg(seq, 0, gateway="10.0.0.3", table=255),  # table local
              route_msg(seq, 8, dst="10.0.0.0", gateway="10.0.0.4", big_table=1000),  # RTA_TABLE only
              route_msg(seq, 12, dst="10.16.0.0", gateway="10.0.0.5")]  # no RTA_OIF
    buffers = [routes[0], b"".join(routes[1:]) + done(seq)]
    rtnl = offline_rtnl(Playback(buffers))
    rtnl._seq = seq - 1
    got = rtnl.routes()
    assert got == old_routes(pyroute2_dump(buffers, seq))
    assert got == [{"dst": "default", "gateway": "10.0.0.1", "oif": 2},
                   {"dst": "10.9.0.0/16", "gateway": "10.0.0.2", "oif": 2},
                   {"dst": "10.16.0.0/12", "gateway": "10.0.0.5", "oif": None}]


def test_an_error_in_a_dump_raises_its_code():
    seq = 5
    error = message(NLMSG_ERROR, seq, struct.pack("=i", -errno.EPERM) + struct.pack("=IHHII", 32, 18, 0x301, seq, 0))
    other = message(NLMSG_ERROR, seq + 9, struct.pack("=i", -errno.ENOENT) + bytes(16))  # another request's
    rtnl = offline_rtnl(Playback([other + link_msg(seq, 1, "lo"), error]))
    rtnl._seq = seq - 1
    with pytest.raises(nl.NetlinkError) as caught:
        rtnl.links()
    assert caught.value.code == errno.EPERM


def pyroute2_link_request(index: int, attrs: list, seq: int) -> bytes:
    msg = ifinfmsg()
    msg["family"] = 0
    msg["index"] = index
    msg["flags"] = IFF_UP
    msg["change"] = IFF_UP
    msg["attrs"] = attrs
    msg["header"]["type"] = RTM_NEWLINK
    msg["header"]["flags"] = nl.NEW
    msg["header"]["sequence_number"] = seq
    msg.encode()
    return bytes(msg.data)


@pytest.mark.parametrize("name", ["b", "br0", "cni0", "bridge-longer"])
def test_a_bridge_request_is_the_bytes_pyroute2_encodes(name):
    sock = Playback()
    rtnl = offline_rtnl(sock)
    rtnl.add_bridge(name, 7)
    assert sock.sent == [], "a request waits in the batch until it is flushed"
    rtnl.flush()
    attrs = [("IFLA_IFNAME", name), ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "bridge")]})]
    assert sock.sent == [pyroute2_link_request(7, attrs, 1)]


@pytest.mark.parametrize("name, peer_name, fd, index, peer_index", [
    ("veth1", "eth0", 9, 0, 0), ("vethabcdef12", "e", 1000, 12, 0), ("v", "eth0-long-nm", 3, 65536, 0),
    ("eth0", "veth0a1b2c3d", 5, 2, 507)])
def test_a_veth_request_is_the_bytes_pyroute2_encodes(name, peer_name, fd, index, peer_index):
    sock = Playback()
    rtnl = offline_rtnl(sock)
    rtnl._seq = 40
    rtnl.add_veth(name, peer_name, fd, index, peer_index)
    rtnl.flush()
    peer = {"index": peer_index, "attrs": [("IFLA_IFNAME", peer_name), ("IFLA_NET_NS_FD", fd)]}
    info = {"attrs": [("IFLA_INFO_KIND", "veth"), ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", peer)]})]}
    assert sock.sent == [pyroute2_link_request(index, [("IFLA_IFNAME", name), ("IFLA_LINKINFO", info)], 41)]
    assert rtnl._pending == {41: ("create veth %s with peer %s" % (name, peer_name), ())}


def ack(seq: int, code: int = 0) -> bytes:
    """The kernel's acknowledgement of request SEQ: NLMSG_ERROR with CODE (0: done)."""
    return struct.pack("=IHHII", 36, NLMSG_ERROR, 0, seq, 0) + struct.pack("=i", -code) + bytes(16)


def test_queued_requests_go_in_one_write_and_each_gets_its_acknowledgement():
    sock = Playback([ack(1) + ack(2), ack(3, errno.EEXIST)])
    rtnl = offline_rtnl(sock)
    rtnl.set_up(5, "eth0")
    rtnl.add_address(5, "10.1.0.2/24", "eth0")
    rtnl.add_route("default", "10.1.0.1")
    with pytest.raises(nl.NetlinkError) as caught:
        rtnl.commit()
    assert len(sock.sent) == 1, "the three requests should go in one write"
    assert [struct.unpack_from("=IHHII", sock.sent[0], o)[3] for o in message_offsets(sock.sent[0])] == [1, 2, 3]
    assert caught.value.code == errno.EEXIST and "add route default via 10.1.0.1" in str(caught.value)
    assert rtnl._pending == {} and rtnl._out == []


def message_offsets(data: bytes) -> list:
    offsets, offset = [], 0
    while offset < len(data):
        offsets.append(offset)
        offset += (struct.unpack_from("=I", data, offset)[0] + 3) & ~3
    return offsets


def test_a_long_batch_is_sent_and_acknowledged_in_parts_that_fit_the_receive_buffer():
    count = nl.Rtnl.BATCH * 2 + 10
    sock = Playback([b"".join(ack(seq) for seq in range(1, nl.Rtnl.BATCH + 1)),
                     b"".join(ack(seq) for seq in range(nl.Rtnl.BATCH + 1, 2 * nl.Rtnl.BATCH + 1)),
                     b"".join(ack(seq) for seq in range(2 * nl.Rtnl.BATCH + 1, count + 1))])
    rtnl = offline_rtnl(sock)
    for i in range(count):
        rtnl.set_up(i + 2, "v%d" % i)
    assert len(sock.sent) == 2 and len(rtnl._pending) == 10, "every BATCH requests are sent and acknowledged"
    rtnl.commit()
    assert len(sock.sent) == 3 and rtnl._pending == {}
    assert sum(len(message_offsets(data)) for data in sock.sent) == count


def test_a_port_attached_and_set_up_in_one_request():
    sock = Playback()
    rtnl = offline_rtnl(sock)
    rtnl.set_master(9, 2, "veth9", up=True)
    rtnl.set_master(10, 2, "veth10")
    rtnl.flush()
    first, second = (sock.sent[0][o:] for o in message_offsets(sock.sent[0]))
    assert struct.unpack_from("=BxHiII", first, 16)[2:] == (9, IFF_UP, IFF_UP)
    assert struct.unpack_from("=BxHiII", second, 16)[2:] == (10, 0, 0)
    assert [what for what, _ in rtnl._pending.values()] == ["attach veth9 to its bridge and set it up",
                                                             "attach veth10 to its bridge"]


# -- real dumps of throwaway namespaces (root) -----------------------------------------------
def ip(netns: str, *args: str, stdin: str | None = None) -> None:
    subprocess.run(["ip", "-n", netns, *args], input=stdin, text=True, check=True, capture_output=True, timeout=60)


@pytest.fixture
def two_namespaces():
    """Two throwaway namespaces, 'node' and 'pod', deleted whatever happens."""
    if os.geteuid() != 0:
        pytest.skip("creating network namespaces needs root")
    if shutil.which("ip") is None:
        pytest.skip("the ip command (iproute2) is not installed")
    suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=8))
    names = ["lnc" + suffix + "n", "lnc" + suffix + "p"]
    made = []
    try:
        for name in names:
            subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=30)
            made.append(name)
        yield names
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=30)
        assert not [n for n in names if os.path.exists(os.path.join("/run/netns", n))]


def build(node: str, pod: str, extra_pairs: int) -> None:
    """A node with a bridge and hairpinned ports, a pod behind a veth, addresses and routes."""
    ip(node, "link", "add", "br0", "type", "bridge")
    ip(node, "link", "add", "vport1", "type", "veth", "peer", "name", "eth0", "netns", pod)
    ip(node, "link", "add", "vport2", "type", "veth", "peer", "name", "vport2p")
    ip(node, "link", "add", "vfree", "type", "veth", "peer", "name", "vfreep")
    for port in ("vport1", "vport2"):
        ip(node, "link", "set", port, "master", "br0")
    ip(node, "link", "set", "vport1", "type", "bridge_slave", "hairpin", "on")
    ip(node, "link", "set", "vport2", "type", "bridge_slave", "hairpin", "off")
    lines = ["link add many%d type veth peer name many%dp" % (i, i) for i in range(extra_pairs)]
    lines += ["link set many%d up" % i for i in range(0, extra_pairs, 2)]
    lines += ["link set %s up" % name for name in ("lo", "br0", "vport1", "vport2", "vport2p", "vfree")]
    lines += ["address add 10.77.0.1/24 dev br0", "address add 10.77.0.50/24 dev br0",
              "address add 10.33.0.1 peer 10.33.0.2/32 dev vfree", "address add 10.34.0.1/32 dev vfreep",
              "address add fd00:77::1/64 dev br0 nodad",
              "route add 10.66.0.0/16 via 10.77.0.2", "route add 10.55.0.0/16 via 10.77.0.2 table 100",
              "route add 10.44.0.0/16 nexthop via 10.77.0.2 nexthop via 10.77.0.3",
              "route add 10.22.0.0/16 dev br0"]
    ip(node, "-batch", "-", stdin="\n".join(lines) + "\n")
    ip(pod, "-batch", "-", stdin="link set lo up\nlink set eth0 up\naddress add 10.77.0.2/24 dev eth0\n"
                                 "route add default via 10.77.0.1\nroute add 10.99.0.0/16 via 10.77.0.1 dev eth0\n")


@pytest.mark.netns
def test_real_dumps_of_a_namespace_decode_as_pyroute2_does(two_namespaces):
    node, pod = two_namespaces
    build(node, pod, extra_pairs=40)
    with nl.NamespaceSet() as nsset:
        seen = {}
        for ns in (node, pod):
            rtnl = nsset.rtnl(ns)
            for what in ("links", "addresses", "routes"):
                lean, reference, recorder = read_both(rtnl, what)
                assert lean == reference, (ns, what)
                seen[ns, what] = (lean, len(recorder.received))
    links, reads = seen[node, "links"]
    assert reads >= 2, "the node's link dump should span several buffers"
    assert len(links) == 1 + 1 + 3 + 2 + 80
    assert links["vport1"]["hairpin"] is True and links["vport2"]["hairpin"] is False
    assert links["vport1"]["master"] == links["br0"]["index"] and links["vfree"]["master"] is None
    assert links["br0"]["kind"] == "bridge" and links["lo"]["kind"] == "loopback"
    assert links["many1"]["up"] is False and links["many0"]["up"] is True
    pod_links = seen[pod, "links"][0]
    assert pod_links["eth0"]["link"] == links["vport1"]["index"]
    assert links["vport1"]["link"] == pod_links["eth0"]["index"]
    addresses = seen[node, "addresses"][0]
    assert addresses[links["br0"]["index"]] == ["10.77.0.1/24", "10.77.0.50/24"]
    assert addresses[links["vfree"]["index"]] == ["10.33.0.1/32"]
    routes = seen[node, "routes"][0]
    assert routes == [{"dst": "10.66.0.0/16", "gateway": "10.77.0.2", "oif": links["br0"]["index"]}]
    assert seen[pod, "routes"][0] == [
        {"dst": "default", "gateway": "10.77.0.1", "oif": pod_links["eth0"]["index"]},
        {"dst": "10.99.0.0/16", "gateway": "10.77.0.1", "oif": pod_links["eth0"]["index"]}]


@pytest.mark.netns
def test_links_made_by_the_struct_requests_are_what_was_asked(two_namespaces):
    node, pod = two_namespaces
    with nl.NamespaceSet() as nsset:
        rtnl = nsset.rtnl(node)
        rtnl.add_bridge("cni0", 50)
        rtnl.add_veth("veth12345678", "eth0", nsset.fd(pod), 51)
        rtnl.commit()
        # made from the pod's side, as the module makes a pod's: eth1 up, its peer down
        nsset.rtnl(pod).add_veth("eth1", "vethpeer0001", nsset.fd(node), 70, 52)
        nsset.rtnl(pod).commit()
        peer_before = nsset.rtnl(node).links()["vethpeer0001"]
        rtnl.set_master(51, 50, "veth12345678")
        rtnl.set_master(52, 50, "vethpeer0001", up=True)
        rtnl.commit()
        rtnl.set_hairpin(51, True, "veth12345678")
        rtnl.commit()
        links, reference, _ = read_both(rtnl, "links")
        pod_links, pod_reference, _ = read_both(nsset.rtnl(pod), "links")
    assert links == reference and pod_links == pod_reference
    assert links["cni0"]["index"] == 50 and links["cni0"]["kind"] == "bridge" and links["cni0"]["up"] is True
    assert links["veth12345678"]["index"] == 51 and links["veth12345678"]["kind"] == "veth"
    assert links["veth12345678"]["up"] is True and links["veth12345678"]["hairpin"] is True
    assert links["veth12345678"]["master"] == 50
    assert pod_links["eth0"]["kind"] == "veth" and pod_links["eth0"]["up"] is False
    assert pod_links["eth0"]["link"] == 51 and links["veth12345678"]["link"] == pod_links["eth0"]["index"]
    # a peer's index is granted with its veth's; attached and set up in one request
    assert peer_before["index"] == 52 and peer_before["up"] is False and peer_before["master"] is None
    assert pod_links["eth1"]["index"] == 70 and pod_links["eth1"]["up"] is True
    assert links["vethpeer0001"]["link"] == 70
    assert links["vethpeer0001"]["master"] == 50 and links["vethpeer0001"]["up"] is True
