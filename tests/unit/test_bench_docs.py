"""The Goals table and the run's load lines of docs/performance.md after a partial or a full
`python -m bench` (no benchmark runs here).

Each test works on a docs text of its own in a temporary folder, never on docs/performance.md.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.__main__ import (H_GOALS, H_RUN, PARTS, current_section, goals_section, run_section, split_sections,
                            write_sections)

BOX = {"nproc": "2"}
OLD_WHEN = "2026-11-26 10:18 UTC"
WHEN = "2026-12-01 08:00 UTC"
LATER = "2026-12-02 09:30 UTC"
STABLE_ORDER = ["lifecycle", "scale", "classroom", "wiring", "load", "soak"]  # of the rows, whatever ran
OLD_ORDER = ["lifecycle", "scale", "classroom", "wiring"]  # the parts OLD_DOCS has rows of

# A Goals section as the code before the part marks wrote it (plus the hand-written run notes
# of docs/performance.md at that time), with a section after it that must stay as it is.
OLD_DOCS = f"""# Performance

## How to run, and the machine

Last run: {OLD_WHEN}.

## Goals

The project's speed goals against the latest run ({OLD_WHEN}, 2 CPUs).

| goal | measured (median) | |
|---|---|---|
| reference lab: cold up ≤ 5 s | 8.35 s | **not met** |
| reference lab: second up ≤ 2 s | 7.13 s | **not met** |
| second up reports changed=0 | 0, 0, 0 | met |
| 1,000 pods up in ≤ 10 s (scale run of 09:22 UTC) | 907 pods up in 22.3 s | **not met** |
| cost per pod flat as N grows (scale run of 09:22 UTC) | up ms per added pod: 21.6 → 11.8 | met |
| 30 labs on 2 cores, all verified (classroom run of 09:22 UTC) | 30 labs built and all verified | met |
| pod wiring ≥ 3 × the CNI plugin (500 pods, wiring run of 10:17 UTC) | 2.9 × | **not met** |

## Reference lab: up, up again, verify, down

A table.
"""

# What each part's run yields in these tests: (goal, measured, met?) rows, all measured values
# new so that a row of this run can be told from an old one.
NEW_ROWS = {
    "lifecycle": [("reference lab: cold up ≤ 5 s", "4.10 s", "met"),
                  ("reference lab: second up ≤ 2 s", "1.90 s", "met"),
                  ("second up reports changed=0", "0, 0", "met")],
    "scale": [("1,000 pods up in ≤ 10 s", "1000 pods up in 9.0 s", "met"),
              ("cost per pod flat as N grows", "up ms per added pod: 9.0 → 8.0", "met")],
    "classroom": [("30 labs on 2 cores, all verified", "30 labs built and all verified (new)", "met")],
    "wiring": [("pod wiring ≥ 3 × the CNI plugin (500 pods, module in one ansible-playbook call)", "3.4 ×", "met")],
    "load": [("load: ≥ 100 requests/s with none failed, keep-alive off and on", "off: 800/s; on: 1600/s", "met")],
    "soak": [("soak: no request fails outside a controller's 2 s failover window", "0 of 180000 outside", "met"),
             ("soak: the lab's memory, open files, conntrack and neighbour entries flat", "PSS MiB +0.1", "met")],
}


def bench_run(docs: Path, parts: list[str], when: str) -> str:
    """What `python -m bench --only PARTS` does to the Goals section of DOCS; returns the new file's Goals."""
    rows = {part: NEW_ROWS[part] for part in parts}
    write_sections([(H_GOALS, goals_section(rows, when, BOX, current_section(H_GOALS, docs)))], docs)
    return split_sections(docs.read_text())[1][H_GOALS]


def table(goals: str) -> list[str]:
    """The goal rows (not the header nor the |---| line) of a Goals section."""
    return [line for line in goals.splitlines() if line.startswith("| ") and not line.startswith("| goal |")]


def rows_of(goals: str, part: str) -> list[str]:
    return [line for line in table(goals) if f"<!-- goal:{part} -->" in line]


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def part_order(goals: str) -> list[str]:
    """The parts of the rows, top to bottom, one entry per run of rows of the same part."""
    order: list[str] = []
    for line in table(goals):
        part = re.search(r"<!-- goal:(\w+) -->", line).group(1)
        if not order or order[-1] != part:
            order.append(part)
    return order


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    path = tmp_path / "performance.md"
    path.write_text(OLD_DOCS)
    return path


@pytest.fixture
def new_docs(docs: Path) -> Path:
    """DOCS as a full run of WHEN wrote it: every row with its part's mark and its run."""
    bench_run(docs, list(PARTS), WHEN)
    return docs


