"""`podpath up`s started together share one play (podpath.play.together), with the plays
replaced by recorders: what each `up` ran, with which labs, and what each got back. Each `up`
is a process of its own, as it is for real: the queue's lock is a file lock between processes."""
from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from podpath.play import together
from podpath.play.playbook import PlaybookResult

FORK = multiprocessing.get_context("fork")


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


class Class:
    """A folder with the queue, the record of the plays run, and each `up`'s outcome and stderr."""

    def __init__(self, root: Path):
        self.root = root
        self.queue = together.Together(root / "together")
        self.plays = root / "plays.jsonl"

    def record(self, kind: str, labs: list[str]) -> None:
        with open(self.plays, "a") as f:
            f.write(json.dumps({"kind": kind, "labs": labs, "pid": os.getpid(), "at": time.time()}) + "\n")

    def played(self) -> list[dict]:
        return [json.loads(line) for line in self.plays.read_text().splitlines()] if self.plays.exists() else []

    def outcome(self, lab: str) -> dict | None:
        path = self.root / f"{lab}.out.json"
        return json.loads(path.read_text()) if path.exists() else None

    def said(self, lab: str) -> str:
        path = self.root / f"{lab}.err"
        return path.read_text() if path.exists() else ""

    def hold(self) -> int:
        """Take the leader's lock as a running `up` would hold it."""
        fd = os.open(self.queue.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def queued(self) -> list[str]:
        return sorted(p.stem for p in self.queue.queue.glob("*.json"))


def rc_of(lab: str) -> int:
    """The play's outcome for LAB in these tests: a lab named bad* fails."""
    return 2 if lab.startswith("bad") else 0


def start_up(room: Class, lab: str, play_s: float = 0.0, held: int | None = None) -> multiprocessing.Process:
    """`up` of LAB in a process of its own; the plays it leads take PLAY_S. HELD: the test's
    hold on the leader's lock, which the forked process must not keep (a flock belongs to
    the open file, which a fork shares)."""

    def alone(request):
        room.record("alone", [request["lab"]])
        time.sleep(play_s)
        return PlaybookResult(rc=rc_of(request["lab"]), status="successful", seconds=play_s)

    def many(requests):
        labs = [r["lab"] for r in requests]
        room.record("many", labs)
        time.sleep(play_s)
        return {lab: PlaybookResult(rc=rc_of(lab), status="successful", seconds=play_s, together=labs)
                for lab in labs}

    def main():
        if held is not None:
            os.close(held)
        sys.stderr = open(room.root / f"{lab}.err", "w", buffering=1)
        try:
            result = together.up(lab, {"podpath_lab": lab}, quiet=False, together=room.queue,
                                 run_alone=alone, run_many=many)
            out = {"rc": result.rc, "together": result.together, "interrupted": result.interrupted}
        except KeyboardInterrupt:
            out = {"interrupted_while_queued": True}
        out["ended"] = time.time()
        (room.root / f"{lab}.out.json").write_text(json.dumps(out))

    process = FORK.Process(target=main)
    process.start()
    return process


@pytest.fixture
def room(tmp_path):
    return Class(tmp_path)


def test_a_lone_up_runs_its_own_play_and_leaves_the_queue_empty(room):
    up = start_up(room, "solo")
    up.join(10)
    assert up.exitcode == 0
    assert [(p["kind"], p["labs"]) for p in room.played()] == [("alone", ["solo"])]
    assert room.outcome("solo")["rc"] == 0
    assert room.queued() == [] and not list(room.queue.done.iterdir()), "a request or an outcome was left behind"
    assert "waits its turn" not in room.said("solo"), "an up that did not wait said it did"


def test_ups_queued_behind_a_play_are_built_in_one_play_and_each_gets_its_own_outcome(room):
    held = room.hold()
    ups = [start_up(room, lab, held=held) for lab in ("ann", "badbob", "cy")]
    assert wait_for(lambda: room.queued() == ["ann", "badbob", "cy"]), f"queued: {room.queued()}"
    assert room.played() == [], "a play ran while another held the queue"
    together.Together.unlock(held)
    for up in ups:
        up.join(10)
    plays = room.played()
    assert [p["kind"] for p in plays] == ["many"], f"plays run: {plays}"
    assert sorted(plays[0]["labs"]) == ["ann", "badbob", "cy"]
    for lab in ("ann", "badbob", "cy"):
        outcome = room.outcome(lab)
        assert outcome["rc"] == rc_of(lab), f"{lab} got another lab's outcome: {outcome}"
        assert sorted(outcome["together"]) == ["ann", "badbob", "cy"]
        assert f"waits its turn: pid {os.getpid()}" in room.said(lab), f"{lab} waited without saying so"
    leader = next(lab for lab in ("ann", "badbob", "cy") if "building 3 labs started together" in room.said(lab))
    followers = [lab for lab in ("ann", "badbob", "cy") if lab != leader]
    assert all("was built in one play with" in room.said(lab) for lab in followers)
    assert room.queued() == [] and not list(room.queue.done.iterdir())


def test_ups_that_come_while_a_play_runs_wait_for_the_next_play(room):
    first = start_up(room, "early", play_s=1.0)
    assert wait_for(lambda: room.played()), "the first up ran no play"
    late = [start_up(room, lab, play_s=0.2) for lab in ("late1", "late2")]
    for up in [first] + late:
        up.join(15)
    plays = [(p["kind"], sorted(p["labs"])) for p in room.played()]
    assert plays == [("alone", ["early"]), ("many", ["late1", "late2"])], plays
    assert all(room.outcome(lab)["rc"] == 0 for lab in ("early", "late1", "late2"))


def test_when_a_leader_takes_requests_and_dies_their_ups_queue_again_and_are_built(room):
    held = room.hold()  # the test is the leader that dies: it takes the requests and writes no outcome
    ups = [start_up(room, lab, held=held) for lab in ("ok1", "ok2")]
    assert wait_for(lambda: room.queued() == ["ok1", "ok2"])
    assert [r["lab"] for r in room.queue.take()] == ["ok1", "ok2"]
    together.Together.unlock(held)  # as the kernel lets go of a killed process's lock
    for up in ups:
        up.join(15)
    for lab in ("ok1", "ok2"):
        assert room.outcome(lab) is not None and room.outcome(lab)["rc"] == 0, f"{lab} was not built"
    built = sorted(lab for p in room.played() for lab in p["labs"])
    assert built == ["ok1", "ok2"], f"each lab is built once more after its leader died: {room.played()}"


def test_an_up_interrupted_while_queued_takes_its_request_back_and_nothing_runs_for_it(room):
    held = room.hold()
    up = start_up(room, "quitter", held=held)
    assert wait_for(lambda: room.queued() == ["quitter"])
    assert wait_for(lambda: "waits its turn" in room.said("quitter"))
    os.kill(up.pid, signal.SIGINT)
    up.join(10)
    assert room.outcome("quitter") == {"interrupted_while_queued": True, "ended": room.outcome("quitter")["ended"]}
    assert room.queued() == [], "the interrupted up left its request queued"
    together.Together.unlock(held)
    assert room.played() == []


def test_an_up_interrupted_while_its_lab_is_in_a_play_keeps_the_lab_until_the_play_ends(room):
    held = room.hold()
    leader = start_up(room, "lead", play_s=1.5, held=held)
    assert wait_for(lambda: room.queued() == ["lead"])
    follower = start_up(room, "follow", held=held)
    assert wait_for(lambda: room.queued() == ["follow", "lead"])
    together.Together.unlock(held)
    assert wait_for(lambda: room.played()), "no play started"
    os.kill(follower.pid, signal.SIGINT)
    follower.join(10)
    leader.join(10)
    play_end = room.played()[0]["at"] + 1.5
    outcome = room.outcome("follow")
    assert outcome["interrupted"] == 128 + signal.SIGINT
    assert outcome["ended"] >= play_end - 0.05, "the interrupted up let go of its lab while the play still built it"
    assert "waiting for that play to end" in room.said("follow")


def test_the_queue_drops_the_request_of_an_up_that_is_gone(room):
    gone = FORK.Process(target=lambda: None)
    gone.start()
    gone.join()
    together._write(room.queue.queue / "ghost.json", {"lab": "ghost", "pid": gone.pid, "extravars": {}})
    room.queue.ask("here", {})
    assert [r["lab"] for r in room.queue.take()] == ["here"]
    assert room.queued() == []


def test_a_leader_leaves_the_requests_of_another_podpath_for_their_own_up(room):
    together._write(room.queue.queue / "theirs.json", {"lab": "theirs", "pid": os.getpid(), "extravars": {},
                                                       "podpath": "/elsewhere/podpath"})
    room.queue.ask("mine", {})
    assert [r["lab"] for r in room.queue.take()] == ["mine"]
    assert room.queued() == ["theirs"], "the other podpath's request was taken or dropped"


def test_a_task_name_is_shown_with_each_labs_own_name():
    from podpath.play.playbook import task_title

    assert task_title("Wire the namespaces of lab ann", "bob") == "Wire the namespaces of lab bob"
    assert task_title("Check the topology and plan lab ann", "cy7") == "Check the topology and plan lab cy7"
    assert task_title("Validating arguments against arg spec 'main'", "bob") == \
        "Validating arguments against arg spec 'main'"
