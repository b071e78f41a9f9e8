"""Benchmark bookkeeping shared by the bench files: medians by key and the ratios to print.

Imported as ``benchkit`` (not from conftest.py: tests/ has a conftest too, and ``from conftest
import ...`` would pick whichever pytest loaded first).
"""

from __future__ import annotations

from typing import Any

MEDIANS: dict[str, float] = {}
# (name, numerator, denominator, target): numerator_median / denominator_median >= target.
RATIOS: list[tuple[str, str, str, float]] = []


def record(benchmark: Any, key: str) -> float:
    """Stores the median of a finished benchmark under ``key``."""
    median = float(benchmark.stats.stats.median)
    MEDIANS[key] = median
    return median


def ratio(name: str, slow: str, fast: str, target: float) -> None:
    RATIOS.append((name, slow, fast, target))
