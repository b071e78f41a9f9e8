"""Training throughput of each model: one train step (forward + backward + AdamW update).

Run: ``pytest benches/bench_models.py --benchmark-only`` (skipped in the default run, which
passes ``--benchmark-skip``). 256 x 256 x 1 images, batch 16, Huber(15) loss, the active Keras
backend and its default compilation (TensorFlow on a CPU: a graph, no XLA). The first step,
which traces the graph, runs before timing. ``extra_info["images_per_s"]`` is 16 / median.

``BONEAGE_BENCH_MODELS=resnet34_cbam,densenet121`` restricts the run to some models.

``BONEAGE_BENCH_SMOKE=1`` (see :mod:`benchkit`): every model at 32 x 32, batch 2, one eager
step, no untimed first step. Eager, because tracing the train-step graph alone takes 50-120 s
per model on a CPU, while the smoke run only has to show that each model builds, trains a step
and returns a finite loss.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest

import boneage.models as bm
from benchkit import SMOKE, record, run, sized

IMAGE_SIZE = sized(256, 32)
BATCH = sized(16, 2)
MODELS = ["densenet121", "resnet34_cbam", "densenet121_cbam"]
SELECTED = [m for m in os.environ.get("BONEAGE_BENCH_MODELS", ",".join(MODELS)).split(",") if m]


@pytest.mark.benchmark(group=f"train step, {IMAGE_SIZE}x{IMAGE_SIZE}, batch {BATCH}")
@pytest.mark.parametrize("name", SELECTED)
def test_train_step(benchmark, name):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = {
        "image": rng.random((BATCH, IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.float32),
        "male": rng.integers(0, 2, (BATCH, 1)).astype(np.float32),
    }
    y = rng.uniform(1.0, 228.0, (BATCH, 1)).astype(np.float32)
    model = bm.build_model(name, image_size=IMAGE_SIZE)
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-3, weight_decay=0.01),
        loss=keras.losses.Huber(delta=15.0),
        run_eagerly=SMOKE,
    )
    if not SMOKE:
        model.train_on_batch(x, y)  # trace / compile outside the timing

    loss = run(benchmark, lambda: model.train_on_batch(x, y), rounds=3, warmup_rounds=1)
    assert np.isfinite(float(np.asarray(loss)))
    median = record(benchmark, f"train_step_{name}")
    benchmark.extra_info.update(
        images_per_s=BATCH / median,
        backend=keras.backend.backend(),
        batch=BATCH,
        image_size=IMAGE_SIZE,
        parameters=model.count_params(),
    )
