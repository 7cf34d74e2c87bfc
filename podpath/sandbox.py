"""Labs without root: every user's labs live in a sandbox of namespaces that user owns.

A user who is not root gets one long-lived process, the sandbox, that holds:

- a user namespace owned by the user, in which the user is root (uid 0 maps to the user's
  own uid, 1.. to the subordinate IDs /etc/subuid and /etc/subgid give them, mapped by
  the setuid helpers newuidmap and newgidmap), so the lab's nginx can drop to `nobody` and
  tcpdump to `tcpdump` as they do on the host;
- a mount namespace with a tmpfs of its own on /run: the lab's /run/netns and /run/podpath
  are the user's alone, so lab names are per user and nobody else can list them;
- a PID namespace of which the sandbox is pid 1, with its own /proc: `ps` and `lsns` in it
  show the user's labs only, and when the sandbox ends the kernel ends every process of
  every lab in it, and with them every namespace;
- a network namespace (the sandbox's own "host", empty but for lo), and cgroup, IPC, UTS
  and time namespaces, all owned by the user's namespace, so that a process of the lab can
  enter any namespace of another (`nsenter -a`) and come back.

Every podpath verb a user runs enters the sandbox (setns into each of its namespaces, then
a fork, as nsenter does) and runs there exactly the code root runs on the host: there it is
uid 0, with every capability over the namespaces its user namespace owns and none over
anything else. Nothing it makes can reach the host's network namespace: a network namespace
owned by the user's namespace can only be entered by those who have CAP_SYS_ADMIN over it,
and a link can only be moved into a namespace its mover has CAP_NET_ADMIN over, which the
host's is not.

The sandbox process is marked as the lab's processes are (module_utils/podpath_lab.py): its
environment carries PODPATH_ROLE=sandbox and PODPATH_SANDBOX=<user>. It is found from the
pidfile in the user's state folder (~/.local/state/podpath, which only they can write) and,
when that is missing or wrong, from the marks; neither is believed until the kernel agrees:
the process runs as the user, is pid 1 of its PID namespace, and its user namespace is
owned by the user. Root finds every user's sandbox the same way (labs --all-users) and
enters it as that user (--user USER).
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import pwd
import select
import signal
import stat
import struct
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from podpath.runtime.pause_build import pause_path, programs

CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
# The namespaces of a sandbox, in the order a process enters them: the user namespace first
# (it gives the capabilities the others ask for), the mount namespace last (it moves the root).
NAMESPACES = (("user", CLONE_NEWUSER), ("cgroup", CLONE_NEWCGROUP), ("ipc", CLONE_NEWIPC), ("uts", CLONE_NEWUTS),
              ("net", CLONE_NEWNET), ("pid", CLONE_NEWPID), ("time", CLONE_NEWTIME), ("mnt", CLONE_NEWNS))
NS_GET_OWNER_UID = 0xB704  # ioctl on a user namespace: the uid of its owner (linux/nsfs.h)
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_SLAVE = 2, 4, 8, 16384, 1 << 19
PR_SET_PDEATHSIG = 1

ROLE_ENV = "PODPATH_ROLE"
ROLE = "sandbox"
USER_ENV = "PODPATH_SANDBOX"
_MARK = f"{ROLE_ENV}={ROLE}".encode()
# The programs an unprivileged user cannot have: the kernel modules a lab's links and sysctls need,
# tried in the sandbox's own network namespace before the sandbox is taken as ready.
LINK_PROBES = (("bridge", "link add podpath-probe type bridge"),
               ("veth", "link add podpath-probe type veth peer name podpath-probe1"),
               ("vxlan", "link add podpath-probe type vxlan id 1 dstport 4789"))
BR_NETFILTER = "/proc/sys/net/bridge/bridge-nf-call-iptables"
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")
IDENTITY_MAP = "0 0 4294967295"
NOBODY = 65534  # the highest ID the lab uses in a sandbox (nginx's user nobody, group nogroup)


class SandboxError(Exception):
    """A sandbox cannot be made, found or entered; the message names the cause and the fix."""


@dataclass
class Sandbox:
    """A user's sandbox: the pid of its process (in the host's PID namespace) and its owner."""

    pid: int
    uid: int
    user: str
    start: int | None = None


# -- where a user keeps the sandbox's pidfile ------------------------------------------------

def account(user: str | int | None = None) -> pwd.struct_passwd:
    """The passwd entry of USER (a name or a uid; None: the caller)."""
    try:
        if user is None:
            return pwd.getpwuid(os.getuid())
        if isinstance(user, int) or str(user).isdigit():
            return pwd.getpwuid(int(user))
        return pwd.getpwnam(str(user))
    except KeyError:
        raise SandboxError(f"no user {user!r} on this host: give a user name from /etc/passwd") from None


def state_dir(who: pwd.struct_passwd) -> Path:
    """The user's folder for podpath's own state: only they can write it."""
    return Path(who.pw_dir, ".local", "state", "podpath")


def _safe_folder(path: Path, uid: int) -> None:
    info = os.lstat(path)
    if not os.path.isdir(path) or os.path.islink(path):
        raise SandboxError(f"{path} is not a folder: remove it, and podpath makes the folder again")
    if info.st_uid != uid or info.st_mode & 0o022:
        raise SandboxError(f"{path} must belong to uid {uid} and be writable by its owner only "
                           f"(it is uid {info.st_uid}, mode {info.st_mode & 0o777:o}): chmod go-w {path}")


def ensure_state_dir(who: pwd.struct_passwd) -> Path:
    """Make the state folder (mode 0700) if needed and check that only its owner can write it."""
    folder = state_dir(who)
    old = os.umask(0o077)
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise SandboxError(f"cannot make {folder}: {exc.strerror}; podpath keeps its sandbox's pid there") from None
    finally:
        os.umask(old)
    _safe_folder(folder, who.pw_uid)
    return folder


def pidfile(who: pwd.struct_passwd) -> Path:
    return state_dir(who) / "sandbox.pid"


# -- the kernel's word on a process ----------------------------------------------------------

def _read(path: str, binary: bool = False):
    try:
        with open(path, "rb" if binary else "r") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return None


def _status(pid: int) -> dict[str, str]:
    text = _read(f"/proc/{pid}/status") or ""
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def start_time(pid: int) -> int | None:
    stat = _read(f"/proc/{pid}/stat", binary=True)
    try:
        return int(stat.rsplit(b")", 1)[1].split()[19])
    except (AttributeError, IndexError, ValueError):
        return None


def catches_sigterm(pid: int) -> bool:
    try:
        return bool(int(_status(pid)["SigCgt"], 16) & (1 << (signal.SIGTERM - 1)))
    except (KeyError, ValueError):
        return False


def userns_owner(fd: int) -> int:
    """The uid that owns the user namespace open at FD."""
    return struct.unpack("I", fcntl.ioctl(fd, NS_GET_OWNER_UID, bytes(4)))[0]


def _same_file(fd: int, path: str) -> bool:
    try:
        mine = os.stat(path)
    except OSError:
        return False
    theirs = os.fstat(fd)
    return (theirs.st_dev, theirs.st_ino) == (mine.st_dev, mine.st_ino)


def is_sandbox(pid: int, uid: int, start: int | None = None) -> bool:
    """PID is UID's sandbox as the kernel shows it: it runs as UID, carries the mark, is pid 1
    of a PID namespace below ours, and its user namespace is owned by UID (and is not ours)."""
    fields = _status(pid)
    try:
        real_uid = int(fields["Uid"].split()[0])
        nspid = fields["NSpid"].split()
    except (KeyError, IndexError, ValueError):
        return False
    if real_uid != uid or len(nspid) < 2 or nspid[-1] != "1" or fields.get("State", "Z")[:1] in "ZX":
        return False
    if start is not None and start_time(pid) != start:
        return False
    environ = _read(f"/proc/{pid}/environ", binary=True) or b""
    if _MARK not in environ.split(b"\0"):
        return False
    try:
        fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return userns_owner(fd) == uid and not _same_file(fd, "/proc/self/ns/user")
    except OSError:
        return False
    finally:
        os.close(fd)


def sandboxes(uid: int | None = None) -> list[Sandbox]:
    """Every sandbox the kernel shows (only UID's, when given), oldest first. Without root only
    the caller's own processes can be read, so only their own sandbox can be found."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        environ = _read(f"/proc/{pid}/environ", binary=True)
        if not environ or _MARK not in environ.split(b"\0"):
            continue
        try:
            owner = int(_status(pid)["Uid"].split()[0])
        except (KeyError, IndexError, ValueError):
            continue
        if (uid is None or owner == uid) and is_sandbox(pid, owner):
            try:
                name = pwd.getpwuid(owner).pw_name
            except KeyError:
                name = str(owner)
            found.append(Sandbox(pid, owner, name, start_time(pid)))
    return sorted(found, key=lambda s: s.start or 0)


def find(who: pwd.struct_passwd) -> Sandbox | None:
    """WHO's sandbox, if it runs: from the pidfile when the kernel agrees with it, else from the
    marks. The pidfile is read only if it is a plain file (not a link, a FIFO that would block
    the reader, or a device), and what it says is checked with the kernel: root reads it too."""
    try:
        fd = os.open(pidfile(who), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            words = os.read(fd, 64).split() if stat.S_ISREG(os.fstat(fd).st_mode) else []
        finally:
            os.close(fd)
        pid, start = int(words[0]), int(words[1])
    except (OSError, ValueError, IndexError):
        pid = start = None
    if pid and is_sandbox(pid, who.pw_uid, start):
        return Sandbox(pid, who.pw_uid, who.pw_name, start)
    found = sandboxes(who.pw_uid)
    return found[0] if found else None


# -- making a sandbox --------------------------------------------------------------------------

def subordinate_ranges(who: pwd.struct_passwd, path: str) -> list[tuple[int, int]]:
    """(first, count) of each range /etc/subuid or /etc/subgid (PATH) gives WHO, by name or uid."""
    ranges = []
    for line in (_read(path) or "").splitlines():
        parts = line.strip().split(":")
        if len(parts) != 3 or parts[0] not in (who.pw_name, str(who.pw_uid)):
            continue
        try:
            first, count = int(parts[1]), int(parts[2])
        except ValueError:
            continue
        if count > 0:
            ranges.append((first, count))
    return ranges


def map_args(own: int, ranges: list[tuple[int, int]]) -> list[str]:
    """newuidmap's (or newgidmap's) triples: 0 is OWN, 1.. the subordinate RANGES in order."""
    args, inside = ["0", str(own), "1"], 1
    for first, count in ranges:
        args += [str(inside), str(first), str(count)]
        inside += count
    return args


def _sysctl(name: str) -> str | None:
    text = _read("/proc/sys/" + name.replace(".", "/"))
    return text.strip() if text is not None else None


def why_no_user_namespace(code: int) -> str:
    """What stops an unprivileged user namespace, from unshare's error CODE and the settings
    each distribution has for it, with the setting that allows it."""
    clone = _sysctl("kernel.unprivileged_userns_clone")
    limit = _sysctl("user.max_user_namespaces")
    if code == errno.EPERM and clone == "0":
        return ("this kernel allows user namespaces to root only (kernel.unprivileged_userns_clone = 0, as on "
                "Debian 10 and older). Root allows them: sysctl -w kernel.unprivileged_userns_clone=1, and keeps it "
                "with: echo kernel.unprivileged_userns_clone=1 > /etc/sysctl.d/50-podpath.conf")
    if code == errno.ENOSPC and limit == "0":
        return ("this kernel allows no user namespace (user.max_user_namespaces = 0, as on RHEL 7 and CentOS 7). "
                "Root allows them: sysctl -w user.max_user_namespaces=15000, and keeps it with: "
                "echo user.max_user_namespaces=15000 > /etc/sysctl.d/50-podpath.conf")
    if code == errno.ENOSPC:
        return (f"the limit of user namespaces is reached (user.max_user_namespaces = {limit}, or the per-user "
                "count in /proc/sys/user/): root raises it with sysctl -w user.max_user_namespaces=N")
    if code == errno.EUSERS:
        return "user namespaces are nested 32 deep already: run podpath from the host, not from inside one"
    return (f"the kernel refuses a user namespace ({os.strerror(code)}): a seccomp filter (inside a container?) "
            "or a security module forbids unshare(CLONE_NEWUSER)")


def why_no_capability(step: str, code: int) -> str:
    """What stops root inside a new user namespace from doing STEP."""
    if _sysctl("kernel.apparmor_restrict_unprivileged_userns") == "1":
        return (f"{step} failed ({os.strerror(code)}): AppArmor gives unprivileged user namespaces no capabilities "
                "here (kernel.apparmor_restrict_unprivileged_userns = 1, Ubuntu 23.10 and later). The safe way is a "
                "profile that allows them to podpath's interpreter only (docs/rootless.md, 'Ubuntu'); the wide one "
                "is sysctl -w kernel.apparmor_restrict_unprivileged_userns=0")
    return f"{step} failed in the sandbox's namespaces: {os.strerror(code)}"


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def _mount(libc, source, target, fstype, flags, data=None) -> None:
    enc = (lambda s: s.encode() if s is not None else None)
    _check(libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           f"mount {fstype or ''} on {target}")


def _write_all(fd: int, text: str) -> None:
    data = text.encode()
    while data:
        data = data[os.write(fd, data):]


def _read_all(fd: int, timeout: float) -> bytes:
    chunks, deadline = [], time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise SandboxError(f"the sandbox did not answer within {timeout:.0f} s")
        chunk = os.read(fd, 4096)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _setup_sandbox(libc, who: pwd.struct_passwd) -> str:
    """In the new namespaces, as pid 1: the mounts and the checks; returns '' or what failed."""
    try:
        _mount(libc, None, "/", None, MS_REC | MS_SLAVE)
        _mount(libc, "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError as exc:
        return why_no_capability("mounting the sandbox's own /proc", exc.errno)
    try:
        _mount(libc, "podpath-sandbox", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
        for name, mode in (("netns", 0o755), ("podpath", 0o755), ("lock", 0o1777)):
            os.mkdir(f"/run/{name}", mode)
            os.chmod(f"/run/{name}", mode)
    except OSError as exc:
        return why_no_capability("mounting a tmpfs on the sandbox's /run", exc.errno)
    try:  # the sandbox's own /sys, so that /sys/class/net shows its links, not the host's
        _mount(libc, "sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError:
        pass
    env = {"PATH": ":".join(("/usr/local/bin", "/usr/bin", "/bin") + SBIN), "LANG": "C.UTF-8"}
    done = subprocess.run(["ip", "link", "set", "lo", "up"], env=env, capture_output=True, text=True)
    if done.returncode:
        return why_no_capability("ip link set lo up", errno.EPERM) + f" ({done.stderr.strip()})"
    for module, command in LINK_PROBES:
        done = subprocess.run(["ip", *command.split()], env=env, capture_output=True, text=True)
        if done.returncode:
            return (f"the kernel cannot make a {module} link for you ({done.stderr.strip()}): its module is not "
                    f"loaded and only root can load it: modprobe {module} (keep it loaded: echo {module} >> "
                    "/etc/modules-load.d/podpath.conf)")
        subprocess.run(["ip", "link", "del", "podpath-probe"], env=env, capture_output=True)
    if not os.path.exists(BR_NETFILTER):
        return ("the kernel has no net.bridge.bridge-nf-call-iptables (module br_netfilter), which the lab's "
                "nodes set, and only root can load it: modprobe br_netfilter (keep it loaded: echo br_netfilter >> "
                "/etc/modules-load.d/podpath.conf)")
    os.chdir("/")
    return ""


def create(who: pwd.struct_passwd, timeout: float = 20.0) -> Sandbox:
    """Make WHO's sandbox (the caller is WHO, not root) and return it; raises SandboxError,
    saying what the kernel or the distribution refuses and the setting that allows it, and
    leaving nothing behind."""
    folder = ensure_state_dir(who)
    for _source, program in programs():
        if not os.access(program, os.X_OK):
            raise SandboxError(f"{program} is not built (or not readable): root builds podpath's programs once "
                               f"with `make pause` in {Path(__file__).resolve().parents[1]}")
    subuids = subordinate_ranges(who, "/etc/subuid")
    subgids = subordinate_ranges(who, "/etc/subgid")
    if not subuids or not subgids:
        raise SandboxError(
            f"user {who.pw_name} has no subordinate IDs in /etc/subuid and /etc/subgid. A sandbox with your own "
            "ID alone cannot run the lab: its nginx drops to user nobody, which such a user namespace does not "
            "have (nginx stops at chown/setgid with 'Invalid argument'), and tcpdump drops to user tcpdump. Root "
            f"gives you a range: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {who.pw_name} "
            "(a range no other user has; docs/rootless.md)")
    for kind, ranges in (("uid", subuids), ("gid", subgids)):
        if sum(count for _first, count in ranges) < NOBODY:
            raise SandboxError(f"the subordinate {kind}s of {who.pw_name} in /etc/sub{kind} count "
                               f"{sum(c for _f, c in ranges)}: the lab needs {NOBODY} at least (its nginx drops to "
                               f"nobody, {kind} {NOBODY} in the sandbox); root gives a range of 65536: usermod "
                               f"--add-sub{kind}s FIRST-LAST {who.pw_name} (docs/rootless.md)")
    for helper in ("newuidmap", "newgidmap"):
        if not _which(helper):
            raise SandboxError(f"{helper} is missing: it maps your subordinate IDs into the sandbox; root installs "
                               "it with: apt-get install uidmap")
    log = folder / "sandbox.log"
    libc = _libc()
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    first = os.fork()
    if first == 0:  # the child that makes the namespaces; its own child becomes the sandbox
        os.close(to_child_w)
        os.close(from_child_r)
        try:
            os.setsid()
            if libc.unshare(CLONE_NEWUSER) != 0:
                _write_all(from_child_w, "E" + why_no_user_namespace(ctypes.get_errno()))
                os._exit(1)
            _write_all(from_child_w, "U")
            if os.read(to_child_r, 1) != b"M":
                os._exit(1)
            flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWCGROUP | CLONE_NEWIPC | CLONE_NEWUTS
            if os.path.exists("/proc/self/ns/time"):
                flags |= CLONE_NEWTIME
            if libc.unshare(flags) != 0:
                _write_all(from_child_w, "E" + why_no_capability("unshare of the sandbox's namespaces",
                                                                 ctypes.get_errno()))
                os._exit(1)
            sandbox = os.fork()
            if sandbox == 0:  # pid 1 of the new PID namespace
                problem = _setup_sandbox(libc, who)
                if problem:
                    _write_all(from_child_w, "E" + problem)
                    os._exit(1)
                fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", ROLE_ENV: ROLE, USER_ENV: who.pw_name}
                os.execve(str(pause_path()), [str(pause_path()), "/proc/self/ns/net"], env)
            _write_all(from_child_w, f"P{sandbox}\n")
            os._exit(0)
        except BaseException as exc:  # noqa: BLE001 - a forked child reports and ends, whatever happened
            try:
                _write_all(from_child_w, f"E{exc}")
            finally:
                os._exit(1)
    os.close(to_child_r)
    os.close(from_child_w)
    try:
        said = os.read(from_child_r, 1)
        if said == b"E" or said != b"U":
            os.waitpid(first, 0)
            raise SandboxError(_read_all(from_child_r, timeout).decode(errors="replace") or
                               "the sandbox's first step ended without a word")
        for helper, own, ranges in (("newuidmap", who.pw_uid, subuids), ("newgidmap", who.pw_gid, subgids)):
            done = subprocess.run([helper, str(first), *map_args(own, ranges)], capture_output=True, text=True)
            if done.returncode:
                os.kill(first, signal.SIGKILL)
                os.waitpid(first, 0)
                raise SandboxError(f"{helper} refused to map your IDs ({done.stderr.strip()}): root checks your line "
                                   f"in /etc/sub{'u' if helper == 'newuidmap' else 'g'}id and that {helper} is "
                                   "setuid root (apt-get install --reinstall uidmap)")
        os.write(to_child_w, b"M")
        answer = _read_all(from_child_r, timeout).decode(errors="replace")
        os.waitpid(first, 0)
    finally:
        os.close(to_child_w)
        os.close(from_child_r)
    if not answer.startswith("P"):
        raise SandboxError(answer[1:] if answer.startswith("E") else f"the sandbox did not start: {answer!r}")
    pid, rest = answer[1:].split("\n", 1)
    pid = int(pid)
    if rest.startswith("E"):  # pid 1 said why it stopped before it became the sandbox
        raise SandboxError(rest[1:])
    deadline = time.monotonic() + timeout
    # ready once pause catches SIGTERM: before that, as pid 1 of its PID namespace, the kernel drops
    # a SIGTERM from outside (it delivers only signals init handles), and ending it would wait for SIGKILL
    while not (is_sandbox(pid, who.pw_uid) and catches_sigterm(pid)) and time.monotonic() < deadline:
        time.sleep(0.002)
    if not (is_sandbox(pid, who.pw_uid) and catches_sigterm(pid)):
        raise SandboxError(f"the sandbox (pid {pid}) did not start: see {log}")
    made = Sandbox(pid, who.pw_uid, who.pw_name, start_time(pid))
    tmp = folder / f"sandbox.pid.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, f"{made.pid} {made.start}\n".encode())
    finally:
        os.close(fd)
    os.replace(tmp, folder / "sandbox.pid")
    return made


def ensure(who: pwd.struct_passwd) -> Sandbox:
    """WHO's sandbox, made if none runs (the caller is WHO). Two commands that start at once make
    one sandbox: the second waits on the lock in the state folder, then finds the first's."""
    folder = ensure_state_dir(who)
    fd = os.open(folder / "sandbox.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return find(who) or create(who)
    finally:
        os.close(fd)


def _which(program: str) -> str | None:
    import shutil

    return shutil.which(program, path=os.pathsep.join([os.environ.get("PATH", ""), *SBIN]))


# -- entering a sandbox ----------------------------------------------------------------------

def inside() -> bool:
    """This process runs in a user namespace other than the host's (in a sandbox)."""
    text = _read("/proc/self/uid_map")
    return text is not None and " ".join(text.split()) != IDENTITY_MAP


class Entry:
    """The namespaces of SANDBOX, opened and checked: the process is pinned with a pidfd, its
    namespaces opened, and only then is the kernel asked whether it is still the sandbox and
    whether its user namespace is owned by the sandbox's user. What is entered is what was
    checked, whatever takes the pid afterwards."""

    def __init__(self, sandbox: Sandbox):
        self.sandbox = sandbox
        self.fds: dict[str, int] = {}
        try:
            self.pidfd = os.pidfd_open(sandbox.pid)
        except OSError:
            raise SandboxError(f"the sandbox of {sandbox.user} (pid {sandbox.pid}) has ended") from None
        try:
            for name, _flag in NAMESPACES:
                path = f"/proc/{sandbox.pid}/ns/{name}"
                if name == "time" and not os.path.exists("/proc/self/ns/time"):
                    continue
                self.fds[name] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            if select.select([self.pidfd], [], [], 0)[0] or not is_sandbox(sandbox.pid, sandbox.uid, sandbox.start):
                raise SandboxError(f"the sandbox of {sandbox.user} (pid {sandbox.pid}) has ended")
            if userns_owner(self.fds["user"]) != sandbox.uid or _same_file(self.fds["user"], "/proc/self/ns/user"):
                raise SandboxError(f"pid {sandbox.pid} is not a sandbox of {sandbox.user}")
        except OSError as exc:
            self.close()
            os.close(self.pidfd)
            raise SandboxError(f"cannot open the namespaces of {sandbox.user}'s sandbox (pid {sandbox.pid}): "
                               f"{exc.strerror}") from None
        except BaseException:
            self.close()
            os.close(self.pidfd)
            raise

    def close(self) -> None:
        """Close the namespaces' descriptors (the pidfd stays: end() uses it)."""
        for fd in self.fds.values():
            os.close(fd)
        self.fds = {}

    def end(self, timeout: float = 5.0) -> bool:
        """End the sandbox pinned by the pidfd (SIGTERM, then SIGKILL): the kernel then ends every
        process in its PID namespace and frees its namespaces. True when it has gone."""
        for signum in (signal.SIGTERM, signal.SIGKILL):
            try:
                signal.pidfd_send_signal(self.pidfd, signum)
            except ProcessLookupError:
                return True
            if select.select([self.pidfd], [], [], timeout)[0]:
                return True
        return False

    def enter(self) -> None:
        """Move this (single-threaded) process into the sandbox's namespaces, as its uid 0:
        the sandbox's user for the kernel. Its children are in the sandbox's PID namespace."""
        libc = _libc()
        for name, flag in NAMESPACES:
            if name in self.fds:
                _check(libc.setns(self.fds[name], flag), f"enter the sandbox's {name} namespace")
        if (_read("/proc/self/setgroups") or "").strip() == "allow":
            os.setgroups([])
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        self.close()


# What of root's environment a command in another user's sandbox gets: nothing else, since that
# user can read their processes' environments (root's may hold secrets).
FOREIGN_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "COLUMNS", "LINES", "TZ", "PODPATH_LAB")


def sandbox_env(who: pwd.struct_passwd, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a command in WHO's sandbox: the caller's, with the system's sbin
    folders on PATH (the lab's tools live there, as for root). For root entering another
    user's sandbox: only FOREIGN_ENV of root's, with that user's HOME, name and shell."""
    env = dict(os.environ if env is None else env)
    if os.getuid() != who.pw_uid:
        env = {key: value for key, value in env.items() if key in FOREIGN_ENV}
        env.update(HOME=who.pw_dir, USER=who.pw_name, LOGNAME=who.pw_name, SHELL=who.pw_shell or "/bin/sh")
    path = env.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(os.pathsep)
    env["PATH"] = os.pathsep.join(path + [d for d in SBIN if d not in path])
    env[USER_ENV] = who.pw_name
    return env


def run(sandbox: Sandbox, argv, env: dict[str, str] | None = None, cwd: str | None = None,
        end_if=None) -> int:
    """Run ARGV (a command line, or a function that returns an exit status: the CLI goes on in
    the sandbox without starting Python again) in SANDBOX and return its exit status (128+N
    for a signal N). This process enters the sandbox and forks; the child runs ARGV (in the
    sandbox's PID namespace) and is
    sent SIGTERM if this process dies. SIGINT and SIGQUIT from the terminal reach the child
    directly (this process ignores them); SIGTERM and SIGHUP are passed on. END_IF(status),
    when given, is asked in the sandbox once the child has ended: when it says so, the
    sandbox is ended."""
    who = account(sandbox.uid)
    foreign = os.getuid() != who.pw_uid  # root, in another user's sandbox
    env = sandbox_env(who, env)
    try:
        cwd = os.getcwd() if cwd is None else cwd
    except OSError:
        cwd = who.pw_dir
    entry = Entry(sandbox)
    try:
        entry.enter()
    except OSError as exc:
        os.close(entry.pidfd)
        raise SandboxError(f"cannot enter {sandbox.user}'s sandbox: {exc}") from None
    finally:
        entry.close()
    try:
        code = _fork_and_wait(who, argv, env, cwd, foreign)
        if end_if is not None and end_if(code):
            entry.end()
        return code
    finally:
        os.close(entry.pidfd)


def _fork_and_wait(who: pwd.struct_passwd, argv, env: dict[str, str], cwd: str, foreign: bool) -> int:
    """Fork; the child (in the sandbox's PID namespace) runs ARGV. FOREIGN (root in another
    user's sandbox, where that user's code could be mounted over podpath's): the child gets
    no descriptor but 0, 1 and 2 and a session of its own, so that the terminal is not its
    controlling terminal (no TIOCSTI into root's shell), and the signals of root's terminal
    are passed on to it."""
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        try:
            ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
            if foreign:
                os.setsid()
                os.closerange(3, os.sysconf("SC_OPEN_MAX"))
            for signum in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
                signal.signal(signum, signal.SIG_DFL)
            if callable(argv):  # Python's own: Ctrl-C is KeyboardInterrupt, a closed pipe BrokenPipeError
                signal.signal(signal.SIGINT, signal.default_int_handler)
                signal.signal(signal.SIGPIPE, signal.SIG_IGN)
            for folder in (cwd, who.pw_dir, "/"):
                try:
                    os.chdir(folder)
                    break
                except OSError:
                    continue
            if callable(argv):
                os.environ.clear()
                os.environ.update(env)
                code = 1
                try:
                    code = argv()
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else 1
                except BaseException:  # noqa: BLE001 - said, then the child ends whatever happened
                    traceback.print_exc()
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code if isinstance(code, int) else 1)
            os.execvpe(argv[0], argv, env)
        except OSError as exc:
            os.write(2, f"podpath: cannot run {argv[0]} in {who.pw_name}'s sandbox: {exc.strerror}; podpath must be "
                        "installed where every user can read it (docs/rootless.md)\n".encode())
        os._exit(127)
    forwarded = {}
    terminal = (signal.SIGINT, signal.SIGQUIT)  # the terminal sends them to the child too, unless FOREIGN
    for signum in () if foreign else terminal:
        forwarded[signum] = signal.signal(signum, signal.SIG_IGN)
    for signum in (signal.SIGTERM, signal.SIGHUP) + (terminal if foreign else ()):
        forwarded[signum] = signal.signal(signum, lambda n, _f: os.kill(child, n))
    try:
        while True:
            try:
                _pid, status = os.waitpid(child, 0)
                break
            except InterruptedError:
                continue
    finally:
        for signum, old in forwarded.items():
            signal.signal(signum, old)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


# -- ending a sandbox ------------------------------------------------------------------------

def holds_nothing(_status: int = 0) -> bool:
    """Called in a sandbox: it has no lab (no lab folder under /run/podpath, no namespace bound
    under /run/netns) and runs no process but its own pid 1."""
    try:
        labs = [n for n in os.listdir("/run/podpath") if not n.startswith(".")]
        bound = os.listdir("/run/netns")
        pids = [n for n in os.listdir("/proc") if n.isdigit() and n != "1"]
    except OSError:
        return False
    return not labs and not bound and not pids


def stop(sandbox: Sandbox, timeout: float = 5.0) -> bool:
    """End SANDBOX (SIGTERM, then SIGKILL): the kernel then ends every process in its PID
    namespace and frees its namespaces. True when it has gone."""
    try:
        fd = os.pidfd_open(sandbox.pid)
    except OSError:
        return True
    try:
        if not is_sandbox(sandbox.pid, sandbox.uid, sandbox.start):
            return False
        for signum, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, timeout)):
            try:
                signal.pidfd_send_signal(fd, signum)
            except ProcessLookupError:
                return True
            if select.select([fd], [], [], wait)[0]:
                return True
        return False
    finally:
        os.close(fd)


def main(argv: list[str]) -> int:
    """python -m podpath.sandbox run PID UID -- ARGV...: run ARGV in the sandbox PID of UID
    (root's way to ask each user's sandbox, e.g. podpath labs --all-users)."""
    if len(argv) < 5 or argv[0] != "run" or argv[3] != "--":
        print("usage: python -m podpath.sandbox run PID UID -- ARGV...", file=sys.stderr)
        return 2
    who = account(int(argv[2]))
    try:
        return run(Sandbox(int(argv[1]), who.pw_uid, who.pw_name, start_time(int(argv[1]))), argv[4:])
    except SandboxError as exc:
        print(f"podpath: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


def rerun_inside(config, stop) -> None:
    """Run this pytest (CONFIG: its pytest config) again in the caller's sandbox and end this
    process with its status: tests/verify's conftest, when a user who is not root runs the
    verifier. STOP(msg, returncode) (pytest.exit) is called when the caller has no sandbox;
    nothing happens in a sandbox already."""
    if inside():
        return
    who = account(None)
    found = find(who)
    if found is None:
        stop(f"{who.pw_name} has no lab on this host (no sandbox runs): build one with podpath up --lab NAME",
             returncode=4)
        return
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is not None:  # the run inside writes to the terminal itself
        capture.suspend_global_capture(in_=True)
    params = config.invocation_params
    try:
        code = run(found, [sys.executable, "-m", "pytest", *params.args], cwd=str(params.dir))
    except SandboxError as exc:
        stop(str(exc), returncode=4)
        return
    os._exit(code)
