"""bench.wiring's text in docs/performance.md: the benchmark's part is replaced on each run,
the section's hand-written subsections and the other sections stay."""
from __future__ import annotations

from pathlib import Path

from bench import wiring

BEFORE = f"""# Performance

## Earlier

kept as it is

{wiring.HEADING}

old table

### Where the time goes

by hand, with a table

| a | b |
|---|---|

## Later

also kept
"""


def test_a_new_run_replaces_the_table_and_keeps_the_hand_written_subsections(tmp_path: Path):
    docs = tmp_path / "performance.md"
    docs.write_text(BEFORE)
    wiring.write_docs(f"{wiring.HEADING}\n\nnew table\n", docs)
    text = docs.read_text()
    assert "old table" not in text and "new table" in text
    assert text.index("new table") < text.index("### Where the time goes") < text.index("## Later")
    assert "| a | b |" in text and "kept as it is" in text and "also kept" in text


def test_a_section_without_subsections_is_replaced_whole(tmp_path: Path):
    docs = tmp_path / "performance.md"
    docs.write_text(BEFORE.replace("### Where the time goes\n\nby hand, with a table\n\n| a | b |\n|---|---|\n", ""))
    wiring.write_docs(f"{wiring.HEADING}\n\nnew table\n", docs)
    text = docs.read_text()
    assert "old table" not in text and "###" not in text and text.endswith("## Later\n\nalso kept\n")


def rows_of(times: dict[tuple[int, int], float], system: float | None) -> list[dict]:
    """Rows as bench.wiring.run gives them: TIMES maps (pods, way's index) to a median."""
    cni = {n: t for (n, way), t in times.items() if way == 3}
    rows = []
    for (n, way), median in times.items():
        row = {"pods": n, "method": wiring.METHODS[way][0], "median_s": median, "vs_cni": cni[n] / median}
        if way == 2 and system is not None:
            row["system_s"] = system
        rows.append(row)
    return rows


TIMES = {(10, 0): 0.9, (10, 1): 1.7, (10, 2): 0.02, (10, 3): 0.2, (10, 4): 0.25,
         (500, 0): 3.0, (500, 1): 4.0, (500, 2): 1.8, (500, 3): 15.0, (500, 4): 16.0}


def test_the_best_ratio_adds_ansibles_start_at_the_smallest_size_to_the_kernels_work_at_the_largest():
    small, start, kernel, ratio = wiring.best_ratio(rows_of(TIMES, system=0.6))
    assert (small, start, kernel) == (10, 0.9, 0.6)
    assert abs(ratio - 15.0 / 1.5) < 1e-9
    text = wiring.verdict(rows_of(TIMES, system=0.6))
    assert "5.0 times" in text and "misses" in text and "about 1.50 s, 10.0 times" in text


def test_no_best_ratio_without_two_sizes_or_without_the_kernels_time():
    assert wiring.best_ratio(rows_of({k: v for k, v in TIMES.items() if k[0] == 500}, system=0.6)) is None
    assert wiring.best_ratio(rows_of(TIMES, system=None)) is None
    assert "system CPU" not in wiring.verdict(rows_of(TIMES, system=None))
