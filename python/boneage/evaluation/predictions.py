"""Predictions over a split of shards or a set of labelled files, case by case.

Shared by training (the final held-out evaluation), ``boneage.evaluate``, shipping and the
tests. The numbers themselves come from :class:`boneage.inference.LoadedModel`, as every
estimate's do, so an evaluation figure is the mean of what ``predict`` prints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from boneage.inference import LoadedModel, Predictor
from boneage.ingest import dicom
from boneage.shards.arrays import read_split

PREDICTION_COLUMNS = ("id", "male", "age_months", "predicted_months")
"""The columns of a per-case predictions file (:meth:`Predictions.write_csv`); a teacher's
file for distillation (:mod:`boneage.training.distill`) is read by the same names."""


@dataclass
class Predictions:
    ids: list[str]
    y_true: np.ndarray
    y_pred: np.ndarray
    male: np.ndarray
    sigma: np.ndarray | None

    def write_csv(self, path: str | os.PathLike[str]) -> None:
        """One row per case (an unlabelled case's age is empty): the figures' raw material,
        for a reader's own analysis or as a teacher's targets for distillation."""
        import csv

        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(PREDICTION_COLUMNS)
            for i, case in enumerate(self.ids):
                age = float(self.y_true[i])
                w.writerow(
                    [case, int(self.male[i]), "" if age != age else f"{age:.4f}",
                     f"{float(self.y_pred[i]):.4f}"]
                )  # fmt: skip


def predict_split(
    loaded: LoadedModel, data: str | os.PathLike[str], split: str, batch_size: int = 64
) -> Predictions:
    """``loaded``'s estimates for every record of ``split`` (the data checked to be
    preprocessed as the model expects)."""
    loaded.check_data(data)
    images, male, age, ids = read_split(data, split)
    mean, sigma = loaded.predict(images, male, batch_size)
    return Predictions(ids, age.astype(np.float64), mean, male, sigma)


def predict_files(
    predictor: Predictor, items: list[Any], labels: Any, batch_size: int = 64
) -> tuple[Predictions, list[str]]:
    """Predictions for image inputs (``sources.Item``) whose ids have labels in ``labels``.

    Each image is prepared by ``predictor`` with the model's own preprocessing (its mode), the
    path a clinician's file takes, not the shards'. Returns the predictions and, for every
    input that could not be used, a ``"source: reason"`` line.
    """
    images, male, age, ids, problems = [], [], [], [], []
    for item in items:
        if not item.is_image and not dicom.may_be_dicom(item.source):
            continue
        label = labels.get(item.case_id)
        if label is None:
            if item.is_image:  # an extensionless file may be anything: reported if DICOM
                problems.append(f"{item.source}: no label for id {item.case_id}")
            continue
        try:
            data = item.read()
            if not item.is_image and not dicom.is_dicom(data):
                continue
            img, _ = dicom.decode_image(data)
            pre, _, _ = predictor.prepare(img)
        except (OSError, ValueError) as e:
            problems.append(f"{item.source}: {e}")
            continue
        images.append(pre)
        male.append(label.male)
        age.append(label.age_months)
        ids.append(item.case_id)
    if not images:
        raise ValueError("none of the given images has a label in the label files")
    m = np.asarray(male, np.float32)
    mean, sigma = predictor.loaded.predict(np.stack(images), m, batch_size)
    return Predictions(ids, np.asarray(age, np.float64), mean, m, sigma), problems
