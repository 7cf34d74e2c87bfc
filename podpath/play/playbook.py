"""Running the project's playbooks, with progress: the one way the CLI runs a play.

The CLI stays a thin layer: it runs the same playbooks a user would run with
ansible-playbook, through ansible-runner, shows the current task with a count, and on
failure prints the failing task, host and message and where the full log is.

A play never outlives the command that started it, and never runs beside another play on
the same lab (docs/cli.md, "How a play runs"):
- SIGINT or SIGTERM to the CLI ends the play at once: the CLI kills ansible-playbook and its
  workers, found by the mark PLAY_MARK in their environment, waits until they are gone,
  and only then gives up the lab's lock. Ansible's own interrupt handling is not used: in
  ansible-core 2.19 an interrupt that lands while a worker is being replaced either goes
  unnoticed or fails on a closed worker ("process object is closed"), and the play runs on.
  Every task of the netns playbooks can be killed at any point: the next `up` finishes
  the lab and `down` removes it.
- SIGKILL of the CLI cannot be caught: the callback plugin podpath_tether has the kernel kill
  ansible-playbook when the CLI dies (PR_SET_PDEATHSIG), and the next command that takes the
  lab's lock kills whatever of that play is still running before it starts its own.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from podpath.model.labdir import RUNS
from podpath.model.topology import ROOT

# The environment variable that marks a play's processes with its lab, so that the next
# command on that lab can find a play whose CLI was killed.
PLAY_MARK = "PODPATH_PLAY_LAB"
# How long ending a play may take before the CLI says it could not
END_TIMEOUT_S = 10.0


@dataclass
class PlaybookResult:
    rc: int
    status: str
    changed: int = 0
    ok: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    log: str = ""
    seconds: float = 0.0
    task_times: list[tuple[str, float]] = field(default_factory=list)
    interrupted: int | None = None  # the CLI's exit code when a signal stopped the play
    together: list[str] = field(default_factory=list)  # the labs built in the same play (podpath.play.together)


ROLE_ACTIONS = {"import_role": False, "ansible.builtin.import_role": False,
                "include_role": True, "ansible.builtin.include_role": True}
TASKS_ACTIONS = {"import_tasks": False, "ansible.builtin.import_tasks": False,
                 "include_tasks": True, "ansible.builtin.include_tasks": True}
META_ACTIONS = ("meta", "ansible.builtin.meta")


def _role_tasks(name: str, tasks_from: str = "main") -> int:
    """Tasks of role NAME's tasks file TASKS_FROM, with Ansible's check of the role's arguments
    when its argument specs have that entry point (Ansible runs it as a task of its own)."""
    import yaml

    folder = ROOT / "roles" / name
    stem = tasks_from[:-4] if tasks_from.endswith(".yml") else tasks_from
    tasks = folder / "tasks" / f"{stem}.yml"
    total = _tasks(yaml.safe_load(tasks.read_text()) or [], tasks.parent) if tasks.exists() else 0
    specs = folder / "meta" / "argument_specs.yml"
    if specs.exists() and stem in ((yaml.safe_load(specs.read_text()) or {}).get("argument_specs") or {}):
        total += 1
    return total


def _tasks(tasks: list, folder: Path | None = None) -> int:
    """Tasks a local run on one lab shows of TASKS (of a role's tasks FOLDER, where a tasks
    file is found): blocks are opened, a role or a tasks file imported or included brings its
    tasks (an include is a task too), an include_role with a condition counts as itself only
    (a step the control node skips, such as a fleet host's preparation), a loop counts once
    (one lab), meta tasks not at all (Ansible shows none)."""
    import yaml

    total = 0
    for task in tasks:
        if "block" in task:
            total += _tasks(task["block"], folder) + _tasks(task.get("always") or [], folder)
            continue
        included = next((key for key in task if key in TASKS_ACTIONS), None)
        if included and folder is not None:
            path = folder / (task[included] if isinstance(task[included], str) else task[included]["file"])
            total += int(TASKS_ACTIONS[included]) + _tasks(yaml.safe_load(path.read_text()) or [], folder)
            continue
        action = next((key for key in task if key in ROLE_ACTIONS or key in META_ACTIONS), None)
        if action in META_ACTIONS:
            continue
        if action is None:
            total += 1
            continue
        dynamic = ROLE_ACTIONS[action]
        if dynamic and task.get("when") is not None:  # an import's condition goes on each of its tasks
            total += 1
            continue
        args = task[action] if isinstance(task[action], dict) else {"name": task[action]}
        total += int(dynamic) + _role_tasks(args["name"], args.get("tasks_from", "main"))
    return total


def count_tasks(playbook: Path) -> int:
    """Tasks a netns playbook will run for one lab on the control node: its plays' tasks and
    roles (_tasks says how each counts)."""
    import yaml

    total = 0
    for play in yaml.safe_load(playbook.read_text()) or []:
        total += _tasks(play.get("tasks") or [])
        for role in play.get("roles") or []:
            total += _role_tasks(role["role"] if isinstance(role, dict) else role)
    return total


class Progress:
    """One line that says where the play is: [3/7] task name."""

    def __init__(self, total: int, stream=sys.stderr, verbose: bool = False):
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream
        self.tty = stream.isatty()
        self.verbose = verbose
        self.current: tuple[str, float] | None = None
        self.task_times: list[tuple[str, float]] = []

    def task(self, name: str) -> None:
        self._finish_task()
        self.done += 1
        self.current = (name, time.monotonic())
        width = 24
        filled = int(width * min(self.done, self.total) / self.total)
        line = f"[{'#' * filled}{'.' * (width - filled)}] {min(self.done, self.total)}/{self.total} {name}"
        if self.tty and not self.verbose:
            self.stream.write("\r\033[K" + line[: shutil.get_terminal_size().columns - 1])
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def _finish_task(self) -> None:
        if self.current:
            self.task_times.append((self.current[0], time.monotonic() - self.current[1]))
            self.current = None

    def close(self) -> None:
        self._finish_task()
        if self.tty and not self.verbose:
            self.stream.write("\r\033[K")
            self.stream.flush()


class Events:
    """What the CLI takes from a play's events, whichever way the play ran: the progress
    line, the failures and the counts from the stats (summed, and per host in `stats`).
    With BY_RESULT, the progress moves on each host's result of a task, as a play of many
    hosts with the free strategy has no one current task."""

    def __init__(self, progress: Progress | None, by_result: bool = False):
        self.progress = progress
        self.by_result = by_result
        self.failures: list[dict[str, str]] = []
        self.changed = 0
        self.ok = 0
        self.stats: dict[str, dict[str, int]] = {}

    def __call__(self, event: dict) -> bool:
        data = event.get("event_data", {})
        kind = event.get("event")
        if kind == "playbook_on_task_start" and self.progress and not self.by_result \
                and not data.get("is_conditional"):
            self.progress.task(data.get("task", "?"))
        elif kind in RESULTS and self.progress and self.by_result:
            lab = str(data.get("host", "?")).removeprefix("lab-")
            self.progress.task(f"lab {lab}: {task_title(data.get('task', '?'), lab)}")
        if kind in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
            res = data.get("res", {})
            self.failures.append({"task": data.get("task", "?"), "host": data.get("host", "?"),
                                  "msg": str(res.get("msg") or res.get("stderr") or res)})
        elif kind == "playbook_on_stats":  # counts per host
            self.stats = {key: dict(data.get(key) or {}) for key in ("ok", "changed", "failures", "dark")}
            self.changed = sum(self.stats["changed"].values())
            self.ok = sum(self.stats["ok"].values())
        return True


# "lab NAME" in a task's name (lab names: module_utils/podpath_lab.py)
LAB_IN_NAME = re.compile(r"\blab [a-z][a-z0-9]{0,9}\b")


def task_title(name: str, lab: str) -> str:
    """A task's NAME as LAB's: in a play of many labs Ansible names a task once, with the
    first lab's name in it."""
    return LAB_IN_NAME.sub(f"lab {lab}", name)


# The events of a host's result of a task
RESULTS = ("runner_on_ok", "runner_on_failed", "runner_on_skipped", "runner_on_unreachable")


def playbook_env() -> dict[str, str]:
    """What ansible-playbook's environment adds to the CLI's: the project's ansible.cfg and
    the venv's commands first on PATH."""
    return {"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0",
            "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}


def _proc_read(pid: int, name: str) -> bytes:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read()
    except OSError:
        return b""


def play_processes(lab: str) -> list[int]:
    """The live processes of a play the CLI started on LAB: ansible-playbook and its workers
    (they carry PLAY_MARK in their environment, with LAB among its comma-separated labs, and
    ansible-playbook in their command line; what the play starts in the lab runs other
    programs with an environment of its own)."""
    key = f"{PLAY_MARK}=".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        if b"ansible-playbook" not in _proc_read(pid, "cmdline"):
            continue
        marks = [v[len(key):] for v in _proc_read(pid, "environ").split(b"\0") if v.startswith(key)]
        if not marks or lab.encode() not in marks[0].split(b","):
            continue
        stat = _proc_read(pid, "stat")
        if stat and stat[stat.rindex(b")") + 2:][:1] != b"Z":  # a zombie runs nothing
            found.append(pid)
    return found


def end_play(lab: str, timeout: float = END_TIMEOUT_S) -> list[int]:
    """Kill every process of a play on LAB and wait until they are gone; returns their pids.
    Called with the lab's lock held, so a play found here is one whose CLI has died or is
    being interrupted: nothing else may be changing the lab."""
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    while (left := play_processes(lab)) and time.monotonic() < deadline:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if pid not in killed:
                killed.append(pid)
        time.sleep(0.02)
    if play_processes(lab):
        raise RuntimeError(f"the play on lab {lab} did not end within {timeout:.0f} s: pids {play_processes(lab)}")
    return killed


class Interrupts:
    """SIGINT and SIGTERM to the CLI while a play runs end the play (end_play). The CLI itself
    goes on until the play's processes are gone, so the lab's lock is held until then."""

    def __init__(self, labs: list[str]):
        self.labs = labs
        self.received: list[int] = []
        self._old: dict[int, Any] = {}

    def __enter__(self):
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._old[signum] = signal.signal(signum, self._handler)
        return self

    def __exit__(self, *exc):
        for signum, old in self._old.items():
            signal.signal(signum, old)
        self.forward()  # a signal that came before ansible-playbook started: nothing may be left

    def _handler(self, signum, frame) -> None:
        self.received.append(signum)
        self.forward()

    def forward(self) -> bool:
        """End the play if a signal came; ansible-runner also calls this, as its cancel
        callback, between reads of the play's output. It never asks ansible-runner to cancel:
        that kills ansible-playbook's process group, which its workers have left (setsid)."""
        if self.received:
            for lab in self.labs:
                end_play(lab)
        return False

    @property
    def exit_code(self) -> int | None:
        """128 + the first signal received, as a shell reports a command it interrupted."""
        return 128 + self.received[0] if self.received else None


def run_playbook(playbook: str, extravars: dict[str, Any], verbose: bool = False,
                 quiet: bool = False) -> PlaybookResult:
    """Run playbooks/PLAYBOOK through ansible-runner, with the lab's lock held by the caller.
    Returns the outcome; never raises for a failed or interrupted play."""
    lab = str(extravars.get("podpath_lab", "default"))
    progress = None if quiet else Progress(count_tasks(ROOT / "playbooks" / playbook), verbose=verbose)
    events = Events(progress)
    result = run_play(playbook, [lab], extravars, [], events, verbose)
    result.task_times = progress.task_times if progress else []
    return result


def no_close_delay() -> None:
    """ansible-runner runs the play under a pty (pexpect), and once the play has exited and its
    output is read it closes the pty; ptyprocess then sleeps 0.1 s "to give the kernel time to
    update the process status" before it looks whether the child still lives (and ends it if
    so). The play was already reaped by then, so that sleep is 0.1 s of every `podpath up`
    and `down` for nothing: the pty of a play ansible-runner starts from this process closes
    without it. A child that still lives is ended as before."""
    import pexpect

    spawnpty = pexpect.spawn._spawnpty
    if getattr(spawnpty, "podpath_no_close_delay", False):
        return

    def without_delay(self, args, **kwargs):
        process = spawnpty(self, args, **kwargs)
        process.delayafterclose = 0.0
        return process
    without_delay.podpath_no_close_delay = True
    pexpect.spawn._spawnpty = without_delay


def run_play(playbook: str, labs: list[str], extravars: dict[str, Any], inventories: list[str],
             events: Events, verbose: bool = False, folder: Path | None = None) -> PlaybookResult:
    """Run playbooks/PLAYBOOK on LABS (their locks held by the caller) through ansible-runner,
    with the project's inventory and INVENTORIES, in a new folder in FOLDER (default: the
    first lab's). Returns the whole play's outcome; never raises for a failed or interrupted play."""
    import ansible_runner

    no_close_delay()
    for lab in labs:
        end_play(lab)  # what is left of a play whose CLI was killed
    path = ROOT / "playbooks" / playbook
    folder = folder or RUNS / labs[0]
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = tempfile.mkdtemp(prefix=playbook.split(".")[0] + "-", dir=folder)
    env = dict(playbook_env(), PODPATH_TETHER=str(os.getpid()), **{PLAY_MARK: ",".join(labs)},
               ANSIBLE_CALLBACK_PLUGINS=str(ROOT / "plugins" / "callback"), ANSIBLE_CALLBACKS_ENABLED="podpath_tether")
    inventory = [str(ROOT / "inventory" / "localhost.yml")] + inventories
    started = time.monotonic()
    with Interrupts(labs) as interrupts:
        runner = ansible_runner.run(
            private_data_dir=private, project_dir=str(ROOT), playbook=str(path),
            inventory=inventory[0] if len(inventory) == 1 else inventory, extravars=extravars, envvars=env,
            event_handler=events, cancel_callback=interrupts.forward, quiet=not verbose,
            # pexpect_timeout: how often ansible-runner calls the cancel callback while the play is quiet
            settings={"suppress_ansible_output": not verbose, "pexpect_timeout": 0.2}, rotate_artifacts=20,
        )
    if events.progress:
        events.progress.close()
    return PlaybookResult(rc=runner.rc, status="interrupted" if interrupts.received else runner.status,
                          failures=events.failures, log=str(Path(runner.config.artifact_dir) / "stdout"),
                          changed=events.changed, ok=events.ok, seconds=time.monotonic() - started,
                          interrupted=interrupts.exit_code)
