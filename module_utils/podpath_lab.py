# -*- coding: utf-8 -*-
# Copyright: podpath contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""What a podpath lab owns, and the processes it runs.

Every lab has a folder /run/podpath/<lab>/ that records what the lab made (its
registry) and the pidfiles of the processes it started. The modules touch only what
the registry lists, and write an entry *before* they create the thing it names, so a
run that is killed half-way leaves nothing that `state: absent` cannot find.
"""
from __future__ import annotations

import json
import os
import re
import signal
import time

# Where the labs keep what they own: /run/podpath/<lab>/. A tmpfs, so a reboot (which
# also removes every namespace and process of a lab) leaves no stale registry behind.
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
    """A JSON file of the names a lab owns, kept as sorted lists per kind."""

    def __init__(self, lab: str, name: str):
        self.path = os.path.join(lab_dir(lab), name)
        self.data = {}
        try:
            with open(self.path) as handle:
                self.data = json.load(handle)
        except FileNotFoundError:
            pass

    def items(self, kind: str) -> list:
        return list(self.data.get(kind, []))

    def owns(self, kind: str, name) -> bool:
        return name in self.data.get(kind, [])

    def add(self, kind: str, names) -> None:
        current = set(self.data.get(kind, []))
        new = current | set(names)
        if new != current:
            self.data[kind] = sorted(new)
            self.save()

    def discard(self, kind: str, names) -> None:
        current = set(self.data.get(kind, []))
        new = current - set(names)
        if new != current:
            self.data[kind] = sorted(new)
            self.save()

    def save(self) -> None:
        write_file(self.path, json.dumps(self.data, indent=1, sort_keys=True) + "\n")

    def empty(self) -> bool:
        return not any(self.data.values())


def other_owner(kind: str, name: str, lab: str):
    """The name of another lab on this host whose registry lists NAME, if any."""
    try:
        labs = os.listdir(RUN_ROOT)
    except OSError:
        return None
    for other in labs:
        if other == lab:
            continue
        for registry in ("netns.json",):
            if Registry(other, registry).owns(kind, name):
                return other
    return None


# -- processes ------------------------------------------------------------------------
def read_pid(path: str):
    try:
        with open(path) as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


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


def spawn(argv: list, log_path: str, env=None) -> int:
    """Start ARGV detached from the caller: own session, stdin from /dev/null, output
    to LOG_PATH. posix_spawn keeps this cheap even from a large Python process."""
    os.makedirs(os.path.dirname(log_path), mode=0o755, exist_ok=True)
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    environment = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    environment.update(env or {})
    return os.posix_spawnp(argv[0], argv, environment, file_actions=actions, setsid=True)


def reap_children() -> None:
    """Collect exited children of this process so they are not counted as alive."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def stop(pid, timeout: float = 3.0) -> bool:
    """SIGTERM, then SIGKILL after TIMEOUT seconds. True if a process was stopped."""
    if not alive(pid):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reap_children()
        if not alive(pid):
            return True
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True


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


def stop_many(pids, timeout: float = 3.0, term_children: bool = False) -> int:
    """SIGTERM all at once, wait for them together, SIGKILL what is left.

    With TERM_CHILDREN the children get the SIGTERM too: a container runtime's wrapper
    (unshare --fork) ignores SIGTERM while it waits for the container's first process,
    so the signal has to reach that process itself. A child that is its PID namespace's
    init without a SIGTERM handler gets SIGKILL at once: waiting for it would change
    nothing but the time (Kubernetes waits out the grace period, then kills it too).
    """
    pids = [pid for pid in pids if alive(pid)]
    for pid in pids:
        for target in ([pid] + (children(pid) if term_children else [])):
            try:
                os.kill(target, signal.SIGKILL if target != pid and deaf_namespace_init(target) else signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reap_children()
        if not any(alive(pid) for pid in pids):
            return len(pids)
        time.sleep(0.02)
    for pid in pids:
        if alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return len(pids)
