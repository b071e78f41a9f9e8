"""The straight-line age calibration (boneage.models.calibration): fitted by least absolute
deviations, used only when cross-validation says it helps, kept inside the model file, and
shipped with the model it corrects."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from boneage import modelio
from boneage.inference import to_model_inputs
from boneage.models.calibration import (
    MIN_GAIN,
    AgeCalibration,
    calibrated,
    calibration_of,
    fit_affine,
    study,
)
from boneage.models.ensemble import ensemble, members
from boneage.settings import Preprocessing
from boneage.shards import read_split

PP = Preprocessing(image_size=32, localiser="none", mode="squash")


def _shrunk(n: int, seed: int, keep: float) -> tuple[np.ndarray, np.ndarray]:
    """True ages and estimates pulled towards the mean by ``1 - keep`` (plus noise)."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(10, 220, n)
    return truth, truth.mean() + keep * (truth - truth.mean()) + rng.normal(0, 4, n)


def test_fit_affine_finds_the_line_despite_outliers():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 200, 400)
    t = 1.2 * p - 10 + rng.normal(0, 1, 400)
    t[:20] += 300  # a few wild labels: least squares would tilt, absolute deviations not
    slope, intercept = fit_affine(p, t)
    assert slope == pytest.approx(1.2, abs=0.01) and intercept == pytest.approx(-10, abs=1.0)
    with pytest.raises(ValueError, match="two distinct"):
        fit_affine(np.full(5, 3.0), np.arange(5.0))


def test_study_uses_the_line_only_when_it_helps_on_unseen_folds():
    truth, shrunk = _shrunk(600, 1, keep=0.8)
    helped = study(shrunk, truth)
    assert helped["used"] and helped["mae_cross_validated"] < helped["mae_plain"] - 1.0
    assert helped["slope"] == pytest.approx(1 / 0.8, rel=0.05)
    truth, honest = _shrunk(600, 2, keep=1.0)
    unneeded = study(honest, truth)  # nothing to correct: refitting only adds noise
    assert not unneeded["used"]
    # A model whose estimates fall as the age rises is not rescued by a falling line.
    backwards = study(truth.mean() - (honest - truth.mean()), truth)
    assert backwards["slope"] < 0 and backwards["mae_cross_validated"] < backwards["mae_plain"]
    assert not backwards["used"]
    with pytest.raises(ValueError, match="too few"):
        study(honest[:10], truth[:10])


def _tiny(name: str) -> keras.Model:
    image = keras.Input((8, 8, 1), name="image")
    male = keras.Input((1,), name="male")
    x = keras.layers.Concatenate()([keras.layers.GlobalAveragePooling2D()(image), male])
    return keras.Model([image, male], keras.layers.Dense(1, name="bone_age")(x), name=name)


