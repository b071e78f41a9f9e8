"""An affine correction of a model's age output, fitted on validation, kept inside the model.

Why: a regression network trained with a Huber loss on a CPU budget pulls its estimates
towards the training mean: on the RSNA validation split the shipped ensemble over-estimated
young children and under-estimated the oldest ones. A straight line fitted to the validation
predictions (``true ~ slope * predicted + intercept``, least absolute deviations because MAE
is what is reported) takes part of that shrinkage back. It is decided on validation alone,
by cross-validation (:func:`study`), and used only when it lowers the cross-validated MAE.

The line is a layer at the end of the model (:func:`calibrated`), not a setting that callers
must remember to apply: ``Predictor``, ``evaluate``, ``serve``, test-time augmentation (the
line commutes with averaging) and plain ``keras.saving.load_model`` all get the corrected age.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

__all__ = ["AgeCalibration", "calibrated", "calibration_of", "fit_affine", "study"]

MIN_GAIN = 0.02
"""Months of cross-validated MAE a calibration must save to be used (the spread of the
cross-validated MAE over reshuffled folds is under 0.01 month on 1,260 validation cases)."""


@keras.saving.register_keras_serializable(package="boneage")
class AgeCalibration(keras.layers.Layer):
    """``age -> slope * age + intercept``; two numbers in the layer's config, no weights."""

    def __init__(self, slope: float = 1.0, intercept: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.slope, self.intercept = float(slope), float(intercept)

    def call(self, age: Any) -> Any:
        return age * self.slope + self.intercept

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def apply(self, age: np.ndarray) -> np.ndarray:
        """The same line on NumPy ages (for callers that average members themselves): the
        arithmetic of :meth:`call` works on arrays as it does on tensors, so it is reused."""
        return np.asarray(self.call(np.asarray(age, dtype=np.float32)), dtype=np.float32)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "slope": self.slope, "intercept": self.intercept}


def calibrated(model: keras.Model, slope: float, intercept: float) -> keras.Model:
    """``model`` with :class:`AgeCalibration` after its ``(batch, 1)`` age output.

    The new model shares ``model``'s layers (an ensemble's members stay its direct layers), so
    nothing that looks inside it changes. A model calibrated before keeps one layer: the two
    lines are composed.
    """
    if tuple(model.outputs[0].shape[1:]) != (1,):
        raise ValueError(f"{model.name}: only a (batch, 1) age output can be calibrated")
    previous = calibration_of(model)
    source = model.outputs[0]
    if previous is not None:
        slope, intercept = slope * previous.slope, slope * previous.intercept + intercept
        source = previous.input
    layer = AgeCalibration(slope, intercept, name="calibrated_age", dtype="float32")
    return keras.Model(model.inputs, layer(source), name=model.name)


def calibration_of(model: Any) -> AgeCalibration | None:
    """The model's calibration layer when its output comes from one, else None."""
    layers = getattr(model, "layers", [])
    last = layers[-1] if layers else None
    return last if isinstance(last, AgeCalibration) else None


def fit_affine(
    predicted: np.ndarray, truth: np.ndarray, iterations: int = 50
) -> tuple[float, float]:
    """``(slope, intercept)`` minimising the mean absolute error of ``slope * p + intercept``.

    Iteratively reweighted least squares (weights ``1 / max(|residual|, 1 month)``), which
    converges to the least-absolute-deviations line without an optimiser dependency.
    """
    p = np.asarray(predicted, dtype=np.float64).ravel()
    t = np.asarray(truth, dtype=np.float64).ravel()
    if p.size < 2 or np.ptp(p) == 0:
        raise ValueError("a calibration needs at least two distinct predictions")
    design = np.c_[p, np.ones_like(p)]
    weight = np.ones_like(p)
    coef = np.array([1.0, 0.0])
    for _ in range(iterations):
        root = np.sqrt(weight)
        coef = np.linalg.lstsq(design * root[:, None], t * root, rcond=None)[0]
        weight = 1.0 / np.maximum(np.abs(t - design @ coef), 1.0)
    return float(coef[0]), float(coef[1])


def study(
    predicted: np.ndarray, truth: np.ndarray, folds: int = 10, repeats: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Whether a line fitted on validation predictions would help on cases it did not see.

    ``folds``-fold cross-validation over ``predicted`` (repeated with reshuffled folds):
    each fold is corrected by the line fitted on the others. Returns the line fitted on all
    cases, the MAE as predicted, the cross-validated MAE after correction and ``used``: whether
    the correction saves at least :data:`MIN_GAIN` months with a rising line (a falling one
    would rank an older-looking hand younger: a model that bad needs retraining, not a line).
    """
    p = np.asarray(predicted, dtype=np.float64).ravel()
    t = np.asarray(truth, dtype=np.float64).ravel()
    if p.size < 2 * folds:
        raise ValueError(f"{p.size} cases: too few for {folds}-fold cross-validation")
    maes = []
    for r in range(repeats):
        order = np.random.default_rng(seed + r).permutation(p.size)
        corrected = np.empty_like(p)
        for held in np.array_split(order, folds):
            kept = np.setdiff1d(order, held)
            slope, intercept = fit_affine(p[kept], t[kept])
            corrected[held] = slope * p[held] + intercept
        maes.append(float(np.mean(np.abs(corrected - t))))
    slope, intercept = fit_affine(p, t)
    plain, cross = float(np.mean(np.abs(p - t))), float(np.mean(maes))
    return {
        "slope": slope,
        "intercept": intercept,
        "mae_plain": plain,
        "mae_cross_validated": cross,
        "mae_in_sample": float(np.mean(np.abs(slope * p + intercept - t))),
        "folds": folds,
        "repeats": repeats,
        "used": plain - cross >= MIN_GAIN and slope > 0,
    }
