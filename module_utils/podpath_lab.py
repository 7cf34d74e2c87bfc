# -*- coding: utf-8 -*-
# Copyright: podpath contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""What a podpath lab owns, and the processes it runs.

The kernel is the truth: everything a lab makes carries the lab's mark where the kernel
keeps it (a namespace: the alias of its lo; a process: its environment), and ownership is
proven from those marks alone, never from a name. The lab's folder /run/podpath/<lab>/
(its registry of namespaces, the pidfiles and records of its processes) is a cache of
them: read first because it is fast, believed only where the marks agree, and rebuilt
from the marks when it is missing, half-written or wrong. A namespace gets its mark
before it gets its name, so a run killed half-way leaves nothing unmarked.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import re
import select
import signal
import socket
import struct
import time

# Where the labs keep what they own: /run/podpath/<lab>/. Usually a tmpfs, which a reboot
# empties with the namespaces and processes; where /run is not one, the folder outlives
# them, and the marks say that nothing of it runs any more.
RUN_ROOT = "/run/podpath"
# Where named network namespaces are bound, as `ip netns` and container runtimes do.
NETNS_DIR = "/run/netns"
LAB_NAME = re.compile(r"^[a-z][a-z0-9]{0,9}$")
LAB_NAME_RULE = "1 to 10 characters, lower-case letters and digits, starting with a letter"
# The longest Linux interface name, in bytes: the kernel's IFNAMSIZ (16) counts the final NUL.
IFNAME_MAX = 15


def check_lab_name(lab) -> str:
    """Return an error message for a bad lab name, or '' for a good one."""
    if not isinstance(lab, str) or not LAB_NAME.match(lab):
        return ("lab name %r is not valid: use %s (for example 'podpath' or 'student07')"
                % (lab, LAB_NAME_RULE))
    return ""


def require_lab_and_root(module, what: str) -> str:
    """Fail MODULE unless its lab name is valid and it runs as root; return the lab name."""
    lab = module.params["lab"]
    error = check_lab_name(lab)
    if error:
        module.fail_json(msg=error)
    if os.geteuid() != 0:
        module.fail_json(msg="%s must run as root: use become: true or sudo" % what)
    return lab


def lab_dir(lab: str) -> str:
    return os.path.join(RUN_ROOT, lab)


def netns_path(name: str) -> str:
    """The file a named network namespace is bound to."""
    return os.path.join(NETNS_DIR, name)


def holder_pidfile(lab: str, netns: str) -> str:
    """Pidfile of the process holding NETNS (the pause role)."""
    return os.path.join(lab_dir(lab), "holders", netns + ".pid")


def write_file(path: str, content, mode: int = 0o644) -> None:
    """Write atomically (temporary file and rename) with MODE, never world-writable."""
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    tmp = "%s.tmp.%d" % (path, os.getpid())
    data = content.encode() if isinstance(content, str) else content
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode & 0o755)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode & 0o755)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def container_groups(lab: str) -> list:
    """The groups whose containers podpath_containers records in the lab's folder
    (containers-<group>.json), sorted."""
    try:
        names = os.listdir(lab_dir(lab))
    except OSError:
        return []
    return sorted(n[len("containers-"):-len(".json")] for n in names
                  if n.startswith("containers-") and n.endswith(".json"))


