"""The warm controller's rules that need no lab: its settings, what makes it stale, and how
the CLI reads a play's events whichever way the play ran."""
from __future__ import annotations

import os

import pytest

from podpath import controller
from podpath.runner import Events, Progress


@pytest.mark.parametrize("env, wrong", [
    ({"PODPATH_CONTROLLER": "maybe"}, "PODPATH_CONTROLLER='maybe'"),
    ({"PODPATH_CONTROLLER_IDLE": "ten"}, "PODPATH_CONTROLLER_IDLE='ten'"),
    ({"PODPATH_CONTROLLER_IDLE": "0"}, "PODPATH_CONTROLLER_IDLE='0'"),
    ({"PODPATH_CONTROLLER_IDLE": "-5"}, "PODPATH_CONTROLLER_IDLE='-5'"),
])
def test_a_bad_setting_is_named_with_its_fix(env, wrong):
    error = controller.settings_error(env)
    assert error and wrong in error, error
    assert "unset it" in error


@pytest.mark.parametrize("env, on", [({}, True), ({"PODPATH_CONTROLLER": "on"}, True),
                                     ({"PODPATH_CONTROLLER": "off"}, False), ({"PODPATH_CONTROLLER": " OFF "}, False)])
def test_good_settings_pass_and_off_turns_it_off(env, on):
    assert controller.settings_error(env) is None
    assert controller.enabled(env) is on


def test_idle_limit_comes_from_the_environment_or_the_default():
    assert controller.idle_seconds({}) == controller.DEFAULT_IDLE_S
    assert controller.idle_seconds({"PODPATH_CONTROLLER_IDLE": "2.5"}) == 2.5


def test_only_ansible_podpath_and_pythonpath_variables_make_a_controller_stale():
    env = {"ANSIBLE_TIMEOUT": "30", "PODPATH_LAB": "x", "PYTHONPATH": "/p", "HOME": "/root", "TERM": "xterm",
           "PODPATH_CONTROLLER_IDLE": "5"}
    assert controller.environment_key(env) == {"ANSIBLE_TIMEOUT": "30", "PODPATH_LAB": "x", "PYTHONPATH": "/p"}


def checkout(tmp_path):
    for folder in controller.CODE_DIRS:
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "a.py").write_text("A = 1\n")
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    (tmp_path / "roles").mkdir()
    (tmp_path / "roles" / "main.yml").write_text("- name: x\n")
    return tmp_path


def test_the_fingerprint_changes_with_the_checkouts_code_and_not_with_its_roles(tmp_path):
    root = checkout(tmp_path)
    first = controller.code_fingerprint(root)
    assert controller.code_fingerprint(root) == first, "the same files gave two fingerprints"

    (root / "roles" / "main.yml").write_text("- name: y\n")  # roles are read by each run anyway
    assert controller.code_fingerprint(root) == first

    stat = (root / "module_utils" / "a.py").stat()
    os.utime(root / "module_utils" / "a.py", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    touched = controller.code_fingerprint(root)
    assert touched != first, "an edited module_utils file left the fingerprint as it was"

    (root / "plugins" / "new.py").write_text("")
    assert controller.code_fingerprint(root) != touched, "a new plugin file left the fingerprint as it was"

    (root / "ansible.cfg").write_text("[defaults]\nforks = 5\n")
    assert controller.code_fingerprint(root) != touched


def test_two_checkouts_get_two_controllers(tmp_path):
    assert controller.controller_id(tmp_path / "a") != controller.controller_id(tmp_path / "b")
    assert controller.controller_id(tmp_path / "a", "/usr/bin/python3") != controller.controller_id(tmp_path / "a")


def test_events_give_progress_failures_and_counts():
    progress = Progress(3, stream=open(os.devnull, "w"), verbose=True)
    events = Events(progress)
    events({"event": "playbook_on_task_start", "event_data": {"task": "Plan", "is_conditional": False}})
    events({"event": "playbook_on_task_start", "event_data": {"task": "a handler", "is_conditional": True}})
    events({"event": "playbook_on_task_start", "event_data": {"task": "Wire", "is_conditional": False}})
    events({"event": "runner_on_failed", "event_data": {"task": "Wire", "host": "localhost", "ignore_errors": True,
                                                        "res": {"msg": "ignored"}}})
    events({"event": "runner_on_failed", "event_data": {"task": "Wire", "host": "localhost",
                                                        "res": {"msg": "no such namespace"}}})
    events({"event": "playbook_on_stats", "event_data": {"changed": {"localhost": 2, "other": 0},
                                                         "ok": {"localhost": 4, "other": 1}}})
    progress.close()
    assert [name for name, _ in progress.task_times] == ["Plan", "Wire"]
    assert events.failures == [{"task": "Wire", "host": "localhost", "msg": "no such namespace"}]
    assert (events.changed, events.ok) == (2, 5)
