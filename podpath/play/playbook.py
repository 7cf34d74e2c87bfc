"""Running the project's playbooks, with progress.

The CLI stays a thin layer: it runs the same playbooks a user would run with
ansible-playbook, shows the current task with a count, and on failure prints the
failing task, host and message and where the full log is. Each play runs in a child of
podpath's warm controller (podpath/controller.py), or through ansible-runner when the
controller is off (PODPATH_CONTROLLER=off) or cannot start.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .topology import ROOT

# ansible-runner's folders (events, stdout), kept per lab; `podpath down` removes the lab's.
ARTIFACTS = Path("/run/podpath/.runs")


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


def count_tasks(playbook: Path) -> int:
    """Tasks a netns playbook will run: its own, its roles' tasks/main.yml (no includes there) and
    the argument checks of the roles that have argument specs."""
    import yaml

    total = 0
    for play in yaml.safe_load(playbook.read_text()) or []:
        total += len(play.get("tasks") or [])
        for role in play.get("roles") or []:
            name = role["role"] if isinstance(role, dict) else role
            tasks = ROOT / "roles" / name / "tasks" / "main.yml"
            if tasks.exists():
                total += len(yaml.safe_load(tasks.read_text()) or [])
            # Ansible validates a role's arguments in a task of its own
            if (ROOT / "roles" / name / "meta" / "argument_specs.yml").exists():
                total += 1
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
    line, the failures and the counts from the stats."""

    def __init__(self, progress: Progress | None):
        self.progress = progress
        self.failures: list[dict[str, str]] = []
        self.changed = 0
        self.ok = 0

    def __call__(self, event: dict) -> bool:
        data = event.get("event_data", {})
        kind = event.get("event")
        if kind == "playbook_on_task_start" and self.progress and not data.get("is_conditional"):
            self.progress.task(data.get("task", "?"))
        elif kind in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
            res = data.get("res", {})
            self.failures.append({"task": data.get("task", "?"), "host": data.get("host", "?"),
                                  "msg": str(res.get("msg") or res.get("stderr") or res)})
        elif kind == "playbook_on_stats":  # counts per host
            self.changed = sum((data.get("changed") or {}).values())
            self.ok = sum((data.get("ok") or {}).values())
        return True


def playbook_env() -> dict[str, str]:
    """What ansible-playbook's environment adds to the CLI's, either way: the project's
    ansible.cfg and the venv's commands first on PATH."""
    return {"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0",
            "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}


def run_playbook(playbook: str, extravars: dict[str, Any], verbose: bool = False, quiet: bool = False,
                 lock_fd: int | None = None) -> PlaybookResult:
    """Run playbooks/PLAYBOOK in a child of podpath's controller (podpath/controller.py), or with
    ansible-runner when PODPATH_CONTROLLER=off or the controller cannot start. Returns the
    outcome; never raises for a failed play. LOCK_FD, the lab's lock, is held by the run until
    it ends."""
    from . import controller

    path = ROOT / "playbooks" / playbook
    inventory = ROOT / "inventory" / "localhost.yml"
    folder = ARTIFACTS / str(extravars.get("podpath_lab", "default"))
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = tempfile.mkdtemp(prefix=playbook.split(".")[0] + "-", dir=folder)
    progress = None if quiet else Progress(count_tasks(path), verbose=verbose)
    events = Events(progress)
    env = playbook_env()
    started = time.monotonic()
    rc = None
    if controller.enabled():
        log = Path(private) / "stdout"
        try:
            rc = controller.run(path, inventory, extravars, dict(os.environ, **env), log, verbose, events,
                                lock_fd=lock_fd)
        except controller.Unavailable as exc:
            print(f"podpath: {exc}; running ansible-playbook the usual way", file=sys.stderr)
        except controller.RunLost as exc:
            rc = 1
            status = "failed"
            events.failures.append({"task": "?", "host": "localhost", "msg": str(exc)})
        else:
            status = "successful" if rc == 0 else "failed"
    if rc is None:
        rc, status, log = _run_with_ansible_runner(private, path, inventory, extravars, env, verbose, events)
    _rotate(folder)
    if progress:
        progress.close()
    return PlaybookResult(rc=rc, status=status, failures=events.failures, log=str(log), changed=events.changed,
                          ok=events.ok, seconds=time.monotonic() - started,
                          task_times=progress.task_times if progress else [])


def _rotate(folder: Path, keep: int = 20) -> None:
    """Keep the newest KEEP runs' folders of a lab, as ansible-runner's rotate_artifacts does."""
    runs = sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for old in runs[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _run_with_ansible_runner(private: str, path: Path, inventory: Path, extravars: dict, env: dict,
                             verbose: bool, events: Events):
    import ansible_runner

    runner = ansible_runner.run(
        private_data_dir=private, project_dir=str(ROOT), playbook=str(path), inventory=str(inventory),
        extravars=extravars, envvars=env, event_handler=events, quiet=not verbose,
        settings={"suppress_ansible_output": not verbose}, rotate_artifacts=20,
    )
    return runner.rc, runner.status, Path(runner.config.artifact_dir) / "stdout"
