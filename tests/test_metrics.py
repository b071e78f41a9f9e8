"""Metrics against hand-computed values and direct NumPy formulas (no scikit-learn)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from boneage.evaluation.metrics import (
    AGE_BANDS,
    METRICS,
    baseline_mae,
    bootstrap_ci,
    by_group,
    regression_metrics,
    summary,
)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y_true = rng.uniform(1, 228, size=400).round()
    y_pred = y_true + rng.normal(2.0, 9.0, size=400)
    male = rng.random(400) < 0.54
    return y_true, y_pred, male


def test_known_values() -> None:
    m = regression_metrics([10, 20, 30, 40], [12, 18, 33, 40])  # errors 2, -2, 3, 0
    assert m["n"] == 4
    assert m["mae"] == pytest.approx(1.75)
    assert m["rmse"] == pytest.approx(math.sqrt(17 / 4))
    assert m["bias"] == pytest.approx(0.75)
    assert m["median_ae"] == pytest.approx(2.0)
    assert m["p90_ae"] == pytest.approx(2.7)  # linear interpolation in [0, 2, 2, 3]
    assert m["r2"] == pytest.approx(1 - 17 / 500)


def test_matches_numpy_formulas(data) -> None:
    t, p, _ = data
    err = p - t
    m = regression_metrics(t, p)
    assert m["mae"] == pytest.approx(np.mean(np.abs(err)))
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean(err**2)))
    assert m["r2"] == pytest.approx(1 - np.sum(err**2) / np.sum((t - t.mean()) ** 2))
    assert m["median_ae"] == pytest.approx(np.median(np.abs(err)))
    assert m["p90_ae"] == pytest.approx(np.percentile(np.abs(err), 90))
    assert m["bias"] == pytest.approx(err.mean())
    assert set(METRICS) <= set(m)


def test_degenerate_inputs() -> None:
    assert math.isnan(regression_metrics([5, 5, 5], [4, 5, 6])["r2"])  # constant truth
    empty = regression_metrics([], [])
    assert empty["n"] == 0 and math.isnan(empty["mae"])
    with pytest.raises(ValueError):
        regression_metrics([1, 2], [1])
    with pytest.raises(ValueError):
        regression_metrics([1, math.nan], [1, 2])


def test_bootstrap_contains_estimate_and_is_reproducible(data) -> None:
    t, p, _ = data
    for metric in ("mae", "rmse", "r2", "bias"):
        low, high = bootstrap_ci(t, p, metric, n_boot=500, seed=1)
        point = regression_metrics(t, p)[metric]
        assert low < point < high
    assert bootstrap_ci(t, p, n_boot=300, seed=3) == bootstrap_ci(t, p, n_boot=300, seed=3)
    assert bootstrap_ci(t, p, n_boot=300, seed=3) != bootstrap_ci(t, p, n_boot=300, seed=4)


def test_bootstrap_vectorised_equals_per_resample_callable(data) -> None:
    t, p, _ = data
    fast = bootstrap_ci(t, p, "rmse", n_boot=200, seed=5)
    slow = bootstrap_ci(
        t, p, lambda a, b: float(np.sqrt(np.mean((b - a) ** 2))), n_boot=200, seed=5
    )
    assert fast == pytest.approx(slow)


def test_bootstrap_narrows_with_more_cases() -> None:
    rng = np.random.default_rng(2)
    t = rng.uniform(0, 228, 2000)
    p = t + rng.normal(0, 10, 2000)
    small = np.diff(bootstrap_ci(t[:100], p[:100], n_boot=400))[0]
    large = np.diff(bootstrap_ci(t, p, n_boot=400))[0]
    assert large < small / 2.5  # about sqrt(20) narrower


def test_by_group_counts_and_band_edges() -> None:
    ages = np.array([0, 59.9, 60, 119, 120, 179.5, 180, 228, 240])
    male = np.array([1, 0, 1, 0, 1, 0, 1, 0, 1])
    groups = by_group(ages, ages + 1.0, male)
    bands = groups["by_age_band"]
    assert [b["n"] for b in bands.values()] == [2, 2, 2, 3]  # lo <= age < hi
    assert list(bands) == [label for label, _, _ in AGE_BANDS]
    assert bands["15-19 y"]["months"] == [180.0, None]
    assert groups["by_sex"]["male"]["n"] == 5 and groups["by_sex"]["female"]["n"] == 4
    assert all(b["mae"] == pytest.approx(1.0) for b in bands.values())
    assert by_group(ages, ages)["by_sex"] == {}


def test_by_group_counts_add_up(data) -> None:
    t, p, male = data
    groups = by_group(t, p, male)
    assert sum(g["n"] for g in groups["by_age_band"].values()) == len(t)
    assert sum(g["n"] for g in groups["by_sex"].values()) == len(t)


def test_baseline_mae() -> None:
    assert baseline_mae([100, 140], [110, 130, 150]) == pytest.approx((10 + 10 + 30) / 3)
    with pytest.raises(ValueError):
        baseline_mae([], [1.0])


def test_summary_is_json_and_complete(data) -> None:
    t, p, male = data
    young = t < 60
    s = summary(t[~young], p[~young], male[~young], n_boot=200, train_ages=t)
    text = json.dumps(s, allow_nan=False)  # plain types, no NaN
    assert json.loads(text) == s
    assert s["n"] == int((~young).sum())
    direct = regression_metrics(t[~young], p[~young])
    assert {k: s[k] for k in direct} == pytest.approx(direct)
    for name in METRICS:
        low, high = s["ci"][name]
        assert low <= high
    assert s["ci"]["alpha"] == 0.05 and s["ci"]["n_boot"] == 200
    empty_band = s["by_age_band"]["0-5 y"]
    assert (
        empty_band["n"] == 0 and empty_band["mae"] is None and empty_band["mae_ci"] == [None, None]
    )
    assert s["by_sex"]["male"]["mae_ci"][0] <= s["by_sex"]["male"]["mae"]
    assert s["baseline_mae"] == pytest.approx(baseline_mae(t, t[~young]))
    assert summary(t, p, n_boot=50)["baseline_mae"] is None
