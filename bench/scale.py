"""Scale: the reference lab plus N idle pods per node (a pause process and the pod's network).

Each size uses a copy of the reference topology with `idle_pods_per_node: N` and a /22 pod
subnet per node, and runs, on a new lab each time: a cold `podpath up --topology`, the
verifier (which has one test per pod) and `podpath down`. Memory is the sum of the PSS of
every process of the lab (pause, nginx and its workers, the container wrappers, the
Python daemons); the drop of the host's MemAvailable also counts the kernel's side
(namespaces, veths, iptables), but other users of the machine move it too.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from podpath.model.plan import build
from podpath.model.topology import load

from .labs import (Labs, arp_table_fulls, checks_passed, lab_pids, last_run_tasks, mem_available_kib, new_name,
                   pss_kib, scale_topology, verify)
from .stats import Spread, verdict

GOAL_UP_S = 10.0  # 1,000 pods up in at most 10 s
SIZES = (10, 100, 331)  # idle pods per node; 3 nodes x 331 + the reference lab's 7 = 1,000 pods
FLAT = 1.25  # "flat": the last step's cost per added pod within 25 % of the step before


@dataclass
class Size:
    idle_per_node: int
    pods: int
    up: list[float] = field(default_factory=list)
    verify: list[float] = field(default_factory=list)
    down: list[float] = field(default_factory=list)
    checks: list[int] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # failing verifier checks, over all runs
    pss_kib: list[int] = field(default_factory=list)
    processes: list[int] = field(default_factory=list)
    host_kib: list[int] = field(default_factory=list)
    arp_full: list[int] = field(default_factory=list)  # ARP table full events during up and verify
    profiles: list[dict[str, Any]] = field(default_factory=list)


def run(sizes=SIZES, repeats: int = 3, progress=print) -> list[Size]:
    results = []
    with tempfile.TemporaryDirectory(prefix="podpath-bench-scale-") as tmp, Labs() as labs:
        for n in sizes:
            topology = scale_topology(n, Path(tmp))
            size = Size(n, len(build(load(topology), "bscale").pods))
            for i in range(repeats):
                lab = new_name("s")
                before = mem_available_kib()
                fulls = arp_table_fulls()
                up = labs.create(lab, topology)
                size.up.append(up.seconds)
                size.profiles.append(dict(last_run_tasks(lab), wall_s=up.seconds))
                pids = lab_pids(lab)
                size.processes.append(len(pids))
                size.pss_kib.append(pss_kib(pids))
                size.host_kib.append(before - mem_available_kib())
                checked = verify(lab, topology)
                size.verify.append(checked.seconds)
                size.checks.append(checks_passed(checked.stdout))
                size.failed += checked.failed
                size.arp_full.append(arp_table_fulls() - fulls)
                size.down.append(labs.down(lab).seconds)
                progress(f"  scale {n}/node ({size.pods} pods) run {i + 1}/{repeats}: up {up.seconds:.1f} s, "
                         f"verify {size.verify[-1]:.1f} s, down {size.down[-1]:.1f} s, "
                         f"{size.pss_kib[-1] / 1024:.0f} MiB in {len(pids)} processes"
                         + (f"; FAILED: {', '.join(checked.failed)}" if checked.failed else ""))
            results.append(size)
    return results


def _median(values) -> float:
    return Spread.of(list(values)).median


def table(sizes: list[Size]) -> str:
    lines = ["| idle pods per node | pods | up s (median, min, max) | ms per pod | verify s (median, min, max) "
             "| checks passed | failed (all runs) | ARP table full | down s | processes | lab PSS MiB | KiB PSS per pod | host MemAvailable drop MiB |",
             "|---:|---:|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for s in sizes:
        up, ver = Spread.of(s.up), Spread.of(s.verify)
        lines.append(f"| {s.idle_per_node} | {s.pods} | {up.median:.1f} ({up.low:.1f}–{up.high:.1f}) "
                     f"| {1000 * up.median / s.pods:.0f} | {ver.median:.1f} ({ver.low:.1f}–{ver.high:.1f}) "
                     f"| {int(_median(s.checks))} | {_failures(s.failed)} | {sum(s.arp_full)} | {_median(s.down):.1f} | {int(_median(s.processes))} "
                     f"| {_median(s.pss_kib) / 1024:.0f} | {_median(s.pss_kib) / s.pods:.0f} "
                     f"| {_median(s.host_kib) / 1024:.0f} |")
    return "\n".join(lines)


def _failures(failed: list[str]) -> str:
    """'0', or the count and the first few test ids."""
    if not failed:
        return "0"
    return f"{len(failed)}: " + ", ".join(f"`{t}`" for t in failed[:3]) + (" …" if len(failed) > 3 else "")


def growth_table(sizes: list[Size]) -> str:
    """What each added pod costs between one size and the next (differences of the medians)."""
    lines = ["| from → to (pods) | up ms per added pod | verify ms per added pod | down ms per added pod "
             "| PSS KiB per added pod |", "|---|---:|---:|---:|---:|"]
    for a, b in zip(sizes, sizes[1:]):
        d = b.pods - a.pods
        lines.append(f"| {a.pods} → {b.pods} | {1000 * (_median(b.up) - _median(a.up)) / d:.1f} "
                     f"| {1000 * (_median(b.verify) - _median(a.verify)) / d:.1f} "
                     f"| {1000 * (_median(b.down) - _median(a.down)) / d:.1f} "
                     f"| {(_median(b.pss_kib) - _median(a.pss_kib)) / d:.0f} |")
    return "\n".join(lines)


def marginal_up_ms(sizes: list[Size]) -> list[float]:
    return [1000 * (_median(b.up) - _median(a.up)) / (b.pods - a.pods) for a, b in zip(sizes, sizes[1:])]


def goals(sizes: list[Size]) -> list[tuple[str, str, str]]:
    """(goal, measured, met?) rows."""
    top = sizes[-1]
    up = _median(top.up)
    # 1,000 pods: scaled to 1,000 from the largest size run, when it is not exactly 1,000
    at_1000 = up if top.pods == 1000 else up * 1000 / top.pods
    rows = [("1,000 pods up in ≤ 10 s", f"{top.pods} pods up in {up:.1f} s" +
             ("" if top.pods == 1000 else f" (≈ {at_1000:.1f} s for 1,000 at the same rate)"),
             verdict(at_1000, GOAL_UP_S) if top.pods >= 900 else "not measured at this size (--quick)")]
    steps = marginal_up_ms(sizes)
    if len(steps) >= 2:
        flat = steps[-1] <= FLAT * steps[-2]
        rows.append(("cost per pod flat as N grows",
                     "up ms per added pod: " + " → ".join(f"{m:.1f}" for m in steps),
                     "met" if flat else "**not met**"))
    return rows


# -- the verifier at scale: how long, at which load, and where its time goes ---------------------
PROFILE_GROUPS = (  # (what, where the function's code is), the first that matches
    ("writing pytest's progress, a character per check, to its output (time in write, blocked too)",
     ("method 'write' of '_io.TextIOWrapper'",)),
    ("Python's garbage collection", ("gc.collect",)),
    ("waiting for the lab's probe processes and commands", ("subprocess.py", "selectors.py", "method 'poll'",
                                                           "_posixsubprocess", "threading.py", "method 'acquire'",
                                                           "posix.read", "posix.waitpid", "select.select")),
    ("pytest and pluggy (collection, fixtures, reports, capture)", ("_pytest/", "pluggy/", "inspect.py", "/py/")),
    ("the checks and the adapter (tests/verify, podpath)", ("tests/verify/", "podpath/")),
    ("testinfra", ("testinfra/",)),
    ("imports (reading and compiling modules)", ("importlib", "marshal", "builtins.exec", "posix.stat")),
)


@dataclass
class VerifyRun:
    seconds: float
    checks: int
    failed: list[str]
    load: str  # the load average (1, 5, 15 min) when it started
    probes_s: float  # the lab's probes alone: the lab's files and every node, in parallel, as the verifier starts them
    cpu_s: float = 0.0  # user + system time of the verifier and every process it started


def time_probes(lab: str, topology: Path) -> float:
    """The probe processes the verifier starts, alone: the lab's and one per node, in parallel."""
    import time as _time

    from podpath.evidence.probe import NetnsLab

    netns = NetnsLab(lab, load(topology))
    start = _time.perf_counter()
    netns.prefetch()
    for node in netns.plan.nodes:
        netns.node_facts(node.name)
    netns.lab_facts()
    netns.forget_batches()
    return _time.perf_counter() - start


