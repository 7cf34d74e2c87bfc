"""The reference lab's lifecycle, and where the time of its `up` goes.

Each run makes a new lab and times, as a user types them: a cold `podpath up` (no lab), a
second `podpath up` (which must report 0 changed tasks), `podpath verify` (the
non-disruptive scenarios) and `podpath down`. The per-task times come from the same runs,
read from the runs' events, so profiling costs no extra run.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from .labs import BenchError, Labs, checks_passed, lab_pids, last_run_tasks, new_name, pss_kib, verify
from .stats import Spread, verdict

# The project's speed goals on a 2-core machine, in seconds.
GOALS = {"cold up": 5.0, "second up": 2.0, "verify": 5.0, "down": 2.0}


@dataclass
class Lifecycle:
    times: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    changed: list[int] = field(default_factory=list)  # the second up's changed counts
    checks: list[int] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # failing verifier checks, over all runs
    pss_kib: list[int] = field(default_factory=list)
    profiles: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))


def run(repeats: int = 3, progress=print) -> Lifecycle:
    result = Lifecycle()
    with Labs() as labs:
        for i in range(repeats):
            lab = new_name("l")
            cold = labs.create(lab)
            result.times["cold up"].append(cold.seconds)
            result.profiles["cold"].append(dict(last_run_tasks(lab), wall_s=cold.seconds))
            warm = labs.again(lab)
            if warm.changed != 0:
                raise BenchError(f"the second podpath up of {lab} reported {warm.changed} changed tasks, not 0")
            result.changed.append(warm.changed)
            result.times["second up"].append(warm.seconds)
            result.profiles["warm"].append(dict(last_run_tasks(lab), wall_s=warm.seconds))
            result.pss_kib.append(pss_kib(lab_pids(lab)))
            checked = verify(lab)
            result.times["verify"].append(checked.seconds)
            result.checks.append(checks_passed(checked.stdout))
            result.failed += checked.failed
            result.times["down"].append(labs.down(lab).seconds)
            progress(f"  lifecycle run {i + 1}/{repeats}: " + ", ".join(
                f"{k} {v[-1]:.2f} s" for k, v in result.times.items()))
    return result


def table(result: Lifecycle) -> str:
    lines = ["| step | median s | min s | max s | goal | |", "|---|---:|---:|---:|---:|---|"]
    for step, goal in GOALS.items():
        spread = Spread.of(result.times[step])
        lines.append(f"| `podpath {step.split()[-1]}`{' (cold)' if step == 'cold up' else ''}"
                     f"{' (again)' if step == 'second up' else ''} | {spread.cells()} | ≤ {goal:g} s "
                     f"| {verdict(spread.median, goal)} |")
    return "\n".join(lines)


def facts(result: Lifecycle) -> str:
    runs = len(result.times["cold up"])
    changed = ", ".join(str(c) for c in result.changed)
    checks = sorted(set(result.checks))
    pss = Spread.of([k / 1024 for k in result.pss_kib])
    return (f"{runs} runs, each on a new lab. The second `up` reported changed={changed} "
            f"(podpath's own count, from Ansible's stats). The verifier passed "
            f"{'/'.join(map(str, checks))} checks each run"
            f"{'; failed: ' + ', '.join(result.failed) if result.failed else ''}. All of the lab's processes together: "
            f"{pss.median:.1f} MiB PSS (min {pss.low:.1f}, max {pss.high:.1f}).")


# -- where the time goes ----------------------------------------------------------------------
STARTUP = "(before and after the play: the CLI, ansible-runner and ansible-playbook starting and ending)"
BETWEEN = "(inside the play, between tasks: Ansible's own work)"


def breakdown(profiles: list[dict[str, Any]]) -> dict[tuple[str, str], Spread]:
    """(role, task) -> spread of its seconds over the runs, plus the two overhead rows."""
    seconds: dict[tuple[str, str], list[float]] = defaultdict(list)
    for profile in profiles:
        for task in profile["tasks"]:
            seconds[(task["role"], task["task"])].append(task["seconds"])
        in_tasks = sum(t["seconds"] for t in profile["tasks"])
        seconds[("-", BETWEEN)].append(max(profile["play_s"] - in_tasks, 0.0))
        seconds[("-", STARTUP)].append(max(profile["wall_s"] - profile["play_s"], 0.0))
        seconds[("-", "**total (wall time of `podpath up`)**")].append(profile["wall_s"])
    return {key: Spread.of(values) for key, values in seconds.items()}


def profile_table(columns: dict[str, list[dict[str, Any]]]) -> str:
    """One row per task, one column (median s and share of the total) per kind of run."""
    spreads = {name: breakdown(profiles) for name, profiles in columns.items() if profiles}
    keys: list[tuple[str, str]] = []
    for spread in spreads.values():
        keys += [k for k in spread if k not in keys]
    keys.sort(key=lambda k: (k[0] == "-", k[1].startswith("**")))  # tasks in play order, overheads last
    header = "| role | task | " + " | ".join(f"{name} s | {name} %" for name in spreads) + " |"
    lines = [header, "|---|---|" + "---:|---:|" * len(spreads)]
    for key in keys:
        cells = []
        for spread in spreads.values():
            total = spread[("-", "**total (wall time of `podpath up`)**")].median
            s = spread.get(key)
            cells.append(f"{s.median:.2f} | {100 * s.median / total:.0f}" if s else "- | -")
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def biggest(columns: dict[str, list[dict[str, Any]]], top: int = 3) -> str:
    parts = []
    for name, profiles in columns.items():
        if not profiles:
            continue
        spread = breakdown(profiles)
        ranked = sorted(((s.median, k) for k, s in spread.items() if not k[1].startswith("**")), reverse=True)
        parts.append(f"{name}: " + "; ".join(f"{k[1]} {m:.2f} s" for m, k in ranked[:top]))
    return "Biggest parts (median) — " + " — ".join(parts) + "."


# -- the floor: what Ansible costs before any of the lab's work -------------------------------------
FLOOR_PLAYBOOK = """\
- name: Four tasks that do nothing
  hosts: localhost
  gather_facts: false
  tasks:
""" + "".join(f"    - name: Ping {i}\n      ansible.builtin.ping:\n" for i in range(1, 5))


def floor(repeats: int = 3) -> dict[str, Spread]:
    """Seconds of `ansible-playbook --version`, and per task of a playbook of four pings (the same
    ansible.cfg and inventory as the lab's): the least any playbook and any module call costs."""
    import os
    import subprocess
    import sys
    import tempfile
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    ansible = Path(sys.executable).parent / "ansible-playbook"
    env = dict(os.environ, ANSIBLE_CONFIG=str(root / "ansible.cfg"))
    start_s, per_task_s = [], []
    with tempfile.TemporaryDirectory(prefix="podpath-bench-floor-") as tmp:
        playbook = Path(tmp) / "ping.yml"
        playbook.write_text(FLOOR_PLAYBOOK)
        for _ in range(repeats):
            t = time.perf_counter()
            subprocess.run([str(ansible), "--version"], capture_output=True, check=True, env=env)
            start_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            subprocess.run([str(ansible), str(playbook)], capture_output=True, check=True, env=env, cwd=root)
            per_task_s.append((time.perf_counter() - t - start_s[-1]) / 4)
    return {"start": Spread.of(start_s), "task": Spread.of(per_task_s)}
