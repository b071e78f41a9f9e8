"""Benchmark plumbing: prints the speed ratios recorded by :mod:`benchkit` at the end.

Ratios are only meaningful between benchmarks of the same run on the same machine, which is
what this prints. Set BONEAGE_BENCH_ASSERT=1 to turn the project's targets into failures.
"""

from __future__ import annotations

import os

import pytest

from benchkit import MEDIANS, RATIOS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    rows = [(n, s, f, t) for n, s, f, t in RATIOS if s in MEDIANS and f in MEDIANS]
    if not rows:
        return
    terminalreporter.section("boneage speed ratios (same run)")
    failed = []
    for name, slow, fast, target in rows:
        r = MEDIANS[slow] / MEDIANS[fast]
        ok = r >= target
        terminalreporter.write_line(
            f"{name}: {r:.2f}x  (target >= {target}x: {'met' if ok else 'MISSED'}; "
            f"medians {MEDIANS[slow] * 1e3:.2f} ms / {MEDIANS[fast] * 1e3:.2f} ms)"
        )
        if not ok:
            failed.append(name)
    if failed and os.environ.get("BONEAGE_BENCH_ASSERT") == "1":
        terminalreporter.write_line(f"targets missed: {failed}", red=True)
        terminalreporter._session.exitstatus = 1
