"""`podpath up` of labs started together: one play builds them all.

A class types `podpath up` in the same minute. Each play costs ansible-playbook's start, its
imports, plugins and YAML (about 1 CPU second here) before its first task, so thirty plays
side by side spend most of two cores starting. Labs whose `up` starts while another `up`
is running are built together instead, in one play (playbooks/netns-labs-together.yml:
each lab a host with the local connection, the free strategy), as a database commits the
transactions that queued behind the one being written:

- each `up`, holding its lab's lock, queues a request: TOGETHER/queue/<lab>.json;
- the one that holds TOGETHER/leader.lock takes every queued request and builds those labs,
  its own among them: alone with netns-lab-here.yml (a lone `up` works as it always did),
  more than one with netns-labs-together.yml; it writes each other lab's outcome to
  TOGETHER/done/<lab>.json and lets the lock go;
- the others wait for that lock, and say so; who then finds its outcome takes it, who finds
  its request still queued leads the next play.

A leader takes only the requests of `up`s of its own podpath (the same project folder): a
host with two copies of podpath (a class's and a newer one being tried) builds each lab
with the copy its `up` runs, its roles, modules and topology schema, never with the other's.

A leader that dies (SIGKILL) loses the lock with its life, and its play dies with it
(podpath_tether); a leader that is interrupted ends its play and writes no outcome for the
others. Either way a waiting `up` then finds neither its request nor its outcome, and queues
again. The labs of one play stay locked by their own `up`s all along, so no other command
changes them meanwhile.
"""
from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable

from podpath.model.labdir import RUN_ROOT, RUNS, alive
from podpath.play.playbook import (Events, PlaybookResult, Progress, count_tasks, run_play, run_playbook,
                                   ROOT)

TOGETHER = Path(RUN_ROOT, ".together")
# The folders of the plays of labs started together; each lab's runs folder links to its play's
PLAYS = Path(RUNS, ".together")
ALONE = "netns-lab-here.yml"
PLAY = "netns-labs-together.yml"


class Interrupted(Exception):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _write(path: Path, data: dict) -> None:
    """Write DATA as JSON to PATH in one step (a reader sees all of it or nothing)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class Together:
    """The queue of one machine's (or one sandbox's) `up`s, in folder ROOT."""

    def __init__(self, root: Path = TOGETHER):
        self.root = root
        self.queue = root / "queue"
        self.done = root / "done"
        for folder in (self.queue, self.done):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.lock_path = root / "leader.lock"

    # -- requests and outcomes -------------------------------------------------------
    def ask(self, lab: str, extravars: dict[str, Any]) -> None:
        (self.done / f"{lab}.json").unlink(missing_ok=True)  # an outcome nobody took is old
        _write(self.queue / f"{lab}.json", {"lab": lab, "pid": os.getpid(), "extravars": extravars,
                                            "podpath": str(ROOT)})

    def asked(self, lab: str) -> bool:
        return (self.queue / f"{lab}.json").exists()

    def withdraw(self, lab: str) -> bool:
        """Take LAB's request back; False when a leader has already taken it."""
        try:
            (self.queue / f"{lab}.json").unlink()
            return True
        except FileNotFoundError:
            return False

    def outcome(self, lab: str) -> PlaybookResult | None:
        path = self.done / f"{lab}.json"
        data = _read(path)
        path.unlink(missing_ok=True)
        if data is None:
            return None
        data["task_times"] = [tuple(t) for t in data.get("task_times", [])]
        return PlaybookResult(**data)

    def take(self) -> list[dict]:
        """Every queued request of this podpath whose `up` still runs, taken off the queue; those
        whose `up` is gone are dropped, those of another podpath left for their own `up`s."""
        taken = []
        for path in sorted(self.queue.glob("*.json")):
            request = _read(path)
            if request and request.get("podpath", str(ROOT)) != str(ROOT) and alive(request.get("pid")):
                continue  # another copy of podpath's: its `up` leads a play of its own next
            try:
                path.unlink()
            except FileNotFoundError:  # withdrawn meanwhile
                continue
            if request and alive(request.get("pid")):
                taken.append(request)
        return taken

    def tell(self, lab: str, result: PlaybookResult) -> None:
        _write(self.done / f"{lab}.json", dataclasses.asdict(result))

    # -- the leader's lock -----------------------------------------------------------
    def leader(self) -> str:
        """The `up` that holds the leader's lock: 'pid N: its command line', as far as it can be read."""
        try:
            pid = self.lock_path.read_text().strip()
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        except OSError:
            return "another podpath up"
        words = [os.path.basename(a.decode(errors="replace")) if i == 0 else a.decode(errors="replace")
                 for i, a in enumerate(argv)]
        return f"pid {pid}: {' '.join(words)[:120]}"

    def lock(self, waiting: Callable[[str], None]) -> int:
        """Take the leader's lock, calling WAITING with who holds it when it must wait."""
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waiting(self.leader())
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    @staticmethod
    def unlock(fd: int) -> None:
        os.ftruncate(fd, 0)
        os.close(fd)


def _raise(signum, frame):
    raise Interrupted(signum)