def test_partial_run_keeps_the_rows_of_the_parts_that_did_not_run_unchanged(new_docs: Path):
    before = split_sections(new_docs.read_text())[1][H_GOALS]
    after = bench_run(new_docs, ["lifecycle"], LATER)
    for part in ("scale", "classroom", "wiring"):
        assert rows_of(after, part) == rows_of(before, part)
        assert rows_of(after, part), part


def test_partial_run_replaces_the_rows_of_its_part_with_this_runs(new_docs: Path):
    after = bench_run(new_docs, ["scale"], LATER)
    scale = rows_of(after, "scale")
    assert [cells(line)[1:] for line in scale] == [[measured, met] for _, measured, met in NEW_ROWS["scale"]]
    assert all(f"(scale run of {LATER})" in cells(line)[0] for line in scale)
    assert not [line for line in table(after) if "scale run of " + WHEN in line]  # the old scale rows are gone


def test_partial_run_rows_say_the_run_they_come_from(new_docs: Path):
    after = bench_run(new_docs, ["classroom", "wiring"], LATER)
    for part in PARTS:
        run = LATER if part in ("classroom", "wiring") else WHEN
        assert all(f"({part} run of {run})" in cells(line)[0] for line in rows_of(after, part)), part


def test_full_run_replaces_every_row(docs: Path):
    bench_run(docs, ["lifecycle", "scale"], WHEN)
    after = bench_run(docs, list(PARTS), LATER)
    expected = [[measured, met] for part in STABLE_ORDER for _, measured, met in NEW_ROWS[part]]
    assert [cells(line)[1:] for line in table(after)] == expected
    assert all(f"run of {LATER})" in cells(line)[0] for line in table(after))


def test_full_run_drops_rows_of_no_known_part(new_docs: Path):
    text = new_docs.read_text().replace("|---|---|---|\n", "|---|---|---|\n| a goal added by hand | 1 s | met |\n")
    new_docs.write_text(text)
    after = bench_run(new_docs, list(PARTS), LATER)
    assert "a goal added by hand" not in after


def test_partial_run_keeps_rows_of_no_known_part_last(new_docs: Path):
    text = new_docs.read_text().replace("|---|---|---|\n", "|---|---|---|\n| a goal added by hand | 1 s | met |\n")
    new_docs.write_text(text)
    after = bench_run(new_docs, ["wiring"], LATER)
    assert table(after)[-1] == "| a goal added by hand | 1 s | met |"


@pytest.mark.parametrize("runs", [["wiring", "lifecycle"], ["classroom"], ["scale", "wiring"], ["lifecycle"],
                                  ["soak", "load"], ["load", "classroom"]])
def test_row_order_is_lifecycle_scale_classroom_wiring_load_soak_whatever_ran(docs: Path, runs: list[str]):
    done: set[str] = set()
    for part in runs:
        goals = bench_run(docs, [part], WHEN)
        done.add(part)
        assert part_order(goals) == [p for p in STABLE_ORDER if p in OLD_ORDER or p in done]
        assert len(table(goals)) == len(set(table(goals)))  # no row twice


def test_row_order_within_a_part_is_kept(new_docs: Path):
    before = split_sections(new_docs.read_text())[1][H_GOALS]
    after = bench_run(new_docs, ["classroom"], LATER)
    assert rows_of(after, "lifecycle") == rows_of(before, "lifecycle")
    assert [cells(line)[1] for line in rows_of(after, "lifecycle")] == ["4.10 s", "1.90 s", "0, 0"]


def test_old_format_rows_are_told_apart_by_how_their_goal_starts(docs: Path):
    after = bench_run(docs, ["classroom"], WHEN)
    measured = {part: [cells(line)[1] for line in rows_of(after, part)] for part in OLD_ORDER}
    assert measured == {"lifecycle": ["8.35 s", "7.13 s", "0, 0, 0"],
                        "scale": ["907 pods up in 22.3 s", "up ms per added pod: 21.6 → 11.8"],
                        "classroom": ["30 labs built and all verified (new)"],
                        "wiring": ["2.9 ×"]}


def test_old_format_rows_keep_their_cells_and_note_their_run(docs: Path):
    after = bench_run(docs, ["classroom"], WHEN)
    old_rows = {cells(line)[1]: cells(line) for line in table(OLD_DOCS)}
    for part in ("lifecycle", "scale", "wiring"):
        for line in rows_of(after, part):
            goal, measured, met = cells(line)
            old_goal, _, old_met = old_rows[measured]
            assert met == old_met
            if "run of" in old_goal:  # a note of its run already: the goal stays as it was
                assert goal == f"{old_goal} <!-- goal:{part} -->"
            else:  # none: the old table's run, from its header
                assert goal == f"{old_goal} ({part} run of {OLD_WHEN}) <!-- goal:{part} -->"