class Registry:
    """A JSON file of the names a lab owns, kept as sorted lists per kind: a cache of the marks.

    A file that is not whole (not JSON, or not lists of names) is `corrupt`: it reads as
    empty and is never trusted; its next save rewrites it whole. A file written before the
    marks existed (`legacy`: no "marked" key) is the only thing that lets a module take an
    unmarked namespace as the lab's, once, to mark it."""

    def __init__(self, lab: str, name: str):
        self.path = os.path.join(lab_dir(lab), name)
        self.data = {}
        self.corrupt = ""  # what is wrong with the file, or ''
        self.legacy = False
        try:
            with open(self.path, "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            return
        except OSError as exc:
            self.corrupt = "cannot be read (%s)" % exc.strerror
            return
        try:
            data = json.loads(raw)
        except ValueError:
            self.corrupt = "is not valid JSON (%d bytes: half-written?)" % len(raw)
            return
        if not isinstance(data, dict) or not all(
                isinstance(v, list) and all(isinstance(n, str) for n in v) for k, v in data.items() if k != "marked"):
            self.corrupt = "does not hold lists of names"
            return
        self.legacy = bool(data) and "marked" not in data
        self.data = {k: v for k, v in data.items() if k != "marked"}

    def items(self, kind: str) -> list:
        return list(self.data.get(kind, []))

    def owns(self, kind: str, name) -> bool:
        return name in self.data.get(kind, [])

    def add(self, kind: str, names) -> None:
        current = set(self.data.get(kind, []))
        new = current | set(names)
        if new != current or self.corrupt or self.legacy:
            self.data[kind] = sorted(new)
            self.save()

    def discard(self, kind: str, names) -> None:
        current = set(self.data.get(kind, []))
        new = current - set(names)
        if new != current:
            self.data[kind] = sorted(new)
            self.save()

    def save(self) -> None:
        write_file(self.path, json.dumps(dict(self.data, marked=True), indent=1, sort_keys=True) + "\n")
        self.corrupt = ""
        self.legacy = False

    def empty(self) -> bool:
        return not any(self.data.values())


# -- marks: what proves that a namespace or a process is a lab's --------------------------
# A namespace's mark is the alias (IFLA_IFALIAS) of its lo: "podpath-lab=<lab>". Every
# network namespace has its lo from its first moment to its last and lo cannot be deleted,
# so the mark lives exactly as long as the namespace, named or not; changing it needs
# CAP_NET_ADMIN over the namespace, which for a namespace of the host's user namespace only
# root has (one that an unprivileged user made in a user namespace of their own never
# counts: netns_owner_fd). `ip link show lo` shows it.
NETNS_MARK = "podpath-lab="
# A process's mark is in its environment, which the kernel keeps in /proc/<pid>/environ as
# the process got it: the processes the modules start get OWNER_ENV=<lab> and ROLE_ENV
# (holder:<namespace> or container:<group>:<name>), and their children inherit both. A
# program that writes its process title over its environment (nginx does) shows neither:
# it is counted as its nearest ancestor's in the same network namespace (KernelView). Not
# PODPATH_LAB: that one is the user's choice of lab for the CLI, and their shells carry it.
OWNER_ENV = "PODPATH_OWNER"
ROLE_ENV = "PODPATH_ROLE"
_OWNER_B = (OWNER_ENV + "=").encode()
_ROLE_B = (ROLE_ENV + "=").encode()


def netns_mark(lab: str) -> str:
    """The alias of lo in every namespace of LAB."""
    return NETNS_MARK + lab


def mark_lab(alias):
    """The lab a lo alias names (exactly; a valid lab name), or None."""
    if isinstance(alias, str) and alias.startswith(NETNS_MARK):
        lab = alias[len(NETNS_MARK):]
        if LAB_NAME.match(lab):
            return lab
    return None


def holder_role(netns: str) -> str:
    return "holder:" + netns


def container_role(group: str, name: str) -> str:
    return "container:%s:%s" % (group, name)


def process_marks(lab: str, role: str) -> dict:
    """The environment that marks a process podpath starts for LAB as ROLE."""
    return {OWNER_ENV: lab, ROLE_ENV: role}


# rtnetlink, only what reading and writing lo's alias needs (the kernel's ABI: linux/rtnetlink.h,
# linux/if_link.h); module_utils/podpath_netlink.py does the wiring
RTM_NEWLINK, RTM_GETLINK, NLMSG_ERROR = 16, 18, 2
NLM_F_REQUEST, NLM_F_ACK = 1, 4
IFLA_IFALIAS = 20
IFF_UP = 1
LO_INDEX = 1  # lo is the first link of every network namespace
CLONE_NEWNET = 0x40000000
NS_GET_USERNS = 0xB701  # ioctl on a namespace: a descriptor of the user namespace that owns it
_NLMSGHDR = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BxHiII")
_NLA = struct.Struct("=HH")
_libc = []


MS_BIND = 4096


def _call(name: str, what: str, *args) -> None:
    """libc's NAME(ARGS), raising OSError (WHAT failed) when it fails."""
    if not _libc:
        _libc.append(ctypes.CDLL(None, use_errno=True))
    if getattr(_libc[0], name)(*args) != 0:
        code = ctypes.get_errno()
        raise OSError(code, "%s: %s" % (what, os.strerror(code)))


def _setns(fd: int, what: str) -> None:
    _call("setns", what, fd, CLONE_NEWNET)


class in_netns(object):  # noqa: N801 - used as a statement: with in_netns(fd): ...
    """This thread in the network namespace open at FD for the block, then back where it was."""

    def __init__(self, fd: int):
        self.fd = fd
        self.home = None

    def __enter__(self):
        self.home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(self.fd, "enter a network namespace")
        except OSError:
            os.close(self.home)
            raise
        return self

    def __exit__(self, *exc):
        try:
            _setns(self.home, "return to the caller's network namespace")
        finally:
            os.close(self.home)


def _link_request(kind: int, flags: int, index: int, attrs: bytes = b"", up: bool = False) -> bytes:
    """One rtnetlink request about link INDEX of this thread's namespace (with UP, that sets
    the link up too); the answer."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
    try:
        sock.bind((0, 0))
        body = _IFINFO.pack(0, 0, index, IFF_UP if up else 0, IFF_UP if up else 0) + attrs
        sock.send(_NLMSGHDR.pack(16 + len(body), kind, flags, 1, 0) + body)
        data = sock.recv(65536)
    finally:
        sock.close()
    if len(data) < 20:
        raise OSError(errno.EIO, "short rtnetlink answer about link %d" % index)
    length, answer = _NLMSGHDR.unpack_from(data)[:2]
    if answer == NLMSG_ERROR:
        code = -struct.unpack_from("=i", data, 16)[0]
        if code:
            raise OSError(code, "link %d: %s" % (index, os.strerror(code)))
    return data[:length]


def link_alias(index: int = LO_INDEX) -> str:
    """The alias of link INDEX in this thread's namespace ('' when it has none)."""
    data = _link_request(RTM_GETLINK, NLM_F_REQUEST, index)
    offset = 16 + _IFINFO.size
    while offset + 4 <= len(data):
        length, kind = _NLA.unpack_from(data, offset)
        if length < 4:
            break
        if kind & 0x3FFF == IFLA_IFALIAS:
            return data[offset + 4:offset + length].split(b"\0", 1)[0].decode("utf-8", "replace")
        offset += (length + 3) & ~3
    return ""


def set_link_alias(alias: str, index: int = LO_INDEX, up: bool = False) -> None:
    """Set the alias of link INDEX in this thread's namespace (with UP, and set the link up in
    the same request)."""
    payload = alias.encode()
    attr = _NLA.pack(4 + len(payload), IFLA_IFALIAS) + payload + b"\0" * ((4 - len(payload) % 4) % 4)
    _link_request(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, index, attr, up)


def mark_netns(fd: int, lab: str) -> None:
    """Put LAB's mark on the namespace open at FD."""
    with in_netns(fd):
        set_link_alias(netns_mark(lab))


def create_marked_netns(path: str, lab: str, lo_up: bool = False, inside=None) -> None:
    """Make a network namespace, put LAB's mark on its lo, then bind it at PATH (a new file) as
    `ip netns add` binds one; this thread ends in the namespace it started in. The mark comes
    before the name, so the namespace is never found at PATH without it, however the run ends.
    (The folder PATH is in must be a shared mount first, as NamespaceSet makes it.)

    With LO_UP, lo is set up in the request that marks it; INSIDE, if given, is called in the
    new namespace before it is bound (to open its sockets there without entering it again)."""
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444))
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _call("unshare", "unshare a new network namespace", CLONE_NEWNET)
        try:
            set_link_alias(netns_mark(lab), up=lo_up)
            if inside is not None:
                inside()
            _call("mount", "bind %s" % path, b"/proc/thread-self/ns/net", path.encode(), b"none", MS_BIND, None)
        finally:
            _setns(home, "return to the caller's network namespace")
    except OSError:
        os.unlink(path)
        raise
    finally:
        os.close(home)


