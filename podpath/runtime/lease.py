"""Leader election for the ingress controllers, through a lease.

ingress-nginx elects one of its controllers as leader with a coordination.k8s.io Lease
(`--election-id`), from inside each controller's process (client-go's leaderelection): the
leader renews the lease; when it stops renewing for the lease's duration, another
controller takes it. All controllers serve traffic either way; the leader alone writes
status. In the netns lab the lease is a JSON file under the lab's folder, which stands
where the API server would, locked with flock while read and written; each controller
(podpath.runtime.ingress) calls `step` every retry period (a quarter of the lease's duration, as ingress-nginx sets
client-go's) while its nginx lives, and
`release` when it stops.

The file holds holderIdentity, acquireTime, renewTime, leaseDurationSeconds and
leaseTransitions, as a Lease's spec does. A controller rewrites it in place under an
exclusive lock, so whoever reads it takes a shared lock (`read`): a read without one can
find the file empty, between the truncate and the write.

Nobody waits for that lock for long (LOCK_WAIT_S): a controller frozen (SIGSTOP, as a drill
does) while it holds it would otherwise hang every reader, `podpath status` and the
verifier among them, for as long as it stays frozen, where the API server it stands for would
go on answering. A reader that cannot get the lock in time reads the file as it is (None if
it is torn); a controller that cannot skips its try and keeps the lease it last saw.
"""
from __future__ import annotations

import fcntl
import json
import os
import time

LOCK_WAIT_S = 0.5  # the longest anyone waits for the lease's lock


def _lock(fd: int, kind: int, wait_s: float = LOCK_WAIT_S) -> bool:
    """Take the flock KIND on FD within WAIT_S; whether it was taken."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)


def read(path: str) -> dict | None:
    """The lease at PATH as the controllers last wrote it, or None if there is none yet (or
    it is being written by a controller that holds its lock for longer than LOCK_WAIT_S)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # none yet, or not readable: no lease to show, as for any state file of the lab
        return None
    try:
        _lock(fd, fcntl.LOCK_SH)  # without it after the wait: the file as it is
        return _load(fd) or None
    except OSError:  # not a file (a folder in its place): no lease either
        return None
    finally:
        os.close(fd)


def _load(fd: int) -> dict:
    """The lease in the open file FD, read under its lock; {} if empty or not a JSON object."""
    raw = os.read(fd, 65536)
    try:
        lease = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return lease if isinstance(lease, dict) else {}


def _store(fd: int, lease: dict) -> None:
    """Rewrite the open file FD with LEASE, in place, under its exclusive lock."""
    data = json.dumps(lease, sort_keys=True).encode()
    os.lseek(fd, 0, os.SEEK_SET)
    os.ftruncate(fd, 0)
    os.write(fd, data)


def _number(lease: dict, key: str, default: float) -> float:
    """LEASE[KEY] as a number; DEFAULT when it is missing or not a number (a lease that
    someone wrote by hand is taken over as expired, never a reason to stop)."""
    value = lease.get(key, default)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def step(path: str, identity: str, duration: float, now: float) -> dict:
    """One try to acquire or renew the lease at PATH; returns the lease after it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except FileNotFoundError:  # its folder is not there yet (the first try of the first controller)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _lock(fd, fcntl.LOCK_EX):  # its holder is frozen: this try is skipped
            return _load(fd)
        lease = _load(fd)
        holder = lease.get("holderIdentity")
        if holder == identity or not holder or now - _number(lease, "renewTime", 0) > _number(
                lease, "leaseDurationSeconds", duration):
            if holder != identity:
                lease["acquireTime"] = now
                lease["leaseTransitions"] = int(_number(lease, "leaseTransitions", -1)) + 1
            lease.update(holderIdentity=identity, renewTime=now, leaseDurationSeconds=duration)
            _store(fd, lease)
        return lease
    finally:
        os.close(fd)


def release(path: str, identity: str) -> None:
    """Give the lease up on a clean stop, so that another controller takes it at once."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _lock(fd, fcntl.LOCK_EX):
            return  # its holder is frozen: the lease runs out instead
        lease = _load(fd)
        if lease.get("holderIdentity") == identity:
            lease["holderIdentity"] = ""
            _store(fd, lease)
    finally:
        os.close(fd)
