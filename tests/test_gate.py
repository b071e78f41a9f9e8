"""The input gate (boneage.inference.gate) and its non-hand set (boneage.inference.nonhands).

Why these checks: the gate is what stands between a grey square and a confident bone age. The
statistics must refuse the trivial non-images with a plain reason whatever the model; the
fitted gate must take real films (a false reject withholds an estimate from a patient) and
refuse what the shipped model never learnt to see; and a gate must survive the trip through
the model file's JSON metadata unchanged in what it decides.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from boneage.inference.gate import (
    Gate,
    Limits,
    NotAHandRadiograph,
    Verdict,
    check_statistics,
    feature_blocks,
    features,
    fit_gate,
)
from boneage.inference.nonhands import KINDS, generate
from shared_data import rsna_dir


def _film_like(seed: int = 0, h: int = 300, w: int = 240) -> np.ndarray:
    """A smooth synthetic 'film': dark background, a bright blurred blob with texture."""
    import cv2

    rng = np.random.default_rng(seed)
    img = np.full((h, w), 30, np.uint8)
    cv2.ellipse(img, (w // 2, h // 2), (w // 4, h // 3), 10, 0, 360, (170,), -1)
    img = cv2.GaussianBlur(img, (0, 0), 4)
    return np.clip(img + rng.normal(0, 2, img.shape), 0, 255).astype(np.uint8)


# --- statistics -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "words"),
    [
        (np.full((400, 300), 128, np.uint8), "nearly uniform"),
        (np.zeros((512, 512), np.uint8), "nearly uniform"),
        (np.full((512, 512), 255, np.uint8), "nearly uniform"),
        (np.random.default_rng(0).integers(0, 256, (300, 300)).astype(np.uint8), "noise"),
        (np.zeros((1, 1), np.uint8), "too small"),
        (np.full((20, 300), 90, np.uint8), "too small"),
        (_film_like(h=100, w=600), "strip"),
    ],
    ids=["grey", "black", "white", "noise", "1x1", "20px", "strip"],
)
def test_statistics_refuse_what_no_film_looks_like(image: np.ndarray, words: str) -> None:
    v = check_statistics(image)
    assert not v.ok
    assert words in v.reason
    assert math.isnan(v.score)


def test_statistics_take_smooth_images_of_any_type() -> None:
    film = _film_like()
    assert check_statistics(film).ok
    assert check_statistics(film.astype(np.uint16) * 257).ok  # 16-bit
    assert check_statistics(film.astype(np.float32) / 255).ok  # float in [0, 1]
    assert check_statistics(np.repeat(film[..., None], 3, axis=2)).ok  # colour


def test_statistics_accept_real_films() -> None:
    import cv2

    files = sorted(rsna_dir("train100").glob("*.png"))[:200]
    refused = [f.name for f in files if not check_statistics(cv2.imread(str(f), 0)).ok]
    assert not refused


def test_limits_travel_with_the_gate() -> None:
    strict = Limits(min_side=400)
    assert Limits.from_dict(strict.to_dict()) == strict
    gate = fit_gate(np.random.default_rng(0).normal(size=(60, 6)) ** 2)
    gate = Gate(gate.blocks, gate.threshold, limits=strict)
    assert not gate.check(_film_like()).ok  # 240 px < 400
    assert Gate.from_dict(gate.to_dict()).limits == strict


def test_refusal_is_a_value_error_with_its_reason() -> None:
    v = Verdict(False, "the image is nearly uniform")
    with pytest.raises(ValueError, match="not a hand radiograph") as caught:
        v.raise_if_refused()
    assert isinstance(caught.value, NotAHandRadiograph)
    assert caught.value.reason == "the image is nearly uniform"
    Verdict(True).raise_if_refused()


# --- fitting, on synthetic features ---------------------------------------------------------


def _features(rng: np.random.Generator, n: int, shift: float = 0.0) -> np.ndarray:
    """Non-negative, skewed, correlated rows like pooled ReLU features, in two blocks."""
    loadings = np.random.default_rng(99).normal(size=(4, 24)) * 0.4  # the same for every call
    latent = rng.normal(size=(n, 4)) @ loadings
    return np.maximum(latent + 1.0 + shift + 0.2 * rng.normal(size=(n, 24)), 0) ** 2


def test_fit_keeps_the_promised_false_reject_rate_and_refuses_far_rows() -> None:
    rng = np.random.default_rng(1)
    gate = fit_gate(_features(rng, 600), _features(rng, 50, shift=3.0), blocks=(8, 16))
    assert gate.widths == (8, 16) and gate.n == 600
    fresh = gate.distance(_features(rng, 4000))
    assert np.mean(fresh > gate.threshold) < 0.02  # aimed at 0.5 %, promised 1 %
    assert gate.nonhand_accept is not None and gate.nonhand_accept < 0.1
    assert np.mean(gate.distance(_features(rng, 200, shift=3.0)) > gate.threshold) > 0.9


def test_fit_refuses_bad_input() -> None:
    rng = np.random.default_rng(2)
    with pytest.raises(ValueError, match="at least"):
        fit_gate(_features(rng, 5))
    with pytest.raises(ValueError, match="blocks"):
        fit_gate(_features(rng, 100), blocks=(8, 8))
    with pytest.raises(ValueError, match="max_false_reject"):
        fit_gate(_features(rng, 100), max_false_reject=0.0)
    gate = fit_gate(_features(rng, 100))
    with pytest.raises(ValueError, match="another model"):
        gate.distance(np.ones((1, 7)))


def test_to_dict_round_trip_decides_alike() -> None:
    rng = np.random.default_rng(3)
    gate = fit_gate(_features(rng, 300), _features(rng, 20, 3.0), blocks=(8, 16))
    text = json.dumps(gate.to_dict(), allow_nan=False)
    back = Gate.from_dict(json.loads(text))
    assert back.widths == gate.widths and back.n == gate.n and back.limits == gate.limits
    assert back.nonhand_accept == gate.nonhand_accept
    rows = np.concatenate([_features(rng, 200), _features(rng, 50, 1.0)])
    a, b = gate.distance(rows), back.distance(rows)
    np.testing.assert_allclose(b, a, rtol=5e-3)
    assert back.to_dict() == json.loads(json.dumps(back.to_dict()))  # stable once rounded


# --- features of Keras models ---------------------------------------------------------------


def test_features_of_an_ensemble_are_its_members_stages_side_by_side() -> None:
    import keras

    from boneage.inference.batch import to_model_inputs
    from boneage.models.compact import resnet_compact
    from boneage.models.ensemble import ensemble, members

    def small() -> keras.Model:
        return resnet_compact(32, widths=(8, 16), blocks=(1, 1), stem=8, head_units=0)

    single = small()
    assert feature_blocks(single) == (8, 16)
    both = ensemble([small(), small()])
    assert feature_blocks(both) == (8, 16, 8, 16)
    images = np.random.default_rng(4).integers(0, 256, (3, 40, 40), dtype=np.uint8)
    rows = features(both, images, [0, 1, 1])  # resized to the model's 32 px like an estimate
    assert rows.shape == (3, 48) and rows.dtype == np.float32
    # Each member's last block is exactly the global pooling its head reads.
    x = to_model_inputs(images, np.array([0.0, 1.0, 1.0]), 32)
    for i, member in enumerate(members(both)):
        gap = keras.Model(member.inputs, member.get_layer("gap").output)
        pooled = keras.ops.convert_to_numpy(gap(x, training=False))
        np.testing.assert_allclose(rows[:, 24 * i + 8 : 24 * (i + 1)], pooled, atol=1e-5)


# --- the shipped model, on real films -------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> Any:
    from boneage.inference import LoadedModel

    try:
        return LoadedModel.open(None)
    except FileNotFoundError as e:
        pytest.skip(f"no shipped model: {e}")


def test_shipped_gate_takes_real_films_and_refuses_non_hands(shipped: Any) -> None:
    import cv2

    from boneage.ingest.preparation import prepare

    files = sorted(rsna_dir("train100").glob("*.png"))[:160]
    films = [np.asarray(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)) for f in files]
    male = np.arange(len(films)) % 2

    def rows(images: list[np.ndarray], sexes: np.ndarray) -> np.ndarray:
        prepared = np.stack([prepare(im, shipped.preprocessing)[0] for im in images])
        return features(shipped, prepared, sexes)

    fit, new = slice(0, 120), slice(120, 160)
    gate = fit_gate(rows(films[fit], male[fit]), blocks=feature_blocks(shipped))
    new_rows = rows(films[new], male[new])
    accepted = [gate.check(im, r).ok for im, r in zip(films[new], new_rows, strict=True)]
    assert sum(accepted) >= 38, f"{40 - sum(accepted)} of 40 real films refused"

    nonhands = generate("test", per_kind=2, seed=5)
    assert {x.kind for x in nonhands} == set(KINDS) - {"corrupted"}
    verdicts = {}
    for x in nonhands:
        stats = gate.check(x.image)
        if not stats.ok:
            verdicts[x.name] = stats
            continue
        row = rows([x.image], np.zeros(1))[0]
        verdicts[x.name] = gate.check(x.image, row)
    must = ("uniform", "black", "white", "gaussian_noise", "salt_pepper", "text", "tiny")
    let_through = [name for name, v in verdicts.items() if v.ok]
    assert not [n for n in let_through if n.split()[0] in must], let_through
    assert len(let_through) <= len(nonhands) // 5, let_through
    refused = [v for v in verdicts.values() if not v.ok]
    assert all(v.reason for v in refused)


# --- the non-hand set -----------------------------------------------------------------------


def test_nonhands_are_deterministic_and_parts_differ() -> None:
    films = [_film_like(s) for s in range(3)]
    a = generate("fit", per_kind=2, seed=7, films=films)
    b = generate("fit", per_kind=2, seed=7, films=films)
    assert [x.name for x in a] == [x.name for x in b]
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b, strict=True))
    assert {x.kind for x in a} == set(KINDS)
    test = generate("test", per_kind=2, seed=7, films=films)
    fit_noise = [x.image for x in a if x.kind == "gaussian_noise"]
    test_noise = [x.image for x in test if x.kind == "gaussian_noise"]
    assert not any(
        f.shape == t.shape and np.array_equal(f, t) for f in fit_noise for t in test_noise
    )
    photo_sources = {x.name.split(": ")[1] for x in a if x.kind == "photo"}
    test_sources = {x.name.split(": ")[1] for x in test if x.kind == "photo"}
    assert not (photo_sources & test_sources) - {"synthetic scene"}
    with pytest.raises(ValueError, match="part"):
        generate("train")