def netns_owner_fd(fd: int):
    """(lab, alias) of the namespace open at FD. ALIAS is its lo's alias ('' for none), LAB the
    lab that alias names (None for none). Both are None when FD is no network namespace of
    this user namespace: in a namespace a user made in a user namespace of their own, that
    user is root and could write any alias."""
    try:
        userns = fcntl.ioctl(fd, NS_GET_USERNS)
    except OSError:
        return None, None
    try:
        theirs = os.fstat(userns)
        ours = os.stat("/proc/self/ns/user")
    finally:
        os.close(userns)
    if (theirs.st_dev, theirs.st_ino) != (ours.st_dev, ours.st_ino):
        return None, None
    try:
        with in_netns(fd):
            alias = link_alias()
    except OSError:
        return None, None
    return mark_lab(alias), alias


def netns_owner(name: str):
    """(lab, alias) of the namespace bound at /run/netns/NAME (None, None if there is none)."""
    try:
        fd = os.open(netns_path(name), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None, None
    try:
        return netns_owner_fd(fd)
    finally:
        os.close(fd)


def describe_owner(lab, alias) -> str:
    """Who a namespace with that (lab, alias) belongs to, in words."""
    if lab:
        return "lab %s (its lo carries the mark %s)" % (lab, netns_mark(lab))
    if alias:
        return "something outside podpath (its lo's alias is %r, not a podpath mark)" % alias
    return "something outside podpath (it carries no podpath mark)"


# -- processes ------------------------------------------------------------------------
def read_pid(path: str):
    return read_pidfile(path)[0]


def read_pidfile(path: str):
    """(pid, start time or None) from a pidfile "PID [START]"; (None, None) if it is missing
    or not that (half-written, garbage): such a file names no process."""
    try:
        with open(path) as handle:
            words = handle.read().split()
        pid = int(words[0])
        start = int(words[1]) if len(words) > 1 else None
    except (OSError, ValueError, IndexError):
        return None, None
    if pid <= 0 or len(words) > 2:
        return None, None
    return pid, start


def write_pidfile(path: str, pid: int) -> None:
    """Record PID with its start time: the two name one process, whatever reuses the pid later."""
    write_file(path, "%d %s\n" % (pid, start_time(pid) or ""))


def process_state(pid: int):
    """The one-letter state of PID from /proc (None if there is no such process)."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def alive(pid) -> bool:
    return bool(pid) and process_state(pid) not in (None, "Z", "X")


def net_inode(pid: int):
    try:
        return os.stat("/proc/%d/ns/net" % pid).st_ino
    except OSError:
        return None


def start_time(pid: int):
    """Clock ticks since boot at which PID started: with the pid, names one process."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


class Proc(object):
    """One process as /proc shows it: parent, start time, network namespace (inode) and the
    marks of its own environment (DIRECT) or, without any, its ancestor's (KernelView)."""
    __slots__ = ("pid", "ppid", "start", "net", "owner", "role", "direct")

    def __init__(self, pid, ppid, start, net, owner, role):
        self.pid, self.ppid, self.start, self.net = pid, ppid, start, net
        self.owner, self.role, self.direct = owner, role, owner is not None

    def __repr__(self):
        return "Proc(%d, owner=%r, role=%r)" % (self.pid, self.owner, self.role)


def env_marks(environ: bytes):
    """(owner, role) from the bytes of /proc/<pid>/environ; None for a variable not there."""
    if _OWNER_B not in environ:
        return None, None
    owner = role = None
    for item in environ.split(b"\0"):
        if item.startswith(_OWNER_B):
            owner = item[len(_OWNER_B):].decode("utf-8", "replace")
        elif item.startswith(_ROLE_B):
            role = item[len(_ROLE_B):].decode("utf-8", "replace")
    return owner, role


def read_process(pid: int):
    """PID as a Proc (its own marks only), or None if it is gone, a zombie or a kernel thread."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            stat = handle.read()
        fields = stat[stat.rindex(b")") + 2:].split()
        if fields[0] in (b"Z", b"X"):
            return None
        net = int(os.readlink("/proc/%d/ns/net" % pid)[5:-1])  # net:[4026531992]
        with open("/proc/%d/environ" % pid, "rb") as handle:
            owner, role = env_marks(handle.read())
        return Proc(pid, int(fields[1]), int(fields[19]), net, owner, role)
    except (OSError, ValueError, IndexError):
        return None


def lab_process(pid, lab: str, role=None, start=None) -> bool:
    """PID runs, its own environment carries LAB's mark (and ROLE, when given) and, when
    START is given, it is the process that started then: the check before any signal."""
    proc = read_process(pid) if pid else None
    return (proc is not None and proc.owner == lab and (role is None or proc.role == role)
            and (start is None or proc.start == start))


def unmarked_process(pid, start=None) -> bool:
    """PID runs with no podpath mark at all (started before the marks existed) and, when
    START is given, is the process that started then."""
    proc = read_process(pid) if pid else None
    return proc is not None and proc.owner is None and (start is None or proc.start == start)


def process_netns_lab(pid: int):
    """The lab whose mark the network namespace of PID carries, or None."""
    try:
        fd = os.open("/proc/%d/ns/net" % pid, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return netns_owner_fd(fd)[0]
    finally:
        os.close(fd)


def bound_namespaces() -> dict:
    """Name -> inode of every network namespace bound under NETNS_DIR (a file there that is
    not a namespace, such as one being made, is left out)."""
    found = {}
    try:
        names = os.listdir(NETNS_DIR)
        nsfs = os.stat("/proc/self/ns/net").st_dev
    except OSError:
        return found
    for name in names:
        try:
            info = os.stat(netns_path(name))
        except OSError:
            continue
        if info.st_dev == nsfs:
            found[name] = info.st_ino
    return found


def inherit_marks(procs: dict) -> dict:
    """Give each process of PROCS (pid -> Proc) with no marks of its own its nearest marked
    ancestor's, as long as the ancestors on the way are in its network namespace: nginx's
    master and workers take their container wrapper's; a shell a user opened in a lab's
    namespace (its parent outside) takes none. Returns PROCS."""
    resolved = {}
    for proc in procs.values():
        if proc.direct:
            resolved[proc.pid] = (proc.owner, proc.role)
    for proc in procs.values():
        chain = []
        current = proc
        while current is not None and current.pid not in resolved:
            chain.append(current)
            parent = procs.get(current.ppid)
            current = parent if parent is not None and parent.pid != current.pid and parent.net == current.net else None
        owner, role = resolved[current.pid] if current is not None else (None, None)
        for member in chain:
            resolved[member.pid] = (owner, role)
            member.owner, member.role = owner, role
    return procs


class KernelView(object):
    """One look at what the kernel holds: every process with its marks (read in one pass
    over /proc, when first asked), the namespaces bound under NETNS_DIR, and the mark of each
    namespace asked about (read once, from inside it)."""

    def __init__(self):
        self.home = os.stat("/proc/self/ns/net").st_ino
        self.bound = bound_namespaces()
        self.names = {}  # inode -> bound names
        for name, inode in self.bound.items():
            self.names.setdefault(inode, []).append(name)
        self._procs = None
        self._members = None
        self._marks = {}

    @property
    def procs(self) -> dict:
        if self._procs is None:
            procs = {}
            me = os.getpid()
            for entry in os.listdir("/proc"):
                if entry.isdigit() and int(entry) != me:
                    proc = read_process(int(entry))
                    if proc is not None:
                        procs[proc.pid] = proc
            self._procs = inherit_marks(procs)
        return self._procs

    @property
    def members(self) -> dict:
        """Namespace inode -> pids of the processes in it."""
        if self._members is None:
            self._members = {}
            for proc in self.procs.values():
                self._members.setdefault(proc.net, []).append(proc.pid)
        return self._members

    def owner(self, inode):
        """(lab, alias) of the namespace INODE (see netns_owner_fd); the host's own has none."""
        if inode not in self._marks:
            found = (None, None)
            if inode != self.home:
                paths = [netns_path(n) for n in self.names.get(inode, [])]
                if not paths:
                    paths = ["/proc/%d/ns/net" % pid for pid in self.members.get(inode, [])[:3]]
                for path in paths:
                    try:
                        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                    except OSError:
                        continue
                    try:
                        found = netns_owner_fd(fd)
                    finally:
                        os.close(fd)
                    if found[1] is not None:
                        break
            self._marks[inode] = found
        return self._marks[inode]

    def mark(self, inode):
        return self.owner(inode)[0]

    def processes(self, lab: str) -> list:
        """Every process of LAB: its mark (its own or its ancestor's), in a namespace with LAB's mark."""
        return [p for p in self.procs.values() if p.owner == lab and self.mark(p.net) == lab]

    def units(self, lab: str) -> list:
        """The processes LAB started itself (holders, containers' first processes or wrappers):
        marked in their own environment, under no process with the same marks."""
        found = []
        for proc in self.processes(lab):
            parent = self.procs.get(proc.ppid)
            if proc.direct and not (parent is not None and parent.direct and parent.owner == lab
                                    and parent.role == proc.role):
                found.append(proc)
        return found

    def bound_of(self, lab: str) -> dict:
        """{name: inode} of LAB's namespaces bound under NETNS_DIR (no look at the processes)."""
        return {name: inode for name, inode in self.bound.items() if self.mark(inode) == lab}

    def namespaces(self, lab: str):
        """LAB's namespaces: ({name: inode} of those bound under NETNS_DIR, {inode: pids} of
        those no longer bound that processes still hold)."""
        bound = self.bound_of(lab)
        unbound = {inode: pids for inode, pids in self.members.items()
                   if inode not in self.names and inode != self.home and self.mark(inode) == lab}
        return bound, unbound

    def labs(self) -> dict:
        """Lab -> {"namespaces": bound names, "unbound": {inode: pids}, "processes": [Proc]},
        for every lab whose mark the kernel holds."""
        found = {}
        for name, inode in sorted(self.bound.items()):
            lab = self.mark(inode)
            if lab:
                found.setdefault(lab, {"namespaces": [], "unbound": {}, "processes": []})["namespaces"].append(name)
        for inode, pids in self.members.items():
            if inode not in self.names and inode != self.home:
                lab = self.mark(inode)
                if lab:
                    found.setdefault(lab, {"namespaces": [], "unbound": {}, "processes": []})["unbound"][inode] = pids
        for proc in self.procs.values():
            if proc.owner and proc.owner in found and self.mark(proc.net) == proc.owner:
                found[proc.owner]["processes"].append(proc)
        return found


# -- containers: each runs under its shim (podpath/runtime/shim.c) ---------------------------
# The shim is the process podpath_containers starts and records for a container: it joins the
# pod's network namespace, starts the container runtime's command line (nsenter ... unshare
# --fork ... the container's command), restarts the container after the kubelet's back-off and
# writes the container's status to container_status_path(): when the container starts and when
# it exits, never in between. The file is a claim the kernel checks: its pid is believed only
# while that process runs below the shim (status_pid).
SHIM = "podpath-shim"
# The container runtime's own programs, between a shim and its container's first process
RUNTIME_PROGRAMS = ("nsenter", "unshare")
STATUS_KEYS = ("name", "state", "restarts", "pid", "started", "last", "backoffUntil")
STATUS_STATES = ("running", "waiting", "terminated")


def container_status_dir(lab: str, group: str) -> str:
    return os.path.join(lab_dir(lab), "status", group)


def container_status_path(lab: str, group: str, name: str) -> str:
    """Where the shim of container NAME (pod/container) of GROUP writes its status."""
    return os.path.join(container_status_dir(lab, group), name.replace("/", "_") + ".json")


def bells_dir(lab: str) -> str:
    """The lab's doorbells: one FIFO per node process, which sleeps until one is rung (the
    lab's stand-in for the API server's watch: whoever writes a container's status or a
    node's published readiness rings every bell, and each node reads again what it follows;
    podpath.runtime.daemon.Bell and ring_bells, and the shim)."""
    return os.path.join(lab_dir(lab), "bells")


def _number(value, none_ok=True) -> bool:
    if value is None:
        return none_ok
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int(value, none_ok=True) -> bool:
    if value is None:
        return none_ok
    return isinstance(value, int) and not isinstance(value, bool)


def status_problem(data) -> str:
    """What is wrong with DATA as a container's status (the shim's contract), or ''."""
    if not isinstance(data, dict) or sorted(data) != sorted(STATUS_KEYS):
        return "does not hold a container's status (keys %s)" % ", ".join(STATUS_KEYS)
    if not isinstance(data["name"], str) or data["state"] not in STATUS_STATES:
        return "has no container name or a state other than %s" % ", ".join(STATUS_STATES)
    if not _int(data["restarts"], False) or data["restarts"] < 0 or not _int(data["pid"]) or (
            data["pid"] is not None and data["pid"] <= 0):
        return "has a restart count or pid that is not a number"
    if not _number(data["started"]) or not _number(data["backoffUntil"]):
        return "has a time that is not a number"
    last = data["last"]
    if last is not None and not (isinstance(last, dict) and sorted(last) == ["exitCode", "finished", "signal"]
                                 and _int(last["exitCode"]) and _int(last["signal"])
                                 and _number(last["finished"], False)):
        return "has a last exit that is not {exitCode, signal, finished}"
    return ""


def read_container_status(path: str):
    """(status, problem) of a shim's status file: problem is '' for a whole file in the
    contract's shape, 'missing', or what is wrong (the status is then None)."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return None, "missing"
    except OSError as exc:
        return None, "cannot be read (%s)" % exc.strerror
    try:
        data = json.loads(raw)
    except ValueError:
        return None, "is not valid JSON (%d bytes)" % len(raw)
    problem = status_problem(data)
    return (None, problem) if problem else (data, "")


def process_comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as handle:
            return handle.read().strip()
    except (OSError, TypeError):
        return None


def is_shim(pid) -> bool:
    return bool(pid) and process_comm(pid) == SHIM


def descends_from(pid, ancestor, depth: int = 8) -> bool:
    """PID runs, below ANCESTOR (its child, grandchild, ... up to DEPTH levels down)."""
    if not alive(pid):
        return False
    for _level in range(depth):
        pid = parent_pid(pid)
        if not pid:
            return False
        if pid == ancestor:
            return True
    return False


def shim_container(shim: int):
    """The first process of the container SHIM runs, from the kernel alone: the shim's child,
    followed down through the runtime's programs (nsenter, unshare). None while there is
    none (the shim is in its back-off) or while the runtime has not started it yet."""
    found = children(shim)
    for _level in range(8):
        if not found:
            return None
        pid = found[0]
        comm = process_comm(pid)
        if comm is None or comm == SHIM:
            return None
        if comm not in RUNTIME_PROGRAMS:
            return pid if alive(pid) else None
        found = children(pid)
    return None


def status_pid(status, name: str, shim: int):
    """The container's first process that STATUS (a shim's status) names, if the kernel agrees:
    the status is container NAME's, says running, and its pid runs below SHIM. Else None."""
    if not status or status.get("name") != name or status.get("state") != "running":
        return None
    pid = status.get("pid")
    return pid if isinstance(pid, int) and descends_from(pid, shim) else None


