"""Rust vs OpenCV on a real full-resolution radiograph: preprocess, and batch decode+preprocess.

Run: ``pytest benches/bench_preprocess.py --benchmark-only``. The summary at the end prints
the ratios the project targets: preprocess >= 2x OpenCV with one thread and >= 1x OpenCV
with its default threads; 64 files with 2 threads >= 1.8x the 1-thread rate.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from benchkit import ratio, record
from boneage import _native as native
from boneage import reference as ref

RSNA = Path(__file__).resolve().parents[2] / "shared" / "data" / "rsna"


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
ratio("64 files decode+preprocess: 2 threads vs 1", "files_1", "files_2", 1.8)
ratio("64 files decode+preprocess: native 2 threads vs OpenCV", "files_cv", "files_2", 1.0)


@pytest.mark.benchmark(group="preprocess one radiograph")
def test_preprocess_native(benchmark, radiograph):
    img, box = radiograph
    out = benchmark(native.preprocess, img, box)
    assert out.shape == (256, 256)
    record(benchmark, "pre_native")


@pytest.mark.benchmark(group="preprocess one radiograph")
def test_preprocess_native_one_thread(benchmark, radiograph):
    img, box = radiograph
    # preprocess_batch with threads=1 runs the same fused code on a one-thread pool.
    out, _ = benchmark(native.preprocess_batch, [img], [box], threads=1)
    assert out.shape == (1, 256, 256)
    record(benchmark, "pre_native1")


@pytest.mark.benchmark(group="preprocess one radiograph")
def test_preprocess_opencv_one_thread(benchmark, radiograph, opencv_threads):
    img, box = radiograph
    opencv_threads(1)
    out = benchmark(ref.preprocess, img, box)
    np.testing.assert_array_equal(out, native.preprocess(img, box))
    record(benchmark, "pre_cv1")


@pytest.mark.benchmark(group="preprocess one radiograph")
def test_preprocess_opencv_default_threads(benchmark, radiograph, opencv_threads):
    img, box = radiograph
    opencv_threads(-1)
    benchmark(ref.preprocess, img, box)
    record(benchmark, "pre_cvN")


@pytest.fixture(scope="module")
def sixty_four_files() -> list[Path]:
    files = sorted(f for f in (RSNA / "fullres").glob("*.png") if "preprocessed" not in f.name)
    if not files:
        pytest.skip(f"no full-resolution radiographs under {RSNA / 'fullres'}")
    return [files[i % len(files)] for i in range(64)]


@pytest.mark.benchmark(group="decode+preprocess 64 files", min_rounds=3)
@pytest.mark.parametrize("threads", [1, 2])
def test_files_native(benchmark, sixty_four_files, threads):
    out, errors = benchmark.pedantic(
        native.preprocess_files, (sixty_four_files,), {"threads": threads}, rounds=3
    )
    assert not errors and out.shape == (64, 256, 256)
    benchmark.extra_info["images_per_s"] = 64 / benchmark.stats.stats.median
    record(benchmark, f"files_{threads}")


@pytest.mark.benchmark(group="decode+preprocess 64 files")
def test_files_opencv(benchmark, sixty_four_files, opencv_threads):
    opencv_threads(-1)

    def run() -> list[np.ndarray]:
        return [ref.preprocess_file(p) for p in sixty_four_files]

    out = benchmark.pedantic(run, rounds=3)
    assert len(out) == 64
    benchmark.extra_info["images_per_s"] = 64 / benchmark.stats.stats.median
    record(benchmark, "files_cv")
