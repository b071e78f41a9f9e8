"""Rust vs OpenCV on a real full-resolution radiograph: preprocess, and batch decode+preprocess.

Run: ``pytest benches/bench_preprocess.py --benchmark-only``. The summary at the end prints
the ratios the project targets: preprocess >= 2x OpenCV with one thread and >= 1x OpenCV
with its default threads; 64 files with 2 threads >= 1.8x the 1-thread rate.

``BONEAGE_BENCH_SMOKE=1`` (see :mod:`benchkit`): the batch benchmarks take 4 files instead of
64 and every benchmark runs once; the native-vs-OpenCV equality check still runs.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from benchkit import ratio, record, run, sized
from boneage import _native as native
from boneage.ingest import reference as ref

RSNA = Path(__file__).resolve().parents[2] / "shared" / "data" / "rsna"
N_FILES = sized(64, 4)  # files per decode+preprocess batch


def largest_fullres() -> Path:
    files = sorted((RSNA / "fullres").glob("*.png"))
    files = [f for f in files if "preprocessed" not in f.name]
    if not files:
        pytest.skip(f"no full-resolution radiographs under {RSNA / 'fullres'}")
    # A typical large RSNA scan (2044 px tall); fall back to the largest file.
    for f in files:
        if cv2.imread(str(f), cv2.IMREAD_GRAYSCALE).shape == (2044, 1514):
            return f
    return max(files, key=lambda f: f.stat().st_size)


@pytest.fixture(scope="module")
def radiograph() -> tuple[np.ndarray, tuple[int, int, int, int]]:
    img = native.read_gray(largest_fullres())
    h, w = img.shape
    return img, (w // 20, h // 25, w - w // 20, h)  # a hand crop keeps most of the frame


@pytest.fixture
def opencv_threads():
    before = cv2.getNumThreads()
    yield cv2.setNumThreads
    cv2.setNumThreads(before)


ratio("preprocess: native vs OpenCV 1 thread", "pre_cv1", "pre_native", 2.0)
ratio("preprocess: native vs OpenCV default threads", "pre_cvN", "pre_native", 1.0)
ratio("preprocess: native 1 thread vs OpenCV 1 thread", "pre_cv1", "pre_native1", 1.0)
ratio(f"{N_FILES} files decode+preprocess: 2 threads vs 1", "files_1", "files_2", 1.8)
ratio(f"{N_FILES} files decode+preprocess: native 2 threads vs OpenCV", "files_cv", "files_2", 1.0)


@pytest.mark.benchmark(group="preprocess one radiograph")
def test_preprocess_native(benchmark, radiograph):
    img, box = radiograph
    out = run(benchmark, native.preprocess, (img, box))
    assert out.shape == (256, 256)
    record(benchmark, "pre_native")


@pytest.mark.benchmark(group="preprocess one radiograph")
def test_preprocess_native_one_thread(benchmark, radiograph):
    img, box = radiograph
    # preprocess_batch with threads=1 runs the same fused code on a one-thread pool.
    out, _ = run(benchmark, native.preprocess_batch, ([img], [box]), {"threads": 1})
    assert out.shape == (1, 256, 256)
    record(benchmark, "pre_native1")


@pytest.mark.benchmark(group="preprocess one radiograph")
def test_preprocess_opencv_one_thread(benchmark, radiograph, opencv_threads):
    img, box = radiograph
    opencv_threads(1)
    out = run(benchmark, ref.preprocess, (img, box))
    np.testing.assert_array_equal(out, native.preprocess(img, box))
    record(benchmark, "pre_cv1")


@pytest.mark.benchmark(group="preprocess one radiograph")
def test_preprocess_opencv_default_threads(benchmark, radiograph, opencv_threads):
    img, box = radiograph
    opencv_threads(-1)
    run(benchmark, ref.preprocess, (img, box))
    record(benchmark, "pre_cvN")


@pytest.fixture(scope="module")
def batch_files() -> list[Path]:
    """N_FILES full-resolution films, cycling through fullres/ when it holds fewer."""
    files = sorted(f for f in (RSNA / "fullres").glob("*.png") if "preprocessed" not in f.name)
    if not files:
        pytest.skip(f"no full-resolution radiographs under {RSNA / 'fullres'}")
    return [files[i % len(files)] for i in range(N_FILES)]


@pytest.mark.benchmark(group=f"decode+preprocess {N_FILES} files", min_rounds=3)
@pytest.mark.parametrize("threads", [1, 2])
def test_files_native(benchmark, batch_files, threads):
    out, errors = run(
        benchmark, native.preprocess_files, (batch_files,), {"threads": threads}, rounds=3
    )
    assert not errors and out.shape == (N_FILES, 256, 256)
    benchmark.extra_info["images_per_s"] = N_FILES / record(benchmark, f"files_{threads}")


@pytest.mark.benchmark(group=f"decode+preprocess {N_FILES} files")
def test_files_opencv(benchmark, batch_files, opencv_threads):
    opencv_threads(-1)

    def job() -> list[np.ndarray]:
        return [ref.preprocess_file(p) for p in batch_files]

    out = run(benchmark, job, rounds=3)
    assert len(out) == N_FILES
    benchmark.extra_info["images_per_s"] = N_FILES / record(benchmark, "files_cv")
