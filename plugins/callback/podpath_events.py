# Copyright: podpath contributors
# Apache License 2.0 (see LICENSE)
"""Callback plugin podpath_events: the play's events for the podpath CLI, in a controller run."""
from __future__ import annotations

DOCUMENTATION = r"""
name: podpath_events
type: notification
short_description: Send a play's task starts, failures and stats to the podpath CLI
description:
  - Active only in a run of podpath's controller (C(podpath/controller.py)), which enables it
    and gives it the socket to the CLI; the CLI shows the current task, the failures and the
    changed count from these events.
  - Anywhere else (C(ansible-playbook) run by hand, ansible-runner) it does nothing.
requirements:
  - the podpath package in the Python that runs ansible-playbook
"""

import time
from datetime import datetime, timezone

from ansible.plugins.callback import CallbackBase

try:
    from podpath.controller import event_sink
except ImportError:  # podpath is not in this Python: nothing to send to
    def event_sink():
        return None


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "podpath_events"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._started = {}  # (host, task uuid) -> when the task started on that host
        self.disabled = event_sink() is None  # Ansible then skips it, and copies no result for it

    def _send(self, kind, **data):
        sink = event_sink()
        if sink is not None:
            sink(kind, dict(data, created=datetime.now(timezone.utc).isoformat()))

    def v2_playbook_on_start(self, playbook):
        self._send("playbook_on_start")

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._send("playbook_on_task_start", task=task.name or task.action, is_conditional=bool(is_conditional))

    def v2_runner_on_start(self, host, task):
        self._started[(host.get_name(), task._uuid)] = time.monotonic()

    def _result(self, kind, result, ignore_errors=False):
        task = result._task
        started = self._started.pop((result._host.get_name(), task._uuid), None)
        data = {"task": result.task_name, "host": result._host.get_name(), "ignore_errors": bool(ignore_errors),
                "role": task._role.get_name(include_role_fqcn=False) if task._role else None,
                "duration": time.monotonic() - started if started is not None else None,
                # is_changed() reads one key; the whole result (1,000 pods' plan) costs 0.4 s to convert
                "res": {"changed": result.is_changed()}}
        if kind != "runner_on_ok":
            res = result._result
            data["res"]["msg"] = str(res.get("msg") or res.get("stderr") or res)
        self._send(kind, **data)

    def v2_runner_on_ok(self, result):
        self._result("runner_on_ok", result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result("runner_on_failed", result, ignore_errors)

    def v2_runner_on_unreachable(self, result):
        self._result("runner_on_unreachable", result)

    def v2_playbook_on_stats(self, stats):
        # counts per host, as in ansible-runner's stats event: the CLI reads either the same way
        self._send("playbook_on_stats", changed=dict(stats.changed), ok=dict(stats.ok),
                   failures=dict(stats.failures), dark=dict(stats.dark))
