"""A calibrated 90 % interval for every estimate: split-conformal, by band of estimated age.

Why: a single number hides how far off it may be; a delta of -4.8 months reads as meaningful
when the model's own error is larger. Split-conformal prediction gives an interval with the
stated coverage on any data exchangeable with the calibration set, without assuming a shape
for the errors: on validation films (never test), take the absolute errors and use their
``ceil((n + 1) * level) / n`` quantile as the half-width. The errors are not the same at all
ages (the model is surest on the youngest children and at the end of growth), so the quantile
is taken within bands of the *estimated* age ("Mondrian" conformal): each band keeps the
coverage on its own, and an estimate's interval is that of its band. The band is chosen by
the estimate, never by the true age, which an estimate does not know.

:func:`fit` runs at shipping time on validation predictions; the result travels inside the
model file (``ModelMeta.extra["interval"]``), so a newly shipped model brings its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DEFAULT_EDGES", "LEVEL", "Interval", "fit"]

LEVEL = 0.9
"""The interval's intended coverage."""
DEFAULT_EDGES: tuple[float, ...] = (60.0, 120.0, 168.0)
"""Band limits on the estimated age, in months: under 5 years, 5-10, 10-14, 14 and over.
Four bands keep over 150 validation films in each for RSNA-like data."""
MIN_PER_BAND = 30
"""Bands with fewer calibration films than this are merged into a neighbour: a quantile of a
handful of errors is too noisy to promise a coverage."""


@dataclass(frozen=True)
class Interval:
    """Half-widths by band of estimated age; ``edges`` split the bands (``len(edges) + 1``)."""

    edges: tuple[float, ...]
    half_widths: tuple[float, ...]
    level: float = LEVEL
    n: int = 0

    def __post_init__(self) -> None:
        if len(self.half_widths) != len(self.edges) + 1:
            raise ValueError("an interval needs one half-width per band (len(edges) + 1)")
        if list(self.edges) != sorted(self.edges):
            raise ValueError(f"band edges must increase: {self.edges}")
        if not all(math.isfinite(h) and h >= 0 for h in self.half_widths):
            raise ValueError(f"half-widths must be finite and >= 0: {self.half_widths}")
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"level must be in (0, 1), got {self.level}")

    def half_width(self, months: float) -> float:
        """The half-width of the band ``months`` (an estimate) falls in."""
        return self.half_widths[int(np.searchsorted(self.edges, months, side="right"))]

    def around(self, months: float) -> tuple[float, float]:
        """``[lo, hi]`` around an estimate; the lower end never goes below 0 months."""
        h = self.half_width(months)
        return max(0.0, months - h), months + h

    def covers(self, truth: np.ndarray, estimate: np.ndarray) -> np.ndarray:
        """Whether each true age lies inside its estimate's interval."""
        h = np.array([self.half_width(float(e)) for e in estimate])
        return np.abs(np.asarray(truth, np.float64) - np.asarray(estimate, np.float64)) <= h

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "split-conformal by band of estimated age",
            "level": self.level,
            "edges": list(self.edges),
            "half_widths": [round(h, 4) for h in self.half_widths],
            "n": self.n,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Interval:
        return cls(
            edges=tuple(float(e) for e in d["edges"]),
            half_widths=tuple(float(h) for h in d["half_widths"]),
            level=float(d.get("level", LEVEL)),
            n=int(d.get("n", 0)),
        )


def conformal_quantile(errors: np.ndarray, level: float) -> float:
    """The split-conformal half-width: the ``ceil((n + 1) level)``-th smallest error, which
    covers a new exchangeable case with probability at least ``level``."""
    e = np.sort(np.abs(np.asarray(errors, np.float64)))
    n = len(e)
    if n == 0:
        raise ValueError("no calibration errors")
    k = math.ceil((n + 1) * level)
    return float(e[min(k, n) - 1])


def fit(
    truth: np.ndarray,
    estimate: np.ndarray,
    level: float = LEVEL,
    edges: Sequence[float] = DEFAULT_EDGES,
) -> Interval:
    """Fits the half-widths on validation (``truth``, ``estimate``: months, one per film)."""
    t = np.asarray(truth, np.float64)
    p = np.asarray(estimate, np.float64)
    if t.shape != p.shape or t.ndim != 1 or len(t) < MIN_PER_BAND:
        raise ValueError(
            f"an interval needs at least {MIN_PER_BAND} paired truths and estimates, "
            f"got {t.shape} and {p.shape}"
        )
    if not (np.isfinite(t).all() and np.isfinite(p).all()):
        raise ValueError("calibration truths and estimates must be finite")
    kept = list(edges)
    while True:
        band = np.searchsorted(kept, p, side="right")
        counts = np.bincount(band, minlength=len(kept) + 1)
        small = [i for i, c in enumerate(counts) if c < MIN_PER_BAND]
        if not small or not kept:
            break
        # Merge the smallest band with its neighbour by dropping the edge between them.
        i = min(small, key=lambda j: counts[j])
        del kept[i - 1 if i == len(kept) else i]
    band = np.searchsorted(kept, p, side="right")
    halves = tuple(conformal_quantile((t - p)[band == b], level) for b in range(len(kept) + 1))
    return Interval(tuple(kept), halves, level, len(t))
