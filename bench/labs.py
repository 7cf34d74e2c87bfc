"""Labs for the benchmarks: unique names, timed `podpath` commands, the lab's processes and
their memory, and a guarantee that every lab a benchmark makes is taken down again.

Every command is the one a user types (`.venv/bin/podpath up --lab NAME`), timed from the
outside, so the numbers include the CLI's and Ansible's start-up. Labs are named 'b' plus a
letter for the benchmark and six random characters, and are only ever those this process
made: `Labs` remembers them and `podpath down`s each one on the way out, also after an
error or Ctrl-C, then checks that none of its namespaces and no folder is left.
"""
from __future__ import annotations

import json
import os
import random
import re
import signal
import string
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from podpath import cli

from podpath.model import labdir
from podpath.evidence import probe
from podpath.evidence.probe import neighbour_table_limit
from podpath.model.labdir import RUNS
from podpath.play.playbook import task_title
from podpath.play.together import host_name
from podpath.evidence.status import owned_namespaces
from podpath.model.topology import TOPOLOGY_FILE

PODPATH = Path(sys.executable).parent / "podpath"
NETNS_DIR = Path("/run/netns")
TIMEOUT_S = 900  # one command; a 300-pods-per-node lab takes well under this
UP_LINE = re.compile(r"is up in ([\d.]+) s \((\d+) tasks changed\)")


class BenchError(RuntimeError):
    """A podpath command failed or a lab was not what it should be."""


@dataclass
class Timed:
    seconds: float
    stdout: str
    stderr: str
    changed: int | None = None  # `up` only: the changed count podpath printed
    failed: list[str] = field(default_factory=list)  # verify only: the failing test ids


def new_name(kind: str) -> str:
    """'b' + KIND (one letter) + 6 random characters: 8 of the 10 a lab name may have."""
    name = "b" + kind + "".join(random.choices(string.ascii_lowercase + string.digits, k=6))
    if labdir.check_lab_name(name):
        raise ValueError(labdir.check_lab_name(name))
    return name


def podpath(*argv: str, timeout: float = TIMEOUT_S, env: dict[str, str] | None = None) -> Timed:
    """Run `podpath ARGV...` (with ENV added to the environment), timed; raise BenchError when it
    does not exit 0."""
    start = time.perf_counter()
    done = subprocess.run([str(PODPATH), *argv], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **env) if env else None)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise BenchError(f"podpath {' '.join(argv)} exited {done.returncode}:\n{done.stdout[-3000:]}\n"
                         f"{done.stderr[-3000:]}")
    result = Timed(seconds, done.stdout, done.stderr)
    match = UP_LINE.search(done.stdout)
    if match:
        result.changed = int(match.group(2))
    return result


def verify(lab: str, topology: Path | None = None, timeout: float = TIMEOUT_S) -> Timed:
    """The non-disruptive verifier, as `podpath verify --lab LAB` runs it. A failing check does
    not raise: its test id is in `failed`, for the tables to show.

    With a topology of its own the verifier is called with the same argv plus --topology,
    because `podpath verify --topology F` does not pass F on to pytest (it checks the
    default topology's pods only).
    """
    import argparse

    # -rf: a short line per failed check ("FAILED id"), which `podpath verify` leaves out (-rN)
    extra = ["-rf"] + (["--topology", str(topology)] if topology else [])
    argv = cli.verify_argv(argparse.Namespace(lab=lab, junitxml=None, disruptive=False), extra)
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cli.ROOT, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - start
    failed = re.findall(r"^FAILED (\S+)", done.stdout, re.MULTILINE)
    if done.returncode != 0 and not failed:
        raise BenchError(f"the verifier did not run on {lab}:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}")
    return Timed(seconds, done.stdout, done.stderr, failed=[f.split("::")[-1] for f in failed])


def checks_passed(verify_output: str) -> int:
    """How many checks the verifier ran and passed ('103 passed, ...')."""
    match = re.search(r"(\d+) passed", verify_output)
    return int(match.group(1)) if match else 0


# -- scale topologies ---------------------------------------------------------------------------
def scale_topology(idle_per_node: int, folder: Path) -> Path:
    """A copy of the reference topology with IDLE_PER_NODE idle pods per node and a /22 per node
    (the /24s hold about 250 pods; 10.244.0.0/22, 10.244.4.0/22, ... stay inside 10.244.0.0/16)."""
    data = yaml.safe_load(TOPOLOGY_FILE.read_text())
    topo = data["podpath_topology"]
    for i, node in enumerate(topo["nodes"]):
        node["pod_cidr"] = f"10.244.{4 * i}.0/22"
    topo["workloads"]["idle_pods_per_node"] = idle_per_node
    path = folder / f"topology-idle{idle_per_node}.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def classroom_topology(folder: Path) -> Path:
    """A copy of the reference topology with pod_neighbours: static, what a host of many labs
    is given (docs/netns-lab.md): the entries between each node and its pods are permanent, and
    the kernel does not count them against the host's neighbour table limit."""
    data = yaml.safe_load(TOPOLOGY_FILE.read_text())
    data["podpath_topology"]["pod_neighbours"] = "static"
    path = folder / "topology-static-neighbours.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# -- the lab's processes --------------------------------------------------------------------------
def _netns_inodes(lab: str) -> set[int]:
    inodes = set()
    for name in owned_namespaces(lab):
        try:
            inodes.add(os.stat(NETNS_DIR / name).st_ino)
        except OSError:
            pass
    return inodes


