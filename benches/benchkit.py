"""Benchmark bookkeeping shared by the bench files: medians by key, the targets to check, and
the smoke mode.

Imported as ``benchkit`` (not from conftest.py: tests/ has a conftest too, and ``from conftest
import ...`` would pick whichever pytest loaded first).

Two kinds of target, both checked in one place (conftest.py) so that none can go missing:

- :func:`ratio`: ``median(slow) / median(fast) >= target`` between two benchmarks of this run,
  each stored with :func:`record`;
- :func:`target` + :func:`measured`: a figure a benchmark computes itself (a median of
  per-round ratios, an absolute rate) ``>= target``.

A target is declared when its bench file is imported, so a target whose benchmarks were
skipped, deselected or failed before measuring stays visible as "not measured" instead of
silently vanishing from the summary; with BONEAGE_BENCH_ASSERT=1 that is a failure.

``BONEAGE_BENCH_SMOKE=1`` is a quick correctness run for CI: every bench file shrinks its
inputs (:func:`sized`) and :func:`run` times each benchmark once, without warm-up. Tiny inputs
make speed ratios meaningless, so they are printed but never enforced in that mode; the
correctness asserts inside the benchmarks still run and still fail.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

SMOKE = os.environ.get("BONEAGE_BENCH_SMOKE") == "1"
ASSERT = os.environ.get("BONEAGE_BENCH_ASSERT") == "1"
# Speed targets fail the run only on real sizes; completeness (every target measured) is
# checked whenever ASSERT is set, smoke or not.
ENFORCE_SPEED = ASSERT and not SMOKE

MEDIANS: dict[str, float] = {}
# (name, numerator, denominator, target): numerator_median / denominator_median >= target.
RATIOS: list[tuple[str, str, str, float]] = []
# name -> target for figures a benchmark computes itself; VALUES holds what it measured.
TARGETS: dict[str, float] = {}
VALUES: dict[str, float] = {}

# Wall seconds of the calls timed by run() under --benchmark-disable, by benchmark.fullname:
# pytest-benchmark then calls the function once and keeps no statistics.
_OWN_TIMES: dict[str, list[float]] = {}


def sized(full: T, smoke: T) -> T:
    """``smoke`` under BONEAGE_BENCH_SMOKE=1, else ``full``: one place that names both sizes."""
    return smoke if SMOKE else full


def run(
    benchmark: Any,
    fn: Callable[..., T],
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    setup: Callable[[], Any] | None = None,
    rounds: int | None = None,
    warmup_rounds: int = 0,
) -> T:
    """Times ``fn(*args, **kwargs)`` with ``benchmark`` and returns its result.

    ``rounds=None`` lets pytest-benchmark calibrate the number of rounds (``benchmark(...)``);
    an int runs ``benchmark.pedantic`` with that many rounds after ``warmup_rounds``. In smoke
    mode it is always one pedantic round and no warm-up, so that every benchmark body (and its
    asserts) runs exactly once. Under ``--benchmark-disable`` pytest-benchmark calls ``fn``
    once, untimed; the wall time of that call is measured here so that :func:`median` still
    has a figure to print.
    """
    kwargs = dict(kwargs or {})
    timed = fn
    if benchmark.disabled:
        times = _OWN_TIMES[benchmark.fullname] = []

        def timed(*a: Any, **kw: Any) -> T:
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                times.append(time.perf_counter() - t0)

    if SMOKE:
        rounds, warmup_rounds = 1, 0
    if rounds is None:
        if setup is not None:
            raise TypeError("setup needs explicit rounds (benchmark.pedantic)")
        return benchmark(timed, *args, **kwargs)
    return benchmark.pedantic(
        timed, tuple(args), kwargs, setup=setup, rounds=rounds, warmup_rounds=warmup_rounds
    )


def median(benchmark: Any) -> float:
    """The median seconds per round of a finished benchmark.

    pytest-benchmark's own statistics when it kept any; under ``--benchmark-disable`` (no
    statistics, ``benchmark.stats`` is None) the time of the single call :func:`run` measured.
    """
    if benchmark.stats is not None:
        return float(benchmark.stats.stats.median)
    times = _OWN_TIMES.get(benchmark.fullname)
    if not times:
        raise RuntimeError(f"{benchmark.fullname}: no timing (time it with benchkit.run)")
    return float(statistics.median(times))


def record(benchmark: Any, key: str) -> float:
    """Stores the median of a finished benchmark under ``key`` (for :func:`ratio`)."""
    value = median(benchmark)
    MEDIANS[key] = value
    return value


def ratio(name: str, slow: str, fast: str, target: float) -> None:
    """Declares ``MEDIANS[slow] / MEDIANS[fast] >= target``, checked after the run."""
    RATIOS.append((name, slow, fast, target))


def target(name: str, goal: float) -> None:
    """Declares a figure ``name`` that a benchmark computes and passes to :func:`measured`."""
    TARGETS[name] = goal


def measured(name: str, value: float) -> bool:
    """Stores the figure for a declared :func:`target`; returns whether it meets the target."""
    if name not in TARGETS:
        raise KeyError(f"{name!r} was never declared with benchkit.target")
    VALUES[name] = value
    return value >= TARGETS[name]
