"""What the lab's small daemons (MetalLB speaker, the node processes) share: their log line,
how they read their configuration files, how they write a state file that others read, and
how they hear of a file that changed (inotify) without looking again and again.

It imports little (no dataclasses, ctypes only when an inotify instance is made): each of
these modules is memory in every daemon of every lab (docs/performance.md)."""
from __future__ import annotations

import errno
import json
import os
import signal
import struct
import sys
import time


def log(message: str) -> None:
    """One line to the daemon's log (its stdout, which the lab sends to a file)."""
    print(time.strftime("%H:%M:%S"), message, flush=True)


def start(argv: list[str], program: str) -> dict:
    """Read the JSON configuration named on the command line; exit on SIGTERM."""
    return start_many(argv, program, ["CONFIG.json"])[0]


def start_many(argv: list[str], program: str, names: list[str]) -> list[dict]:
    """Read the JSON configuration files named on the command line (one for each of NAMES,
    which the usage line shows); exit on SIGTERM."""
    if len(argv) != len(names) + 1:
        print(f"usage: python -m podpath.runtime.{program} {' '.join(names)}", file=sys.stderr)
        raise SystemExit(2)
    configs = []
    for path in argv[1:]:
        with open(path) as handle:
            configs.append(json.load(handle))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    return configs


def write_json(path: str, data) -> None:
    """Write DATA to PATH as JSON, whole or not at all: a reader sees the old file or the new
    one, never half of it (a file beside it, then a rename). The temporary file's name starts
    with a dot, which readers of a folder of such files skip."""
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".{name}.tmp")
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, path)


def read_json(path: str):
    """The JSON in PATH, or None when there is no such file or it is not whole JSON."""
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


# -- inotify, through libc (no dependency) ---------------------------------------------------
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_ISDIR = 0x40000000
# a file of a watched folder was written, replaced (renamed over) or removed
FILE_CHANGES = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)


class Event:
    """One inotify event: WD, the watch (a folder) it came from (-1 for IN_Q_OVERFLOW); MASK;
    NAME, the file in the folder ('' for the folder itself)."""
    __slots__ = ("wd", "mask", "name")

    def __init__(self, wd: int, mask: int, name: str):
        self.wd, self.mask, self.name = wd, mask, name

    def __eq__(self, other) -> bool:
        return isinstance(other, Event) and (self.wd, self.mask, self.name) == (other.wd, other.mask, other.name)

    def __repr__(self) -> str:
        return f"Event(wd={self.wd}, mask={self.mask:#x}, name={self.name!r})"


# The kernel's cap on the inotify instances of one user (all their processes together)
MAX_USER_INSTANCES = "/proc/sys/fs/inotify/max_user_instances"
RAISE_INOTIFY = "as root, for the whole host: sysctl -w fs.inotify.max_user_instances=1024"


def inotify_limit() -> int | None:
    try:
        with open(MAX_USER_INSTANCES) as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return None


def inotify_in_use(euid: int) -> int:
    """How many inotify instances the processes of user EUID hold open (each file descriptor
    that is one, as /proc shows it: a descriptor a forked child shares counts twice)."""
    count = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.stat(f"/proc/{pid}").st_uid != euid:
                continue
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                count += os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:inotify"
            except OSError:
                pass
    return count


def inotify_shortage(needed: int) -> str | None:
    """Why NEEDED more inotify instances would not fit in this user's share, or None when
    they would (or the limit cannot be read)."""
    limit = inotify_limit()
    if limit is None:
        return None
    held = inotify_in_use(os.geteuid())
    if held + needed <= limit:
        return None
    return (f"user {os.geteuid()}'s processes hold {held} of the {limit} inotify instances the host allows one "
            f"user (fs.inotify.max_user_instances): take a lab down (podpath labs lists them), or {RAISE_INOTIFY}")


class Inotify:
    """An inotify instance: the kernel tells it when a file of a watched folder changes.

    Its file descriptor becomes readable when events wait (for select or a selector);
    `read` returns them. Nothing runs while nothing changes."""

    def __init__(self):
        import ctypes  # here, not at the top: the speakers never watch a folder
        self._ctypes = ctypes
        self._libc = ctypes.CDLL(None, use_errno=True)
        fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            why = f"inotify_init1: {os.strerror(code)}"
            limit, held = inotify_limit(), inotify_in_use(os.geteuid())
            if code == errno.EMFILE and limit is not None and held >= limit:  # the user's, not this process's
                why += (f": user {os.geteuid()}'s processes hold {held} inotify instances, the host's limit "
                        f"(fs.inotify.max_user_instances is {limit}); {RAISE_INOTIFY}")
            raise OSError(code, why)
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def watch(self, folder: str, mask: int = FILE_CHANGES) -> int:
        """Watch FOLDER for MASK's events; the watch descriptor its events carry."""
        ctypes = self._ctypes
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(folder), ctypes.c_uint32(mask | IN_ONLYDIR))
        if wd < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"inotify_add_watch {folder}: {os.strerror(code)}", folder)
        return wd

    def read(self) -> list[Event]:
        """The events that wait (none when none does)."""
        events = []
        while True:
            try:
                data = os.read(self.fd, 64 * 1024)
            except BlockingIOError:
                return events
            except OSError as err:
                if err.errno == errno.EINTR:
                    continue
                raise
            offset = 0
            while offset + _EVENT.size <= len(data):
                wd, mask, _cookie, size = _EVENT.unpack_from(data, offset)
                offset += _EVENT.size
                name = data[offset:offset + size].split(b"\0", 1)[0].decode(errors="replace")
                offset += size
                events.append(Event(wd, mask, name))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
