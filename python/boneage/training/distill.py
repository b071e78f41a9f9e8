"""Distillation: training targets that blend each case's label with a teacher's estimate.

Why: the shipped ensemble averages several networks and is better than any one of them; a
single network taught to reproduce its estimates (as well as the labels) learns part of what
the average knows and runs at a fraction of its cost. For regression the classic soft target
is a blend: ``(1 - w) * label + w * teacher`` (with a squared or Huber loss this is, up to a
constant, the weighted sum of the two losses). The teacher's estimates come from a per-case
predictions file (``python -m boneage.evaluate ... --split train`` writes ``predictions.csv``),
computed once, so training pays nothing for the teacher.

Only the training split is blended: validation, early stopping and every reported figure stay
on the true labels. A teacher must not have been trained on the validation cases (the
shipped models were not: they were trained on this project's train split).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from boneage.evaluation.predictions import PREDICTION_COLUMNS

__all__ = ["Teacher"]

_ID, _PREDICTED = PREDICTION_COLUMNS[0], PREDICTION_COLUMNS[-1]


@dataclass(frozen=True)
class Teacher:
    """A teacher's estimate per case id (months) and the weight its estimates get."""

    ages: dict[str, float] = field(repr=False)
    weight: float
    source: str

    def __post_init__(self) -> None:
        if not 0.0 <= self.weight <= 1.0 or math.isnan(self.weight):
            raise ValueError(f"--teacher-weight must lie in [0, 1], got {self.weight}")

    @classmethod
    def read(cls, path: str | os.PathLike[str], weight: float) -> Teacher:
        """Reads a predictions file; refuses one without the columns, or with a bad value."""
        ages: dict[str, float] = {}
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = {_ID, _PREDICTED} - set(reader.fieldnames or [])
            if missing:
                raise ValueError(
                    f"{path}: not a predictions file (missing {sorted(missing)}; "
                    "python -m boneage.evaluate writes one as predictions.csv)"
                )
            for line, row in enumerate(reader, start=2):
                try:
                    value = float(row[_PREDICTED])
                except (TypeError, ValueError):
                    value = math.nan
                if not math.isfinite(value):
                    raise ValueError(
                        f"{path}:{line}: {_PREDICTED} {row[_PREDICTED]!r} is not a number"
                    )
                ages[str(row[_ID])] = value
        if not ages:
            raise ValueError(f"{path}: no predictions in this file")
        return cls(ages, float(weight), Path(path).name)

    def coverage(self, ids: Sequence[str]) -> float:
        """The fraction of ``ids`` the teacher has an estimate for."""
        return sum(i in self.ages for i in ids) / max(len(ids), 1)

    def check_covers(self, ids: Sequence[str], split: str) -> None:
        """Refuses a teacher that knows too few of the training cases (a file made for other
        data): a case without an estimate keeps its label, which is harmless for a few."""
        share = self.coverage(ids)
        if share < 0.99:
            raise ValueError(
                f"teacher {self.source} has estimates for {share:.1%} of the {len(ids)} "
                f"{split} cases; it was made for other data (need at least 99 %)"
            )

    def blend(self, ids: Sequence[str], age: np.ndarray) -> np.ndarray:
        """The training targets for these cases (a case the teacher lacks keeps its label)."""
        teacher = np.array([self.ages.get(str(i), np.nan) for i in ids], dtype=np.float32)
        mixed = (1.0 - self.weight) * age + self.weight * teacher
        return np.where(np.isnan(teacher), age, mixed).astype(np.float32)

    def tf_blend(self) -> Any:
        """The same blend as a TensorFlow function ``(id, age) -> target`` for ``tf.data``."""
        import tensorflow as tf

        keys = tf.constant(list(self.ages), dtype=tf.string)
        values = tf.constant(list(self.ages.values()), dtype=tf.float32)
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(keys, values), default_value=float("nan")
        )
        w = tf.constant(self.weight, tf.float32)

        def blend(case: tf.Tensor, age: tf.Tensor) -> tf.Tensor:
            teacher = table.lookup(case)
            mixed = (1.0 - w) * age + w * teacher
            return tf.where(tf.math.is_nan(teacher), age, mixed)

        return blend
