"""Benchmark plumbing: prints the targets declared in :mod:`benchkit` at the end of the run.

Ratios are only meaningful between benchmarks of the same run on the same machine, which is
what this prints. Set BONEAGE_BENCH_ASSERT=1 to turn the project's targets into failures:
a missed target fails the run, and so does a target that was never measured (one of its
benchmarks was skipped, deselected or failed), because a check that did not happen must not
read as a check that passed. Under BONEAGE_BENCH_SMOKE=1 the sizes are too small for speed
to mean anything: the figures are printed, and only unmeasured targets fail.
"""

from __future__ import annotations

import pytest

from benchkit import ASSERT, ENFORCE_SPEED, MEDIANS, RATIOS, SMOKE, TARGETS, VALUES


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    # --benchmark-skip (the default run) skips every benchmark on purpose: nothing to report.
    if config.getoption("benchmark_skip") and not config.getoption("benchmark_only"):
        return
    if not (RATIOS or TARGETS):
        return
    title = "boneage speed targets (same run)"
    if SMOKE:
        title += ", smoke sizes: not enforced"
    terminalreporter.section(title)
    missed: list[str] = []
    unmeasured: list[str] = []
    for name, slow, fast, goal in RATIOS:
        absent = [k for k in (slow, fast) if k not in MEDIANS]
        if absent:
            unmeasured.append(name)
            terminalreporter.write_line(
                f"{name}: NOT MEASURED (no result for {', '.join(absent)}; target >= {goal}x)",
                yellow=True,
            )
            continue
        r = MEDIANS[slow] / MEDIANS[fast]
        ok = r >= goal
        terminalreporter.write_line(
            f"{name}: {r:.2f}x  (target >= {goal}x: {'met' if ok else 'MISSED'}; "
            f"medians {MEDIANS[slow] * 1e3:.2f} ms / {MEDIANS[fast] * 1e3:.2f} ms)"
        )
        if not ok:
            missed.append(name)
    for name, goal in TARGETS.items():
        if name not in VALUES:
            unmeasured.append(name)
            terminalreporter.write_line(f"{name}: NOT MEASURED (target >= {goal})", yellow=True)
            continue
        ok = VALUES[name] >= goal
        terminalreporter.write_line(
            f"{name}: {VALUES[name]:.2f}  (target >= {goal}: {'met' if ok else 'MISSED'})"
        )
        if not ok:
            missed.append(name)
    failed = False
    if unmeasured and ASSERT:
        terminalreporter.write_line(f"targets not measured: {unmeasured}", red=True)
        failed = True
    if missed and ENFORCE_SPEED:
        terminalreporter.write_line(f"targets missed: {missed}", red=True)
        failed = True
    session = terminalreporter._session
    # Keep a worse status (an interrupt, an internal error) than "tests failed".
    if failed and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
