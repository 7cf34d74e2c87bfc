"""The netns lab's probe, run on the lab's host: one process reads a whole node and its pods.

The verifier (`NetnsLab`, podpath/evidence/probe.py) asks a lab through a testinfra host:
this machine (`local://`) or a fleet's host over SSH. Instead of one `nsenter` or
`ip netns exec` per check, it runs this module once per node namespace, with the Python
that runs the lab there (the checkout's, or the runtime's in /opt/podpath on a fleet's
host), and gets every answer of that node's pods back as one JSON document:

    python -m podpath.evidence.nodeprobe REQUEST      (REQUEST: base64 of zlib'd JSON)

- `{"op": "lab", "lab": L, "topology": {...}|null, "brief": bool}`: whether the lab exists, the topology
  `podpath up` kept for it, the files of /var/run/netns, the nsfs mounts, `lsns -t net`'s
  process counts, the containers, the speakers' status, the leader lease and the host's clock
  (BRIEF: the last four only);
- `{"op": "node", "lab": L, "topology": {...}, "node": N, "ping": true, "forget": bool}`: for
  every pod of node N, eth0's link and IPv4 addresses (rtnetlink in the pod's namespace), the
  host-side veth (in the node's), the holder, its name and namespace, the namespace file's,
  every container's namespaces and host name (the container's UTS namespace), and an ICMP echo
  from the pod to every node's address. With FORGET, the neighbour entries the echoes made
  are deleted after each group of pods (the host's neighbour table is shared by every
  namespace: docs/netns-lab.md, "Limits of one host").

It reads and sends only in the lab's namespaces, and always comes back to its own.
"""
from __future__ import annotations

import base64
import ctypes
import functools
import json
import os
import select
import socket
import struct
import subprocess
import sys
import time
import zlib
from typing import Any

CLONE_NEWNET = 0x40000000
CLONE_NEWUTS = 0x04000000
NS_KINDS = ("net", "ipc", "uts", "mnt", "pid")
PING_TIMEOUT_S = 1.0  # as ping -W 1
PING_GROUP = 48  # pods whose echoes are in flight at once (two neighbour entries each while they last)

_libc = ctypes.CDLL(None, use_errno=True)


def encode(request: dict) -> str:
    """REQUEST as the command line argument this module reads."""
    return base64.b64encode(zlib.compress(json.dumps(request, separators=(",", ":")).encode(), 6)).decode()


def decode(text: str) -> dict:
    return json.loads(zlib.decompress(base64.b64decode(text)))


def _setns(fd: int, kind: int, what: str) -> None:
    if _libc.setns(fd, kind) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as handle:
            return handle.read().strip()
    except OSError:
        return ""


# -- the lab as a whole ---------------------------------------------------------------------------
def lab_facts(request: dict) -> dict[str, Any]:
    from podpath.evidence import status
    from podpath.evidence.parsers import parse_lsns, parse_mountinfo_nsfs
    from podpath.model import labdir

    lab = request["lab"]
    out: dict[str, Any] = {"exists": status.lab_exists(lab), "time": time.time()}
    kept = os.path.join(labdir.lab_dir(lab), "topology.yml")
    if request.get("brief"):  # only the files of the lab's processes (containers, speakers, lease)
        return dict(out, **_process_files(request, lab, status)) if out["exists"] else out
    try:
        with open(kept) as handle:
            out["kept_topology"] = handle.read()
    except OSError:
        out["kept_topology"] = None
    try:
        out["netns_files"] = sorted(os.listdir("/var/run/netns"))
    except OSError:
        out["netns_files"] = []
    with open("/proc/self/mountinfo") as handle:
        out["nsfs_mounts"] = sorted(parse_mountinfo_nsfs(handle.read()))
    # lsns walks every process of the host once: only the two columns used, so that no other
    # process's command line is read, and the namespaces' inodes are all it needs besides the
    # process count, which a busy host's processes can end during (lsns then exits 1): up to 3 tries
    for _ in range(3):
        done = subprocess.run(["lsns", "-t", "net", "-J", "-o", "NS,NPROCS"], capture_output=True, text=True)
        if done.returncode == 0:
            break
    if done.returncode == 0:
        out["lsns"] = {str(inode): ns.nprocs for inode, ns in parse_lsns(done.stdout).items()}
    else:
        out["lsns_error"] = f"lsns -t net -J failed 3 times (exit {done.returncode}): {done.stderr.strip()[:200]}"
    if out["exists"]:
        out.update(_process_files(request, lab, status))
    return out


