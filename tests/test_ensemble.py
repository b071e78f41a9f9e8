"""Ensembles (boneage.models.ensemble): the mean of their members, saved and loaded as one
model, explained member by member, refused where averaging would be wrong, and shipped only
when validation says they beat their best member. (The straight-line calibration that
shipping may add is switched off here: tests/test_calibration.py covers it.)"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from boneage import modelio
from boneage.inference import to_model_inputs
from boneage.inference.explain import EnsembleCam, explainer
from boneage.models import build_model
from boneage.models.ensemble import ensemble, members
from boneage.settings import Preprocessing
from boneage.shards import read_split
from boneage.training.demo import make_synthetic

PP = Preprocessing(image_size=32, localiser="none", mode="squash")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("phantoms")
    make_synthetic(d, {"train": 96, "val": 48}, 32, seed=5)
    return d


def _inputs(data: Path, split: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    images, male, age, _ids = read_split(data, split)
    return to_model_inputs(images, male, 32), age


def test_ensemble_is_the_mean_of_its_members_and_survives_saving(data, tmp_path):
    keras.utils.set_random_seed(1)
    a, b = build_model("small_cnn", 32, mean_bias=100.0), build_model("small_cnn", 32)
    x, _age = _inputs(data, "val")
    pa, pb = a.predict(x, verbose=0), b.predict(x, verbose=0)
    both = ensemble([a, b])
    assert [m.name for m in members(both)] == ["member_0", "member_1"]
    assert members(a) == []
    np.testing.assert_allclose(both.predict(x, verbose=0), (pa + pb) / 2, rtol=1e-5, atol=1e-4)
    path = modelio.save(both, tmp_path / "e.keras", modelio.ModelMeta(preprocessing=PP))
    again, meta = modelio.load(path)
    assert meta.preprocessing == PP and len(members(again)) == 2
    np.testing.assert_allclose(again.predict(x, verbose=0), (pa + pb) / 2, rtol=1e-5, atol=1e-4)


def test_ensemble_refuses_what_cannot_be_averaged():
    a = build_model("small_cnn", 32)
    with pytest.raises(ValueError, match="at least two"):
        ensemble([a])
    with pytest.raises(ValueError, match="different image shapes"):
        ensemble([a, build_model("small_cnn", 48)])
    with pytest.raises(ValueError, match="uncertainty"):
        ensemble([a, build_model("small_cnn", 32, uncertainty=True)])


def _linear(weight: float, name: str) -> keras.Model:
    """y = 100 + weight * mean(image) + 3 * male, through a 1x1 conv feature map: Grad-CAM of
    it is the image over its maximum, whatever the sign of ``weight``."""
    image = keras.Input((8, 8, 1), name="image")
    male = keras.Input((1,), name="male")
    feat = keras.layers.Conv2D(1, 1, use_bias=False, kernel_initializer="ones")(image)
    x = keras.layers.Concatenate()([keras.layers.GlobalAveragePooling2D()(feat), male])
    dense = keras.layers.Dense(1, name="bone_age")
    model = keras.Model([image, male], dense(x), name=name)
    dense.set_weights([np.array([[weight], [3.0]], np.float32), np.array([100.0], np.float32)])
    return model


def test_ensemble_gradcam_averages_its_members_exactly():
    rng = np.random.default_rng(2)
    images = rng.integers(1, 256, (3, 8, 8)).astype(np.uint8)
    male = np.array([0, 1, 0])
    cam = explainer(ensemble([_linear(50.0, "up"), _linear(-20.0, "down")]))
    assert isinstance(cam, EnsembleCam)
    assert cam.layer.count("member_") == 2
    maps = cam.maps(images, male)
    # Each member's map is the image over its maximum (the second explains a lowering), so
    # their average is too; output and baseline are the members' means.
    expected = images / images.reshape(3, -1).max(axis=1)[:, None, None]
    np.testing.assert_allclose(maps.heat, expected, atol=1e-5)
    x = images.astype(np.float64) / 255
    np.testing.assert_allclose(maps.output, 100 + 15 * x.mean(axis=(1, 2)) + 3 * male, 1e-4)
    np.testing.assert_allclose(maps.baseline, 100 + 3 * male, atol=1e-4)


def _run(
    data: Path, root: Path, seed: int, epochs: int, pp: Preprocessing = PP, shift: float = 0.0
) -> Path:
    """A small trained run; ``shift`` adds that many months to every prediction."""
    keras.utils.set_random_seed(seed)
    x, age = _inputs(data, "train")
    model = build_model("small_cnn", 32, mean_bias=float(np.mean(age)))
    model.compile(optimizer=keras.optimizers.AdamW(3e-3), loss="mae")
    model.fit(x, age, epochs=epochs, batch_size=16, verbose=0)
    out = model.get_layer("bone_age")
    kernel, bias = out.get_weights()
    out.set_weights([kernel, bias + np.float32(shift)])
    run = root / (f"run{seed}" + (f"_shift{shift:g}" if shift else ""))
    run.mkdir()
    extra = {"trained_on": "phantoms", "command": f"seed {seed}"}
    meta = modelio.ModelMeta(preprocessing=pp, model_name="small_cnn", extra=extra)
    modelio.save(model, run / "best.keras", meta)
    return run


def test_ship_several_runs_keeps_the_best_on_validation(data, tmp_path, monkeypatch):
    from boneage.training import shipping

    monkeypatch.setattr(shipping, "SHIPPED", tmp_path / "shipped")
    runs = [str(_run(data, tmp_path, seed, 3)) for seed in (1, 2)]
    result = shipping.ship(runs, str(data), "val", [0, 2], calibrate=False)
    shipped = Path(result["model"])
    assert [p.name for p in (tmp_path / "shipped").iterdir()] == [shipped.name]
    meta = modelio.read_meta(shipped)
    assert meta is not None and meta.preprocessing == PP
    model, _ = modelio.load(shipped)
    x, age = _inputs(data, "val")
    choices = meta.extra["choices_on_validation"]
    record = choices if members(model) else choices["ensembles"]
    scored = record["val_mae_by_subset_and_tta"]
    assert set(scored) == {"0", "1", "0+1"} and set(scored["0+1"]) == {"0", "2"}  # JSON keys
    best = {key: min(m.values()) for key, m in scored.items()}
    assert "+".join(str(["run1", "run2"].index(r)) for r in record["chosen"]) == min(
        best, key=lambda k: (round(best[k], 2), len(k))
    )
    if members(model):  # the ensemble won: it beat both members on validation
        assert meta.model_name == "ensemble2-small_cnn"
        assert meta.extra["command"] == "seed 1\nseed 2"
        assert [m["command"] for m in meta.extra["members"]] == ["seed 1", "seed 2"]
        # The file itself gives what the members' cached predictions promised.
        assert choices["val_mae_of_shipped_file"] == pytest.approx(
            scored["0+1"][meta.tta], abs=1e-3
        )
    else:  # a member won on its own and ships as it is
        assert meta.model_name == "small_cnn"
    if meta.tta == 0:  # what was recorded is what the shipped file does on validation
        mae = float(np.mean(np.abs(model.predict(x, verbose=0)[:, 0] - age)))
        assert mae == pytest.approx(min(best.values()), abs=1e-3)


def test_ship_keeps_an_ensemble_that_cancels_its_members_errors(data, tmp_path, monkeypatch):
    """One model shifted 60 months up and 60 down: each run alone is far off, their average
    is the model itself (which starts at the mean age), so the ensemble must win and ship."""
    from boneage.training import shipping

    monkeypatch.setattr(shipping, "SHIPPED", tmp_path / "shipped")
    up, down = (str(_run(data, tmp_path, 1, 1, shift=s)) for s in (60.0, -60.0))
    result = shipping.ship([up, down], str(data), "val", [0], calibrate=False)
    model, meta = modelio.load(result["model"])
    assert len(members(model)) == 2 and meta.tta == 0
    choices = meta.extra["choices_on_validation"]
    assert choices["chosen"] == [Path(up).name, Path(down).name]
    scored = choices["val_mae_by_subset_and_tta"]
    assert scored["0+1"]["0"] < min(scored["0"]["0"], scored["1"]["0"]) - 10
    x, age = _inputs(data, "val")
    mae = float(np.mean(np.abs(model.predict(x, verbose=0)[:, 0] - age)))
    assert mae == pytest.approx(choices["val_mae_of_shipped_file"], abs=1e-3)
    # The shipped ensemble given again takes part as its two members: their pair scores what
    # the file did, and it ships again with each member's provenance.
    again = shipping.ship([result["model"]], str(data), "val", [0], calibrate=False)
    assert again["val_mae_by_subset_and_tta"]["0+1"][0] == pytest.approx(mae, abs=1e-3)
    assert len(again["chosen"]) == 2 and again["chosen"][0].endswith("member_0.keras")
    assert [m["command"] for m in modelio.read_meta(again["model"]).extra["members"]] == [
        "seed 1",
        "seed 1",
    ]
    params = model.count_params()  # both members'
    # Over the limit as float32, within it as float16: the pair ships with half weights,
    # scored again as rounded; plain Keras loads them back as float32.
    monkeypatch.setattr(shipping, "MAX_BYTES", 3 * params)
    result = shipping.ship([up, down], str(data), "val", [0], calibrate=False)
    assert result["weights"] == "float16" and result["float16_to_fit"] == ["0+1"]
    assert result["bytes"] < 3 * params
    model, meta = modelio.load(result["model"])
    assert len(members(model)) == 2 and {str(w.dtype) for w in model.get_weights()} == {"float32"}
    mae = float(np.mean(np.abs(model.predict(x, verbose=0)[:, 0] - age)))
    record = meta.extra["choices_on_validation"]
    assert mae == pytest.approx(record["val_mae_of_shipped_file"], abs=1e-3)
    assert record["val_mae_of_shipped_file"] == pytest.approx(
        record["val_mae_by_subset_and_tta"]["0+1"]["0"], abs=0.05
    )
    # An ensemble whose file would break the size limit even so is not scored: a member
    # ships (itself halved: one member fits as float16 only).
    monkeypatch.setattr(shipping, "MAX_BYTES", int(1.5 * params))
    result = shipping.ship([up, down], str(data), "val", [0], calibrate=False)
    model, meta = modelio.load(result["model"])
    assert members(model) == [] and result["weights"] == "float16"
    record = meta.extra["choices_on_validation"]["ensembles"]
    assert record["over_size_limit"] == ["0+1"] and "0+1" not in record["val_mae_by_subset_and_tta"]
    assert record["float16_to_fit"] == ["0", "1"]
    # A run given alone is halved too when only float16 fits, and refused when nothing does.
    result = shipping.ship([up], str(data), "val", [0], calibrate=False)
    assert result["weights"] == "float16" and result["bytes"] < int(1.5 * params)
    monkeypatch.setattr(shipping, "MAX_BYTES", params // 4)
    with pytest.raises(ValueError, match="even with float16 weights"):
        shipping.ship([up], str(data), "val", [0], calibrate=False)


def test_ship_refuses_members_prepared_differently(data, tmp_path, monkeypatch):
    from boneage.training import shipping

    monkeypatch.setattr(shipping, "SHIPPED", tmp_path / "shipped")
    other = Preprocessing(image_size=32, localiser="none", mode="squash", clip_limit=3.0)
    runs = [str(_run(data, tmp_path, 1, 1)), str(_run(data, tmp_path, 2, 1, other))]
    # The member made for other data is refused as soon as it is scored on this data (the
    # one check, LoadedModel.check_data, that every command's predictions pass).
    with pytest.raises(ValueError, match=r"clip_limit': 3\.0.*figures would be meaningless"):
        shipping.ship(runs, str(data), "val", [0], calibrate=False)
    assert not (tmp_path / "shipped").exists() or not list((tmp_path / "shipped").iterdir())
