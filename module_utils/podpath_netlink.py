# -*- coding: utf-8 -*-
# Copyright: podpath contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Network namespaces and rtnetlink for podpath's modules.

This is the one place that owns netlink sockets. Requests (a link, an address, a
route, a link up, a bridge port, hairpin) are packed here with struct, and dumps are
decoded here by walking the attributes with struct, reading only the few that podpath
uses: pyroute2's generic message classes cost ten times more, most of the time of
wiring hundreds of pods. pyroute2 only gives the message type and flag constants,
which every pyroute2 from 0.5.14 on has (Debian 13's python3-pyroute2 is 0.7.7).
Requests are sent in batches and their acknowledgements read together, which is what
makes wiring hundreds of pods in one module call fast. No `ip` subprocess is used.

A socket is bound to the network namespace it was created in, so one socket is
created per namespace by entering it on this thread (setns) and coming back at once.
"""
from __future__ import annotations

import ctypes
import errno
import ipaddress
import os
import socket
import struct
import traceback

from ansible.module_utils.podpath_lab import NETNS_DIR, create_marked_netns, netns_path

# The module says what is missing (missing_required_lib) rather than failing to import.
try:
    from pyroute2.netlink import (NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE,
                                  NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR)
    from pyroute2.netlink.rtnl import (RTM_DELADDR, RTM_DELLINK, RTM_DELNEIGH, RTM_DELROUTE, RTM_GETADDR,
                                       RTM_GETLINK, RTM_GETNEIGH, RTM_GETROUTE, RTM_NEWADDR, RTM_NEWLINK,
                                       RTM_NEWNEIGH, RTM_NEWROUTE)
except ImportError:
    HAS_PYROUTE2 = False
    PYROUTE2_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_PYROUTE2 = True
    PYROUTE2_IMPORT_ERROR = None
    # the flags of a request that creates (refused if the thing exists) and of one that changes
    NEW = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    SET = NLM_F_REQUEST | NLM_F_ACK
    # what flannel's netlink library sends for a neighbour or FDB entry (NeighSet): made, or
    # made to say what is asked if it says something else
    PUT = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_SHARED = 1 << 20
MNT_DETACH = 2
IFF_UP = 1
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3  # what a route made with no protocol gets (flannel's, the CNI plugins'); ip route hides it
RTPROT_STATIC = 4
RTNH_F_ONLINK = 4  # a route's gateway is on the link, whatever its addresses say
NUD_PERMANENT = 0x80
NTF_SELF = 0x02  # an FDB entry of the device itself (a VXLAN's remote), not of a bridge it is a port of
AF_INET = socket.AF_INET
AF_BRIDGE = 7

_libc = ctypes.CDLL(None, use_errno=True)


class NetlinkError(Exception):
    """A netlink request failed; `what` says which request, in words."""

    def __init__(self, code: int, what: str):
        self.code = code
        self.what = what
        super().__init__("%s: %s" % (what, os.strerror(code)))


def netns_exists(name: str) -> bool:
    return os.path.exists(netns_path(name))


def netns_inode(name: str):
    try:
        return os.stat(netns_path(name)).st_ino
    except OSError:
        return None


def _check(ret: int, what: str) -> None:
    if ret != 0:
        code = ctypes.get_errno()
        raise OSError(code, "%s: %s" % (what, os.strerror(code)))


class NamespaceSet:
    """Creates, enters and removes named network namespaces, as `ip netns` does.

    Keeps a descriptor of the namespace the process started in, and always comes back
    to it, so the caller's own namespace is never the one being changed.
    """

    def __init__(self):
        self._home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self._rtnl = {}
        self._fds = {}
        self._shared = False

    def release(self) -> None:
        """Close the sockets and descriptors of the namespaces (they open again when used).

        Every process started while they are open gets a copy of them to close at exec:
        with a socket and a descriptor per pod, that made each start 10 times slower."""
        for sock in self._rtnl.values():
            sock.close()
        for fd in self._fds.values():
            os.close(fd)
        self._rtnl.clear()
        self._fds.clear()

    def close(self) -> None:
        self.release()
        os.close(self._home)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _go_home(self) -> None:
        _check(_libc.setns(self._home, CLONE_NEWNET), "return to the module's own namespace")

    def _make_dir_shared(self) -> None:
        # As iproute2 does: /run/netns is a shared mount, so that the bind mounts below
        # it are seen from other mount namespaces (containers' ones included).
        if self._shared:
            return
        os.makedirs(NETNS_DIR, mode=0o755, exist_ok=True)
        path = NETNS_DIR.encode()
        if _libc.mount(b"", path, b"none", MS_SHARED | MS_REC, None) != 0:
            _check(_libc.mount(path, path, b"none", MS_BIND | MS_REC, None), "bind %s" % NETNS_DIR)
            _check(_libc.mount(b"", path, b"none", MS_SHARED | MS_REC, None), "share %s" % NETNS_DIR)
        self._shared = True

    def create(self, name: str) -> None:
        """Create a named namespace bound at /run/netns/NAME, with its socket."""
        self._make_dir_shared()
        path = netns_path(name)
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444))
        try:
            _check(_libc.unshare(CLONE_NEWNET), "unshare a new network namespace")
            try:
                _check(_libc.mount(b"/proc/thread-self/ns/net", path.encode(), b"none", MS_BIND, None),
                       "bind %s" % path)
                self._rtnl[name] = Rtnl(name)
            finally:
                self._go_home()
        except OSError:
            os.unlink(path)
            raise

    def create_marked(self, name: str, lab: str) -> None:
        """Create namespace NAME with LAB's mark on its lo, set up in the same request, and its
        socket, opened while this thread is in the new namespace (see create_marked_netns)."""
        self._make_dir_shared()

        def open_socket():
            self._rtnl[name] = Rtnl(name)
        create_marked_netns(netns_path(name), lab, lo_up=True, inside=open_socket)

    def remove(self, name: str) -> None:
        sock = self._rtnl.pop(name, None)
        if sock is not None:
            sock.close()
        fd = self._fds.pop(name, None)
        if fd is not None:
            os.close(fd)
        path = netns_path(name)
        _libc.umount2(path.encode(), MNT_DETACH)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def fd(self, name):
        """An open descriptor of the namespace (None: the module's own one)."""
        if name is None:
            return self._home
        if name not in self._fds:
            self._fds[name] = os.open(netns_path(name), os.O_RDONLY | os.O_CLOEXEC)
        return self._fds[name]

    def rtnl(self, name) -> "Rtnl":
        """The rtnetlink socket of a namespace (None: the module's own one)."""
        if name not in self._rtnl:
            if name is None:
                self._rtnl[None] = Rtnl(None)
            else:
                _check(_libc.setns(self.fd(name), CLONE_NEWNET), "enter namespace %s" % name)
                try:
                    self._rtnl[name] = Rtnl(name)
                finally:
                    self._go_home()
        return self._rtnl[name]

    def _sysctl_path(self, key: str) -> str:
        return "/proc/sys/" + key.replace(".", "/")

    def read_sysctls(self, name, keys) -> dict:
        """Read net.* sysctls as the namespace sees them (missing keys read as None)."""
        values = {}
        if not keys:
            return values
        if name is not None:
            _check(_libc.setns(self.fd(name), CLONE_NEWNET), "enter namespace %s" % name)
        try:
            for key in keys:
                try:
                    with open(self._sysctl_path(key)) as handle:
                        values[key] = handle.read().strip()
                except OSError:
                    values[key] = None
        finally:
            if name is not None:
                self._go_home()
        return values

    def write_sysctls(self, name, values: dict) -> None:
        if not values:
            return
        if name is not None:
            _check(_libc.setns(self.fd(name), CLONE_NEWNET), "enter namespace %s" % name)
        try:
            for key, value in values.items():
                with open(self._sysctl_path(key), "w") as handle:
                    handle.write(str(value))
        finally:
            if name is not None:
                self._go_home()


class Rtnl:
    """One rtnetlink socket; requests queue up and `commit()` sends them as a batch.

    A batch goes to the kernel in one write (the kernel handles its messages in order, each
    with its own acknowledgement, as if sent one by one), at most BATCH requests at a time
    so that their acknowledgements fit in the socket's receive buffer."""

    BATCH = 256

    def __init__(self, netns):
        self.netns = netns
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((0, 0))
        self._seq = 0
        self._pending = {}
        self._out = []

    def close(self) -> None:
        self.sock.close()

    def _send_raw(self, kind: int, flags: int, body: bytes, what: str, ignore=()) -> None:
        """Queue a request whose body (fixed header and attributes) is already packed;
        IGNORE lists error codes that mean the request is already done."""
        self._seq += 1
        self._out.append(_NLMSGHDR.pack(16 + len(body), kind, flags, self._seq, 0) + body)
        self._pending[self._seq] = (what, ignore)
        if len(self._out) >= self.BATCH:
            self.commit()

    def flush(self) -> None:
        """Send the queued requests in one write (their acknowledgements are read by commit)."""
        if self._out:
            data = b"".join(self._out)
            self._out.clear()
            self.sock.send(data)

    def commit(self) -> None:
        """Send what is queued and wait for every request's acknowledgement; raise on the
        first error.

        Acknowledgements are read straight from the buffer: a netlink header, then the
        error code (0 for success)."""
        self.flush()
        failure = None
        while self._pending:
            data = self.sock.recv(1 << 20)
            offset = 0
            while offset + 16 <= len(data):
                length, kind, _flags, seq, _port = _NLMSGHDR.unpack_from(data, offset)
                if length < 16:
                    break  # a malformed message: nothing after it can be trusted
                if kind == NLMSG_ERROR:
                    code = abs(_I32.unpack_from(data, offset + 16)[0])
                    what, ignore = self._pending.pop(seq, (None, ()))
                    if code and code not in ignore and failure is None and what is not None:
                        failure = NetlinkError(code, "%s (namespace %s)" % (what, self.netns or "of the module"))
                offset += (length + 3) & ~3
        if failure is not None:
            raise failure

    def _dump(self, kind: int, reply: int, body: bytes) -> list:
        """Dump with request KIND (BODY: its fixed header); the answers of type REPLY as
        (buffer, offset of the fixed header, end of the message).

        A dump comes in several buffers (one per recv), each with several messages, and
        ends with NLMSG_DONE; messages of other requests (sequence numbers) are skipped."""
        self.commit()
        self._seq += 1
        seq = self._seq
        self.sock.send(_NLMSGHDR.pack(16 + len(body), kind, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body)
        out = []
        while True:
            data = self.sock.recv(1 << 20)
            size = len(data)
            offset = 0
            while offset + 16 <= size:
                length, msg_type, _flags, msg_seq, _port = _NLMSGHDR.unpack_from(data, offset)
                if length < 16 or offset + length > size:
                    break  # a malformed message: nothing after it can be trusted
                if msg_seq == seq:
                    if msg_type == reply:
                        out.append((data, offset + 16, offset + length))
                    elif msg_type == NLMSG_DONE:
                        return out
                    elif msg_type == NLMSG_ERROR:
                        code = abs(_I32.unpack_from(data, offset + 16)[0]) if length >= 20 else errno.EIO
                        if code:
                            raise NetlinkError(code, "dump")
                        return out
                offset += (length + 3) & ~3

    # -- reading ---------------------------------------------------------------
    def links(self) -> dict:
        """name -> {index, kind, up, master (index), link (peer index), hairpin, mac}, and for a
        VXLAN link `vxlan`: {id, local, link (the index of its underlying device), port,
        learning, mtu}."""
        result = {}
        for data, start, end in self._dump(RTM_GETLINK, RTM_NEWLINK, _ifinfo(0)):
            _family, _type, index, flags, _change = _IFINFO.unpack_from(data, start)
            attrs = _attrs(data, start + 16, end)
            name = _string(data, attrs.get(IFLA_IFNAME))
            kind = None
            hairpin = None
            vxlan = None
            info = attrs.get(IFLA_LINKINFO)
            if info is not None:
                nested = _attrs(data, info[0], info[1])
                kind = _string(data, nested.get(IFLA_INFO_KIND))
                slave = nested.get(IFLA_INFO_SLAVE_DATA)
                if slave is not None and _string(data, nested.get(IFLA_INFO_SLAVE_KIND)) == "bridge":
                    mode = _attrs(data, slave[0], slave[1]).get(IFLA_BRPORT_MODE)
                    hairpin = mode is not None and mode[1] > mode[0] and data[mode[0]] != 0
                if kind == "vxlan":
                    vxlan = _vxlan_info(data, nested.get(IFLA_INFO_DATA), _u32(data, attrs.get(IFLA_MTU)))
            address = attrs.get(IFLA_ADDRESS)
            result[name] = {
                "index": index,
                "kind": kind or ("loopback" if name == "lo" else "device"),
                "up": bool(flags & IFF_UP),
                "master": _u32(data, attrs.get(IFLA_MASTER)),
                "link": _u32(data, attrs.get(IFLA_LINK)),
                "hairpin": hairpin,
                # a MAC as aa:bb:cc:dd:ee:ff (a link without one, such as a tunnel, has none)
                "mac": data[address[0]:address[1]].hex(":") if address is not None else None,
            }
            if vxlan is not None:
                result[name]["vxlan"] = vxlan
        return result

    def neighbours(self, index: int) -> list:
        """The IPv4 neighbour entries of link INDEX: [{dst, lladdr, state}] (`ip neigh show dev`).

        The kernel keeps to the link asked for (NDA_IFINDEX), as iproute2 asks it to: a
        node's other links can hold hundreds of entries, one per pod that talked."""
        body = _NDMSG.pack(AF_INET, 0, 0, 0, 0) + _rta(NDA_IFINDEX, _U32.pack(index))
        return [entry for entry in self._neighbour_dump(body) if entry["ifindex"] == index]

    def fdb(self, index: int) -> list:
        """The forwarding entries of link INDEX: [{lladdr, dst, state, flags}] (`bridge fdb show dev`).

        Asked with an ifinfomsg naming the link, the way `bridge fdb show dev` asks: the
        kernel then dumps that link's entries only."""
        entries = self._neighbour_dump(_IFINFO.pack(AF_BRIDGE, 0, index, 0, 0))
        return [entry for entry in entries if entry["ifindex"] == index and entry["family"] == AF_BRIDGE]

    def _neighbour_dump(self, body: bytes) -> list:
        result = []
        for data, start, end in self._dump(RTM_GETNEIGH, RTM_NEWNEIGH, body):
            family, ifindex, state, flags, _type = _NDMSG.unpack_from(data, start)
            attrs = _attrs(data, start + _NDMSG.size, end)
            lladdr = attrs.get(NDA_LLADDR)
            dst = attrs.get(NDA_DST)
            result.append({
                "family": family, "ifindex": ifindex, "state": state, "flags": flags,
                # an IPv6 destination (16 bytes) is none of the lab's: read as None
                "dst": _ipv4(data, dst) if dst is not None and dst[1] - dst[0] == 4 else None,
                "lladdr": data[lladdr[0]:lladdr[1]].hex(":") if lladdr is not None else None,
            })
        return result

    def addresses(self) -> dict:
        """ifindex -> sorted list of 'a.b.c.d/len' (IPv4 only)."""
        result = {}
        for data, start, end in self._dump(RTM_GETADDR, RTM_NEWADDR, _IFADDR.pack(AF_INET, 0, 0, 0, 0)):
            family, prefixlen, _flags, _scope, index = _IFADDR.unpack_from(data, start)
            if family != AF_INET:
                continue
            attrs = _attrs(data, start + 8, end)
            cidr = "%s/%d" % (_ipv4(data, attrs.get(IFA_LOCAL)) or _ipv4(data, attrs.get(IFA_ADDRESS)), prefixlen)
            result.setdefault(index, []).append(cidr)
        return {index: sorted(value) for index, value in result.items()}

    def routes(self) -> list:
        """Gateway routes of the main IPv4 table: [{dst, gateway, oif}]."""
        result = []
        for data, start, end in self._dump(RTM_GETROUTE, RTM_NEWROUTE, _RTMSG.pack(AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)):
            family, dst_len, _src_len, _tos, table, _proto, _scope, _type, _flags = _RTMSG.unpack_from(data, start)
            attrs = _attrs(data, start + 12, end)
            table = _u32(data, attrs.get(RTA_TABLE)) or table
            gateway = _ipv4(data, attrs.get(RTA_GATEWAY))
            if table != RT_TABLE_MAIN or family != AF_INET or not gateway:
                continue
            dst = "default" if dst_len == 0 else "%s/%d" % (_ipv4(data, attrs.get(RTA_DST)), dst_len)
            result.append({"dst": dst, "gateway": gateway, "oif": _u32(data, attrs.get(RTA_OIF))})
        return result

    # -- writing (queued until commit) -------------------------------------------
    def add_bridge(self, name: str, index: int = 0) -> None:
        """Create bridge NAME, up; INDEX asks for that ifindex (0: the kernel picks)."""
        body = (_ifinfo(index, IFF_UP, IFF_UP) + _rta(IFLA_IFNAME, _asciiz(name))
                + _rta(IFLA_LINKINFO, _rta(IFLA_INFO_KIND, b"bridge\0")))
        self._send_raw(RTM_NEWLINK, NEW, body, "create bridge %s" % name)

    def add_veth(self, name: str, peer_name: str, peer_fd: int, index: int = 0, peer_index: int = 0) -> None:
        """Create NAME here, up, and PEER_NAME directly in the namespace open at PEER_FD (down).

        INDEX asks for NAME's ifindex (0: the kernel picks), which spares a dump to learn it;
        PEER_INDEX the peer's, which the kernel grants only along with INDEX."""
        peer = (_ifinfo(peer_index) + _rta(IFLA_IFNAME, _asciiz(peer_name))
                + _rta(IFLA_NET_NS_FD, _U32.pack(peer_fd)))
        info = _rta(IFLA_INFO_KIND, b"veth\0") + _rta(IFLA_INFO_DATA, _rta(VETH_INFO_PEER, peer))
        body = _ifinfo(index, IFF_UP, IFF_UP) + _rta(IFLA_IFNAME, _asciiz(name)) + _rta(IFLA_LINKINFO, info)
        self._send_raw(RTM_NEWLINK, NEW, body, "create veth %s with peer %s" % (name, peer_name))

    def add_vxlan(self, name: str, vxlan: dict, mac: str | None = None, mtu: int | None = None,
                  index: int = 0) -> None:
        """Create VXLAN link NAME, up: VXLAN is {id, local, link (the index of the device its
        packets leave by, 0: none), port, learning}; MAC and MTU as given (None: the kernel's).
        INDEX asks for that ifindex (0: the kernel picks)."""
        data = _rta(IFLA_VXLAN_ID, _U32.pack(vxlan["id"]))
        if vxlan.get("link"):
            data += _rta(IFLA_VXLAN_LINK, _U32.pack(vxlan["link"]))
        if vxlan.get("local"):
            data += _rta(IFLA_VXLAN_LOCAL, ipaddress.IPv4Address(vxlan["local"]).packed)
        if vxlan.get("port"):
            data += _rta(IFLA_VXLAN_PORT, struct.pack(">H", vxlan["port"]))  # network byte order
        data += _rta(IFLA_VXLAN_LEARNING, bytes([1 if vxlan.get("learning") else 0]))
        body = _ifinfo(index, IFF_UP, IFF_UP) + _rta(IFLA_IFNAME, _asciiz(name))
        if mac:
            body += _rta(IFLA_ADDRESS, _mac(mac))
        if mtu:
            body += _rta(IFLA_MTU, _U32.pack(mtu))
        body += _rta(IFLA_LINKINFO, _rta(IFLA_INFO_KIND, b"vxlan\0") + _rta(IFLA_INFO_DATA, data))
        self._send_raw(RTM_NEWLINK, NEW, body, "create vxlan %s (VNI %d)" % (name, vxlan["id"]))

    def delete_link(self, index: int, name: str) -> None:
        # a veth goes with its peer: "no such device" means it is gone already
        self._send_raw(RTM_DELLINK, SET, _ifinfo(index), "delete link %s" % name, ignore=(errno.ENODEV,))

    def set_up(self, index: int, name: str, up: bool = True) -> None:
        self._send_raw(RTM_NEWLINK, SET, _ifinfo(index, IFF_UP if up else 0, IFF_UP),
                       "set %s %s" % (name, "up" if up else "down"))

    def set_mac(self, index: int, mac: str, name: str) -> None:
        """Give link INDEX the MAC address MAC (`ip link set NAME address MAC`); a veth and a
        bridge take it while up."""
        self._send_raw(RTM_NEWLINK, SET, _ifinfo(index) + _rta(IFLA_ADDRESS, _mac(mac)),
                       "set the MAC of %s to %s" % (name, mac))

    def set_master(self, index: int, master: int, name: str, up: bool = False) -> None:
        """Make link INDEX a port of bridge MASTER (0: of none); with UP, set it up in the same
        request (the kernel attaches it first)."""
        flags = IFF_UP if up else 0
        self._send_raw(RTM_NEWLINK, SET, _ifinfo(index, flags, flags) + _rta(IFLA_MASTER, struct.pack("=I", master)),
                       "attach %s to its bridge%s" % (name, " and set it up" if up else ""))

    def set_hairpin(self, index: int, on: bool, name: str) -> None:
        mode = _rta(IFLA_BRPORT_MODE, bytes([1 if on else 0]))
        slave = _rta(IFLA_INFO_SLAVE_KIND, b"bridge\0") + _rta(IFLA_INFO_SLAVE_DATA, mode)
        self._send_raw(RTM_NEWLINK, SET, _ifinfo(index) + _rta(IFLA_LINKINFO, slave),
                       "set hairpin %s on %s" % ("on" if on else "off", name))

    @staticmethod
    def _addr(index: int, cidr: str) -> bytes:
        iface = ipaddress.ip_interface(cidr)
        net = iface.network
        ip = iface.ip.packed
        body = struct.pack("=BBBBI", AF_INET, net.prefixlen, 0, 0, index) + _rta(IFA_LOCAL, ip) + _rta(IFA_ADDRESS, ip)
        if net.prefixlen < 31:
            body += _rta(IFA_BROADCAST, net.broadcast_address.packed)
        return body

    def add_address(self, index: int, cidr: str, name: str) -> None:
        self._send_raw(RTM_NEWADDR, NEW, self._addr(index, cidr), "add address %s to %s" % (cidr, name))

    def delete_address(self, index: int, cidr: str, name: str) -> None:
        self._send_raw(RTM_DELADDR, SET, self._addr(index, cidr), "remove address %s from %s" % (cidr, name))

    @staticmethod
    def _route(dst: str, gateway: str, protocol: int = RTPROT_STATIC, oif: int = 0, onlink: bool = False) -> bytes:
        net = ipaddress.IPv4Network("0.0.0.0/0" if dst == "default" else dst)
        body = _RTMSG.pack(AF_INET, net.prefixlen, 0, 0, RT_TABLE_MAIN, protocol, 0, RTN_UNICAST,
                           RTNH_F_ONLINK if onlink else 0)
        if net.prefixlen:
            body += _rta(RTA_DST, net.network_address.packed)
        body += _rta(RTA_GATEWAY, ipaddress.IPv4Address(gateway).packed)
        if oif:
            body += _rta(RTA_OIF, _U32.pack(oif))
        return body

    def add_route(self, dst: str, gateway: str, oif: int = 0, onlink: bool = False,
                  protocol: int = RTPROT_STATIC) -> None:
        """Add a gateway route; OIF names the link it leaves by (0: the kernel finds it from the
        gateway), ONLINK takes the gateway as on that link whatever its addresses (flannel's
        routes through flannel.1), PROTOCOL is who made it (RTPROT_STATIC or RTPROT_BOOT)."""
        self._send_raw(RTM_NEWROUTE, NEW, self._route(dst, gateway, protocol, oif, onlink),
                       "add route %s via %s%s" % (dst, gateway, " onlink" if onlink else ""))

    def delete_route(self, dst: str, gateway: str) -> None:
        # protocol 0: the kernel removes the route whoever made it (a protocol given must match)
        self._send_raw(RTM_DELROUTE, SET, self._route(dst, gateway, 0), "remove route %s via %s" % (dst, gateway))

    def add_neighbour(self, index: int, ip: str, mac: str, name: str) -> None:
        """A permanent neighbour entry IP -> MAC on link INDEX (`ip neigh replace ... nud permanent`),
        as flannel writes one per other node on flannel.1."""
        body = (_NDMSG.pack(AF_INET, index, NUD_PERMANENT, 0, RTN_UNICAST)
                + _rta(NDA_DST, ipaddress.IPv4Address(ip).packed) + _rta(NDA_LLADDR, _mac(mac)))
        self._send_raw(RTM_NEWNEIGH, PUT, body, "add neighbour %s lladdr %s on %s" % (ip, mac, name))

    def add_fdb(self, index: int, mac: str, dst: str, name: str) -> None:
        """A permanent forwarding entry of VXLAN link INDEX: frames for MAC go to DST
        (`bridge fdb replace MAC dev NAME dst DST self permanent`), as flannel writes one per other node."""
        body = (_NDMSG.pack(AF_BRIDGE, index, NUD_PERMANENT, NTF_SELF, 0)
                + _rta(NDA_LLADDR, _mac(mac)) + _rta(NDA_DST, ipaddress.IPv4Address(dst).packed))
        self._send_raw(RTM_NEWNEIGH, PUT, body, "add fdb entry %s dst %s on %s" % (mac, dst, name))

    def delete_fdb(self, index: int, mac: str, dst: str, name: str) -> None:
        body = (_NDMSG.pack(AF_BRIDGE, index, 0, NTF_SELF, 0)
                + _rta(NDA_LLADDR, _mac(mac)) + _rta(NDA_DST, ipaddress.IPv4Address(dst).packed))
        self._send_raw(RTM_DELNEIGH, SET, body, "remove fdb entry %s dst %s from %s" % (mac, dst, name),
                       ignore=(errno.ENOENT,))

    def forget_neighbour(self, index: int, ip: str, name: str) -> None:
        """Drop the neighbour entry of IP on link INDEX (if there is one): a pod made again with
        the same address has a new MAC, and the node must ask for it instead of using the old."""
        body = _NDMSG.pack(AF_INET, index, 0, 0, 0) + _rta(NDA_DST, ipaddress.IPv4Address(ip).packed)
        self._send_raw(RTM_DELNEIGH, SET, body, "forget the neighbour %s on %s" % (ip, name), ignore=(errno.ENOENT,))


# rtnetlink attribute numbers (linux/if_link.h, veth.h, if_addr.h, rtnetlink.h, neighbour.h):
# the kernel's ABI, which does not change
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER, IFLA_LINKINFO, IFLA_NET_NS_FD = 1, 3, 4, 5, 10, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA = 1, 2, 4, 5
IFLA_BRPORT_MODE = 4
VETH_INFO_PEER = 1
IFLA_VXLAN_ID, IFLA_VXLAN_LINK, IFLA_VXLAN_LOCAL, IFLA_VXLAN_LEARNING, IFLA_VXLAN_PORT = 1, 3, 4, 7, 15
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST = 1, 2, 4
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_TABLE, RTN_UNICAST = 1, 4, 5, 15, 1
NDA_DST, NDA_LLADDR, NDA_IFINDEX = 1, 2, 8
NLA_TYPE_MASK = 0x3FFF  # the attribute type without NLA_F_NESTED and NLA_F_NET_BYTEORDER

_NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence number, port
_IFINFO = struct.Struct("=BxHiII")  # struct ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # struct ifaddrmsg: family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
_NDMSG = struct.Struct("=BxxxiHBB")  # struct ndmsg: family, index, state, flags, type
_NLA = struct.Struct("=HH")  # struct nlattr: length, type
_U32 = struct.Struct("=I")
_I32 = struct.Struct("=i")


def _rta(kind: int, payload: bytes) -> bytes:
    """One netlink attribute: length, type, payload, padded to 4 bytes."""
    length = 4 + len(payload)
    return _NLA.pack(length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


def _asciiz(text: str) -> bytes:
    return text.encode("utf-8") + b"\0"


def _ifinfo(index: int, flags: int = 0, change: int = 0) -> bytes:
    """struct ifinfomsg for an existing link."""
    return _IFINFO.pack(0, 0, index, flags, change)


def _attrs(data: bytes, offset: int, end: int) -> dict:
    """The attributes in DATA[OFFSET:END]: type -> (start, end) of the payload of the first
    attribute of that type (as pyroute2's get_attr). Nested attributes are read by calling
    this again on a payload; each attribute starts on a 4-byte boundary."""
    found = {}
    while offset + 4 <= end:
        length, kind = _NLA.unpack_from(data, offset)
        if length < 4 or offset + length > end:
            break  # a malformed attribute: nothing after it can be trusted
        kind &= NLA_TYPE_MASK
        if kind not in found:
            found[kind] = (offset + 4, offset + length)
        offset += (length + 3) & ~3
    return found


def _string(data: bytes, span):
    """A string attribute (None if absent), without its NUL; bytes if it is not UTF-8."""
    if span is None:
        return None
    value = data[span[0]:span[1]].strip(b"\0")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value


def _u32(data: bytes, span):
    """A 32-bit unsigned attribute (None if absent)."""
    if span is None or span[1] - span[0] < 4:
        return None
    return _U32.unpack_from(data, span[0])[0]


def _mac(text: str) -> bytes:
    """aa:bb:cc:dd:ee:ff as its 6 bytes."""
    return bytes.fromhex(text.replace(":", ""))


def _vxlan_info(data: bytes, span, mtu):
    """The VXLAN attributes podpath sets, from a link's IFLA_INFO_DATA (SPAN), with its MTU."""
    nested = _attrs(data, span[0], span[1]) if span is not None else {}
    port = nested.get(IFLA_VXLAN_PORT)
    learning = nested.get(IFLA_VXLAN_LEARNING)
    return {
        "id": _u32(data, nested.get(IFLA_VXLAN_ID)),
        "local": _ipv4(data, nested.get(IFLA_VXLAN_LOCAL)),
        "link": _u32(data, nested.get(IFLA_VXLAN_LINK)),
        "port": struct.unpack_from(">H", data, port[0])[0] if port is not None and port[1] - port[0] >= 2 else None,
        "learning": bool(data[learning[0]]) if learning is not None and learning[1] > learning[0] else None,
        "mtu": mtu,
    }


def _ipv4(data: bytes, span):
    """An IPv4 address attribute as a.b.c.d (None if absent)."""
    if span is None or span[1] - span[0] < 4:
        return None
    return socket.inet_ntoa(data[span[0]:span[0] + 4])
