"""The web app's ``POST /api/predict`` with the shipped model: requests/s and p50/p95 latency.

Run: ``pytest benches/bench_serve.py --benchmark-only -s``. Requests go through FastAPI's
test client (the whole ASGI app: streaming multipart parse, decode, preparation, estimate
with the model's TTA copies, Grad-CAM, three PNGs and the JSON), without a socket, so the
figures are the app's own cost, not the network's. One full-resolution RSNA radiograph
(2-3 MB PNG, the size a clinic exports), else a synthetic one of that size.

Two figures: sequential (one client: latency p50/p95 and requests/s) and concurrent (four
client threads: requests/s; model calls are serialised by the app's lock, so this shows
what overlapping the parsing and encoding with the model buys).

``BONEAGE_BENCH_SMOKE=1`` (see :mod:`benchkit`): two requests of each kind; every answer is
still checked (status 200, the same estimate every time).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchkit import SMOKE, measured, run, sized, target

pytest.importorskip("fastapi", reason="the web app needs the serve extra: pip install '.[serve]'")
pytest.importorskip("python_multipart", reason="the web app needs python-multipart")

RSNA = Path(__file__).resolve().parents[2] / "shared" / "data" / "rsna"
N_SEQUENTIAL = sized(30, 2)
N_CONCURRENT = sized(40, 2)
THREADS = 4
RATE = "serve: POST /api/predict requests/s, one client"
target(RATE, 0.5)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _radiograph() -> bytes:
    files = sorted((RSNA / "fullres").glob("*.png"))
    if files:
        return max(files, key=lambda f: f.stat().st_size).read_bytes()
    yy, xx = np.mgrid[0:2044, 0:1514]
    img = 40 + 100 * np.exp(-(((xx - 757) / 400.0) ** 2 + ((yy - 1100) / 700.0) ** 2))
    return cv2.imencode(".png", img.astype(np.uint8))[1].tobytes()


@pytest.fixture(scope="module")
def client():
    from fastapi.testclient import TestClient

    from boneage.serve import create_app

    with TestClient(create_app()) as c:
        yield c


def _post(client, data: bytes) -> tuple[float, float]:
    t0 = time.perf_counter()
    r = client.post(
        "/api/predict", files={"file": ("hand.png", data, "image/png")}, data={"sex": "F"}
    )
    elapsed = time.perf_counter() - t0
    assert r.status_code == 200, r.text
    return elapsed, r.json()["bone_age_months"]


def _summary(latencies: list[float], wall: float) -> dict[str, float]:
    lat = np.array(latencies) * 1e3
    return {
        "requests": len(latencies),
        "requests_per_s": len(latencies) / wall,
        "p50_ms": float(np.percentile(lat, 50)),
        "p95_ms": float(np.percentile(lat, 95)),
    }


@pytest.mark.benchmark(group="web app POST /api/predict")
def test_predict_sequential(benchmark, client):
    data = _radiograph()
    _post(client, data)  # warm: the first call of each graph traces it

    def batch() -> tuple[list[float], set[float], float]:
        t0 = time.perf_counter()
        results = [_post(client, data) for _ in range(N_SEQUENTIAL)]
        return [r[0] for r in results], {r[1] for r in results}, time.perf_counter() - t0

    latencies, answers, wall = run(benchmark, batch, rounds=1)
    assert len(answers) == 1  # the same upload always gets the same estimate
    stats = _summary(latencies, wall)
    benchmark.extra_info.update(stats, smoke=SMOKE)
    measured(RATE, stats["requests_per_s"])
    print(
        f"\nserve, one client, {stats['requests']} requests: {stats['requests_per_s']:.2f} "
        f"requests/s, p50 {stats['p50_ms']:.0f} ms, p95 {stats['p95_ms']:.0f} ms"
    )


@pytest.mark.benchmark(group="web app POST /api/predict")
def test_predict_concurrent(benchmark, client):
    data = _radiograph()
    _post(client, data)

    def batch() -> tuple[list[float], set[float], float]:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(THREADS) as pool:
            results = list(pool.map(lambda _: _post(client, data), range(N_CONCURRENT)))
        return [r[0] for r in results], {r[1] for r in results}, time.perf_counter() - t0

    latencies, answers, wall = run(benchmark, batch, rounds=1)
    assert len(answers) == 1
    stats = _summary(latencies, wall)
    benchmark.extra_info.update(stats, threads=THREADS, smoke=SMOKE)
    print(
        f"\nserve, {THREADS} clients, {stats['requests']} requests: "
        f"{stats['requests_per_s']:.2f} requests/s, p50 {stats['p50_ms']:.0f} ms, "
        f"p95 {stats['p95_ms']:.0f} ms"
    )
