"""The synthetic phantoms: shapes, determinism, and that age (not exposure) drives them."""

from __future__ import annotations

import time

import numpy as np
import pytest

from boneage.training import synthetic
from boneage.training.synthetic import (
    AGE_MAX,
    AGE_MIN,
    Case,
    generate,
    generate_arrays,
    maturity,
    render,
    sample_cases,
    visible_carpals,
)


def bone_fraction(img: np.ndarray) -> float:
    """Share of the hand's pixels that are bone, with thresholds relative to the image's own
    range, so that exposure (level, contrast) does not move it."""
    x = img.astype(np.float32)
    lo, hi = np.percentile(x, [5.0, 99.5])
    z = (x - lo) / max(hi - lo, 1.0)
    return float((z > 0.6).mean() / max((z > 0.15).mean(), 1e-6))


@pytest.fixture(scope="module")
def sample_128() -> tuple[list[Case], np.ndarray]:
    pairs = list(generate(240, seed=11, size=128))
    return [c for c, _ in pairs], np.stack([img for _, img in pairs])


def test_sample_cases_look_like_rsna() -> None:
    cases = sample_cases(4000, seed=1)
    ages = np.array([c.age_months for c in cases])
    assert 120.0 < ages.mean() < 135.0
    assert 35.0 < ages.std() < 47.0
    assert ages.min() >= AGE_MIN and ages.max() <= AGE_MAX
    assert np.all(ages == np.round(ages))  # whole months, as RSNA labels
    assert (ages < 24).sum() > 20  # a tail of infants
    assert 0.50 < np.mean([c.male for c in cases]) < 0.58
    assert len({c.id for c in cases}) == len(cases)


def test_sample_cases_deterministic() -> None:
    assert sample_cases(50, seed=4) == sample_cases(50, seed=4)
    assert sample_cases(50, seed=4) != sample_cases(50, seed=5)
    assert sample_cases(0) == []
    with pytest.raises(ValueError):
        sample_cases(-1)


def test_render_dtype_and_shape() -> None:
    case = Case("shape", 1, 100.0)
    img = render(case)
    assert img.dtype == np.uint8 and img.shape == (256, 256) and img.flags.c_contiguous
    assert render(case, 64).shape == (64, 64)
    assert render(case, (96, 80)).shape == (96, 80)
    assert img.std() > 10.0  # not blank
    with pytest.raises(ValueError):
        render(case, 8)


def test_same_seed_same_bytes() -> None:
    first = [(c, img.tobytes()) for c, img in generate(12, seed=3, size=128)]
    synthetic._anatomy.cache_clear()  # no hidden state: rebuilt anatomy, same bytes
    second = [(c, img.tobytes()) for c, img in generate(12, seed=3, size=128)]
    assert first == second
    other = [img.tobytes() for _, img in generate(12, seed=4, size=128)]
    assert all(a[1] != b for a, b in zip(first, other, strict=True))


def test_seed_changes_acquisition_not_anatomy() -> None:
    case = Case("same-hand", 0, 130.0)
    a, b = render(case, 128, seed=0), render(case, 128, seed=1)
    assert not np.array_equal(a, b)
    assert maturity(case) == maturity(Case("same-hand", 0, 130.0))


def test_generate_arrays_matches_generate() -> None:
    images, ages, male = generate_arrays(5, seed=2, size=64)
    pairs = list(generate(5, seed=2, size=64))
    assert images.shape == (5, 64, 64) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, np.stack([img for _, img in pairs]))
    np.testing.assert_array_equal(ages, [c.age_months for c, _ in pairs])
    np.testing.assert_array_equal(male, [c.male for c, _ in pairs])


def test_age_is_readable_from_pixels_but_not_from_brightness(sample_128) -> None:
    cases, images = sample_128
    ages = np.array([c.age_months for c in cases])
    bone = np.array([bone_fraction(img) for img in images])
    brightness = images.reshape(len(images), -1).mean(axis=1)
    assert np.corrcoef(bone, ages)[0, 1] > 0.8
    assert abs(np.corrcoef(brightness, ages)[0, 1]) < 0.5


def test_carpals_appear_with_age() -> None:
    def mean_count(age: float) -> float:
        return float(np.mean([visible_carpals(Case(f"c{i}", i % 2, age)) for i in range(40)]))

    counts = [mean_count(a) for a in (1, 24, 60, 96, 144, 200)]
    assert counts[0] <= 1.0  # newborns: none, or the capitate just appearing
    assert counts[-2] >= 7.0  # all (or all but the pisiform) by 12 years
    assert np.all(np.diff(counts) >= 0)


def test_girls_mature_earlier() -> None:
    girls = [Case(f"s{i}", 0, 150.0) for i in range(40)]
    boys = [Case(f"s{i}", 1, 150.0) for i in range(40)]
    gap_months = 216.0 * (
        np.mean([maturity(c) for c in girls]) - np.mean([maturity(c) for c in boys])
    )
    assert 10.0 < gap_months < 30.0  # 1-2 years ahead, in boys' months
    girl_bone = np.mean([bone_fraction(render(c, 128, seed=7)) for c in girls])
    boy_bone = np.mean([bone_fraction(render(c, 128, seed=7)) for c in boys])
    assert girl_bone > boy_bone


def test_framed_radiograph_shows_the_same_hand() -> None:
    case = Case("framed", 1, 90.0)
    raw = render(case, 512, seed=5, framed=True)
    crop = render(case, 256, seed=5)
    assert raw.shape == (512, 512) and raw.dtype == np.uint8

    # The hand covers less of a raw frame than of a preprocessed one.
    def tissue_share(img: np.ndarray) -> float:
        x = img.astype(np.float32)
        lo, hi = np.percentile(x, [2.0, 99.5])
        return float(((x - lo) / max(hi - lo, 1.0) > 0.15).mean())

    assert tissue_share(raw) < tissue_share(crop)


def test_fast_enough() -> None:
    """A guard against per-pixel Python loops (the real target, >= 200/s, is measured by
    hand: timings on a shared machine are too noisy for a hard test)."""
    cases = sample_cases(60, seed=8)
    start = time.process_time()
    for case in cases:
        render(case, 256, seed=8)
    assert (time.process_time() - start) / len(cases) < 0.04