def test_old_format_rows_without_a_date_in_the_header_say_they_came_before_this_run(docs: Path):
    docs.write_text(OLD_DOCS.replace(f"against the latest run ({OLD_WHEN}, 2 CPUs)", "against the latest run"))
    after = bench_run(docs, ["wiring"], WHEN)
    lifecycle = rows_of(after, "lifecycle")
    assert lifecycle and all(f"(lifecycle run before {WHEN})" in cells(line)[0] for line in lifecycle)


def test_the_other_sections_stay_as_they_were(docs: Path):
    bench_run(docs, ["scale"], WHEN)
    head, sections = split_sections(docs.read_text())
    old_head, old_sections = split_sections(OLD_DOCS)
    assert head == old_head
    others = {h: s for h, s in sections.items() if h != H_GOALS}
    assert others == {h: s for h, s in old_sections.items() if h != H_GOALS}
    assert list(sections) == list(old_sections)


def test_no_docs_file_yet_gives_only_this_runs_rows(tmp_path: Path):
    docs = tmp_path / "performance.md"
    after = bench_run(docs, ["scale"], WHEN)
    assert part_order(after) == ["scale"]


def test_rows_out_of_order_come_back_in_the_order_of_the_parts(docs: Path):
    lines = OLD_DOCS.splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if line.startswith("| reference lab: cold up"))
    rows = lines[first:first + 7]
    docs.write_text("".join(lines[:first] + rows[::-1] + lines[first + 7:]))  # wiring first, lifecycle last
    after = bench_run(docs, ["classroom"], WHEN)
    assert part_order(after) == OLD_ORDER
    assert [cells(line)[1] for line in rows_of(after, "lifecycle")] == ["0, 0, 0", "7.13 s", "8.35 s"]


MACHINE = {"nproc": "2", "cpu": "AMD EPYC", "memory": "23.5 GiB", "kernel": "6.1", "os": "Debian 12", "python": "3.11.7",
           "ansible-core": "2.19.14", "ansible-runner": "2.4.3", "pyroute2": "0.9.7"}


def loads_of(section: str) -> dict[str, str]:
    return dict(re.findall(r"^- (\w+): (.+)$", section, re.M))


def bench_run_section(docs: Path, loads: dict[str, str], when: str) -> str:
    """What a run whose parts had LOADS does to the run section of DOCS; returns the new section."""
    write_sections([(H_RUN, run_section(MACHINE, when, loads, 5.0, current_section(H_RUN, docs)))], docs)
    return split_sections(docs.read_text())[1][H_RUN]


def test_a_partial_run_keeps_the_load_lines_of_the_other_parts_with_their_run(docs: Path):
    full = {part: f"1.0{i} 1.00 1.00" for i, part in enumerate(PARTS)} | {"end": "2.00 2.00 2.00"}
    bench_run_section(docs, full, WHEN)
    after = bench_run_section(docs, {"classroom": "3.00 3.00 3.00", "end": "4.00 4.00 4.00"}, LATER)
    loads = loads_of(after)
    assert list(loads) == [*PARTS, "end"]
    assert loads["classroom"] == "3.00 3.00 3.00" and loads["end"] == "4.00 4.00 4.00"
    for part in ("lifecycle", "scale", "wiring"):
        assert loads[part] == f"{full[part]} (run of {WHEN})", part
    assert f"Last run: {LATER}, 5 minutes (classroom only; the other parts are from earlier runs)" in after


def test_a_line_kept_twice_keeps_its_first_run(docs: Path):
    bench_run_section(docs, {part: "1.00 1.00 1.00" for part in PARTS} | {"end": "1.00 1.00 1.00"}, WHEN)
    bench_run_section(docs, {"wiring": "2.00 2.00 2.00", "end": "2.00 2.00 2.00"}, LATER)
    after = bench_run_section(docs, {"scale": "3.00 3.00 3.00", "end": "3.00 3.00 3.00"}, "2026-12-03 10:00 UTC")
    loads = loads_of(after)
    assert loads["lifecycle"] == f"1.00 1.00 1.00 (run of {WHEN})"
    assert loads["wiring"] == f"2.00 2.00 2.00 (run of {LATER})"


def test_a_full_run_writes_only_its_own_load_lines(docs: Path):
    bench_run_section(docs, {"lifecycle": "1.00 1.00 1.00", "end": "1.00 1.00 1.00"}, WHEN)
    full = {part: "2.00 2.00 2.00" for part in PARTS} | {"end": "2.00 2.00 2.00"}
    after = bench_run_section(docs, full, LATER)
    assert loads_of(after) == full
    assert "only;" not in after
