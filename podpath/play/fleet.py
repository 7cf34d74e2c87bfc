"""Every lab of every host of an Ansible inventory: what `podpath up|verify|status|down|drill
--inventory INVENTORY [--limit PATTERN]` runs (docs/classroom.md).

Ansible is the engine: `up` and `down` run the fleet's playbooks (netns-lab.yml,
netns-lab-down.yml), and verify, status and drill run netns-lab-each.yml, which asks each lab
of each host one podpath command on that host, with podpath's runtime there, and keeps the
answers on this control node. Ansible's forks run the hosts in parallel; podpath schedules
nothing of its own. A host that fails or is unreachable is named, with Ansible's message, and
the others go on.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from podpath.model.topology import ROOT

RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
FATAL = re.compile(r"^fatal: \[([^\]]+)\]: (FAILED|UNREACHABLE)! =>\s*(.*)$")
SUMMARY_PLAY = re.compile(r"^PLAY \[Say which labs")
TASK = re.compile(r"^TASK \[(.+?)\] \**$")
DONE = re.compile(r"^(ok|changed|fatal|included): ")


class FleetError(Exception):
    """Bad input for a fleet command: the message names the value and the fix."""


@dataclass
class HostOutcome:
    ok: int = 0
    changed: int = 0
    unreachable: int = 0
    failed: int = 0
    message: str = ""  # Ansible's message for a host that failed or was unreachable

    @property
    def state(self) -> str:
        return "unreachable" if self.unreachable else "failed" if self.failed else "ok"


@dataclass
class FleetRun:
    rc: int
    hosts: dict[str, HostOutcome] = field(default_factory=dict)
    summary: list[str] = field(default_factory=list)  # the playbook's own lines: which labs each host runs
    output: str = ""
    seconds: float = 0.0

    @property
    def bad_hosts(self) -> dict[str, HostOutcome]:
        return {h: o for h, o in self.hosts.items() if o.state != "ok"}


def check_inventory(path: str) -> str:
    """The absolute path of an inventory that exists, or FleetError with the fix."""
    where = Path(path).expanduser()
    if not where.exists():
        raise FleetError(f"--inventory {path}: no such file or folder: give an Ansible inventory of the class's "
                         "machines (docs/classroom.md shows one)")
    return str(where.resolve())


def _env() -> dict[str, str]:
    here = str(Path(sys.executable).parent)  # the playbooks' filters need this podpath
    return dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1",
                ANSIBLE_RETRY_FILES_ENABLED="0", PATH=here + os.pathsep + os.environ.get("PATH", ""))


def _messages(out: str) -> dict[str, str]:
    """host -> Ansible's message of its last failure or unreachability in OUT."""
    found: dict[str, str] = {}
    lines = out.splitlines()
    for i, line in enumerate(lines):
        fatal = FATAL.match(line)
        if not fatal:
            continue
        host, rest = fatal.group(1), fatal.group(3).strip()
        block = []
        for more in lines[i + 1:]:
            if more and not more[0].isspace():
                break
            block.append(more)
        message = ""
        try:
            data = yaml.safe_load("\n".join(block)) if block else json.loads(rest) if rest else None
        except (yaml.YAMLError, ValueError):
            data = None
        if isinstance(data, dict):
            message = str(data.get("msg") or data.get("stderr") or "")
        found[host] = " ".join((message or rest or fatal.group(2).lower()).split())
    return found


def _summary(out: str) -> list[str]:
    """The lines of the playbook's last play, which says which labs each host runs."""
    at = [i for i, line in enumerate(out.splitlines()) if SUMMARY_PLAY.match(line)]
    if not at:
        return []
    lines = []
    for line in out.splitlines()[at[-1]:]:
        if line.startswith("PLAY RECAP"):
            break
        item = re.match(r"^\s+- (.+)$", line)
        if item:
            lines.append(item.group(1).strip().strip("'\""))
    return lines


