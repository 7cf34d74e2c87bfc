"""The ingress controllers' lease, as its readers (`podpath status`, the verifier) read it.

ingress-nginx elects one of its controllers as leader with a coordination.k8s.io Lease
(`--election-id`), from inside each controller's process (client-go's leaderelection): the
leader renews the lease; when it stops renewing for the lease's duration, another
controller takes it. All controllers serve traffic either way; the leader alone writes
status. In the netns lab the lease is a JSON file under the lab's folder, which stands
where the API server would; each controller's program, podpath-ingress
(podpath/runtime/ingress.c), takes or renews it every retry period while its nginx lives and
releases it when it stops.

The file holds holderIdentity, acquireTime, renewTime, leaseDurationSeconds and
leaseTransitions, as a Lease's spec does. A controller rewrites it in place under an
exclusive flock, so whoever reads it takes a shared one (`read`): a read without it can
find the file empty, between the truncate and the write.

Nobody waits for that lock for long (LOCK_WAIT_S, the controllers' wait too): a controller
frozen (SIGSTOP, as a drill does) while it holds it would otherwise hang every reader,
`podpath status` and the verifier among them, for as long as it stays frozen, where the API
server it stands for would go on answering. A reader that cannot get the lock in time reads
the file as it is (None if it is torn).
"""
from __future__ import annotations

import fcntl
import json
import os
import time

LOCK_WAIT_S = 0.5  # the longest anyone waits for the lease's lock (ingress.c's LOCK_WAIT_S)


def _lock_shared(fd: int) -> bool:
    """Take a shared flock on FD within LOCK_WAIT_S; whether it was taken."""
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
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
        _lock_shared(fd)  # without it after the wait: the file as it is
        raw = os.read(fd, 65536)
    except OSError:  # not a file (a folder in its place): no lease either
        return None
    finally:
        os.close(fd)
    try:
        lease = json.loads(raw) if raw else None
    except ValueError:
        return None
    return lease if isinstance(lease, dict) and lease else None
