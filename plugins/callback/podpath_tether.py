# Copyright: podpath contributors
# Apache License 2.0 (see LICENSE)
"""Callback plugin podpath_tether: a play started by the podpath CLI ends when the CLI dies."""
from __future__ import annotations

DOCUMENTATION = r"""
name: podpath_tether
type: aggregate
short_description: End the play when the podpath command that started it dies
description:
  - The podpath CLI enables this callback (C(ANSIBLE_CALLBACKS_ENABLED)) for the plays it runs
    and gives its own pid in C(PODPATH_TETHER).
  - When the plugin loads, before the first task, it asks Linux to kill ansible-playbook when
    that process dies (C(prctl(PR_SET_PDEATHSIG, SIGKILL))), so the play starts no new task. A
    CLI that is already gone by then ends the play at once.
  - It also gives its pid to the workers in C(PODPATH_PLAY_PID), and the action plugins of podpath's
    modules tie the worker that runs them to ansible-playbook the same way (podpath/play/tether.py).
  - Whatever may still run of such a play, the next podpath command on the lab kills before it
    starts a play of its own.
  - Without C(PODPATH_TETHER), or on a system other than Linux, it does nothing.
"""

from ansible.plugins.callback import CallbackBase

try:
    from podpath.play.tether import tether_play
except ImportError:  # podpath is not in this Python: no CLI started this play
    def tether_play():
        return None


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "podpath_tether"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if tether_play() is False:
            self._display.warning("podpath_tether: this system cannot end the play when podpath dies")
