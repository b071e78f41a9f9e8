"""No TensorFlow, CUDA, XLA, absl or MediaPipe log lines from a command on a CPU machine
(boneage.nativelogs), and a user's own log level still wins."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from boneage import nativelogs
from shared_data import image_files

ABSL_E = (
    "E0000 00:00:1796483069.305173   17125 cuda_dnn.cc:8579] Unable to register cuDNN factory: "
    "Attempting to register factory for plugin cuDNN when one has already been registered\n"
)
ABSL_W = (
    "W0000 00:00:1796483069.327392   17125 computation_placer.cc:177] computation placer "
    "already registered. Please check linkage and avoid linking the same target more than once.\n"
)
ABSL_F = "F0000 00:00:1796483069.327392   17125 check.cc:1] Check failed: x\n"
PRE_INIT = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
)
TFLITE = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
TSL_I = (
    "2026-12-05 15:06:35.354873: I tensorflow/core/platform/cpu_feature_guard.cc:210] This "
    "TensorFlow binary is optimized to use available CPU instructions in critical operations.\n"
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow.\n"
)
OURS = "error: no images found in the inputs (x)\n"
PY_WARNING = "/x/y.py:3: UserWarning: something\n  warnings.warn('something')\n"
LOGGING = "WARNING:root:a Python logging line\n"

# What a user must never see from a command (the list, and the line formats).
NOISE = re.compile(
    r"cuFFT|cuDNN|cuBLAS|cuInit|cudart|TF-TRT|oneDNN|absl::InitializeLog|computation placer"
    r"|cpu_feature_guard|XNNPACK"
    r"|^[IWEF]\d{4} \d\d:\d\d|^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] ",
    re.MULTILINE,
)


@pytest.mark.parametrize(
    ("level", "kept"),
    [
        (0, ABSL_E + ABSL_W + ABSL_F + PRE_INIT + TFLITE + TSL_I),
        (1, ABSL_E + ABSL_W + ABSL_F + PRE_INIT),
        (2, ABSL_E + ABSL_F),
        (3, ABSL_F),
    ],
)
def test_native_lines_below_the_level_go_and_nothing_else(level: int, kept: str) -> None:
    text = ABSL_E + ABSL_W + ABSL_F + PRE_INIT + TFLITE + TSL_I + OURS + PY_WARNING + LOGGING
    assert nativelogs.keep_lines(text, level) == kept + OURS + PY_WARNING + LOGGING


def test_the_window_filters_what_native_code_writes(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    with nativelogs.filtered_stderr("TF_CPP_MIN_LOG_LEVEL"):
        os.write(2, (PRE_INIT + ABSL_E).encode())  # as C++ writes: straight to descriptor 2
        print("kept", file=sys.stderr)
        with nativelogs.filtered_stderr("TF_CPP_MIN_LOG_LEVEL"):  # windows nest
            os.write(2, ABSL_W.encode())
    print("after", file=sys.stderr)
    assert capfd.readouterr().err == "kept\nafter\n"


def test_a_users_level_wins(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    monkeypatch.setenv("GLOG_minloglevel", "1")
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    nativelogs.quiet()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    assert os.environ["GLOG_minloglevel"] == "1"
    with nativelogs.filtered_stderr("TF_CPP_MIN_LOG_LEVEL"):
        os.write(2, ABSL_E.encode())
    with nativelogs.filtered_stderr("GLOG_minloglevel"):
        os.write(2, (TFLITE + ABSL_W).encode())
    assert capfd.readouterr().err == ABSL_E + ABSL_W


def test_quiet_sets_the_levels_once_and_hooks_imports_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.delenv("GLOG_minloglevel", raising=False)
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    nativelogs.quiet()
    nativelogs.quiet()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    assert os.environ["GLOG_minloglevel"] == "3"
    hooks = [f for f in sys.meta_path if type(f).__name__ == "_QuietImports"]
    assert len(hooks) == 1


def _clean_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("TF_CPP_MIN_LOG_LEVEL", "GLOG_minloglevel", "BONEAGE_DEBUG"):
        env.pop(name, None)
    return env


@pytest.mark.parametrize("module", ["boneage.predict", "boneage.evaluate", "boneage.preprocess"])
def test_help_is_silent(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=120,
    )
    assert done.returncode == 0
    assert done.stderr == ""


@pytest.mark.slow
def test_predict_on_a_real_film_prints_no_native_log_lines() -> None:
    films = image_files("test299")
    if not films:
        pytest.skip(
            "real RSNA films not found at ../shared/data/rsna/test299 "
            "(set BONEAGE_SHARED to its shared/ dir)"
        )
    film: Path = films[0]
    done = subprocess.run(
        [sys.executable, "-m", "boneage.predict", str(film), "--sex", "M"],
        capture_output=True,
        text=True,
        env=_clean_env(),  # as a user runs it: no log level of their own
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert film.name in done.stdout
    assert not NOISE.findall(done.stderr), done.stderr
