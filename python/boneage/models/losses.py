"""Losses and metrics for the predictive-uncertainty models (``uncertainty=True``).

A model built with ``uncertainty=True`` has one output of shape ``(batch, 2)``: column 0 is the
predicted bone age ``mu`` (months), column 1 the log-variance ``s = log sigma^2`` (months^2).
It is trained with the Gaussian negative log-likelihood

    NLL(y | mu, s) = 0.5 * (s + (y - mu)^2 * exp(-s))      (+ 0.5 log 2 pi, left out)

so a case the network cannot fit well learns a large ``sigma`` instead of pulling the mean.
Both objects accept the plain ``(batch, 1)`` output too (then ``s = 0``), and both are
registered serialisable, so a compiled model reloads without ``custom_objects``.

    model = build_model("densenet121", uncertainty=True)
    model.compile(optimizer="adamw", loss=GaussianNLL(),
                  metrics=[mean_absolute_error_of_mean])
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

__all__ = ["GaussianNLL", "mean_absolute_error_of_mean"]


def _split(y_true: Any, y_pred: Any) -> tuple[Any, Any, Any]:
    y_pred = ops.cast(y_pred, "float32")
    mean = y_pred[..., 0]
    log_var = y_pred[..., 1] if y_pred.shape[-1] == 2 else ops.zeros_like(mean)
    y_true = ops.reshape(ops.cast(y_true, "float32"), ops.shape(mean))
    return y_true, mean, log_var


@keras.saving.register_keras_serializable(package="boneage")
class GaussianNLL(keras.losses.Loss):
    """Gaussian negative log-likelihood of ``y_true`` under ``N(mu, exp(s))``.

    Args:
        min_log_var, max_log_var: ``s`` is clipped to this range before use, which bounds the
            weight ``exp(-s)`` of the squared error (numerical safety in float16 and early in
            training); the defaults allow sigma from about 0.05 to 3,000 months.
    """

    def __init__(
        self,
        min_log_var: float = -6.0,
        max_log_var: float = 16.0,
        name: str = "gaussian_nll",
        reduction: str = "sum_over_batch_size",
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, reduction=reduction, **kwargs)
        if min_log_var >= max_log_var:
            raise ValueError("min_log_var must be smaller than max_log_var")
        self.min_log_var = float(min_log_var)
        self.max_log_var = float(max_log_var)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_true, mean, log_var = _split(y_true, y_pred)
        log_var = ops.clip(log_var, self.min_log_var, self.max_log_var)
        return 0.5 * (log_var + ops.square(y_true - mean) * ops.exp(-log_var))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"min_log_var": self.min_log_var, "max_log_var": self.max_log_var})
        return config


@keras.saving.register_keras_serializable(package="boneage")
def mean_absolute_error_of_mean(y_true: Any, y_pred: Any) -> Any:
    """Absolute error of the predicted mean (column 0); use as a metric for either output."""
    y_true, mean, _ = _split(y_true, y_pred)
    return ops.abs(y_true - mean)
