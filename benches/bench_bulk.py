"""Throughput of the whole bulk job on real full-resolution radiographs, engine vs engine.

Run: ``pytest benches/bench_bulk.py --benchmark-only``. Each benchmark runs the same job
(decode, localise, crop, CLAHE, pad, resize, shards, manifest) on ../shared/data/rsna/fullres;
the summary prints images/s ratios measured in this run. Target: the native engine without
MediaPipe at least 2x the OpenCV engine.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchkit import ratio, record
from boneage.bulk import Options, run

RSNA = Path(__file__).resolve().parents[2] / "shared" / "data" / "rsna"

ratio("bulk job, native localiser: native engine vs opencv engine", "bulk_opencv_native",
      "bulk_native_native", 2.0)  # fmt: skip
ratio("bulk job, MediaPipe auto: native engine vs opencv engine", "bulk_opencv_auto",
      "bulk_native_auto", 1.0)  # fmt: skip


@pytest.fixture(scope="module")
def fullres() -> Path:
    path = RSNA / "fullres"
    if not path.is_dir():
        pytest.skip(f"real radiographs not found at {path}")
    return path


@pytest.mark.benchmark(group="bulk job on fullres/ (60 radiographs)")
@pytest.mark.parametrize("localiser", ["native", "auto"])
@pytest.mark.parametrize("engine", ["native", "opencv"])
def test_bulk_job(benchmark, fullres, tmp_path, engine, localiser):
    out = tmp_path / "out"

    def job() -> int:
        shutil.rmtree(out, ignore_errors=True)
        return run(
            Options(inputs=[str(fullres)], out=str(out), engine=engine, localiser=localiser,
                    progress=False, sheet=0)
        ).ok  # fmt: skip

    rounds = 1 if localiser == "auto" else 2
    ok = benchmark.pedantic(job, rounds=rounds, warmup_rounds=1 if localiser == "auto" else 0)
    assert ok == 60
    benchmark.extra_info["images_per_s"] = ok / benchmark.stats.stats.median
    record(benchmark, f"bulk_{engine}_{localiser}")
