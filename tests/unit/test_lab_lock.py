"""The lab's lock: a command refused on a locked lab, or waiting for it with --wait, says which
command holds the lab; one that waits says so before it waits (many `podpath up` at once must
never wait silently). The locks go to a temporary folder."""
from __future__ import annotations

import os
import threading
import time

import pytest

from podpath import cli
from podpath.model import labdir


@pytest.fixture(autouse=True)
def locks_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setattr(labdir, "LOCKS", tmp_path / "locks")


def this_command() -> str:
    return os.path.basename(open(f"/proc/{os.getpid()}/cmdline", "rb").read().split(b"\0")[0].decode())


def test_a_command_refused_on_a_locked_lab_names_the_command_that_holds_it():
    with cli.LabLock("stu1", wait=False):
        with pytest.raises(cli.CliError) as refused:
            with cli.LabLock("stu1", wait=False):
                pass
    assert refused.value.code == cli.EXIT_LOCKED
    assert f"(pid {os.getpid()}: {this_command()}" in str(refused.value), str(refused.value)
    assert "--wait" in str(refused.value)


def test_a_command_that_waits_for_a_lab_says_so_and_for_what_before_it_waits(capsys):
    entered = threading.Event()

    def waiter():
        with cli.LabLock("stu2", wait=True):
            entered.set()

    said = ""
    with cli.LabLock("stu2", wait=False):
        thread = threading.Thread(target=waiter, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while "waiting for lab stu2" not in said and time.monotonic() < deadline:
            time.sleep(0.02)
            said += capsys.readouterr().err
        waited_silently = entered.is_set()
    thread.join(timeout=30)
    said += capsys.readouterr().err
    assert "podpath: waiting for lab stu2: another podpath command is changing it" in said, said
    assert f"(pid {os.getpid()}: {this_command()}" in said, said
    assert not waited_silently, "the waiting command went on while the lab was still locked"
    assert entered.is_set(), "the waiting command did not go on once the lab was free"
    assert "lab stu2 is free: going on" in said, said


def test_a_free_lab_is_taken_without_a_word(capsys):
    with cli.LabLock("stu3", wait=True):
        pass
    assert capsys.readouterr().err == ""