def spawn(argv: list, log_path: str, env=None) -> int:
    """Start ARGV detached from the caller: own session, stdin from /dev/null, output
    to LOG_PATH, an environment of PATH, LANG and ENV (the lab's marks: process_marks).
    posix_spawn keeps this cheap even from a large Python process."""
    os.makedirs(os.path.dirname(log_path), mode=0o755, exist_ok=True)
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    environment = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    environment.update(env or {})
    # every signal's default action: Python ignores SIGPIPE, and a job started with & ignores
    # SIGINT and SIGQUIT; an ignored signal stays ignored across exec
    default = signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}
    return os.posix_spawnp(argv[0], argv, environment, file_actions=actions, setsid=True, setsigdef=default)


def reap_children() -> None:
    """Collect exited children of this process so they are not counted as alive."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def children(pid: int) -> list:
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as handle:
            return [int(x) for x in handle.read().split()]
    except (OSError, ValueError):
        return []


def deaf_namespace_init(pid: int) -> bool:
    """PID is the first process (pid 1) of its PID namespace and has no SIGTERM handler.

    The kernel drops a signal sent to a namespace's init for which it has no handler
    (SIGKILL aside), so SIGTERM can never stop it: `sleep` as a container's first
    process is one."""
    try:
        with open("/proc/%d/status" % pid) as handle:
            fields = dict(line.split(":", 1) for line in handle if ":" in line)
        nspid = fields["NSpid"].split()
        caught = int(fields["SigCgt"], 16)
    except (OSError, KeyError, ValueError):
        return False
    return len(nspid) > 1 and nspid[-1] == "1" and not caught & (1 << (signal.SIGTERM - 1))


def pid_namespace_init(pid) -> bool:
    """PID is the first process (pid 1) of a PID namespace below this process's: the holder
    of a pod whose containers share one PID namespace (shareProcessNamespace)."""
    try:
        with open("/proc/%d/status" % pid) as handle:
            nspid = next(line for line in handle if line.startswith("NSpid:")).split()[1:]
    except (OSError, StopIteration, TypeError):
        return False
    return len(nspid) > 1 and nspid[-1] == "1"


def _pidfd(pid: int):
    """A descriptor that names the process PID is now (None: it is gone, or no descriptor can
    be had: a kernel before 5.3, or no descriptor left)."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _signal(pid: int, fd, signum: int) -> None:
    try:
        if fd is not None:
            signal.pidfd_send_signal(fd, signum)
        else:
            os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _running(pid: int, fd) -> bool:
    if fd is None:
        return alive(pid)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return not poller.poll(0)  # a pidfd turns readable when its process exits