def verify_runs(lab: str, topology: Path, repeats: int) -> list[VerifyRun]:
    from .labs import load_average

    import resource

    def cpu() -> float:
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        return used.ru_utime + used.ru_stime

    runs = []
    for _ in range(repeats):
        load_now = load_average()
        probes = time_probes(lab, topology)
        before = cpu()
        checked = verify(lab, topology)
        runs.append(VerifyRun(checked.seconds, checks_passed(checked.stdout), checked.failed, load_now, probes,
                              cpu() - before))
    return runs


def verify_profile(lab: str, topology: Path, folder: Path) -> list[tuple[str, float]]:
    """One verifier run under cProfile: (group, seconds of its functions' own time), largest
    first. cProfile slows Python code down, so read the shares, not the seconds."""
    import argparse
    import pstats
    import subprocess

    from podpath import cli

    out = folder / "verify.prof"
    argv = cli.verify_argv(argparse.Namespace(lab=lab, junitxml=None, disruptive=False), ["--topology", str(topology)])
    argv = [argv[0], "-m", "cProfile", "-o", str(out)] + argv[1:]
    subprocess.run(argv, cwd=cli.ROOT, capture_output=True, text=True, timeout=900)
    stats = pstats.Stats(str(out)).stats
    totals: dict[str, float] = {}
    for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in stats.items():
        where = f"{filename}:{name}" if filename != "~" else name
        group = next((g for g, marks in PROFILE_GROUPS if any(m in where for m in marks)), "the rest (Python, json, ...)")
        totals[group] = totals.get(group, 0.0) + tottime
    return sorted(totals.items(), key=lambda kv: -kv[1])


