"""Waiting in the tests that run a program (the ingress controller, its lease): for something
that should happen much sooner than WAIT, asked again every STEP seconds."""
from __future__ import annotations

import time

WAIT = 15.0  # seconds before a test gives up waiting for something that should happen much sooner


def until(probe, message: str, step: float = 0.01):
    """PROBE's first true answer; an AssertionError naming MESSAGE if none came within WAIT."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(step)
    raise AssertionError(f"{message} within {WAIT:.0f} s")