def lab_pids(lab: str) -> list[int]:
    """Every process of LAB: in one of its network namespaces (pause, nginx and its workers, the
    container wrappers, the node daemons) or naming its folder or namespaces on its command line."""
    inodes = _netns_inodes(lab)
    marks = (f"/run/podpath/{lab}/".encode(), f"/run/netns/{lab}-".encode())
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry.name}/ns/net").st_ino in inodes:
                pids.append(int(entry.name))
                continue
            cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes()
        except OSError:
            continue
        if any(m in cmdline for m in marks):
            pids.append(int(entry.name))
    return pids


def pss_kib(pids: list[int]) -> int:
    """Sum of the proportional set size (kB) of PIDS: shared pages are split among their users."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            pass  # gone meanwhile
    return total


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total


def idle_cpu_percent(pids: list[int], seconds: float = 5.0) -> float:
    """CPU the processes use while nobody uses the lab, in % of one core."""
    before = cpu_ticks(pids)
    time.sleep(seconds)
    return 100.0 * (cpu_ticks(pids) - before) / os.sysconf("SC_CLK_TCK") / seconds


def mem_available_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    return 0


def arp_table_fulls() -> int:
    """How often the kernel found its ARP table full (all CPUs; 0 where it cannot be read).
    The table and its limit (net.ipv4.neigh.default.gc_thresh3) are shared by every network
    namespace of the host."""
    return probe.arp_table_fulls() or 0


def neigh_gc_thresh3() -> str:
    return str(neighbour_table_limit() or "?")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# -- where the time of an `up` goes -------------------------------------------------------------
def last_run_tasks(lab: str) -> dict[str, Any]:
    """LAB's latest playbook run, from its events: {'play_s': the play's wall time (its start to
    the stats), 'tasks': [{'role', 'task', 'seconds', 'changed'}]}, task names with the lab's
    name replaced by <lab>, from ansible-runner's job_events of the run (of its host, when the
    lab was built in one play with others: podpath.play.together)."""
    runs = sorted(RUNS.joinpath(lab).glob("netns-lab*/artifacts/*/job_events"), key=lambda p: p.stat().st_mtime)
    if not runs:
        return {"play_s": 0.0, "tasks": []}
    events = []
    for f in runs[-1].iterdir():
        try:
            events.append(json.loads(f.read_text()))
        except (OSError, ValueError):
            pass
    events.sort(key=lambda e: e.get("counter", 0))
    tasks = []
    for event in events:
        data = event.get("event_data", {})
        if event.get("event") in ("runner_on_ok", "runner_on_failed") and data.get("host") in ("localhost", host_name(lab)):
            name = task_title(data.get("task", "?"), lab).replace(lab, "<lab>")
            if name.startswith("Validating arguments against arg spec"):
                name = "(argument check)"
            tasks.append({"role": data.get("role") or "-", "task": name,
                          "seconds": float(data.get("duration") or 0.0),
                          "changed": bool(data.get("res", {}).get("changed"))})
    stamps = [datetime.fromisoformat(e["created"]) for e in events
              if e.get("event") in ("playbook_on_start", "playbook_on_stats") and e.get("created")]
    play_s = (max(stamps) - min(stamps)).total_seconds() if len(stamps) == 2 else 0.0
    return {"play_s": play_s, "tasks": tasks}


# -- every lab this process makes comes down again ----------------------------------------------
@dataclass
class Labs:
    """Labs made by this benchmark run. Use as a context manager: on the way out (also on an
    error, Ctrl-C or SIGTERM) every lab still up is taken down and checked gone."""
    up: list[str] = field(default_factory=list)
    _namespaces: dict[str, list[str]] = field(default_factory=dict)

    def __enter__(self) -> "Labs":
        self._old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
        return self

    def __exit__(self, *exc) -> None:
        try:
            problems = []
            for lab in list(self.up):
                try:
                    self.down(lab)
                except Exception as err:  # keep going: the others must come down too
                    problems.append(f"{lab}: {err}")
            if problems:
                print("bench: could not remove every lab:\n  " + "\n  ".join(problems), file=sys.stderr)
        finally:
            signal.signal(signal.SIGTERM, self._old_term)

    def create(self, lab: str, topology: Path | None = None) -> Timed:
        """`podpath up` a new lab (LAB must not exist yet)."""
        if (Path(labdir.RUN_ROOT) / lab).exists():
            raise BenchError(f"lab {lab} exists already: not ours, not touched")
        self.up.append(lab)  # before up: a half-made lab comes down too
        return self.again(lab, topology)

    def again(self, lab: str, topology: Path | None = None, env: dict[str, str] | None = None) -> Timed:
        argv = ["up", "--lab", lab] + (["--topology", str(topology)] if topology else [])
        result = podpath(*argv, env=env)
        self._namespaces[lab] = owned_namespaces(lab)
        return result

    def down(self, lab: str) -> Timed:
        """`podpath down`, then check that none of LAB's namespaces and not its folder is left."""
        names = set(self._namespaces.get(lab, [])) | set(owned_namespaces(lab))
        result = podpath("down", "--lab", lab)
        left = sorted(n for n in names | {n for n in _listdir(NETNS_DIR) if n.startswith(lab + "-")}
                      if (NETNS_DIR / n).exists())
        if left or (Path(labdir.RUN_ROOT) / lab).exists():
            raise BenchError(f"podpath down left parts of lab {lab}: namespaces {left[:5]}, "
                             f"folder {(Path(labdir.RUN_ROOT) / lab).exists()}")
        self.up.remove(lab)
        self._namespaces.pop(lab, None)
        return result


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")
