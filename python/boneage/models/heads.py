"""Inputs, the sex branch and the regression heads shared by every model.

Every model takes two inputs, ``image`` ``(size, size, 1)`` float in ``[0, 1]`` and ``male``
``(1,)`` (1 = male, 0 = female), and ends in a ``float32`` layer named ``bone_age`` whatever the
global dtype policy is (mixed precision keeps the output in float32):

* deterministic (default): ``bone_age`` is ``(batch, 1)``, the bone age in months;
* ``uncertainty=True``: ``bone_age`` is ``(batch, 2)``, the mean in months and the log-variance
  ``log sigma^2`` of a Gaussian, trained with :class:`boneage.models.losses.GaussianNLL`.
  :func:`split_prediction` turns it into mean and standard deviation.

The two predicted quantities share one output so that the Gaussian likelihood, which needs
both, is an ordinary Keras loss (a Keras 3 loss only ever sees one output).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

__all__ = [
    "DEFAULT_LOG_VAR_BIAS",
    "check_dropout",
    "inputs",
    "regression_output",
    "sex_branch",
    "split_prediction",
]

#: Initial log-variance of the uncertainty output: sigma = 30 months, about the spread of
#: bone age in the RSNA data, so the first steps neither ignore nor over-weight the error.
DEFAULT_LOG_VAR_BIAS = 2.0 * math.log(30.0)


def inputs(image_size: int) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """The two model inputs: ``image`` (size, size, 1) and ``male`` (1,)."""
    if int(image_size) < 32:
        raise ValueError(f"image_size must be at least 32, got {image_size}")
    image = keras.Input(shape=(int(image_size), int(image_size), 1), name="image")
    male = keras.Input(shape=(1,), name="male")
    return image, male


def sex_branch(
    male: keras.KerasTensor,
    units: Sequence[int] = (16, 8),
    activation: str = "gelu",
    name: str = "sex",
) -> keras.KerasTensor:
    """Encode the 0/1 sex input with a small MLP (paper: ``Dense(16)-GELU-Dense(8)``).

    The activation follows every layer but the last, which stays linear (it feeds a Dense
    layer straight away). ``units=()`` passes the raw 0/1 value through.
    """
    x = male
    units = tuple(int(u) for u in units)
    for i, n in enumerate(units, start=1):
        last = i == len(units)
        x = keras.layers.Dense(n, activation=None if last else activation, name=f"{name}_dense{i}")(
            x
        )
    return x


def regression_output(
    x: keras.KerasTensor,
    uncertainty: bool = False,
    kernel_regularizer: Any = None,
    mean_bias: float = 0.0,
    log_var_bias: float = DEFAULT_LOG_VAR_BIAS,
    name: str = "bone_age",
) -> keras.KerasTensor:
    """The final ``float32`` layer(s): ``Dense(1)``, or mean and log-variance side by side.

    Args:
        x: the last hidden features.
        uncertainty: add a log-variance unit (output ``(batch, 2)``) next to the mean.
        kernel_regularizer: applied to the output kernel(s).
        mean_bias: initial bias of the mean unit (0 as in the paper; the training-set mean
            age, about 127 months for RSNA, shortens the first epochs).
        log_var_bias: initial bias of the log-variance unit.
        name: name of the output layer.
    """
    mean = keras.layers.Dense(
        1,
        kernel_regularizer=kernel_regularizer,
        bias_initializer=keras.initializers.Constant(float(mean_bias)),
        dtype="float32",
        name=f"{name}_mean" if uncertainty else name,
    )(x)
    if not uncertainty:
        return mean
    log_var = keras.layers.Dense(
        1,
        kernel_regularizer=kernel_regularizer,
        bias_initializer=keras.initializers.Constant(float(log_var_bias)),
        dtype="float32",
        name=f"{name}_log_var",
    )(x)
    return keras.layers.Concatenate(axis=-1, dtype="float32", name=name)([mean, log_var])


def split_prediction(prediction: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Mean (months) and standard deviation (months, ``None`` without uncertainty).

    Accepts the ``(batch, 1)`` or ``(batch, 2)`` output of any model here; returns 1-D arrays.
    """
    p = np.asarray(keras.ops.convert_to_numpy(prediction), dtype=np.float64)
    if p.ndim != 2 or p.shape[-1] not in (1, 2):
        raise ValueError(f"expected a (batch, 1) or (batch, 2) prediction, got {p.shape}")
    mean = p[:, 0]
    if p.shape[-1] == 1:
        return mean, None
    return mean, np.exp(0.5 * p[:, 1])


def check_dropout(rate: float) -> float:
    """Validate a dropout rate (``0 <= rate < 1``)."""
    rate = float(rate)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {rate}")
    return rate
