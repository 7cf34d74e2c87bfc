"""podpath.play.playbook.no_close_delay: the pty of a play that ansible-runner closes after the
play exited closes without ptyprocess's 0.1 s sleep, and a child that still lives is ended as
before."""
from __future__ import annotations

import pexpect

from podpath.play import playbook


def test_a_pty_spawned_after_the_change_closes_without_the_sleep_and_its_exit_code_is_kept():
    playbook.no_close_delay()
    child = pexpect.spawn("sh", ["-c", "exit 3"])
    try:
        child.expect(pexpect.EOF, timeout=10)
        assert child.ptyproc.delayafterclose == 0.0
    finally:
        child.close()
    assert child.exitstatus == 3


def test_a_child_that_still_lives_is_ended_when_its_pty_is_closed():
    playbook.no_close_delay()
    child = pexpect.spawn("sleep", ["60"])
    child.close(force=True)
    assert not child.isalive()
    assert child.signalstatus is not None, "the living child was not ended by a signal"


def test_the_change_is_made_once_however_often_plays_run():
    playbook.no_close_delay()
    first = pexpect.spawn._spawnpty
    playbook.no_close_delay()
    assert pexpect.spawn._spawnpty is first
