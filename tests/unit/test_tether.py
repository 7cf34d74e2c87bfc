"""The tether of a play to the CLI (podpath/play/tether.py) and the search for a play
whose CLI was killed (podpath.play.playbook), on real processes of this host."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from podpath.play.playbook import PLAY_MARK, end_play, play_processes

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux's")

# A child that ties itself to its parent, says so, then waits to be ended.
TIED = """
import os, sys, time
from podpath.play.tether import tether
tether(int(sys.argv[1]))
print(os.getpid(), flush=True)
time.sleep(30)
"""


def gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.02)
    return False


def test_a_process_tied_to_a_parent_that_is_already_gone_ends_itself():
    child = subprocess.run([sys.executable, "-c", TIED, "1"], capture_output=True, text=True, timeout=30)
    assert child.returncode == -signal.SIGKILL, (child.returncode, child.stderr)


def test_a_tied_process_ends_when_its_parent_is_killed():
    # parent: starts the tied child, prints the child's pid, then waits; it is killed with SIGKILL
    parent_code = (f"import subprocess, sys, time\n"
                   f"c = subprocess.Popen([sys.executable, '-c', {TIED!r}, str(__import__('os').getpid())],"
                   f" stdout=subprocess.PIPE, text=True)\n"
                   f"print(c.stdout.readline().strip(), flush=True)\ntime.sleep(30)\n")
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    assert not gone(child_pid, timeout=0.2), "the tied child ended while its parent lived"
    parent.kill()
    parent.wait()
    assert gone(child_pid), f"the tied child {child_pid} outlived its parent"


def fake_play(lab: str, name: str = "ansible-playbook") -> subprocess.Popen:
    """A process that looks like a play the CLI started on LAB (its mark and its command line)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", name],
                            env=dict(os.environ, **{PLAY_MARK: lab}))


def test_only_the_plays_of_the_lab_are_found():
    mine, prefixed, other_program = fake_play("lab"), fake_play("lab2"), fake_play("lab", name="nginx")
    try:
        time.sleep(0.1)
        found = play_processes("lab")
        assert mine.pid in found
        assert prefixed.pid not in found, "a play of lab2 was taken for one of lab"
        assert other_program.pid not in found, "a process that is not ansible-playbook was taken for a play"
    finally:
        for p in (mine, prefixed, other_program):
            p.kill()
            p.wait()


def test_ending_a_play_kills_its_processes_and_waits_for_them():
    plays = [fake_play("orphan"), fake_play("orphan")]
    other = fake_play("orphan2")
    try:
        time.sleep(0.1)
        assert sorted(end_play("orphan")) == sorted(p.pid for p in plays)
        assert [p.wait(timeout=5) for p in plays] == [-signal.SIGKILL, -signal.SIGKILL]
        assert other.poll() is None, "the play of another lab was ended"
        assert end_play("orphan") == [], "a second call found something to end"
    finally:
        for p in plays + [other]:
            if p.poll() is None:
                p.kill()
            p.wait()
