"""Runs a test script under the JAX backend in a fresh process, the one way the suite does it.

Keras picks its backend once per process, and the suite's own process runs TensorFlow; the
cross-backend checks (same outputs, same heatmaps) therefore run a script in a child process
with the JAX settings below, and compare the arrays it saves.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import boneage

TESTS = Path(__file__).resolve().parent
PYTHON_SRC = Path(boneage.__file__).resolve().parent.parent


def run_under_jax(script: str, workdir: Path, timeout: int = 900) -> None:
    """Runs ``tests/<script> <workdir>`` with Keras on JAX (CPU); skips when JAX is absent."""
    if importlib.util.find_spec("jax") is None:
        pytest.skip("JAX is not installed")
    env = dict(os.environ)
    env.update(
        KERAS_BACKEND="jax",
        JAX_PLATFORMS="cpu",
        TF_CPP_MIN_LOG_LEVEL="3",
        # Compile time dominates these one-shot runs on a small CPU.
        XLA_FLAGS="--xla_backend_optimization_level=0",
        PYTHONPATH=os.pathsep.join(p for p in (str(PYTHON_SRC), env.get("PYTHONPATH", "")) if p),
    )
    proc = subprocess.run(
        [sys.executable, str(TESTS / script), str(workdir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