def test_calibrated_model_applies_the_line_and_keeps_it_in_its_file(tmp_path):
    keras.utils.set_random_seed(3)
    x = {"image": np.random.default_rng(0).random((5, 8, 8, 1), np.float32),
         "male": np.array([[0], [1], [0], [1], [1]], np.float32)}  # fmt: skip
    base = _tiny("plain")
    plain = np.asarray(base(x))
    model = calibrated(base, 1.5, -7.0)
    np.testing.assert_allclose(np.asarray(model(x)), 1.5 * plain - 7.0, rtol=1e-5, atol=1e-4)
    # Calibrating again composes the lines: still one layer at the end.
    twice = calibrated(model, 2.0, 1.0)
    assert sum(isinstance(layer, AgeCalibration) for layer in twice.layers) == 1
    np.testing.assert_allclose(np.asarray(twice(x)), 2 * (1.5 * plain - 7) + 1, rtol=1e-5,
                               atol=1e-4)  # fmt: skip
    path = modelio.save(model, tmp_path / "c.keras", modelio.ModelMeta(preprocessing=PP))
    loaded, _ = modelio.load(path)
    line = calibration_of(loaded)
    assert line is not None and (line.slope, line.intercept) == (1.5, -7.0)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), rtol=1e-6)
    assert calibration_of(base) is None
    # An ensemble keeps its members as direct layers once calibrated (explain, unpacking).
    pair = calibrated(ensemble([_tiny("a"), _tiny("b")]), 1.1, 2.0)
    assert len(members(pair)) == 2


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Shards whose images are flat grey at a level that encodes the age (plus noise): a
    model reading the mean grey level can be made as right or as squeezed as a test needs."""
    from boneage import _native as native

    d = tmp_path_factory.mktemp("grey")
    rng = np.random.default_rng(7)
    for split, n in (("train", 32), ("val", 80)):
        with native.ShardWriter(str(d), split, 1) as w:
            for i, age in enumerate(rng.uniform(12, 216, n)):
                level = np.clip(age + rng.normal(0, 6), 0, 255)
                w.write(np.full((32, 32), level, np.uint8), f"{split}-{i}", male=i % 2 == 0,
                        age=float(age))  # fmt: skip
    PP.write(d)
    return d


def _reader(mean_age: float, keep: float) -> keras.Model:
    """age = mean + keep * (255 * mean grey - mean): the grey level, squeezed by ``keep``."""
    image = keras.Input((32, 32, 1), name="image")
    male = keras.Input((1,), name="male")
    x = keras.layers.Concatenate()([keras.layers.GlobalAveragePooling2D()(image), male])
    head = keras.layers.Dense(1, name="bone_age")
    model = keras.Model([image, male], head(x), name="reader")
    head.set_weights([np.array([[255 * keep], [0.0]], np.float32),
                      np.array([(1 - keep) * mean_age], np.float32)])  # fmt: skip
    return model


def test_ship_adds_the_line_that_validation_asks_for(data, tmp_path, monkeypatch):
    """A run whose estimates are squeezed to half their spread around the mean ships with
    the line that stretches them back: the shipped file scores what the study promised;
    without calibration the same run ships as it is."""
    from boneage.training import shipping

    monkeypatch.setattr(shipping, "SHIPPED", tmp_path / "shipped")
    _images, _male, age, _ids = read_split(data, "train")
    run = tmp_path / "squeezed"
    run.mkdir()
    meta = modelio.ModelMeta(preprocessing=PP, model_name="reader",
                             extra={"trained_on": "grey", "command": "squeezed"})  # fmt: skip
    modelio.save(_reader(float(np.mean(age)), 0.5), run / "best.keras", meta)

    result = shipping.ship([str(run)], str(data), "val", [0])
    shipped, shipped_meta = modelio.load(result["model"])
    choices = shipped_meta.extra["choices_on_validation"]
    line = choices["calibration"]
    assert line["used"] and line["slope"] == pytest.approx(2.0, rel=0.1)
    assert line["mae_cross_validated"] < line["mae_plain"] - MIN_GAIN
    images, male, v_age, _ids = read_split(data, "val")
    vx = to_model_inputs(images, male, 32)
    mae = float(np.mean(np.abs(shipped.predict(vx, verbose=0)[:, 0] - v_age)))
    assert mae == pytest.approx(choices["val_mae_of_shipped_file"], abs=1e-3)
    assert mae == pytest.approx(line["mae_in_sample"], abs=0.05)
    assert calibration_of(shipped) is not None

    plain = shipping.ship([str(run)], str(data), "val", [0], calibrate=False)
    unshipped, _ = modelio.load(plain["model"])
    assert calibration_of(unshipped) is None
    plain_mae = float(np.mean(np.abs(unshipped.predict(vx, verbose=0)[:, 0] - v_age)))
    assert plain_mae == pytest.approx(line["mae_plain"], abs=1e-3) and plain_mae > mae + 5


def test_explaining_a_calibrated_ensemble_reports_its_calibrated_estimate():
    from boneage.inference.explain import explainer

    keras.utils.set_random_seed(5)
    pair = calibrated(ensemble([_reader(100.0, 0.5), _reader(120.0, 0.8)]), 1.4, -20.0)
    rng = np.random.default_rng(1)
    images = rng.integers(1, 256, (3, 32, 32)).astype(np.uint8)
    male = np.array([1, 0, 1])
    maps = explainer(pair).maps(images, male)
    direct = pair.predict(to_model_inputs(images, male, 32), verbose=0)[:, 0]
    np.testing.assert_allclose(maps.output, direct, rtol=1e-5, atol=1e-3)
