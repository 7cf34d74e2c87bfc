"""Leader election for the ingress controllers, through a lease.

ingress-nginx elects one of its controllers as leader with a coordination.k8s.io Lease
(`--election-id`): the leader renews the lease; when it stops renewing for the lease's
duration, another controller takes it. All controllers serve traffic either way; the
leader alone writes status. In the netns lab the lease is a JSON file under the lab's
folder, which stands where the API server would, locked with flock while read and
written:

    python -m podpath.runtime.lease --lease PATH --identity POD [--duration 3] [--retry 0.5]

The file holds holderIdentity, acquireTime, renewTime, leaseDurationSeconds and
leaseTransitions, as a Lease does. A controller rewrites it in place under an exclusive
lock, so whoever reads it takes a shared lock (`read`): a read without one can find the
file empty, between the truncate and the write.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import sys
import time


def read(path: str) -> dict | None:
    """The lease at PATH as the controllers last wrote it, or None if there is none yet."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # none yet, or not readable: no lease to show, as for any state file of the lab
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        return _load(fd) or None
    finally:
        os.close(fd)


def _load(fd: int) -> dict:
    """The lease in the open file FD, read under its lock; {} if empty or not JSON."""
    raw = os.read(fd, 65536)
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {}


def _store(fd: int, lease: dict) -> None:
    """Rewrite the open file FD with LEASE, in place, under its exclusive lock."""
    data = json.dumps(lease, sort_keys=True).encode()
    os.lseek(fd, 0, os.SEEK_SET)
    os.ftruncate(fd, 0)
    os.write(fd, data)


def step(path: str, identity: str, duration: float, now: float) -> dict:
    """One try to acquire or renew the lease at PATH; returns the lease after it."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        lease = _load(fd)
        holder = lease.get("holderIdentity")
        expired = not holder or now - float(lease.get("renewTime", 0)) > float(lease.get("leaseDurationSeconds",
                                                                                       duration))
        if holder == identity or expired:
            if holder != identity:
                lease["acquireTime"] = now
                lease["leaseTransitions"] = int(lease.get("leaseTransitions", -1)) + 1
            lease.update(holderIdentity=identity, renewTime=now, leaseDurationSeconds=duration)
            _store(fd, lease)
        return lease
    finally:
        os.close(fd)


def release(path: str, identity: str) -> None:
    """Give the lease up on a clean stop, so that another controller takes it at once."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        lease = _load(fd)
        if lease.get("holderIdentity") == identity:
            lease["holderIdentity"] = ""
            _store(fd, lease)
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lease", required=True)
    parser.add_argument("--identity", required=True)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--retry", type=float, default=0.5)
    args = parser.parse_args(argv)
    # SIGTERM and SIGINT stay pending while a step reads or writes the lease, and end the
    # wait between steps at once: the lease is released within a step, not a retry period
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    role = None
    while True:
        lease = step(args.lease, args.identity, args.duration, time.time())
        new_role = "primary" if lease.get("holderIdentity") == args.identity else "secondary"
        if new_role != role:
            print(time.strftime("%H:%M:%S"), f"{args.identity} is {new_role} (leader: {lease.get('holderIdentity')})",
                  flush=True)
            role = new_role
        if signal.sigtimedwait(stop_signals, args.retry):
            break
    release(args.lease, args.identity)
    return 0


if __name__ == "__main__":
    sys.exit(main())
