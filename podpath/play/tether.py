"""Tie a play's processes to the command that started them, so that none outlives it.

The podpath CLI gives its pid to ansible-playbook in PODPATH_TETHER; the callback plugin
podpath_tether ties ansible-playbook to it and records ansible-playbook's own pid in
PODPATH_PLAY_PID, which the workers inherit; the action plugins of podpath's modules tie
the worker that runs them to ansible-playbook. Each tie asks Linux to kill the process when
its parent dies (prctl PR_SET_PDEATHSIG): a worker finishing a task for an ansible-playbook
that is gone could otherwise block for ever writing its result to nobody.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys

CLI_PID = "PODPATH_TETHER"
PLAY_PID = "PODPATH_PLAY_PID"
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def tether(parent: int) -> bool:
    """Have the kernel kill this process when PARENT, its parent, dies; if PARENT is already
    gone, die now. Returns False where prctl is not available (not Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        return False
    if os.getppid() != parent:  # the parent died before the tie was made
        os.kill(os.getpid(), signal.SIGKILL)
    return True


def tether_play() -> bool | None:
    """In ansible-playbook: tie it to the CLI and tell its workers its pid. None when the play
    was not started by the podpath CLI."""
    parent = os.environ.get(CLI_PID, "")
    if not parent.isdigit():
        return None
    os.environ[PLAY_PID] = str(os.getpid())
    return tether(int(parent))


def tether_worker() -> bool | None:
    """In a worker of a play the CLI started: tie it to ansible-playbook. None otherwise."""
    parent = os.environ.get(PLAY_PID, "")
    return tether(int(parent)) if parent.isdigit() else None
