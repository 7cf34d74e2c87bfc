"""The inotify instances of one user: each node process of a lab holds one, and the kernel caps
them per user (fs.inotify.max_user_instances, 128 on Debian). A new lab that would not fit is
refused before anything is built, naming the limit and the fix; an `up` whose node processes
could not start says why."""
from __future__ import annotations

import os

import pytest

from podpath import cli
from podpath.model import topology
from podpath.runtime import daemon


def test_an_instance_this_process_opens_is_counted():
    before = daemon.inotify_in_use(os.geteuid())
    notify = daemon.Inotify()
    try:
        assert daemon.inotify_in_use(os.geteuid()) == before + 1
    finally:
        notify.close()
    assert daemon.inotify_in_use(os.geteuid()) == before


def test_another_user_s_instances_are_not_counted():
    notify = daemon.Inotify()
    try:
        other = os.geteuid() + 4242  # no process of it here
        assert daemon.inotify_in_use(other) == 0
    finally:
        notify.close()


@pytest.mark.parametrize("held, refused", [(125, False), (126, True), (128, True)])
def test_a_new_reference_lab_needs_an_instance_per_node(monkeypatch, held, refused):
    monkeypatch.setattr(daemon, "inotify_limit", lambda: 128)
    monkeypatch.setattr(daemon, "inotify_in_use", lambda euid: held)
    nodes = len(topology.load()["nodes"])
    assert nodes == 3
    if not refused:
        cli.require_inotify_room("stu1", None)
        return
    with pytest.raises(cli.CliError) as caught:
        cli.require_inotify_room("stu1", None)
    said = str(caught.value)
    assert caught.value.code == cli.EXIT_MISSING
    assert "needs 3 inotify instances" in said and f"hold {held} of the 128" in said
    assert "fs.inotify.max_user_instances" in said and "sysctl -w fs.inotify.max_user_instances=1024" in said


def test_a_host_without_the_setting_is_not_checked(monkeypatch):
    monkeypatch.setattr(daemon, "inotify_limit", lambda: None)
    monkeypatch.setattr(daemon, "inotify_in_use", lambda euid: pytest.fail("counted without a limit"))
    cli.require_inotify_room("stu1", None)


def test_up_of_a_lab_that_does_not_fit_is_refused_before_anything_runs(monkeypatch, capsys):
    from podpath.play import together

    monkeypatch.setattr(cli, "require_root", lambda: None)
    monkeypatch.setattr(cli, "require_tools", lambda: None)
    monkeypatch.setattr(cli, "lab_exists", lambda lab: False)
    monkeypatch.setattr(daemon, "inotify_limit", lambda: 128)
    monkeypatch.setattr(daemon, "inotify_in_use", lambda euid: 128)
    monkeypatch.setattr("podpath.runtime.pause_build.build", lambda *a, **k: None)
    monkeypatch.setattr(together, "up", lambda *a, **k: pytest.fail("a play ran"))
    assert cli.main(["up", "--lab", "stu1"]) == cli.EXIT_MISSING
    assert "lab stu1 needs 3 inotify instances" in capsys.readouterr().err


def test_an_up_whose_nodes_never_published_says_the_instances_are_all_held(monkeypatch):
    from podpath.evidence import status

    monkeypatch.setattr(status, "unready_pods", lambda lab, nodes: ["node cp1 has not published its pods' readiness"])
    monkeypatch.setattr(daemon, "inotify_limit", lambda: 128)
    monkeypatch.setattr(daemon, "inotify_in_use", lambda euid: 128)
    with pytest.raises(cli.CliError) as caught:
        cli.wait_until_ready("stu1", topology.load(), limit_s=0, quiet=True)
    assert "node cp1 has not published" in str(caught.value)
    assert "hold all 128 inotify instances" in str(caught.value)
    monkeypatch.setattr(daemon, "inotify_in_use", lambda euid: 12)
    with pytest.raises(cli.CliError) as caught:
        cli.wait_until_ready("stu1", topology.load(), limit_s=0, quiet=True)
    assert "inotify" not in str(caught.value)