def _process_files(request: dict, lab: str, status) -> dict[str, Any]:
    """The containers, the speakers' status and the leader lease, as status reads them."""
    topology = request.get("topology")
    if topology is None:
        return {}
    from podpath.model.workloads import lease_path
    from podpath.runtime.lease import read as read_lease

    plan = _plan(topology, lab)
    return {"containers": status.containers(lab), "speakers": status.speakers(lab, [n.name for n in plan.nodes]),
            "lease": read_lease(lease_path(plan))}


@functools.lru_cache(maxsize=None)
def neighbour_table_limit() -> int | None:
    """The host's cap on neighbour entries, shared by every namespace (gc_thresh3), or None
    where it cannot be read."""
    try:
        with open("/proc/sys/net/ipv4/neigh/default/gc_thresh3") as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return None


def neighbour_entries() -> int | None:
    """How many neighbour (ARP) entries the host holds now, in every namespace together (the
    first column of /proc/net/stat/arp_cache), or None where it cannot be read. The permanent
    ones are among them, which the limit does not count: this errs on the side of a crowded table."""
    try:
        with open("/proc/net/stat/arp_cache") as handle:
            handle.readline()
            return int(handle.readline().split()[0], 16)
    except (OSError, ValueError, IndexError):
        return None


def neighbour_table_crowded() -> bool:
    """Whether the host's neighbour table holds half its limit or more: the entries that one
    lab's checks leave REACHABLE, which the kernel cannot reclaim for 15 to 45 s, could then
    fill it while other labs are checked."""
    entries = neighbour_entries()
    return entries is not None and 2 * entries >= (neighbour_table_limit() or 1024)


def fills_neighbour_table(pods: int) -> bool:
    """Whether the two entries per pod that a check of PODS pods makes could fill half of the
    host's neighbour table (the kernel's default cap, 1024, where it cannot be read)."""
    return 4 * pods >= (neighbour_table_limit() or 1024)


def _plan(topology: dict, lab: str):
    from podpath.model.plan import build

    return build(topology, lab)


# -- rtnetlink, read with struct (the kernel's ABI: linux/rtnetlink.h, if_link.h, if_addr.h) -------
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 1, 4, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_GETLINK, RTM_NEWADDR, RTM_GETADDR, RTM_DELNEIGH = 16, 18, 20, 22, 29
IFLA_ADDRESS, IFLA_IFNAME, IFLA_LINK, IFLA_MASTER, IFLA_LINKINFO = 1, 3, 5, 10, 18
IFLA_INFO_KIND, IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA = 1, 4, 5
IFLA_BRPORT_MODE = 4  # the bridge port's hairpin mode
IFA_ADDRESS, IFA_LOCAL = 1, 2
NDA_DST = 1
IFF_UP = 1
_HDR = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
_NDMSG = struct.Struct("=BxxxiHBB")  # ndmsg: family, index, state, flags, type
_NLA = struct.Struct("=HH")


def _attrs(data: bytes, offset: int, end: int) -> dict[int, tuple[int, int]]:
    found: dict[int, tuple[int, int]] = {}
    while offset + 4 <= end:
        length, kind = _NLA.unpack_from(data, offset)
        if length < 4 or offset + length > end:
            break
        found.setdefault(kind & 0x3FFF, (offset + 4, offset + length))
        offset += (length + 3) & ~3
    return found


def _str(data: bytes, span) -> str | None:
    return data[span[0]:span[1]].rstrip(b"\0").decode(errors="replace") if span else None


def _u32(data: bytes, span) -> int | None:
    return struct.unpack_from("=I", data, span[0])[0] if span and span[1] - span[0] >= 4 else None


