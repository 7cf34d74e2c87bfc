"""Medians and the small formatting helpers the benchmark tables share."""
from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Spread:
    """Median, min and max of a few runs."""
    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, values: list[float]) -> "Spread":
        if not values:
            return cls(float("nan"), float("nan"), float("nan"), 0)
        return cls(statistics.median(values), min(values), max(values), len(values))

    def cells(self, fmt: str = ".2f") -> str:
        """'median | min | max' for a markdown row."""
        return f"{self.median:{fmt}} | {self.low:{fmt}} | {self.high:{fmt}}"


def verdict(value: float, goal: float) -> str:
    return "met" if value <= goal else "**not met**"

