"""WarmupCosine: the formula, its shape, serialisation, and the JAX backend."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from boneage.training.schedules import WarmupCosine

PEAK, TOTAL = 5e-3, 1000


def keras_values(schedule: WarmupCosine, steps) -> np.ndarray:
    return np.array([float(keras.ops.convert_to_numpy(schedule(s))) for s in steps])


def test_formula_at_landmarks() -> None:
    s = WarmupCosine(PEAK, TOTAL, warmup_fraction=0.2, initial_lr=1e-4, final_lr=1e-6)
    assert s.warmup_steps == 200
    expected = {
        0: 1e-4,  # warm-up start
        100: 1e-4 + (PEAK - 1e-4) / 2,  # half-way up the half cosine
        200: PEAK,  # peak
        600: 1e-6 + (PEAK - 1e-6) / 2,  # half-way down
        1000: 1e-6,  # end
        5000: 1e-6,  # constant after
    }
    steps = list(expected)
    want = np.array(list(expected.values()))
    np.testing.assert_allclose(s.lr_at(steps), want, rtol=1e-12)
    np.testing.assert_allclose(keras_values(s, steps), want, rtol=1e-5)
    # One interior point of each phase against the written-out formula.
    up = 1e-4 + (PEAK - 1e-4) * 0.5 * (1 - math.cos(math.pi * 37 / 200))
    down = 1e-6 + (PEAK - 1e-6) * 0.5 * (1 + math.cos(math.pi * (731 - 200) / 800))
    np.testing.assert_allclose(s.lr_at([37, 731]), [up, down], rtol=1e-12)


def test_keras_matches_numpy_everywhere() -> None:
    s = WarmupCosine(PEAK, 300, warmup_fraction=0.25)
    steps = np.arange(0, 340, 7)
    np.testing.assert_allclose(keras_values(s, steps), s.lr_at(steps), rtol=1e-5, atol=1e-10)


def test_monotone_phases() -> None:
    s = WarmupCosine(PEAK, TOTAL)
    lr = s.values()
    assert lr.shape == (TOTAL + 1,)
    assert np.all(np.diff(lr[: s.warmup_steps + 1]) > 0)  # rising through the warm-up
    assert np.all(np.diff(lr[s.warmup_steps :]) < 0)  # falling through the decay
    assert lr.argmax() == s.warmup_steps
    np.testing.assert_array_equal(s.values(5), s.lr_at(np.arange(5)))


def test_edge_fractions() -> None:
    no_warmup = WarmupCosine(PEAK, 100, warmup_fraction=0.0)
    assert no_warmup.lr_at(0) == pytest.approx(PEAK)
    all_warmup = WarmupCosine(PEAK, 100, warmup_fraction=1.0)
    assert all_warmup.lr_at(100) == pytest.approx(PEAK)
    assert all_warmup.lr_at(0) == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"total_steps": 0},
        {"total_steps": 10.5},
        {"warmup_fraction": 1.5},
        {"peak_lr": -1.0},
        {"final_lr": math.nan},
    ],
)
def test_rejects_bad_arguments(kwargs) -> None:
    args = {"peak_lr": PEAK, "total_steps": 100, **kwargs}
    with pytest.raises(ValueError):
        WarmupCosine(**args)


def test_config_round_trip() -> None:
    s = WarmupCosine(PEAK, 777, warmup_fraction=0.1, initial_lr=1e-5, final_lr=1e-7, name="x")
    again = WarmupCosine.from_config(s.get_config())
    assert again.get_config() == s.get_config()
    blob = json.dumps(keras.optimizers.schedules.serialize(s))  # JSON-safe
    restored = keras.optimizers.schedules.deserialize(json.loads(blob))
    assert isinstance(restored, WarmupCosine)
    np.testing.assert_allclose(restored.values(), s.values())


def test_inside_a_saved_optimizer(tmp_path) -> None:
    schedule = WarmupCosine(PEAK, 50, warmup_fraction=0.2)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.01), loss="mse")
    x, y = np.ones((8, 3), "float32"), np.ones((8, 1), "float32")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # 2 steps
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # no custom_objects: registered
    config = loaded.optimizer.get_config()["learning_rate"]
    restored = keras.optimizers.schedules.deserialize(config)
    assert isinstance(restored, WarmupCosine)
    assert restored.get_config() == schedule.get_config()
    # The reloaded optimizer resumes at step 2 and follows the schedule from there.
    assert int(loaded.optimizer.iterations) == 2
    lr = float(keras.ops.convert_to_numpy(loaded.optimizer.learning_rate))
    assert lr == pytest.approx(schedule.lr_at(2), rel=1e-5)


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax not installed")
def test_jax_backend_traced() -> None:
    script = textwrap.dedent(
        """
        import json
        import jax, jax.numpy as jnp, keras
        from boneage.training.schedules import WarmupCosine
        assert keras.backend.backend() == "jax"
        s = WarmupCosine(5e-3, 100, warmup_fraction=0.2, initial_lr=1e-4)
        f = jax.jit(lambda step: s(step))
        steps = [0, 5, 20, 60, 100, 150]
        print(json.dumps([float(f(jnp.asarray(k))) for k in steps] + [float(s(7))]))
        """
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    run = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    s = WarmupCosine(5e-3, 100, warmup_fraction=0.2, initial_lr=1e-4)
    np.testing.assert_allclose(got, s.lr_at([0, 5, 20, 60, 100, 150, 7]), rtol=1e-5)
