"""podpath's benchmarks in one run: lifecycle, where `up`'s time goes, scale, classroom, pod wiring, load, soak.

    python -m bench                 # everything (make bench), tables into docs/performance.md
    python -m bench --quick         # one run each at small sizes: a fast check, writes nothing
    python -m bench --only scale,classroom [--repeats 5] [--no-write]

Every lab is a new one named b<letter><6 random>, taken down again at the end (also on an
error or Ctrl-C). Run it as root; other work on the machine shows in the load average,
which is printed with every part.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

from . import classroom, fleet, idle, lifecycle, load, scale, soak, wiring
from .labs import classroom_topology, load_average, neigh_gc_thresh3
from .stats import Spread, verdict

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "performance.md"
PARTS = ("lifecycle", "scale", "classroom", "wiring", "load", "soak")  # the time profile comes with lifecycle and scale
# Parts that run only when asked (--only): fleet needs an sshd of its own and builds 30 labs twice.
EXTRA_PARTS = ("fleet",)

H_RUN = "## How to run, and the machine"
H_GOALS = "## Goals"
H_LIFECYCLE = "## Reference lab: up, up again, verify, down"
H_IDLE = "## Reference lab at rest: idle CPU, the LAN, a killed backend"
H_PROFILE = "## Where the time of `podpath up` goes"
H_SCALE = "## Scale: idle pods per node"
H_CLASSROOM = "## Classroom: many labs on one host"
# Hand-written from `python -m bench.scale` runs (the verifier alone, with its profile): kept in place.
H_VERIFIER = "## The verifier at scale"


def machine() -> dict[str, str]:
    box = wiring.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                box["memory"] = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    box["ansible-runner"] = version("ansible-runner")
    box["nproc"] = str(len(os.sched_getaffinity(0)))
    return box


def describe(box: dict[str, str]) -> str:
    return (f"{box['nproc']} CPUs ({box['cpu']}), {box.get('memory', '?')} memory, kernel {box['kernel']}, "
            f"{box['os']}; Python {box['python']}, ansible-core {box['ansible-core']}, "
            f"ansible-runner {box['ansible-runner']}, pyroute2 {box['pyroute2']}")


# -- docs/performance.md: each part owns one section -----------------------------------------------
ORDER = [H_RUN, H_GOALS, H_LIFECYCLE, H_IDLE, H_PROFILE, H_SCALE, H_VERIFIER, H_CLASSROOM, wiring.HEADING, load.HEADING,
         soak.HEADING, fleet.HEADING]


def split_sections(text: str) -> tuple[str, dict[str, str]]:
    """(what comes before the first '## ', {heading: its section, heading line included})."""
    head, _, _ = text.partition("\n## ")
    sections = {}
    for chunk in text[len(head):].split("\n## ")[1:]:
        heading = "## " + chunk.split("\n", 1)[0]
        sections[heading] = ("## " + chunk).rstrip("\n") + "\n"
    return head.rstrip("\n") + "\n", sections


def write_sections(new: list[tuple[str, str]], path: Path = DOCS) -> None:
    """Replace our sections (others, such as bench.wiring's, stay as they are), in ORDER."""
    head, sections = split_sections(path.read_text() if path.exists() else "# Performance\n")
    sections.update({heading: body.rstrip("\n") + "\n" for heading, body in new})
    ordered = [h for h in ORDER if h in sections] + [h for h in sections if h not in ORDER]
    path.write_text(head + "".join("\n" + sections[h] for h in ordered))


# -- the Goals table: rows of the parts that ran are replaced, the others' rows are kept -------------
# Each row's first cell ends with a hidden mark naming its part, and says which run it came from.
GOAL_MARK = "<!-- goal:{part} -->"
_MARK = re.compile(r"\s*<!-- goal:([\w-]+) -->\s*")
_RUN_NOTE = re.compile(r"\brun (?:of|before) (?:\d{4}-\d{2}-\d{2} )?\d{1,2}:\d{2} UTC")
_OLD_HEADER_WHEN = re.compile(r"against the latest run \((\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC)")
# Rows written before the mark existed: the part is known by how the goal starts.
_OLD_GOAL_STARTS = {
    "lifecycle": re.compile(r"reference lab:|second up reports changed"),
    "scale": re.compile(r"[\d,]+ pods up in|cost per pod"),
    "classroom": re.compile(r"\d+ labs on"),
    "wiring": re.compile(r"pod wiring"),
}

Row = tuple[str, str, str]


def goal_part(first_cell: str) -> str | None:
    """The part a Goals row belongs to, from its mark or (rows of the old format) its goal's start."""
    mark = _MARK.search(first_cell)
    if mark:
        return mark.group(1)
    goal = first_cell.strip()
    return next((part for part, start in _OLD_GOAL_STARTS.items() if start.match(goal)), None)


def goal_row(part: str, goal: str, measured: str, met: str, when: str) -> str:
    """A row measured by the run of WHEN."""
    return f"| {goal} ({part} run of {when}) {GOAL_MARK.format(part=part)} | {measured} | {met} |"


def kept_goal_rows(section: str | None, when: str) -> list[tuple[str | None, str]]:
    """(part or None, row line) of each row of an existing Goals SECTION, in its order.

    Rows with a mark come back unchanged. Rows of the old format get their part's mark, and
    a note of the run they came from when they have none: the old table's run, from its
    header, or else "run before WHEN" (this run)."""
    if not section:
        return []
    table_at = section.find("\n|")
    old_when = _OLD_HEADER_WHEN.search(section[:table_at] if table_at >= 0 else section)
    rows = []
    for line in section.splitlines():
        line = line.strip()
        if not (line.startswith("|") and line.endswith("|")) or line.count("|") < 3:
            continue
        first, rest = line[1:].split("|", 1)
        if first.strip() == "goal" or not first.strip(" -:"):  # the header and the |---| line
            continue
        part = goal_part(first)
        if part is None or _MARK.search(first):
            rows.append((part, line))
            continue
        goal = first.strip()
        if not _RUN_NOTE.search(goal):
            goal += f" ({part} run of {old_when.group(1)})" if old_when else f" ({part} run before {when})"
        rows.append((part, f"| {goal} {GOAL_MARK.format(part=part)} |{rest}"))
    return rows


def goals_section(rows: dict[str, list[Row]], when: str, box: dict[str, str], old: str | None = None) -> str:
    """The Goals section: ROWS, {part that ran: its (goal, measured, met?) rows}, measured by the run of WHEN.

    The rows of the parts that did not run are kept from OLD, the current Goals section, as
    they are (with the run they came from). Rows are in the order of PARTS, a part's rows in
    their own order; rows whose part is unknown come last, kept on a partial run only (a run of
    every part rebuilds the table)."""
    kept = [] if set(PARTS) <= set(rows) else kept_goal_rows(old, when)
    by_part: dict[str | None, list[str]] = {}
    for part, line in kept:
        if part not in rows:
            by_part.setdefault(part if part in PARTS else None, []).append(line)
    for part, part_rows in rows.items():
        by_part[part] = [goal_row(part, *row, when) for row in part_rows]
    lines = [H_GOALS, "",
             "The project's speed goals, each against the latest run of its part (the goal says which run;",
             f"last update {when}, {box['nproc']} CPUs).",
             "", "| goal | measured (median) | |", "|---|---|---|"]
    for part in [*PARTS, *(p for p in by_part if p not in PARTS)]:
        lines += by_part.get(part, [])
    return "\n".join(lines) + "\n"


def current_section(heading: str, path: Path = DOCS) -> str | None:
    """The section under HEADING of PATH as it is now, or None."""
    return split_sections(path.read_text())[1].get(heading) if path.exists() else None


def kept_loads(old: str | None, ran: list[str]) -> dict[str, str]:
    """The load lines of OLD (the run section as it is) for the parts that did not run this
    time, each marked with the run it comes from, so that a partial run does not drop them."""
    if not old:
        return {}
    when = re.search(r"^Last run: ([^,]+),", old, re.M)
    kept = {}
    for part, load in re.findall(r"^- (\w+): (.+)$", old, re.M):
        if part in PARTS and part not in ran:
            kept[part] = load if "(run of " in load or not when else f"{load} (run of {when.group(1)})"
    return kept


def run_section(box: dict[str, str], when: str, loads: dict[str, str], minutes: float, old: str | None = None) -> str:
    """The section on how to run and the machine. LOADS: this run's load average per part and
    at its end; on a partial run, the other parts' lines are kept from OLD, with their run."""
    ran = [part for part in PARTS if part in loads]
    merged = {**kept_loads(old, ran), **loads}
    order = [*PARTS, "end"]
    load_lines = "\n".join(f"- {part}: {merged[part]}" for part in order if part in merged)
    which = "" if len(ran) == len(PARTS) else f" ({', '.join(ran)} only; the other parts are from earlier runs)"
    return f"""{H_RUN}

```sh
make bench                                   # everything below (python -m bench)
.venv/bin/python -m bench --quick            # one run each at small sizes, a quick check; writes nothing
.venv/bin/python -m bench --only lifecycle   # one part: lifecycle (with the time profile and the lab at rest), scale, classroom, wiring, load, soak
.venv/bin/python -m bench.wiring --profile   # the wiring part alone, with a cProfile of the module
```

As root, from the project folder, after `make lab` or `make deps venv pause`. Each run
builds labs of its own (named `b` + a letter + 6 random characters) and takes every one
down again, also after an error; the lab `podpath` and other labs are never touched.
Times are wall times of the commands a user types (`podpath up`, `podpath verify`,
`podpath down`), so they include the CLI's and Ansible's start-up. Speed is measured here,
never asserted in tests.

Last run: {when}, {minutes:.0f} minutes{which}, on {describe(box)}.

The machine is shared: other people's tests ran during the run, so times carry their noise.
Load average (1, 5, 15 min) when each part started, and at the end:

{load_lines}
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="1 run each, small sizes (scale 10,50; classroom 1,3 and 3 at once; wiring 10; load 5 s a "
                        "rate; soak 3 minutes); implies --no-write")
    p.add_argument("--only", default=",".join(PARTS), help=f"parts to run, comma-separated: {', '.join(PARTS)}")
    p.add_argument("--repeats", type=int, default=3, help="runs per measurement (default 3)")
    p.add_argument("--no-write", action="store_true", help=f"do not update {DOCS.relative_to(ROOT)}")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("python -m bench builds labs: run it as root")
    parts = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = sorted(set(parts) - set(PARTS) - set(EXTRA_PARTS))
    if unknown:
        p.error(f"unknown part {', '.join(unknown)}: use {', '.join(PARTS + EXTRA_PARTS)}")
    repeats = 1 if args.quick else args.repeats
    write = not (args.no_write or args.quick)

    return run_parts(parts, repeats, write, args)


def run_parts(parts: list[str], repeats: int, write: bool, args) -> int:
    box = machine()
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"# podpath benchmarks, {when}\n{describe(box)}\n")
    loads: dict[str, str] = {}
    sections: list[tuple[str, str]] = []
    goal_rows: dict[str, list[Row]] = {}  # {part that ran: its goal rows}
    profile_columns: dict[str, list] = {}
    started = time.monotonic()

    def begin(part: str) -> None:
        loads[part] = load_average()
        print(f"## {part} (load average {loads[part]})", flush=True)

    def emit(heading: str, body: str) -> None:
        print(f"\n{body}\n", flush=True)
        sections.append((heading, body))

    if "lifecycle" in parts:
        begin("lifecycle")
        life = lifecycle.run(repeats)
        emit(H_LIFECYCLE, f"{H_LIFECYCLE}\n\n{lifecycle.table(life)}\n\n{lifecycle.facts(life)}\n")
        life_rows = goal_rows["lifecycle"] = []
        for step, goal in lifecycle.GOALS.items():
            median = Spread.of(life.times[step]).median
            life_rows.append((f"reference lab: {step} ≤ {goal:g} s", f"{median:.2f} s",
                              verdict(median, goal)))
        life_rows.append(("second up reports changed=0", ", ".join(map(str, life.changed)),
                          "met" if all(c == 0 for c in life.changed) else "**not met**"))
        rest = idle.run(repeats)
        emit(H_IDLE, f"{H_IDLE}\n\n{idle.INTRO}\n\n{idle.table(rest)}\n")
        life_rows.append(idle.goal(rest))
        life_rows.append(idle.goal_memory(rest))
        profile_columns["cold, reference"] = life.profiles["cold"]
        profile_columns["warm, reference"] = life.profiles["warm"]

    if "scale" in parts:
        begin("scale")
        sizes = scale.run((10, 50) if args.quick else scale.SIZES, repeats)
        emit(H_SCALE, f"""{H_SCALE}

The reference lab (7 pods) plus N pods per node that are only a sandbox (pause process and
network), with a /22 pod subnet per node (a copy of the topology, `--topology`); the top
size, 331 per node, makes the 1,000 pods of the goal (300 would make 907). Each run
is a new lab: `podpath up`, the
verifier with that topology (one test per pod), `podpath down`. {repeats} run(s) per size. Memory: PSS summed over every process of the lab;
the host's MemAvailable drop adds the kernel's side and other users' noise. *ARP table full*:
how often, during the up and the verify, the kernel found its ARP table full (all runs,
`table_fulls` in /proc/net/stat/arp_cache). That table and its limit
(`net.ipv4.neigh.default.gc_thresh3`, {neigh_gc_thresh3()} here) are shared by every namespace
on the host: every pod's entry for its gateway and every node's entry for its pods count.
On a lab this big the verifier deletes the two entries of each pod once its ping is done,
so that its own checks do not fill the table ([netns-lab.md](netns-lab.md#limits-of-one-host));
the lab leaves the host's sysctls alone.

{scale.table(sizes)}

What each added pod costs, from one size to the next:

{scale.growth_table(sizes)}
""")
        goal_rows["scale"] = scale.goals(sizes)
        profile_columns[f"cold, {sizes[-1].pods} pods"] = sizes[-1].profiles

    if profile_columns:
        ansible_floor = lifecycle.floor(repeats)
        emit(H_PROFILE, f"""{H_PROFILE}

Per task from the events of the runs above (the same runs, no extra ones; ansible-runner
keeps them in each run's job_events): median seconds and share of the command's wall time.
*cold*: a new lab; *warm*: `up` again on a lab that is up (nothing changes); the scale
column: a new lab of that size. The rows in parentheses are time outside the tasks.

{lifecycle.profile_table(profile_columns)}

{lifecycle.biggest(profile_columns)}

The floor under any playbook run the usual way on this machine (median of {repeats}):
`ansible-playbook --version` takes {ansible_floor['start'].median:.2f} s, which every
`up` and `down` pays, and a task that does nothing (`ansible.builtin.ping`, a
module run as every module is run) {ansible_floor['task'].median:.2f} s.
""")

    if "classroom" in parts:
        begin("classroom")
        cpus = len(os.sched_getaffinity(0))
        import tempfile

        with tempfile.TemporaryDirectory(prefix="podpath-classroom-") as folder:
            points = classroom.run((1, 3) if args.quick else classroom.COUNTS, parallel=classroom.BUILD_PARALLEL,
                                   verifiers=cpus, topology=classroom_topology(Path(folder)))
        last = points[-1]
        downs = Spread.of(last.down)
        stopped = [f"- stopped at {p.labs}: {p.stopped}" for p in points if p.stopped]
        stopped += [f"- failed at {p.labs} labs: {f}" for p in points for f in p.failed]
        rush = classroom.rush(3 if args.quick else 30)
        emit(H_CLASSROOM, f"""{H_CLASSROOM}

Reference labs with `pod_neighbours: static` (what a host of many labs is given:
[netns-lab.md](netns-lab.md#limits-of-one-host)) built up to each count, {classroom.BUILD_PARALLEL}
`podpath up`s at a time (the labs of one row stay for the next), then every lab verified with all
of them running, {cpus} verifiers at a time; *up s per lab* is each `up`'s own time among the others. *idle CPU*: what
all their processes use in 5 s while nobody uses the labs (the speakers' announcements, the
ingress controllers' lease renewals, each node's probes of its own pods). *MemAvailable
drop*: the host's, since before the first lab, so the kernel's share (namespaces, sockets,
conntrack) is in it, and other work's noise. *ARP table full*: how often the kernel found
its neighbour table full since the first lab (the table and its limit,
`net.ipv4.neigh.default.gc_thresh3` = {neigh_gc_thresh3()} here, are shared by every
namespace of the host). One run.

{classroom.table(points)}
{chr(10).join(stopped)}
Taking the {len(last.down)} labs down: {downs.median:.1f} s per lab (min {downs.low:.1f}, max {downs.high:.1f}).

### {rush.count} labs started at the same moment

{rush.count} new labs, `podpath up --lab` of each started at one moment (a class typing it
together), then the instructor's `podpath report --labs` of them all (the labs shared out
over {rush.verifiers} runs of the verifier at a time); *total*: from the first start to the
report's end. The `up`s that start while another `up`'s play runs are built together in the
next play (docs/cli.md, "Labs started together"); each says that it waits and for which
command (`podpath: lab L waits its turn: ...`).

{classroom.rush_table(rush)}

Where the time of the `up`s went (median over the labs, from each run's events; *outside the
play* is Python and Ansible starting and ending):

{classroom.rush_profile(rush)}
""")
        goal_rows["classroom"] = [classroom.goal(points), classroom.goal(points, 100), classroom.rush_goal(rush)]

    if "wiring" in parts:
        begin("wiring")
        rows = wiring.run((10,) if args.quick else (10, 100, 500), repeats)
        print("\n" + wiring.table(rows) + "\n\n" + wiring.verdict(rows) + "\n", flush=True)
        if write:
            wiring.write_docs(wiring.section(rows, wiring.machine()))
        top = max(r["pods"] for r in rows)
        ratio = next(r["vs_cni"] for r in rows if r["pods"] == top and r["method"] == wiring.METHODS[0][0])
        goal_rows["wiring"] = [(
            f"pod wiring ≥ {wiring.GOAL:g} × the CNI plugin ({top} pods, module in one ansible-playbook call)",
            f"{ratio:.1f} ×", "met" if ratio >= wiring.GOAL else "**not met**")]

    if "load" in parts:
        begin("load")
        seconds = load.QUICK_SECONDS if args.quick else load.SECONDS
        steps = load.run(load.QUICK_RATES if args.quick else load.RATES, seconds)
        emit(load.HEADING, load.section(steps, seconds))
        goal_rows["load"] = load.goals(steps)

    if "soak" in parts:
        begin("soak")
        dims = soak.QUICK if args.quick else {"duration": soak.DURATION_S, "kill_every": soak.KILL_EVERY_S,
                                              "sample": soak.SAMPLE_S}
        ran = soak.run(soak.RATE, dims["duration"], dims["kill_every"], dims["sample"])
        emit(soak.HEADING, soak.section(ran))
        goal_rows["soak"] = soak.goals(ran)

    if "fleet" in parts:
        begin("fleet")
        classes = fleet.run(3 if args.quick else fleet.LABS, fleet.HOSTS)
        emit(fleet.HEADING, fleet.section(classes, when))

    goals = goals_section(goal_rows, when, box, current_section(H_GOALS))
    print(goals)
    minutes = (time.monotonic() - started) / 60
    loads["end"] = load_average()
    print(f"benchmarks took {minutes:.1f} min; load average now {loads['end']}")
    if write:
        write_sections([(H_RUN, run_section(box, when, loads, minutes, current_section(H_RUN))),
                        (H_GOALS, goals)] + sections)
        print(f"written to {DOCS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
