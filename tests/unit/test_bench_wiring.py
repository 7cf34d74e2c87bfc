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
