"""Shipping a model: precise batch-norm statistics and the choices recorded in the file."""

from __future__ import annotations

import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from boneage import modelio
from boneage.inference import to_model_inputs
from boneage.models import build_model
from boneage.settings import Preprocessing
from boneage.shards import read_split
from boneage.training.demo import make_synthetic
from boneage.training.shipping import recalibrate_bn


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("phantoms")
    make_synthetic(d, {"train": 96, "val": 32}, 32, seed=3)
    return d


def test_precise_bn_is_the_mean_of_batch_statistics(data):
    keras.utils.set_random_seed(0)
    model = build_model("small_cnn", 32)
    moved = recalibrate_bn(model, str(data), "train", batch_size=32)
    assert moved == 3
    # Recompute the first BN layer's input statistics batch by batch, as the layer sees them.
    images, male, _age, _ids = read_split(data, "train")
    order = np.random.default_rng(0).permutation(len(images))
    conv = keras.Model(model.inputs, model.get_layer("stem_conv").output)
    means = []
    for start in range(0, 96, 32):
        pick = order[start : start + 32]
        out = np.asarray(conv(to_model_inputs(images[pick], male[pick], 32)))
        means.append(out.mean(axis=(0, 1, 2)))
    bn = model.get_layer("stem_bn")
    np.testing.assert_allclose(np.asarray(bn.moving_mean), np.mean(means, axis=0), rtol=1e-4,
                               atol=1e-5)  # fmt: skip
    assert bn.momentum == 0.9  # restored afterwards


def test_ship_records_its_choices_and_drops_the_optimizer(data, tmp_path, monkeypatch):
    from boneage.training import shipping

    keras.utils.set_random_seed(0)
    model = build_model("small_cnn", 32)
    model.compile(optimizer="adamw", loss="mae")
    model.fit(to_model_inputs(*read_split(data, "train")[:2], 32), read_split(data, "train")[2],
              epochs=1, verbose=0)  # fmt: skip
    pp = Preprocessing(image_size=32, localiser="none", mode="squash")
    meta = modelio.ModelMeta(preprocessing=pp, model_name="small_cnn",
                             extra={"trained_on": "phantoms"})  # fmt: skip
    run = tmp_path / "run"
    run.mkdir()
    modelio.save(model, run / "best.keras", meta)
    monkeypatch.setattr(shipping, "SHIPPED", tmp_path / "shipped")
    result = shipping.ship(str(run), str(data), "val", [0, 2])
    shipped = Path(result["model"])
    assert shipped.parent == tmp_path / "shipped"
    again = modelio.read_meta(shipped)
    assert again is not None and again.preprocessing == pp
    assert again.tta == result["tta"] and again.tta in (0, 2)
    choices = again.extra["choices_on_validation"]
    assert set(choices["val_mae_by_tta_training_bn"]) == {"0", "2"}  # JSON keys
    assert shipped.stat().st_size < (run / "best.keras").stat().st_size  # no optimizer state


def test_half_storage_halves_the_file_and_loads_as_float32(tmp_path):
    """``save(half=True)`` stores float16 weights (a smaller file) that plain Keras loads
    back into float32 variables, predicting exactly what :func:`round_to_half` predicts;
    a weight float16 cannot hold is refused, not stored as infinity."""
    import h5py

    model = build_model("small_cnn", 32)
    meta = modelio.ModelMeta(preprocessing=Preprocessing(image_size=32), model_name="small_cnn")
    full = modelio.save(model, tmp_path / "full.keras", meta)
    half = modelio.save(model, tmp_path / "half.keras", meta, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    with zipfile.ZipFile(half) as zf, h5py.File(zf.open(modelio.WEIGHTS_NAME)) as f:
        dtypes: set[str] = set()
        f.visititems(
            lambda _n, o: dtypes.add(str(o.dtype)) if isinstance(o, h5py.Dataset) else None
        )
    assert dtypes == {"float16"}
    loaded = keras.saving.load_model(half, compile=False)
    assert {str(w.dtype) for w in loaded.get_weights()} == {"float32"}
    assert modelio.read_meta(half) == meta
    x = {"image": np.random.default_rng(0).random((4, 32, 32, 1), np.float32),
         "male": np.array([[0.0], [1.0], [1.0], [0.0]], np.float32)}  # fmt: skip
    before = np.asarray(model(x))
    modelio.round_to_half(model)
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))
    assert np.max(np.abs(np.asarray(model(x)) - before)) < 0.5  # months: rounding only

    kernel = model.get_layer("bone_age").get_weights()
    model.get_layer("bone_age").set_weights([kernel[0], kernel[1] + np.float32(1e5)])
    with pytest.raises(ValueError, match="overflows float16"):
        modelio.save(model, tmp_path / "big.keras", meta, half=True)
    with pytest.raises(ValueError, match="overflows float16"):
        modelio.round_to_half(model)
