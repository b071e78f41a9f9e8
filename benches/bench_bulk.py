"""Throughput of the whole bulk job on real full-resolution radiographs, engine vs engine.

Run: ``pytest benches/bench_bulk.py --benchmark-only``. Each benchmark runs the same job
(decode, localise, crop, CLAHE, pad, resize, shards, manifest) on ../shared/data/rsna/fullres;
the summary prints images/s ratios measured in this run. Target: the native engine without
MediaPipe at least 2x the OpenCV engine.

``BONEAGE_BENCH_SMOKE=1`` (see :mod:`benchkit`): the first 6 films instead of all 60, one
round each, no warm-up; both localisers still run, so every job's ``ok`` count is checked.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchkit import SMOKE, ratio, record, run, sized
from boneage.ingest.bulk import Options
from boneage.ingest.bulk import run as bulk_run
from boneage.settings import Preprocessing

RSNA = Path(__file__).resolve().parents[2] / "shared" / "data" / "rsna"
N_FILMS = sized(60, 6)  # all of fullres/; the smoke run takes the first 6

ratio("bulk job, native localiser: native engine vs opencv engine", "bulk_opencv_native",
      "bulk_native_native", 2.0)  # fmt: skip
ratio("bulk job, MediaPipe auto: native engine vs opencv engine", "bulk_opencv_auto",
      "bulk_native_auto", 1.0)  # fmt: skip


@pytest.fixture(scope="module")
def fullres() -> list[str]:
    """The job's inputs: the folder itself (the real job walks it), or in smoke mode the
    first N_FILMS files of it."""
    path = RSNA / "fullres"
    if not path.is_dir():
        pytest.skip(f"real radiographs not found at {path}")
    if not SMOKE:
        return [str(path)]
    return [str(f) for f in sorted(path.iterdir()) if not f.name.startswith(".")][:N_FILMS]


@pytest.mark.benchmark(group=f"bulk job on fullres/ ({N_FILMS} radiographs)")
@pytest.mark.parametrize("localiser", ["native", "auto"])
@pytest.mark.parametrize("engine", ["native", "opencv"])
def test_bulk_job(benchmark, fullres, tmp_path, engine, localiser):
    out = tmp_path / "out"

    def job() -> int:
        shutil.rmtree(out, ignore_errors=True)
        return bulk_run(
            Options(inputs=fullres, out=str(out), engine=engine,
                    preprocessing=Preprocessing(localiser=localiser), progress=False, sheet=0)
        ).ok  # fmt: skip

    rounds = 1 if localiser == "auto" else 2
    ok = run(benchmark, job, rounds=rounds, warmup_rounds=1 if localiser == "auto" else 0)
    assert ok == N_FILMS
    benchmark.extra_info["images_per_s"] = ok / record(benchmark, f"bulk_{engine}_{localiser}")
