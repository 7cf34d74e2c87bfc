"""Classroom: many reference labs on one host, one per student.

Labs are built one after another up to each checkpoint (1, 5, 10, 30, 100 by default: the
labs of a checkpoint stay for the next one), then every lab on the host that this run
made is verified, one after another. Per checkpoint: the time of the `up`s that reached
it, the verify time per lab with all of them running, the memory of all their processes
(PSS), and the CPU they use while nobody touches them (the speakers' announcements, the
controllers' lease renewals and each node's probes of its own pods run all the time). A step that would run past the
budget stops the benchmark there and the table says what was reached.

`rush` is the other way a class starts: every student types `podpath up` at the same moment.
It starts COUNT `up`s at once, then the verifier of every lab, all at once too, and says how
long until all were up and verified, whether one failed, and whether one waited without
saying so; `rush_profile` tells where the time went.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .labs import (BenchError, Labs, arp_table_fulls, idle_cpu_percent, lab_pids, load_average, mem_available_kib,
                   new_name, pss_kib, verify)
from .stats import Spread

COUNTS = (1, 5, 10, 30, 100)
STEP_BUDGET_S = 600  # about 10 minutes per checkpoint, and BUDGET_PER_LAB_S more for each lab it has
BUDGET_PER_LAB_S = 12


@dataclass
class Checkpoint:
    labs: int
    up: list[float] = field(default_factory=list)  # the labs built for this checkpoint
    verify: list[float] = field(default_factory=list)  # every lab, with all of them up
    verified: int = 0
    failed: list[str] = field(default_factory=list)  # "lab: test id" of failing checks
    pss_kib: int = 0
    idle_cpu: float = 0.0
    mem_drop_kib: int = 0  # the host's MemAvailable since before the first lab
    arp_fulls: int = 0  # the kernel found its ARP table full, since before the first lab
    load: str = ""
    down: list[float] = field(default_factory=list)
    stopped: str = ""  # why the checkpoint was not completed
    present: int = 0  # labs up (or half built) when memory and CPU were read: LABS, or fewer when stopped


BUILD_PARALLEL = 8  # `podpath up`s at a time when a checkpoint's labs are built
DOWN_PARALLEL = 4


def run(counts=COUNTS, progress=print, budget_s: float = STEP_BUDGET_S, parallel: int = 1,
        verifiers: int = 1, topology: Path | None = None) -> list[Checkpoint]:
    """Build labs up to each of COUNTS (PARALLEL `up`s at a time) from TOPOLOGY (the reference
    one by default), verify every lab (VERIFIERS at a time), read their memory and idle CPU;
    take them down at the end (DOWN_PARALLEL at a time)."""
    from podpath import cli
    import argparse
    import re

    from .labs import PODPATH

    points = []
    mem0, arp0 = mem_available_kib(), arp_table_fulls()
    with Labs() as labs:
        made: list[str] = []
        for count in counts:
            point = Checkpoint(count)
            points.append(point)
            started = time.monotonic()
            budget = budget_s + BUDGET_PER_LAB_S * count
            try:
                while len(made) < count:
                    if time.monotonic() - started > budget:
                        raise TimeoutError(f"budget of {budget:.0f} s spent after {len(made)} labs were built")
                    if parallel <= 1:
                        lab = new_name("c")
                        made.append(lab)
                        point.up.append(labs.create(lab, topology).seconds)
                        continue
                    batch = [new_name("c") for _ in range(min(parallel, count - len(made)))]
                    made += batch
                    labs.up.extend(batch)  # every one comes down, whatever happens
                    given = ["--topology", str(topology)] if topology else []
                    ups = _timed_all({lab: [str(PODPATH), "up", "--lab", lab, "-q", *given] for lab in batch}, budget)
                    point.up += [ups[lab][0] for lab in batch]
                    bad = [f"{lab}: exit {ups[lab][1]}: {' / '.join(ups[lab][2].strip().splitlines()[-4:])[-600:]}"
                           for lab in batch if ups[lab][1]]
                    if bad:
                        raise BenchError("podpath up failed: " + "; ".join(bad))
                if verifiers <= 1:
                    for lab in made:
                        if time.monotonic() - started > budget:
                            raise TimeoutError(f"budget of {budget:.0f} s spent after {point.verified} of "
                                               f"{len(made)} labs were verified")
                        checked = verify(lab, topology)
                        point.verify.append(checked.seconds)
                        point.failed += [f"{lab}: {test}" for test in checked.failed]
                        point.verified += not checked.failed
                else:
                    extra = ["-rf"] + (["--topology", str(topology)] if topology else [])
                    argv = {lab: cli.verify_argv(argparse.Namespace(lab=lab, junitxml=None, disruptive=False), extra)
                            for lab in made}
                    left = max(60.0, budget - (time.monotonic() - started))
                    checks = _timed_all(argv, left, cwd=cli.ROOT, parallel=verifiers)
                    for lab in made:
                        seconds, rc, out = checks[lab]
                        failed = re.findall(r"^FAILED \S+::(\S+)", out, re.MULTILINE)
                        point.verify.append(seconds)
                        point.failed += [f"{lab}: {test}" for test in failed]
                        if rc != 0 and not failed:
                            point.failed.append(f"{lab}: the verifier did not finish (exit {rc})")
                        point.verified += rc == 0
            except (TimeoutError, BenchError) as why:
                point.stopped = str(why).splitlines()[0]
            point.present = len(made)
            pids = [pid for lab in made for pid in lab_pids(lab)]
            point.pss_kib = pss_kib(pids)
            point.idle_cpu = idle_cpu_percent(pids)
            point.mem_drop_kib = mem0 - mem_available_kib()
            point.arp_fulls = arp_table_fulls() - arp0
            point.load = load_average()
            progress(f"  classroom {len(made)} labs: up median {Spread.of(point.up).median:.1f} s, "
                     f"{point.verified} verified (median {Spread.of(point.verify).median:.1f} s), "
                     f"{point.pss_kib / 1024:.0f} MiB, idle CPU {point.idle_cpu:.0f} %, load {point.load}"
                     + (f"; stopped: {point.stopped}" if point.stopped else ""))
            if point.stopped:
                break
        # take them down here, timed (Labs would do it untimed on an error, and check each again)
        downs = _timed_all({lab: [str(PODPATH), "down", "--lab", lab, "-q"] for lab in made}, 1800,
                           parallel=DOWN_PARALLEL)
        points[-1].down = [downs[lab][0] for lab in made]
        from podpath.evidence.status import owned_namespaces
        from podpath.model import labdir

        for lab in made:
            if downs[lab][1] == 0 and not owned_namespaces(lab) and not os.path.exists(labdir.lab_dir(lab)):
                labs.up.remove(lab)  # gone: Labs has nothing left to do for it
    return points


def table(points: list[Checkpoint]) -> str:
    lines = ["| labs | new labs built | up s per lab (median, min, max) | verified | verify s per lab "
             "(median, min, max) | PSS of all labs MiB | PSS per lab MiB | host's MemAvailable drop per lab MiB "
             "| idle CPU of all labs (% of one core) | idle CPU per lab % | ARP table full | load average after |",
             "|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for p in points:
        up, ver = Spread.of(p.up), Spread.of(p.verify)
        present = max(p.present or p.labs, 1)  # per lab: of the labs there were, not of the count aimed at
        lines.append(f"| {p.labs} | {len(p.up)} | {up.median:.1f} ({up.low:.1f}–{up.high:.1f}) "
                     f"| {p.verified}/{p.labs} | {ver.median:.1f} ({ver.low:.1f}–{ver.high:.1f}) "
                     f"| {p.pss_kib / 1024:.0f} | {p.pss_kib / 1024 / present:.1f} "
                     f"| {p.mem_drop_kib / 1024 / present:.1f} | {p.idle_cpu:.0f} "
                     f"| {p.idle_cpu / present:.2f} | {p.arp_fulls} | {p.load} |")
    return "\n".join(lines)


def goal(points: list[Checkpoint], target: int = 30) -> tuple[str, str, str]:
    best = max((p for p in points if p.verified == p.labs and not p.stopped), key=lambda p: p.labs, default=None)
    reached = best.labs if best else 0
    stopped = next((p.stopped for p in points if p.stopped), "")
    measured = f"{reached} labs built and all verified" + (f" (stopped: {stopped})" if stopped else "")
    if max(p.labs for p in points) < target:
        return (f"{target} labs on 2 cores, all verified", measured, "not measured at this size (--quick)")
    return (f"{target} labs on 2 cores, all verified", measured, "met" if reached >= target else "**not met**")


# -- a class starting at the same moment ----------------------------------------------------------
WAIT_WORDS = ("wait", "queued", "locked")  # how an `up` that waits says so


@dataclass
class Start:
    lab: str
    up_s: float = 0.0
    up_rc: int | None = None
    up_out: str = ""
    verify_s: float = 0.0
    failed: list[str] = field(default_factory=list)
    verify_error: str = ""
    play_s: float = 0.0  # ansible-playbook's own wall time (its events), inside up_s
    tasks: list[dict] = field(default_factory=list)

    @property
    def said_wait(self) -> bool:
        return any(word in self.up_out.lower() for word in WAIT_WORDS)


@dataclass
class Rush:
    """COUNT `podpath up`s started at one moment, then every lab verified, all at once too."""
    count: int
    starts: list[Start] = field(default_factory=list)
    up_wall: float = 0.0  # from the first start to the last up's exit
    verify_wall: float = 0.0
    load_before: str = ""
    load_after: str = ""
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds of the ups' process tree, by program
    verifiers: int = 0  # verifiers run at a time
    arp_fulls: int = 0  # how often the kernel found the host's neighbour table full during the run

    @property
    def total(self) -> float:
        return self.up_wall + self.verify_wall

    @property
    def verified(self) -> int:
        return sum(1 for s in self.starts if s.up_rc == 0 and not s.failed and not s.verify_error)


def _timed_all(argvs: dict[str, list[str]], timeout: float, cwd=None,
               parallel: int | None = None) -> dict[str, tuple[float, int, str]]:
    """Run every argv, PARALLEL at a time (all at once by default); {key: (its own seconds, exit
    code, stdout+stderr)} once all have ended. One still running at TIMEOUT after the first
    start is killed."""
    import subprocess
    import tempfile

    first = time.perf_counter()
    waiting = list(argvs)
    procs: dict[str, tuple[subprocess.Popen, float, object]] = {}
    result: dict[str, tuple[float, int, str]] = {}
    while waiting or procs:
        while waiting and (parallel is None or len(procs) < parallel):
            key = waiting.pop(0)
            out = tempfile.TemporaryFile()
            procs[key] = (subprocess.Popen(argvs[key], stdout=out, stderr=subprocess.STDOUT, cwd=cwd),
                          time.perf_counter(), out)
        late = time.perf_counter() - first > timeout
        for key, (proc, began, out) in list(procs.items()):
            if proc.poll() is None and late:
                proc.kill()
                proc.wait()
            if proc.poll() is not None:
                seconds = time.perf_counter() - began
                out.seek(0)
                result[key] = (seconds, proc.returncode, out.read().decode(errors="replace"))
                out.close()
                del procs[key]
        time.sleep(0.02)
    return result


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def rush(count: int = 30, timeout: float = 600, progress=print) -> Rush:
    """COUNT new labs, `podpath up` of each started at the same moment, then the instructor's
    `podpath report` of them all (it verifies the labs in shared runs of the verifier, two per
    CPU at a time). The labs are taken down afterwards (not timed)."""
    from podpath import cli
    import argparse

    from .labs import PODPATH, last_run_tasks

    result = Rush(count, load_before=load_average())
    arp0 = arp_table_fulls()
    with Labs() as labs:
        names = [new_name("k") for _ in range(count)]
        labs.up.extend(names)  # every one comes down, whatever happens
        cpu0 = _children_cpu()
        ups = _timed_all({lab: [str(PODPATH), "up", "--lab", lab] for lab in names}, timeout)
        result.cpu["podpath up (CLI, ansible-playbook, its workers, the modules' commands)"] = _children_cpu() - cpu0
        result.up_wall = max(s for s, _, _ in ups.values())
        for lab in names:
            seconds, rc, out = ups[lab]
            start = Start(lab, seconds, rc, out)
            run = last_run_tasks(lab)
            start.play_s, start.tasks = run["play_s"], run["tasks"]
            result.starts.append(start)
        good = [s.lab for s in result.starts if s.up_rc == 0]
        # then the instructor verifies the class: podpath report, the labs in shared runs of the
        # verifier, two per CPU at a time
        from podpath.evidence import classreport

        result.verifiers = 2 * len(os.sched_getaffinity(0))  # as podpath report runs them
        cpu0 = _children_cpu()
        with tempfile.TemporaryDirectory(prefix="podpath-rush-") as tmp:
            results = Path(tmp, "class.json")
            began = time.perf_counter()
            done = _timed_all({"report": [str(PODPATH), "report", "--labs", ",".join(good), "--json", str(results)]},
                              timeout)["report"] if good else (0.0, 0, "")
            result.verify_wall = time.perf_counter() - began
            by_lab = {r.lab: r for r in classreport.read_results([results])} if results.exists() else {}
        result.cpu["the verifier (podpath report, its pytest runs)"] = _children_cpu() - cpu0
        for start in result.starts:
            if start.lab not in good:
                continue
            start.verify_s = result.verify_wall
            lab_result = by_lab.get(start.lab)
            if lab_result is None:
                start.verify_error = f"podpath report gave no result (exit {done[1]}): {done[2].strip()[-200:]}"
            else:
                start.failed = [f"scenario {n} ({lab_result.outcome(n).failures[0][:160] if lab_result.outcome(n).failures else ''})"
                                for n in lab_result.failing]
                start.verify_error = lab_result.error or ""
        result.load_after = load_average()
        result.arp_fulls = arp_table_fulls() - arp0
        progress(f"  {count} ups at once: all ended after {result.up_wall:.1f} s "
                 f"({sum(1 for s in result.starts if s.up_rc == 0)} up), verified after {result.verify_wall:.1f} s "
                 f"more ({result.verified} verified); load {result.load_after}")
    return result


def rush_table(r: Rush) -> str:
    ups = Spread.of([s.up_s for s in r.starts])
    plays = Spread.of([s.play_s for s in r.starts if s.play_s])
    failed_up = [s for s in r.starts if s.up_rc != 0]
    waited = sum(1 for s in r.starts if s.said_wait)
    lines = ["| labs | all up after s | up s per lab (median, min–max) | its playbook s (median, min–max) "
             f"| all verified after s (podpath report, {r.verifiers} verifier runs at a time) "
             "| up and verified | total s | up failed | up said it waited | ARP table full | load average before → after |",
             "|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---|"]
    lines.append(f"| {r.count} | {r.up_wall:.1f} | {ups.median:.1f} ({ups.low:.1f}–{ups.high:.1f}) "
                 f"| {plays.median:.1f} ({plays.low:.1f}–{plays.high:.1f}) | {r.verify_wall:.1f} "
                 f"| {r.verified}/{r.count} | {r.total:.1f} "
                 f"| {len(failed_up)} | {waited} | {r.arp_fulls} | {r.load_before} → {r.load_after} |")
    notes = [f"- up of {s.lab} failed (exit {s.up_rc}): {s.up_out.strip().splitlines()[-1][:200] if s.up_out.strip() else ''}"
             for s in failed_up]
    notes += [f"- verify of {s.lab}: {', '.join(s.failed) or s.verify_error}" for s in r.starts
              if s.failed or s.verify_error]
    return "\n".join(lines + ([""] + notes if notes else []))


def rush_profile(r: Rush, top: int = 8) -> str:
    """Where the ups' time went: the CLI and Ansible's start outside the play, the play's tasks
    (median over the labs), and the CPU the ups and the verifiers used."""
    from collections import defaultdict

    per_task: dict[str, list[float]] = defaultdict(list)
    for s in r.starts:
        for t in s.tasks:
            per_task[f"{t['role']}: {t['task']}"].append(t["seconds"])
    rows = sorted(per_task.items(), key=lambda kv: -Spread.of(kv[1]).median)[:top]
    outside = Spread.of([s.up_s - s.play_s for s in r.starts if s.play_s])
    tasks_sum = Spread.of([sum(t["seconds"] for t in s.tasks) for s in r.starts if s.tasks])
    lines = ["| where | median s per lab | max s |", "|---|---:|---:|",
             f"| outside the play (CLI start, ansible-runner, ansible-playbook's start and end) "
             f"| {outside.median:.1f} | {outside.high:.1f} |",
             f"| the play's tasks, summed | {tasks_sum.median:.1f} | {tasks_sum.high:.1f} |"]
    lines += [f"| task {name} | {Spread.of(v).median:.2f} | {max(v):.2f} |" for name, v in rows]
    cpu = "; ".join(f"{k}: {v:.0f} CPU s ({v / max(r.count, 1):.1f} per lab)" for k, v in r.cpu.items())
    return "\n".join(lines) + f"\n\nCPU used: {cpu}; the 2 cores give {2 * r.total:.0f} CPU s in the {r.total:.0f} s."


RUSH_GOAL_S = 60.0


def rush_goal(r: Rush) -> tuple[str, str, str]:
    failed = sum(1 for s in r.starts if s.up_rc != 0)
    measured = (f"{r.verified}/{r.count} up and verified in {r.total:.0f} s (all up after {r.up_wall:.0f} s), "
                f"{failed} up failed")
    goal = f"{r.count} `podpath up` at once: all up and verified ≤ {RUSH_GOAL_S:g} s, none failed"
    if r.count < 30:
        return goal, measured, "not measured at this size (--quick)"
    met = r.verified == r.count and failed == 0 and r.total <= RUSH_GOAL_S
    return goal, measured, "met" if met else "**not met**"