def run(playbook: str, inventory: str, limit: str | None = None, extravars: dict[str, Any] | None = None,
        progress: Callable[[str], None] | None = None, echo: bool = False) -> FleetRun:
    """Run PLAYBOOK (a file of playbooks/) on INVENTORY, limited to LIMIT. PROGRESS is told the
    name of each task that runs on a host (not one every host skips); ECHO passes Ansible's whole output to stderr. Ctrl-C ends the play at once."""
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", inventory, str(ROOT / "playbooks" / playbook)]
    if limit:
        argv += ["--limit", limit]
    if extravars:
        argv += ["-e", json.dumps(extravars)]
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(),
                            start_new_session=True)
    out: list[str] = []
    current = None
    try:
        for line in proc.stdout:
            out.append(line)
            if echo:
                sys.stderr.write(line)
            elif task := TASK.match(line.rstrip("\n")):
                current = task.group(1)
            elif progress and current and DONE.match(line):  # a task said once it ran somewhere, not when skipped
                progress(current)
                current = None
        rc = proc.wait()
    except BaseException:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        raise
    text = "".join(out)
    hosts = {host: HostOutcome(int(ok), int(changed), int(unreachable), int(failed))
             for host, ok, changed, unreachable, failed in RECAP.findall(text)}
    for host, message in _messages(text).items():
        if host in hosts and hosts[host].state != "ok":
            hosts[host].message = message
    if rc != 0 and not hosts:  # the play stopped before any host: bad inventory, a refused roster
        said = " ".join(" ".join(re.sub(r"^\[?ERROR\]?!?:?\s*", "", line) for line in text.splitlines()
                                    if line.startswith(("ERROR", "[ERROR]"))).split())
        if "no hosts to target" in said:
            said += (f" The inventory's hosts: ansible-inventory -i {inventory} --graph; give --limit one of them, "
                     "a group or a pattern of them")
        raise FleetError(said or text.strip()[-2000:])
    return FleetRun(rc, hosts, _summary(text), text, time.monotonic() - started)


@dataclass
class Answer:
    """What one podpath command said on a host, for one lab (or for all its labs)."""
    host: str
    labs: list[str]
    rc: int
    stdout: str
    stderr: str


@dataclass
class Asked:
    run: FleetRun
    labs: dict[str, list[str]]  # the labs of each host of the play, as the playbook chose them
    answers: list[Answer]


def ask(inventory: str, argv: list[str], limit: str | None = None, all_labs: bool = False,
        lab: str | None = None, marks: list[str] | None = None,
        progress: Callable[[str], None] | None = None, echo: bool = False) -> Asked:
    """Run `podpath ARGV --lab L` for each lab L of each host of INVENTORY (LIMIT), on that
    host, or `podpath ARGV --labs A,B` once a host with ALL_LABS. LAB: that lab on every host
    (-e podpath_lab). MARKS: files the host gets first (netns-lab-each.yml)."""
    with tempfile.TemporaryDirectory(prefix="podpath-fleet-") as folder:
        extravars: dict[str, Any] = {"podpath_each_argv": list(argv), "podpath_each_out": folder,
                                     "podpath_each_all_labs": all_labs, "podpath_each_marks": list(marks or [])}
        if lab is not None:
            extravars["podpath_lab"] = lab
        result = run("netns-lab-each.yml", inventory, limit, extravars, progress, echo)
        chosen = Path(folder, "labs.json")
        labs = json.loads(chosen.read_text()) if chosen.exists() else {}
        answers = []
        for path in sorted(p for p in Path(folder).glob("*.json") if p != chosen):
            for item in json.loads(path.read_text()):
                if item.get("skipped"):
                    continue
                which = item["item"] if isinstance(item["item"], list) else [item["item"]]
                answers.append(Answer(path.stem, [str(x) for x in which], int(item.get("rc", 1)),
                                      str(item.get("stdout", "")), str(item.get("stderr", "") or item.get("msg", ""))))
    return Asked(result, {str(h): [str(x) for x in v or []] for h, v in labs.items()}, answers)
