"""Predictions over a split of shards, and the figures computed from them.

Shared by training (the final held-out evaluation), ``boneage.evaluate`` and the tests, so
every number the project reports comes from one code path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from boneage import _native as native
from boneage.ingest import dicom
from boneage.shards.arrays import read_split
from boneage.shards.augment import Augment, augment_batch

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


def to_model_inputs(images: np.ndarray, male: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """uint8 images -> the model's float inputs, resized (INTER_AREA, padded) when needed."""
    if images.shape[1] != size or images.shape[2] != size:
        images = np.stack(
            [native.resize_area(native.pad_to_square(im), size, size) for im in images]
        )
    return {
        "image": (images.astype(np.float32) * np.float32(1.0 / 255.0))[..., None],
        "male": male.astype(np.float32)[:, None],
    }


TTA_AUGMENT = Augment(rotation=5.0, shift=0.03, zoom=0.05, brightness=0.05, contrast=0.05)
"""The test-time copies' augmentation: the training one (``Augment()``) at about half strength
(every range halved, but the shift 0.03 of 0.05). Full strength was measured worse on
validation, and more than 8 copies no better (benches/tta_copies.py)."""

TTA_STACK_LIMIT = 512
"""Up to this many images x copies go through the model in one call (memory stays small)."""


def predict_arrays(
    model: Any,
    images: np.ndarray,
    male: np.ndarray,
    batch_size: int = 64,
    tta: int = 0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Mean prediction (months) and sigma (None without uncertainty) for uint8 images.

    ``tta`` > 0 averages over that many mildly augmented copies plus the original (the
    training augmentation, at half strength), a common way to shave a little error.
    """
    from boneage.models.heads import split_prediction

    size = int(model.inputs[0].shape[1])
    inputs = to_model_inputs(images, male, size)
    rng = np.random.default_rng(seed)

    def copies() -> Iterator[np.ndarray]:
        """The images, then ``tta`` augmented copies, drawn one at a time (memory)."""
        yield inputs["image"]
        for _ in range(tta):
            yield augment_batch(inputs["image"][..., 0], TTA_AUGMENT, rng)[..., None]

    n, k = len(images), tta + 1
    if n * k <= TTA_STACK_LIMIT:
        # Few images (a clinician's one film): all copies in one call, since each call to
        # model.predict carries a fixed cost far above a small batch's compute.
        stacked = {"image": np.concatenate(list(copies())), "male": np.tile(inputs["male"], (k, 1))}
        means, sigmas = split_prediction(model.predict(stacked, batch_size=batch_size, verbose=0))
        runs = means.reshape(k, n)
        sigma = None if sigmas is None else sigmas[:n]
    else:
        outs = [
            split_prediction(
                model.predict(
                    {"image": x, "male": inputs["male"]}, batch_size=batch_size, verbose=0
                )
            )
            for x in copies()
        ]
        runs = np.stack([m for m, _ in outs])
        sigma = outs[0][1]
    return runs.mean(axis=0) if tta > 0 else runs[0], sigma


def predict_split(
    model: Any, data: str | os.PathLike[str], split: str, batch_size: int = 64, tta: int = 0
) -> Predictions:
    images, male, age, ids = read_split(data, split)
    mean, sigma = predict_arrays(model, images, male, batch_size, tta)
    return Predictions(ids, age.astype(np.float64), mean, male, sigma)


def predict_files(
    predictor: Any, items: list[Any], labels: Any, batch_size: int = 64, tta: int = 0
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
    mean, sigma = predict_arrays(predictor.model, np.stack(images), m, batch_size, tta)
    return Predictions(ids, np.asarray(age, np.float64), mean, m, sigma), problems
