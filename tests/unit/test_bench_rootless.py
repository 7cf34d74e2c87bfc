"""bench.rootless's table and its reading, from made-up times (no benchmark runs here)."""
from __future__ import annotations

from bench import rootless


def times(root: dict, user: dict) -> dict:
    return {"times": {"root": root, "user": user}, "copy_s": None}


def test_the_table_has_a_row_per_command_and_the_sandbox_alone():
    result = times({"up": [3.0, 3.2], "shell": [0.1], "verify": [4.0], "down": [2.0], "sandbox": []},
                   {"up": [3.5, 3.7], "shell": [0.2], "verify": [4.1], "down": [2.1], "sandbox": [0.1, 0.12]})
    rows = rootless.table(result).splitlines()[2:]
    assert len(rows) == len(rootless.STEPS)
    assert rows[0].startswith("| `podpath up`") and rows[0].endswith("| +0.50 |")
    assert "| | | | 0.110 | 0.100 | 0.120 | |" in rows[-1], "the sandbox alone has no root side"


def test_a_difference_is_noise_unless_the_runs_do_not_overlap():
    result = times({"up": [3.0, 3.1, 3.2], "shell": [0.1, 0.5], "verify": [4.0], "down": [2.0]},
                   {"up": [3.5, 3.6, 3.7], "shell": [0.2, 0.3], "verify": [4.0], "down": [2.0]})
    said = rootless.reading(result)
    assert "`up` +0.50 s," in said, "runs apart: a real difference"
    assert "`shell` -0.05 s (within the spread)" in said