def up(lab: str, extravars: dict[str, Any], verbose: bool = False, quiet: bool = False,
       together: Together | None = None, run_alone=None, run_many=None) -> PlaybookResult:
    """Build LAB (its lock held by the caller): in a play of its own, or in one play with the
    labs whose `up` queued while another play ran. RUN_ALONE and RUN_MANY run the plays
    (the tests give their own)."""
    together = together or Together()
    run_alone = run_alone or (lambda request: run_playbook(ALONE, request["extravars"], verbose=verbose, quiet=quiet))
    run_many = run_many or (lambda requests: run_labs(requests, verbose=verbose, quiet=quiet))
    said: list[str] = []

    def waiting(leader: str) -> None:
        if not said:
            said.append(leader)
            print(f"podpath: lab {lab} waits its turn: {leader} is building other labs; lab {lab} is built "
                  "next, in one play with every lab queued meanwhile", file=sys.stderr, flush=True)

    together.ask(lab, extravars)
    while True:
        old = {s: signal.signal(s, _raise) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            fd = together.lock(waiting)
        except Interrupted as exc:
            _restore(old)
            if together.withdraw(lab):  # not taken: nothing of it is running
                raise KeyboardInterrupt from exc
            return _wait_out(lab, together, exc.signum)
        _restore(old)
        try:
            result = together.outcome(lab)
            if result is not None:
                if said and not quiet:
                    print(f"podpath: lab {lab} was built in one play with {result_others(result, lab)}",
                          file=sys.stderr)
                return result
            if not together.asked(lab):  # its leader died or was interrupted: ask again
                together.ask(lab, extravars)
            requests = together.take()
            mine = next(r for r in requests if r["lab"] == lab)
            others = [r for r in requests if r["lab"] != lab]
            if not others:
                return run_alone(mine)
            if not quiet:
                print(f"podpath: building {len(requests)} labs started together in one play: "
                      f"{', '.join(r['lab'] for r in requests)}", file=sys.stderr, flush=True)
            results = run_many([mine] + others)
            for request in others:
                if results[request["lab"]].interrupted is None:  # an interrupted play tells nobody
                    together.tell(request["lab"], results[request["lab"]])
            return results[lab]
        finally:
            together.unlock(fd)


def result_others(result: PlaybookResult, lab: str) -> str:
    labs = [name for name in result.together if name != lab]
    return ", ".join(labs) if labs else "no other lab"


def _restore(old: dict) -> None:
    for signum, handler in old.items():
        signal.signal(signum, handler)


def _wait_out(lab: str, together: Together, signum: int) -> PlaybookResult:
    """LAB's request is in a running play: let it end before the lab's lock goes, then say so."""
    print(f"podpath: interrupted; lab {lab} is in the play another podpath up runs ({together.leader()}): "
          "waiting for that play to end before letting go of the lab", file=sys.stderr, flush=True)
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        together.unlock(together.lock(lambda leader: None))
    finally:
        _restore(old)
    result = together.outcome(lab) or PlaybookResult(rc=1, status="interrupted")
    result.interrupted = 128 + signum
    return result


def run_labs(requests: list[dict], verbose: bool = False, quiet: bool = False) -> dict[str, PlaybookResult]:
    """Build the labs of REQUESTS in one play; the outcome of each, from its host's results."""
    import yaml

    labs = [r["lab"] for r in requests]
    hosts = {}
    for request in requests:
        host = {"podpath_together_lab": request["lab"], "ansible_connection": "local",
                "ansible_python_interpreter": "{{ ansible_playbook_python }}"}
        if "podpath_topology" in request["extravars"]:
            host["podpath_topology"] = request["extravars"]["podpath_topology"]
        hosts[host_name(request["lab"])] = host
    PLAYS.mkdir(parents=True, exist_ok=True, mode=0o700)
    prune_plays()
    inventory = PLAYS / f"together-{os.getpid()}.yml"
    inventory.write_text(yaml.safe_dump({"podpath_together": {"hosts": hosts}}))
    progress = None if quiet else Progress(count_tasks(ROOT / "playbooks" / PLAY) * len(labs), verbose=verbose)
    events = Events(progress, by_result=True)
    try:
        whole = run_play(PLAY, labs, {}, [str(inventory)], events, verbose, folder=PLAYS)
    finally:
        inventory.unlink(missing_ok=True)
    run_folder = Path(whole.log).parents[2] if whole.log else None
    results = {}
    for lab in labs:
        host = host_name(lab)
        failures = [f for f in events.failures if f["host"] == host]
        failed = bool(failures) or any(events.stats.get(key, {}).get(host) for key in ("failures", "dark"))
        ran = host in events.stats.get("ok", {}) or failed
        rc = 0 if ran and not failed else (whole.rc or 2)
        status = "successful" if rc == 0 else "failed" if whole.status == "successful" else whole.status
        results[lab] = dataclasses.replace(
            whole, rc=rc, status=status,
            failures=failures, changed=events.stats.get("changed", {}).get(host, 0),
            ok=events.stats.get("ok", {}).get(host, 0), together=labs)
        if run_folder is not None:  # each lab's runs folder points at the play's
            own = RUNS / lab
            own.mkdir(parents=True, exist_ok=True, mode=0o700)
            link = own / run_folder.name
            if not link.exists():
                link.symlink_to(run_folder)
    return results


def tidy() -> None:
    """After `down`: prune_plays, unless a play is running (it prunes before its own play)."""
    if not PLAYS.exists():
        return
    fd = os.open(Together().lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        prune_plays()
    except BlockingIOError:
        pass
    finally:  # closing the file lets go of the lock
        os.close(fd)


def prune_plays() -> None:
    """Remove the folders of earlier plays that no lab's runs folder links to any more (`down`
    removes a lab's folder with its links). Called with the leader's lock held."""
    import shutil

    linked = {os.path.realpath(link) for link in RUNS.glob("*/netns-labs-together-*") if link.is_symlink()}
    for play in PLAYS.glob("netns-labs-together-*"):
        if str(play.resolve()) not in linked:
            shutil.rmtree(play, ignore_errors=True)


def host_name(lab: str) -> str:
    """The inventory host of LAB in a play of labs started together (never 'all' or 'localhost')."""
    return f"lab-{lab}"
