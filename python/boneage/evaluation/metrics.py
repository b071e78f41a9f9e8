"""Regression metrics for bone age (months), with bootstrap intervals and subgroup errors.

Pure NumPy, so evaluation runs where no deep-learning stack (or scikit-learn) is installed.
The paper reports MAE, RMSE and R^2 on 200 test images; with so few cases a point estimate
alone hides a sampling error of about half a month, hence :func:`bootstrap_ci`. Errors by
sex and by age band show where a model fails (the very young and the oldest bands are the
hard ones), and :func:`baseline_mae` gives the floor every model must beat by far: always
predicting the training mean.

Conventions: the error is ``y_pred - y_true`` (a positive ``bias`` overestimates age);
``r2`` is ``1 - SS_res / SS_tot`` and is ``nan`` when ``y_true`` is constant or has fewer
than two values; percentiles interpolate linearly (NumPy's default). Everything
:func:`summary` returns is JSON-serialisable: plain ``float``/``int``, ``nan`` as ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "AGE_BANDS",
    "METRICS",
    "baseline_mae",
    "bootstrap_ci",
    "by_group",
    "regression_metrics",
    "summary",
]

AGE_BANDS: tuple[tuple[str, float, float], ...] = (
    ("0-5 y", 0.0, 60.0),
    ("5-10 y", 60.0, 120.0),
    ("10-15 y", 120.0, 180.0),
    ("15-19 y", 180.0, math.inf),
)
"""Age bands by true age in months: ``lo <= age < hi``. The first band also takes any age
below 0 and the last is open-ended (RSNA's 228 months falls in it), so every case lands in
exactly one band."""

METRICS = ("mae", "rmse", "r2", "median_ae", "p90_ae", "bias")
"""The metrics :func:`regression_metrics` computes and :func:`bootstrap_ci` resamples."""

Array = npt.NDArray[np.float64]
MetricFn = Callable[[Array, Array], float]


def _pair(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> tuple[Array, Array]:
    t = np.asarray(y_true, dtype=np.float64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.size} vs {p.size}")
    if not (np.isfinite(t).all() and np.isfinite(p).all()):
        raise ValueError("y_true and y_pred must be finite (no nan or inf)")
    return t, p


def _r2(t: Array, p: Array, axis: int = -1) -> Array:
    """Coefficient of determination along ``axis``; ``nan`` where ``y_true`` is constant."""
    ss_res = np.sum((p - t) ** 2, axis=axis)
    ss_tot = np.sum((t - t.mean(axis=axis, keepdims=True)) ** 2, axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ss_tot > 0.0, 1.0 - ss_res / np.where(ss_tot > 0.0, ss_tot, 1.0), np.nan)


def _batched(name: str, t: Array, p: Array) -> Array:
    """Metric ``name`` along the last axis (rows are bootstrap resamples)."""
    err = p - t
    if name == "mae":
        return np.abs(err).mean(axis=-1)
    if name == "rmse":
        return np.sqrt((err * err).mean(axis=-1))
    if name == "bias":
        return err.mean(axis=-1)
    if name == "median_ae":
        return np.median(np.abs(err), axis=-1)
    if name == "p90_ae":
        return np.percentile(np.abs(err), 90.0, axis=-1)
    if name == "r2":
        return _r2(t, p) if t.shape[-1] >= 2 else np.full(t.shape[:-1], np.nan)
    raise ValueError(f"unknown metric {name!r}; expected one of {METRICS} or a callable")


def regression_metrics(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> dict[str, float | int]:
    """``n``, ``mae``, ``rmse``, ``r2``, ``median_ae``, ``p90_ae`` and ``bias`` (mean error).

    An empty input gives ``n = 0`` and ``nan`` for the rest, so that an empty subgroup
    still has a row in a table.
    """
    t, p = _pair(y_true, y_pred)
    out: dict[str, float | int] = {"n": int(t.size)}
    for name in METRICS:
        out[name] = float(_batched(name, t, p)) if t.size else math.nan
    return out


def bootstrap_ci(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    metric: str | MetricFn = "mae",
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile bootstrap ``(1 - alpha)`` interval of a metric over resampled cases.

    ``metric`` is a name from :data:`METRICS` (all resamples computed at once, in chunks of
    a few million values) or a function ``f(y_true, y_pred) -> float`` (called per
    resample). Resamples where the metric is undefined (``r2`` of a constant draw) are
    left out. The same ``seed`` gives the same interval.
    """
    t, p = _pair(y_true, y_pred)
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if t.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    chunk = max(1, 4_000_000 // t.size)
    stats: list[Array] = []
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, t.size, size=(min(chunk, n_boot - start), t.size))
        if callable(metric):
            stats.append(np.array([metric(t[i], p[i]) for i in idx], dtype=np.float64))
        else:
            stats.append(_batched(metric, t[idx], p[idx]))
    values = np.concatenate(stats)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan
    low, high = np.percentile(values, [50.0 * alpha, 100.0 - 50.0 * alpha])
    return float(low), float(high)


def _band_of(ages: Array, bands: Sequence[tuple[str, float, float]]) -> npt.NDArray[np.intp]:
    """Index of each age's band: by the inner edges, so every age lands in one band."""
    inner = np.array([lo for _, lo, _ in bands[1:]], dtype=np.float64)
    return np.searchsorted(inner, ages, side="right")


def by_group(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    male: npt.ArrayLike | None = None,
    bands: Sequence[tuple[str, float, float]] = AGE_BANDS,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Metrics per sex (``male`` is 1/True for boys) and per band of the true age.

    Returns ``{"by_sex": {"female": ..., "male": ...}, "by_age_band": {label: ...}}``; each
    value is a :func:`regression_metrics` dict, and band entries carry ``months: [lo, hi]``
    (``hi`` is ``None`` for the open last band). ``by_sex`` is empty without ``male``.
    Band membership is ``lo <= age < hi`` (see :data:`AGE_BANDS`); the counts add up to n.
    """
    t, p = _pair(y_true, y_pred)
    out: dict[str, dict[str, dict[str, Any]]] = {"by_sex": {}, "by_age_band": {}}
    if male is not None:
        sex = np.asarray(male).reshape(-1).astype(bool)
        if sex.size != t.size:
            raise ValueError(f"male has {sex.size} values for {t.size} cases")
        for label, mask in (("female", ~sex), ("male", sex)):
            out["by_sex"][label] = regression_metrics(t[mask], p[mask])
    band = _band_of(t, bands)
    for i, (label, lo, hi) in enumerate(bands):
        entry: dict[str, Any] = regression_metrics(t[band == i], p[band == i])
        entry["months"] = [lo, hi if math.isfinite(hi) else None]
        out["by_age_band"][label] = entry
    return out


def baseline_mae(train_ages: npt.ArrayLike, test_ages: npt.ArrayLike) -> float:
    """MAE of always predicting the training mean: the floor any model must beat."""
    train = np.asarray(train_ages, dtype=np.float64).reshape(-1)
    test = np.asarray(test_ages, dtype=np.float64).reshape(-1)
    if train.size == 0 or test.size == 0:
        raise ValueError("train_ages and test_ages must not be empty")
    return float(np.abs(test - train.mean()).mean())


def summary(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    male: npt.ArrayLike | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    train_ages: npt.ArrayLike | None = None,
) -> dict[str, Any]:
    """Everything an evaluation report needs, JSON-ready, flat at the top.

    Keys: the :func:`regression_metrics` ones (``n``, ``mae``, ``rmse``, ``r2``,
    ``median_ae``, ``p90_ae``, ``bias``); ``ci`` with ``alpha``, ``n_boot`` and a
    ``[low, high]`` interval per metric; ``by_sex`` and ``by_age_band`` (:func:`by_group`,
    each group with an ``mae_ci``); ``baseline_mae`` (the training mean's MAE, from
    ``train_ages``, else ``None``). Callers may add their own keys (``params``, ``loss``,
    ``model``), which :func:`boneage.evaluation.report.compare_table` picks up.
    """
    t, p = _pair(y_true, y_pred)
    out: dict[str, Any] = dict(regression_metrics(t, p))
    ci: dict[str, Any] = {"alpha": alpha, "n_boot": n_boot}
    for name in METRICS:
        ci[name] = list(bootstrap_ci(t, p, name, n_boot=n_boot, seed=seed, alpha=alpha))
    out["ci"] = ci
    groups = by_group(t, p, male)
    sex = None if male is None else np.asarray(male).reshape(-1).astype(bool)
    band = _band_of(t, AGE_BANDS)
    masks: dict[str, dict[str, npt.NDArray[np.bool_]]] = {
        "by_sex": {} if sex is None else {"female": ~sex, "male": sex},
        "by_age_band": {label: band == i for i, (label, _, _) in enumerate(AGE_BANDS)},
    }
    for key, entries in groups.items():
        for label, entry in entries.items():
            mask = masks[key][label]
            entry["mae_ci"] = list(
                bootstrap_ci(t[mask], p[mask], "mae", n_boot=n_boot, seed=seed, alpha=alpha)
            )
    out.update(groups)
    out["baseline_mae"] = None if train_ages is None else baseline_mae(train_ages, t)
    return _jsonable(out)


def _jsonable(value: Any) -> Any:
    """Plain Python types for ``json.dumps``: NumPy scalars unwrapped, nan/inf as ``None``."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value
