"""Grad-CAM explanations (boneage.inference.explain): exact on a model whose answer is known,
the same on TensorFlow and JAX for every architecture, on the hand for the shipped model and real
radiographs, and wired into Predictor.explain and ``predict --explain``.

The JAX half runs in a subprocess (tests/_jax_explain.py) because a Keras backend is fixed at
import, as in test_models.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import keras
import numpy as np
import pytest

import boneage.models as bm
from boneage.inference.explain import (
    GradCam,
    explainer,
    feature_layer,
    hand_mask,
    overlay,
    png_bytes,
)
from jax_subprocess import run_under_jax
from shared_data import RSNA, image_files, rsna_dir

SIZE = 64  # the smallest size at which DenseNet's last map is still 2 x 2
ARCHITECTURES = ["small_cnn", "resnet_compact", "densenet121", "resnet34_cbam", "densenet121_cbam"]


def _images(n: int = 2, size: int = SIZE) -> np.ndarray:
    """Structured uint8 images (a bright off-centre block on a ramp), different per index."""
    xx = np.mgrid[0:size, 0:size][1]
    out = []
    for i in range(n):
        img = 30 + 60 * xx / size + 20 * i
        x0 = size // 6 + i * size // 4
        img[size // 4 : size // 2 + i * 4, x0 : x0 + size // 3] += 120
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(out)


# --------------------------------------------------------------------------- exact answer


def _linear_model(weight: float) -> keras.Model:
    """image -> 1x1 identity conv (the map) -> GAP -> Dense with ``weight`` on it.

    Output ``y = b + weight * mean(image) + c * male``, so d y / d map = weight / (S*S)
    everywhere and the baseline (zero map) is ``b + c * male``: Grad-CAM must return the
    image divided by its maximum, for either sign of ``weight``, with direction sign(weight).
    """
    image = keras.Input((8, 8, 1), name="image")
    male = keras.Input((1,), name="male")
    feat = keras.layers.Conv2D(1, 1, use_bias=False, kernel_initializer="ones", name="feat")(image)
    x = keras.layers.GlobalAveragePooling2D()(feat)
    x = keras.layers.Concatenate()([x, male])
    dense = keras.layers.Dense(1, name="bone_age")
    out = dense(x)
    model = keras.Model([image, male], out)
    dense.set_weights([np.array([[weight], [3.0]], np.float32), np.array([100.0], np.float32)])
    return model


@pytest.mark.parametrize("weight", [50.0, -50.0])
def test_gradcam_is_exact_on_a_model_whose_answer_is_known(weight):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (3, 8, 8)).astype(np.uint8)
    male = np.array([0, 1, 1])
    maps = GradCam.of(_linear_model(weight)).maps(images, male)
    expected = images / images.reshape(3, -1).max(axis=1)[:, None, None]
    np.testing.assert_allclose(maps.heat, expected, atol=1e-5)
    x = images.astype(np.float64) / 255
    np.testing.assert_allclose(maps.output, 100 + weight * x.mean(axis=(1, 2)) + 3 * male, 1e-4)
    np.testing.assert_allclose(maps.baseline, 100 + 3 * male, atol=1e-4)
    assert (maps.direction == np.sign(weight)).all()


def test_feature_layer_needs_one_pooling_layer_or_a_name():
    image = keras.Input((8, 8, 1), name="image")
    male = keras.Input((1,), name="male")
    x = keras.layers.Flatten()(keras.layers.Conv2D(2, 3, name="conv")(image))
    out = keras.layers.Dense(1)(keras.layers.Concatenate()([x, male]))
    model = keras.Model([image, male], out)
    with pytest.raises(ValueError, match="global pooling"):
        feature_layer(model)
    assert feature_layer(model, "conv").name == "conv"
    with pytest.raises(ValueError, match="not a 2-D map"):
        feature_layer(model, "flatten")


# --------------------------------------------------------------------------- every architecture


@pytest.fixture(scope="module")
def architectures(tmp_path_factory):
    """Each architecture at 64 px with seeded random weights, its TF maps and weights file."""
    workdir = tmp_path_factory.mktemp("explain")
    images = _images()
    male = np.array([1, 0])
    np.savez(workdir / "inputs.npz", image=images, male=male)
    cases, results = [], {}
    for name in ARCHITECTURES:
        keras.utils.set_random_seed(0)
        model = bm.build_model(name, image_size=SIZE)
        cam = GradCam.of(model)
        weights = workdir / f"{name}.weights.h5"
        model.save_weights(weights)
        x = {"image": images[..., None].astype(np.float32) / 255, "male": male[:, None] * 1.0}
        results[name] = (model, cam, cam.maps(images, male), np.asarray(model(x))[:, 0])
        cases.append({"key": name, "name": name, "image_size": SIZE, "weights": str(weights)})
    (workdir / "cases.json").write_text(json.dumps(cases))
    return workdir, results


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_every_architecture_gives_a_map_on_tensorflow(architectures, name):
    _, results = architectures
    model, cam, maps, output = results[name]
    layer = model.get_layer(cam.layer)
    assert len(layer.output.shape) == 4 and layer.output.shape[1] >= 2
    # The rule: the map is what the global pooling layer consumes.
    pool = next(lyr for lyr in model.layers if "GlobalAveragePooling" in type(lyr).__name__)
    assert pool.input._keras_history.operation is layer
    # Splitting the model at the map changes nothing: head(body(x)) is the model's output.
    np.testing.assert_allclose(maps.output, output, rtol=1e-5, atol=1e-4)
    assert maps.heat.shape == (2, SIZE, SIZE) and maps.heat.dtype == np.float32
    assert np.isfinite(maps.heat).all()
    assert maps.heat.min() >= 0 and np.allclose(maps.heat.max(axis=(1, 2)), 1.0)
    assert (maps.heat.std(axis=(1, 2)) > 0.01).all()  # a map, not a constant
    assert not np.allclose(maps.heat[0], maps.heat[1], atol=1e-3)  # and one per image


@pytest.fixture(scope="module")
def jax_maps(architectures):
    workdir, _ = architectures
    run_under_jax("_jax_explain.py", workdir)
    return dict(np.load(workdir / "jax_explain.npz"))


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_jax_gives_the_same_map_as_tensorflow(architectures, jax_maps, name):
    _, results = architectures
    _, _, maps, _ = results[name]
    assert str(jax_maps["backend"]) == "jax"
    np.testing.assert_allclose(jax_maps[f"{name}_output"], maps.output, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(jax_maps[f"{name}_baseline"], maps.baseline, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(jax_maps[f"{name}_heat"], maps.heat, atol=2e-3)


# --------------------------------------------------------------------------- the shipped model


@pytest.fixture(scope="module")
def predictor():
    from boneage.inference import Predictor

    return Predictor()


def test_the_shipped_models_heat_lies_on_the_hand(predictor):
    """On real radiographs most of the heat is on the hand's region (hull of its silhouette).

    The mass inside the hand region is compared with the region's share of the image (what a
    map spread evenly would score), so a map that covers everything cannot pass.
    """
    rsna_dir("test299")
    files = image_files("test299")[:40] + image_files("fullres")[:20]
    cam = explainer(predictor.model)  # member by member if the shipped model is an ensemble
    mass, area = [], []
    for f in files:
        pre, _, _ = predictor.prepare(f)
        heat = cam(pre[None], np.array([1]))[0]
        region = hand_mask(pre)
        assert heat.sum() > 0, f"{f.name}: empty heatmap"
        mass.append(float(heat[region].sum() / heat.sum()))
        area.append(float(region.mean()))
    mass_a, area_a = np.array(mass), np.array(area)
    print(
        f"\nshipped model, {len(files)} real radiographs: heat mass on the hand median "
        f"{np.median(mass_a):.3f} (mean {mass_a.mean():.3f}, min {mass_a.min():.3f}; "
        f"{(mass_a > 0.6).mean():.0%} of images above 0.6); hand region median "
        f"{np.median(area_a):.3f} of the image"
    )
    assert np.median(mass_a) > 0.6
    assert np.median(mass_a - area_a) > 0.1  # more on the hand than an even spread would put
    assert (mass_a > 0.5).mean() >= 0.75


def test_predictor_explain_returns_the_usual_estimate(predictor):
    path = image_files("test299")[:1] or pytest.skip(f"no radiographs under {RSNA}")
    heat, est = predictor.explain(path[0], "F")
    size = predictor.meta.preprocessing.image_size
    assert heat.shape == (size, size) and heat.dtype == np.float32
    assert heat.max() == pytest.approx(1.0)
    assert est.months == predictor.estimate(path[0], "F").months  # TTA included, same number
    ex = predictor.explanation(path[0], "F")
    assert ex.prepared.shape == (size, size)
    np.testing.assert_array_equal(ex.prepared, predictor.prepare(path[0])[0])
    np.testing.assert_array_equal(ex.heatmap, heat)
    assert ex.direction in (1, -1)


# --------------------------------------------------------------------------- drawing


def test_overlay_tints_only_where_there_is_heat():
    grey = _images(1, 100)[0]
    heat = np.zeros((100, 100), np.float32)
    heat[40:60, 40:60] = 1.0
    rgb = overlay(grey, heat, size=None)
    assert rgb.shape == (100, 100, 3) and rgb.dtype == np.uint8
    cold = heat == 0
    np.testing.assert_array_equal(rgb[cold], np.repeat(grey[cold][:, None], 3, axis=1))
    r, _, b = rgb[50, 50].astype(int)
    assert r - b > 40  # hot is visibly red (a grey pixel has r == b)
    big = overlay(grey, heat, size=400)
    assert big.shape == (400, 400, 3)
    decoded = cv2.imdecode(np.frombuffer(png_bytes(big), np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(decoded[..., ::-1], big)  # RGB in, RGB PNG out


# --------------------------------------------------------------------------- the CLI


def _run_predict(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-m", "boneage.predict", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_predict_explain_writes_one_png_per_image(tmp_path):
    files = image_files("test299")[:2]
    if len(files) < 2:
        pytest.skip(f"real radiographs not found under {RSNA}")
    one = tmp_path / "one.png"
    proc = _run_predict(str(files[0]), "--sex", "F", "--explain", str(one))
    assert proc.returncode == 0, proc.stderr
    img = cv2.imread(str(one))
    assert img is not None and img.shape == (400, 400, 3)
    assert str(one) in proc.stderr  # says where it went

    folder = tmp_path / "maps"
    proc = _run_predict(*map(str, files), "--sex", "F", "--explain", str(folder))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"{f.stem}.explain.png" for f in files
    )

    proc = _run_predict(*map(str, files), "--sex", "F", "--explain", str(tmp_path / "x.png"))
    assert proc.returncode == 2 and "folder" in proc.stderr