def verify_table(rows: list[tuple[int, list[VerifyRun]]]) -> str:
    lines = ["| pods | verify s (median, min, max) | CPU s (median) | checks passed | failed (all runs) "
             "| the lab's probes alone s (median) | load average at each start |", "|---:|---|---:|---:|---|---:|---|"]
    for pods, runs in rows:
        s = Spread.of([r.seconds for r in runs])
        failed = [f for r in runs for f in r.failed]
        lines.append(f"| {pods} | {s.median:.1f} ({s.low:.1f}–{s.high:.1f}) | {_median(r.cpu_s for r in runs):.1f} "
                     f"| {int(_median(r.checks for r in runs))} "
                     f"| {_failures(failed)} | {_median(r.probes_s for r in runs):.2f} "
                     f"| {'; '.join(r.load for r in runs)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """python -m bench.scale [--idle 0,331] [--repeats 3] [--profile]: the verifier at each
    size, on one lab per size built once; prints the tables for docs/performance.md."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.scale")
    parser.add_argument("--idle", default="0,331", help="idle pods per node, comma-separated (0: the reference lab)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="also one cProfile'd run of the largest size")
    args = parser.parse_args(argv)
    rows, profile = [], None
    with tempfile.TemporaryDirectory(prefix="podpath-bench-verify-") as tmp, Labs() as labs:
        for n in (int(x) for x in args.idle.split(",")):
            topology = scale_topology(n, Path(tmp))
            lab = new_name("v")
            labs.create(lab, topology)
            pods = len(build(load(topology), lab).pods)
            rows.append((pods, verify_runs(lab, topology, args.repeats)))
            print(f"  verify {pods} pods: " + ", ".join(f"{r.seconds:.1f} s (load {r.load})" for r in rows[-1][1]),
                  flush=True)
            if args.profile and n == max(int(x) for x in args.idle.split(",")):
                profile = (pods, verify_profile(lab, topology, Path(tmp)))
            labs.down(lab)
    print(verify_table(rows))
    if profile:
        total = sum(s for _, s in profile[1])
        print(f"\nWhere one verifier run of {profile[0]} pods spends its time (cProfile, own time of each "
              "function, grouped):\n\n| part | s | % |\n|---|---:|---:|")
        for group, seconds in profile[1]:
            print(f"| {group} | {seconds:.1f} | {100 * seconds / total:.0f} |")


if __name__ == "__main__":
    main()
