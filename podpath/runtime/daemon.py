"""What the lab's small Python daemons (the node processes) share: their log line,
how they read their configuration files, how they write a state file that others read, and
how a node process sleeps until a file it follows changed (its doorbell) without looking
again and again.

It imports little (no dataclasses, no ctypes): each of
these modules is memory in every daemon of every lab (docs/performance.md)."""
from __future__ import annotations

import json
import os
import signal
import stat
import sys
import time


def log(message: str) -> None:
    """One line to the daemon's log (its stdout, which the lab sends to a file); the speaker
    (podpath/runtime/speaker.c) writes its lines the same way."""
    print(time.strftime("%H:%M:%S"), message, flush=True)


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


# -- the node processes' doorbell -------------------------------------------------------------
class Bell:
    """A node process's doorbell: the FIFO NAME in FOLDER (the lab's bells folder), which it
    holds open and sleeps on. Whoever writes a file the node processes follow (a shim, a
    container's status; a node process, its published readiness) rings every bell of the
    lab (podpath_lab.ring_bells); the ring says only "look again", so a ring is never lost by
    being merged with others, and a process that starts reads everything anyway.

    Unlike inotify it takes nothing from a per-user kernel quota (fs.inotify.max_user_instances,
    128 on Debian, which allowed about 40 labs of one user): a FIFO is a file of the lab's
    folder. Its file descriptor is readable while rings wait (for select or a selector)."""

    def __init__(self, folder: str, name: str):
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, name)
        try:
            if not stat.S_ISFIFO(os.lstat(self.path).st_mode):
                os.unlink(self.path)  # not a bell: a bell takes its place
        except FileNotFoundError:
            pass
        try:
            os.mkfifo(self.path, 0o600)
        except FileExistsError:
            pass  # the bell of this node's earlier process
        # read and write: the FIFO never reads as closed (EOF) while no one rings
        self.fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)

    def fileno(self) -> int:
        return self.fd

    def drain(self) -> int:
        """Take every ring that waits; how many there were."""
        rings = 0
        while True:
            try:
                data = os.read(self.fd, 4096)
            except BlockingIOError:
                return rings
            except InterruptedError:
                continue
            rings += len(data)
            if not data:
                return rings

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def ring_bells(folder: str) -> int:
    """Ring every doorbell (FIFO) in FOLDER: one byte each, never blocking; how many were rung.
    A bell nobody listens to (its node process is not running: ENXIO) is skipped, and one
    whose pipe is full already has rings waiting (EAGAIN): a reader reads everything again
    whatever the number of rings. Anything in FOLDER that is not a FIFO is left alone."""
    rung = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        try:
            if entry.name.startswith(".") or not stat.S_ISFIFO(entry.stat(follow_symlinks=False).st_mode):
                continue
            fd = os.open(entry.path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            os.write(fd, b"!")
            rung += 1
        except OSError:
            pass
        finally:
            os.close(fd)
    return rung
