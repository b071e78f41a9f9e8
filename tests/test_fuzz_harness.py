"""The fuzzing harness (fuzz/run.py) reports what it exists to find: a worker that aborts, one
that hangs and an exception outside a target's contract each become a finding with its input,
and the run goes on after them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parents[1] / "fuzz" / "run.py"


def fuzz(tmp_path: Path, selftest: str, seconds: float = 4) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, BONEAGE_FUZZ_SELFTEST=selftest)
    cmd = [sys.executable, str(RUN), "--seconds", str(seconds), "--seed", "5"]
    cmd += ["--hang-seconds", "1", "--out", str(tmp_path)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


def test_a_clean_run_reports_executions_and_no_findings(tmp_path):
    out = fuzz(tmp_path, "")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "crashes 0, hangs 0, unexpected exceptions 0" in out.stdout
    executions = int(out.stdout.split("executions")[0].split()[-1])
    assert executions > 20


@pytest.mark.parametrize(
    ("selftest", "kind"),
    [("abort", "crash"), ("hang", "hang"), ("raise", "unexpected exception")],
)
def test_findings_are_reported_with_their_input_and_the_run_goes_on(tmp_path, selftest, kind):
    out = fuzz(tmp_path, selftest)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"{kind} in" in out.stdout and "(input 3)" in out.stdout
    saved = sorted(p.name for p in tmp_path.iterdir())
    assert any(name.endswith("-3.bin") for name in saved), saved
    # It went on after the finding: later inputs ran too.
    executions = int(out.stdout.split("executions")[0].split()[-1])
    assert executions > 4
