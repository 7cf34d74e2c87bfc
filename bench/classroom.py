"""Classroom: many reference labs on one host, one per student.

Labs are built one after another up to each checkpoint (1, 5, 10, 30 by default: the
labs of a checkpoint stay for the next one), then every lab on the host that this run
made is verified, one after another. Per checkpoint: the time of the `up`s that reached
it, the verify time per lab with all of them running, the memory of all their processes
(PSS), and the CPU they use while nobody touches them (the speakers' announcements, the
controllers' lease renewals and each node's probes of its own pods run all the time). A step that would run past the
budget stops the benchmark there and the table says what was reached.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from .labs import BenchError, Labs, idle_cpu_percent, lab_pids, load_average, new_name, pss_kib, verify
from .stats import Spread

STEP_BUDGET_S = 600  # about 10 minutes per checkpoint


@dataclass
class Checkpoint:
    labs: int
    up: list[float] = field(default_factory=list)  # the labs built for this checkpoint
    verify: list[float] = field(default_factory=list)  # every lab, with all of them up
    verified: int = 0
    failed: list[str] = field(default_factory=list)  # "lab: test id" of failing checks
    pss_kib: int = 0
    idle_cpu: float = 0.0
    load: str = ""
    down: list[float] = field(default_factory=list)
    stopped: str = ""  # why the checkpoint was not completed


def run(counts=(1, 5, 10, 30), progress=print, budget_s: float = STEP_BUDGET_S) -> list[Checkpoint]:
    points = []
    with Labs() as labs:
        made: list[str] = []
        for count in counts:
            point = Checkpoint(count)
            points.append(point)
            started = time.monotonic()
            try:
                while len(made) < count:
                    if time.monotonic() - started > budget_s:
                        raise TimeoutError(f"budget of {budget_s:.0f} s spent after {len(made)} labs were built")
                    lab = new_name("c")
                    made.append(lab)
                    point.up.append(labs.create(lab).seconds)
                for lab in made:
                    if time.monotonic() - started > budget_s:
                        raise TimeoutError(f"budget of {budget_s:.0f} s spent after {point.verified} of "
                                           f"{len(made)} labs were verified")
                    checked = verify(lab)
                    point.verify.append(checked.seconds)
                    point.failed += [f"{lab}: {test}" for test in checked.failed]
                    point.verified += not checked.failed
            except (TimeoutError, BenchError) as why:
                point.stopped = str(why).splitlines()[0]
            pids = [pid for lab in made for pid in lab_pids(lab)]
            point.pss_kib = pss_kib(pids)
            point.idle_cpu = idle_cpu_percent(pids)
            point.load = load_average()
            progress(f"  classroom {len(made)} labs: up median {Spread.of(point.up).median:.1f} s, "
                     f"{point.verified} verified (median {Spread.of(point.verify).median:.1f} s), "
                     f"{point.pss_kib / 1024:.0f} MiB, idle CPU {point.idle_cpu:.0f} %, load {point.load}"
                     + (f"; stopped: {point.stopped}" if point.stopped else ""))
            if point.stopped:
                break
        # take them down here, timed (Labs would do it untimed on an error)
        for lab in list(made):
            points[-1].down.append(labs.down(lab).seconds)
    return points


def table(points: list[Checkpoint]) -> str:
    lines = ["| labs | new labs built | up s per lab (median, min, max) | verified | verify s per lab "
             "(median, min, max) | PSS of all labs MiB | PSS per lab MiB | idle CPU of all labs (% of one core) "
             "| load average after |",
             "|---:|---:|---|---:|---|---:|---:|---:|---|"]
    for p in points:
        up, ver = Spread.of(p.up), Spread.of(p.verify)
        built = len(p.up)
        lines.append(f"| {p.labs} | {built} | {up.median:.1f} ({up.low:.1f}–{up.high:.1f}) "
                     f"| {p.verified}/{p.labs} | {ver.median:.1f} ({ver.low:.1f}–{ver.high:.1f}) "
                     f"| {p.pss_kib / 1024:.0f} | {p.pss_kib / 1024 / max(p.labs, 1):.1f} | {p.idle_cpu:.0f} "
                     f"| {p.load} |")
    return "\n".join(lines)


def goal(points: list[Checkpoint], target: int = 30) -> tuple[str, str, str]:
    best = max((p for p in points if p.verified == p.labs and not p.stopped), key=lambda p: p.labs, default=None)
    reached = best.labs if best else 0
    stopped = next((p.stopped for p in points if p.stopped), "")
    measured = f"{reached} labs built and all verified" + (f" (stopped: {stopped})" if stopped else "")
    if max(p.labs for p in points) < target:
        return (f"{target} labs on 2 cores, all verified", measured, "not measured at this size (--quick)")
    return (f"{target} labs on 2 cores, all verified", measured, "met" if reached >= target else "**not met**")