def parent_pid(pid: int):
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            return int(handle.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def stop_many(pids, timeout: float = 3.0, term_children: bool = False, verify=None) -> int:
    """SIGTERM all at once, wait for them together, SIGKILL what is left; returns how many
    were signalled.

    VERIFY(pid), when given, is asked before any signal, after the process has been pinned
    with a pidfd: a pid it refuses (not the lab's process: a pidfile that names a pid some
    other program has now) is left alone, and a signal reaches the process that was checked
    or none, whatever takes its number afterwards.

    With TERM_CHILDREN the children get the SIGTERM too: a container runtime's wrapper
    (unshare --fork) ignores SIGTERM while it waits for the container's first process,
    so the signal has to reach that process itself. A child that is its PID namespace's
    init without a SIGTERM handler gets SIGKILL at once: waiting for it would change
    nothing but the time (Kubernetes waits out the grace period, then kills it too).
    """
    held = []
    try:
        for pid in dict.fromkeys(p for p in pids if p):
            fd = _pidfd(pid)
            if alive(pid) and (verify is None or verify(pid)):
                held.append((pid, fd))
            elif fd is not None:
                os.close(fd)
        for pid, fd in held:
            _signal(pid, fd, signal.SIGTERM)
            for child in (children(pid) if term_children else []):
                child_fd = _pidfd(child)
                try:
                    if parent_pid(child) == pid:  # still that child, now that it is pinned
                        _signal(child, child_fd, signal.SIGKILL if deaf_namespace_init(child) else signal.SIGTERM)
                finally:
                    if child_fd is not None:
                        os.close(child_fd)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reap_children()
            if not any(_running(pid, fd) for pid, fd in held):
                return len(held)
            time.sleep(0.02)
        for pid, fd in held:
            if _running(pid, fd):
                _signal(pid, fd, signal.SIGKILL)
        return len(held)
    finally:
        for _pid, fd in held:
            if fd is not None:
                os.close(fd)