class Netlink:
    """One rtnetlink socket, in the namespace it was made in."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def _dump(self, kind: int, reply: int, body: bytes) -> list[tuple[bytes, int, int]]:
        self.seq += 1
        self.sock.send(_HDR.pack(16 + len(body), kind, NLM_F_REQUEST | NLM_F_DUMP, self.seq, 0) + body)
        out = []
        while True:
            data = self.sock.recv(1 << 18)
            offset = 0
            while offset + 16 <= len(data):
                length, msg, _flags, seq, _port = _HDR.unpack_from(data, offset)
                if length < 16 or offset + length > len(data):
                    break
                if seq == self.seq:
                    if msg == reply:
                        out.append((data, offset + 16, offset + length))
                    elif msg in (NLMSG_DONE, NLMSG_ERROR):
                        return out
                offset += (length + 3) & ~3

    def links(self) -> dict[str, dict[str, Any]]:
        """name -> the link in the shape `ip -j -d link` prints it (the keys the checks read)."""
        raw = {}
        for data, start, end in self._dump(RTM_GETLINK, RTM_NEWLINK, _IFINFO.pack(0, 0, 0, 0, 0)):
            _family, _type, index, flags, _change = _IFINFO.unpack_from(data, start)
            attrs = _attrs(data, start + 16, end)
            link: dict[str, Any] = {"ifname": _str(data, attrs.get(IFLA_IFNAME)), "ifindex": index,
                                    "flags_up": bool(flags & IFF_UP)}
            mac = attrs.get(IFLA_ADDRESS)
            if mac:
                link["address"] = data[mac[0]:mac[1]].hex(":")
            peer = _u32(data, attrs.get(IFLA_LINK))
            if peer is not None:
                link["link_index"] = peer
            master = _u32(data, attrs.get(IFLA_MASTER))
            if master:
                link["master"] = master
            info: dict[str, Any] = {}
            span = attrs.get(IFLA_LINKINFO)
            if span:
                nested = _attrs(data, span[0], span[1])
                info["info_kind"] = _str(data, nested.get(IFLA_INFO_KIND))
                slave_kind = _str(data, nested.get(IFLA_INFO_SLAVE_KIND))
                slave = nested.get(IFLA_INFO_SLAVE_DATA)
                if slave_kind:
                    info["info_slave_kind"] = slave_kind
                if slave and slave_kind == "bridge":
                    mode = _attrs(data, slave[0], slave[1]).get(IFLA_BRPORT_MODE)
                    info["info_slave_data"] = {"hairpin": bool(mode and mode[1] > mode[0] and data[mode[0]])}
            link["linkinfo"] = info
            raw[index] = link
        names = {index: link["ifname"] for index, link in raw.items()}
        for link in raw.values():  # the master by name, as ip prints it
            if "master" in link:
                link["master"] = names.get(link["master"], str(link["master"]))
        return {link["ifname"]: link for link in raw.values()}

    def addresses(self) -> dict[int, list[str]]:
        """ifindex -> its IPv4 addresses, a.b.c.d/len."""
        out: dict[int, list[str]] = {}
        for data, start, end in self._dump(RTM_GETADDR, RTM_NEWADDR, _IFADDR.pack(socket.AF_INET, 0, 0, 0, 0)):
            family, prefixlen, _flags, _scope, index = _IFADDR.unpack_from(data, start)
            attrs = _attrs(data, start + 8, end)
            span = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
            if family == socket.AF_INET and span:
                out.setdefault(index, []).append(f"{socket.inet_ntoa(data[span[0]:span[0] + 4])}/{prefixlen}")
        return out

    def forget_neighbours(self, index: int, addresses: list[str]) -> None:
        """Delete the neighbour entries of ADDRESSES on link INDEX (`ip neigh del`); one that is
        not there is no error."""
        if not addresses:
            return
        parts = []
        for address in addresses:
            self.seq += 1
            body = _NDMSG.pack(socket.AF_INET, index, 0, 0, 0) + _NLA.pack(8, NDA_DST) + socket.inet_aton(address)
            parts.append(_HDR.pack(16 + len(body), RTM_DELNEIGH, NLM_F_REQUEST | NLM_F_ACK, self.seq, 0) + body)
        self.sock.send(b"".join(parts))
        acks = 0
        while acks < len(addresses):
            data = self.sock.recv(1 << 16)
            offset = 0
            while offset + 16 <= len(data):
                length, msg, _flags, _seq, _port = _HDR.unpack_from(data, offset)
                if length < 16:
                    break
                acks += msg == NLMSG_ERROR
                offset += (length + 3) & ~3


class Entered:
    """Sockets made inside network namespaces, by entering each on this thread and coming back."""

    def __init__(self):
        self.home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)

    def sockets(self, path: str, icmp: bool = False) -> tuple[Netlink, socket.socket | None]:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(fd, CLONE_NEWNET, f"enter {path}")
        finally:
            os.close(fd)
        try:
            netlink = Netlink()
            raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) if icmp else None
            return netlink, raw
        finally:
            _setns(self.home, CLONE_NEWNET, "return to the probe's own namespace")

    def close(self) -> None:
        os.close(self.home)


def _uts_name(pid: int, home: int) -> str | None:
    """The host name container PID sees: the node name of its UTS namespace."""
    try:
        fd = os.open(f"/proc/{pid}/ns/uts", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        _setns(fd, CLONE_NEWUTS, f"enter the UTS namespace of {pid}")
        try:
            return os.uname().nodename
        finally:
            _setns(home, CLONE_NEWUTS, "return to the probe's own UTS namespace")
    finally:
        os.close(fd)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _echo(ident: int, seq: int) -> bytes:
    payload = b"podpath verify"
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    return struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, seq) + payload


def _wait_echoes(raws: dict[int, tuple[socket.socket, str]], targets: list[str], ident: int,
                 results: dict[str, dict[str, str]]) -> None:
    """Read echo replies on the pods' raw sockets until each target answered each pod, or
    PING_TIMEOUT_S passed."""
    waiting = {fd: {t for t in targets if results[name][t] == "sent"} for fd, (_, name) in raws.items()}
    waiting = {fd: left for fd, left in waiting.items() if left}
    deadline = time.monotonic() + PING_TIMEOUT_S
    while waiting:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select(list(waiting), [], [], left)
        for fd in ready:
            sock, name = raws[fd]
            while True:
                try:
                    packet, (source, _) = sock.recvfrom(2048)
                except BlockingIOError:
                    break
                header = (packet[0] & 0x0F) * 4
                if len(packet) < header + 8:
                    continue
                kind, _code, _sum, got, seq = struct.unpack_from("!BBHHH", packet, header)
                if kind == 0 and got == ident and seq < len(targets) and targets[seq] == source:
                    results[name][source] = "ok"
                    waiting.get(fd, set()).discard(source)
            if fd in waiting and not waiting[fd]:
                del waiting[fd]
    for name, answers in results.items():
        for target, state in answers.items():
            if state == "sent":
                answers[target] = f"no echo reply within {PING_TIMEOUT_S:g} s"


def _echo_again(raws: dict[int, tuple[socket.socket, str]], targets: list[str], ident: int,
                results: dict[str, dict[str, str]]) -> None:
    """A second echo request where the first got no reply within its second, as `ping -c 2`
    would send (a busy host can be late): the check fails only when neither is answered."""
    again = {}
    for fd, (sock, name) in raws.items():
        missing = [t for t in targets if results[name][t].startswith("no echo reply")]
        for target in missing:
            try:
                sock.sendto(_echo(ident, targets.index(target)), (target, 0))
                results[name][target] = "sent"
            except OSError:
                continue
        if missing:
            again[fd] = (sock, name)
    if again:
        _wait_echoes(again, targets, ident, results)
        for answers in results.values():
            for target, state in answers.items():
                if state.startswith("no echo reply"):
                    answers[target] = f"no echo reply to 2 requests, each waited for {PING_TIMEOUT_S:g} s"


def node_facts(request: dict) -> dict[str, Any]:
    from podpath.evidence import status

    lab = request["lab"]
    plan = _plan(request["topology"], lab)
    node = plan.node(request["node"])
    pods = [p for p in plan.pods if p.node == node.name]
    targets = [n.ip for n in plan.nodes] if request.get("ping") else []
    if request.get("forget") is None:  # this host's own neighbour table decides
        # with pod_neighbours: static the entries between pods and nodes are permanent: none to forget
        request["forget"] = plan.pod_neighbours != "static" and fills_neighbour_table(len(plan.pods))
    out: dict[str, Any] = {"node": node.name, "pods": {}, "procs": {}}
    entered = Entered()
    node_nl = None
    try:
        try:
            node_nl = entered.sockets(f"/run/netns/{node.netns}")[0]
            node_links = node_nl.links()
        except OSError as exc:
            node_links = {}
            out["node_error"] = f"cannot read the links of {node.netns}: {exc}"
        holders = status.holders(lab, [p.netns for p in pods])
        containers = status.containers(lab)
        uts_home = os.open("/proc/thread-self/ns/uts", os.O_RDONLY | os.O_CLOEXEC)
        ident = os.getpid() & 0xFFFF
        try:
            for start in range(0, len(pods), PING_GROUP):
                group = pods[start:start + PING_GROUP]
                opened: list[tuple[Any, Netlink, socket.socket | None, int | None]] = []
                raws: dict[int, tuple[socket.socket, str]] = {}
                pings: dict[str, dict[str, str]] = {}
                for pod in group:
                    facts = out["pods"][pod.name] = _pod_facts(pod, holders, containers, uts_home, out["procs"])
                    veth = node_links.get(pod.host_veth)
                    facts["veth"] = veth
                    path = f"/run/netns/{pod.netns}"
                    try:
                        netlink, raw = entered.sockets(path, icmp=bool(targets))
                    except OSError as exc:
                        facts["eth0"], facts["addrs"] = None, []
                        facts["eth0_error"] = f"cannot enter {path}: {exc.strerror}"
                        if targets:
                            facts["pings"] = {t: f"cannot enter its namespace: {exc.strerror}" for t in targets}
                        continue
                    links = netlink.links()
                    eth0 = links.get("eth0")
                    facts["eth0"] = eth0
                    facts["addrs"] = netlink.addresses().get(eth0["ifindex"], []) if eth0 else []
                    opened.append((pod, netlink, raw, eth0["ifindex"] if eth0 else None))
                    if raw is not None:
                        raw.setblocking(False)
                        pings[pod.name] = {}
                        for seq, target in enumerate(targets):
                            try:
                                raw.sendto(_echo(ident, seq), (target, 0))
                                pings[pod.name][target] = "sent"
                            except OSError as exc:
                                pings[pod.name][target] = f"cannot send: {exc.strerror}"
                        raws[raw.fileno()] = (raw, pod.name)
                if targets:
                    _wait_echoes(raws, targets, ident, pings)
                    _echo_again(raws, targets, ident, pings)
                    for name, answers in pings.items():
                        out["pods"][name]["pings"] = answers
                for pod, netlink, raw, eth0_index in opened:
                    if request.get("forget") and eth0_index:
                        netlink.forget_neighbours(eth0_index, [pod.gateway])
                    netlink.close()
                    if raw is not None:
                        raw.close()
                cni0 = node_links.get("cni0", {}).get("ifindex")
                if request.get("forget") and node_nl is not None and cni0:
                    node_nl.forget_neighbours(cni0, [pod.ip for pod, *_ in opened])
        finally:
            os.close(uts_home)
    finally:
        if node_nl is not None:
            node_nl.close()
        entered.close()
    return out


def _pod_facts(pod, holders: dict, containers: dict, uts_home: int, procs: dict) -> dict[str, Any]:
    """What the pod's holder and containers are: pids, names, namespaces, host names."""
    facts: dict[str, Any] = {}
    path = f"/run/netns/{pod.netns}"
    try:
        facts["bound"] = f"net:[{os.stat(path).st_ino}]"
    except OSError as exc:
        facts["bound_error"] = f"cannot stat {path}: {exc.strerror}"
    holder = holders.get(pod.netns)
    facts["holder"] = holder
    pids = [holder] if holder else []
    facts["hostnames"], facts["inits"] = {}, {}
    for container in pod.containers:
        record = containers.get(f"{pod.name}/{container.name}") or {}
        init = record.get("init") if record.get("running") else None
        facts["inits"][container.name] = init
        if init:
            pids.append(init)
            facts["hostnames"][container.name] = _uts_name(init, uts_home)
    for pid in pids:
        procs[str(pid)] = {"comm": _comm(pid), "ns": {k: _readlink(f"/proc/{pid}/ns/{k}") for k in NS_KINDS}}
    return facts


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m podpath.evidence.nodeprobe REQUEST (base64 of zlib'd JSON)", file=sys.stderr)
        return 2
    request = decode(argv[1])
    op = request.get("op")
    if op == "lab":
        answer = lab_facts(request)
    elif op == "node":
        answer = node_facts(request)
    else:
        print(f"nodeprobe: unknown op {op!r}: lab or node", file=sys.stderr)
        return 2
    json.dump(answer, sys.stdout, separators=(",", ":"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
