"""Orientation normalisation: the 8 transforms are exact, the classifier's input commutes with
them, and the shipped classifier finds how real films were turned.

Why these checks: a transform that does not undo exactly would change the film the bone-age
model sees; an input that does not commute with the transforms would break the training
shortcut (rotating squashed copies); a classifier file that fails the model vetting could not
be loaded at all.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from boneage.inference.orientation import (
    ORIENTATION_MODEL,
    Orientation,
    Transform,
    apply,
    compose,
    inverse,
    squash,
    undo,
)
from shared_data import rsna_dir

N_REAL = 48
"""Real films per transform in the detector test (x 8 transforms)."""

NOT_UPRIGHT = frozenset(
    {"4368", "4388", "4405", "4419", "4442", "4455", "4457", "4507", "4533", "4552"}
)
"""Official test films (test299) that are not upright left hands as they are, checked by eye:
right hands or mirrored films (an "R" marker, the thumb on the left) and 4533, turned about
70 degrees. The classifier is right to call them turned, so a test that takes every film as
upright would count its right answers as errors; they are left out of it."""

films = hnp.arrays(
    dtype=st.sampled_from([np.uint8, np.uint16]),
    shape=st.tuples(st.integers(1, 17), st.integers(1, 17)),
)


@settings(max_examples=60, deadline=None)
@given(films, st.sampled_from(list(Transform)))
def test_undo_reverses_apply_on_any_array(film, t):
    turned = apply(film, t)
    assert turned.shape == (film.shape if t.quarter_turns % 2 == 0 else film.shape[::-1])
    assert np.array_equal(undo(turned, t), film)
    assert np.array_equal(apply(undo(film, t), t), film)


@settings(max_examples=30, deadline=None)
@given(films, st.sampled_from(list(Transform)), st.sampled_from(list(Transform)))
def test_compose_and_inverse_agree_with_apply(film, a, b):
    assert np.array_equal(apply(apply(film, a), b), apply(film, compose(a, b)))
    assert compose(a, inverse(a)) is Transform.IDENTITY


def test_batches_and_channels_turn_like_single_films():
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 255, (3, 5, 7, 2), dtype=np.uint8)
    for t in Transform:
        together = apply(batch, t, axes=(1, 2))
        assert all(np.array_equal(together[i], apply(batch[i], t)) for i in range(3))


def test_conventions_and_names():
    """Clockwise means clockwise on screen; mirrored means left/right; every name differs."""
    film = np.array([[1, 2], [3, 4]])
    assert apply(film, Transform.ROT90).tolist() == [[3, 1], [4, 2]]
    assert apply(film, "mirror").tolist() == [[2, 1], [4, 3]]
    assert Transform.parse("rot270") is Transform.ROT270 and Transform.parse(5).mirrored
    assert len({t.description for t in Transform}) == 8
    assert Transform.MIRROR.description == "mirrored (right hand)"
    with pytest.raises(ValueError, match="unknown orientation"):
        Transform.parse("sideways")


def test_squash_commutes_with_every_transform_and_ignores_grey_mapping():
    rng = np.random.default_rng(1)
    film = rng.integers(0, 255, (150, 111), dtype=np.uint8)
    film[40:90, 30:60] = 250  # ties and structure
    base = squash(film)
    assert base.shape == (64, 64) and base.dtype == np.float32
    assert -0.5 <= base.min() and base.max() <= 0.5
    for t in Transform:
        assert np.abs(squash(apply(film, t)) - apply(base, t)).max() < 1e-3
    # 16 bits and another window (a linear map): the same ranks, so the same input.
    wide = film.astype(np.uint16) * 200 + 1000
    assert np.abs(squash(wide) - base).max() < 1e-3
    # At the classifier's side an increasing grey mapping (a gamma) keeps the ranks: the same
    # input but where the 4,096 levels merge two grey values.
    small = film[:64, :64]
    gamma = np.abs(squash((small.astype(np.float64) ** 1.7).astype(np.uint16)) - squash(small))
    assert gamma.mean() < 2e-3 and gamma.max() < 0.01
    assert not squash(np.full((9, 9), 7, np.uint16)).any()  # uniform: all zero


def test_squash_refuses_what_is_not_a_grey_film():
    with pytest.raises(ValueError, match="grey film"):
        squash(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="grey film"):
        squash(np.zeros((0, 4), np.uint8))


def test_orientation_record_reports_low_confidence():
    sure = Orientation(Transform.ROT90, 0.99, 0.9)
    assert sure.corrected and not sure.low_confidence
    assert "rotated 90° clockwise" in (sure.note or "")
    assert sure.to_dict()["found"] == "rot90"
    assert Orientation(Transform.IDENTITY, 0.99, 0.9).note is None
    unsure = Orientation(Transform.IDENTITY, 0.6, 0.9)
    assert unsure.low_confidence and "uncertain" in (unsure.note or "")
    assert unsure.to_dict()["low_confidence"] is True


def test_shipped_classifier_is_small_and_passes_the_model_vetting():
    from boneage import modelio
    from boneage.modelcheck import check_model_file

    assert ORIENTATION_MODEL.is_file(), "train it: python -m boneage.training.orientation --ship"
    assert ORIENTATION_MODEL.stat().st_size < 2**20
    check_model_file(ORIENTATION_MODEL)
    meta = modelio.read_meta(ORIENTATION_MODEL)
    assert meta is not None and meta.extra["kind"] == "orientation"
    assert 0.5 <= meta.extra["low_confidence_below"] <= 1.0
    assert meta.extra["val"]["shards"]["accuracy_plain"] > 0.9
    assert "/home/" not in str(meta.extra) and "/root/" not in str(meta.extra)


def test_a_model_that_is_not_an_orientation_classifier_is_refused(tmp_path):
    keras = pytest.importorskip("keras")
    from boneage import modelio
    from boneage.inference.orientation import OrientationDetector

    inp = keras.Input((64, 64, 1))
    model = keras.Model(inp, keras.layers.Dense(1)(keras.layers.Flatten()(inp)))
    path = modelio.save(model, tmp_path / "other.keras", modelio.ModelMeta(model_name="x"))
    with pytest.raises(ValueError, match="not an orientation classifier"):
        OrientationDetector.open(path)


@pytest.fixture(scope="module")
def detector():
    from boneage.inference.orientation import OrientationDetector

    return OrientationDetector.open()


def test_detector_finds_how_real_films_were_turned(detector):
    """Films the classifier never trained on (official test images, 299 px, without CLAHE)
    in each of the 8 orientations: at least 95 % found, and a normalised film is upright."""
    from boneage.ingest.dicom import load_image

    files = [f for f in sorted(rsna_dir("test299").glob("*.png")) if f.stem not in NOT_UPRIGHT]
    real = [load_image(f)[0] for f in files[:N_REAL]]
    turned = [(apply(f, t), t) for f in real for t in Transform]
    found = detector.detect([z for z, _ in turned])
    hits = sum(f == t for (_, t), (f, _) in zip(turned, found, strict=True))
    assert hits >= 0.95 * len(turned), f"{hits} of {len(turned)} orientations found"
    upright, orientation = detector.normalise(apply(real[0], Transform.MIRROR_ROT90))
    assert orientation.found is Transform.MIRROR_ROT90
    assert np.array_equal(upright, real[0])


def test_right_hands_among_the_test_films_are_found_mirrored(detector):
    """Two official test films marked "R" (right hands, thumb on the left): the classifier
    says they are mirrored, with confidence, as it should."""
    from boneage.ingest.dicom import load_image

    base = rsna_dir("test299")
    for case in ("4368", "4405"):
        ((found, confidence),) = detector.detect([load_image(base / f"{case}.png")[0]])
        assert found is Transform.MIRROR and confidence > detector.threshold, case
