"""Keras 3 models for bone-age regression from a hand radiograph and the patient's sex.

    import boneage.models as bm

    bm.available()          # ['densenet121', 'densenet121_cbam', 'resnet34_cbam', 'small_cnn']
    model = bm.build_model("densenet121", image_size=256)
    age = model.predict({"image": images, "male": male})   # (batch, 1), months, float32

Every model has two inputs, ``image`` ``(size, size, 1)`` float in ``[0, 1]`` and ``male``
``(1,)`` 0/1, and one float32 output ``bone_age`` (``(batch, 2)`` mean and log-variance with
``uncertainty=True``; see :mod:`boneage.models.heads` and :mod:`boneage.models.losses`).
The models use ``keras.layers`` and ``keras.ops`` only, so they build and train under the
TensorFlow, JAX and PyTorch backends, and under a mixed-precision policy.

Importing this package registers the custom layers, loss and metric with Keras, so
``keras.saving.load_model(path)`` needs no ``custom_objects`` afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

__all__ = ["available", "build_model", "register"]

Builder = Callable[..., keras.Model]

_REGISTRY: dict[str, Builder] = {}


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace("+", "_")


def register(name: str) -> Callable[[Builder], Builder]:
    """Decorator: register ``builder(image_size=256, **options) -> keras.Model`` as ``name``."""
    key = _normalise(name)

    def decorator(builder: Builder) -> Builder:
        if key in _REGISTRY and _REGISTRY[key] is not builder:
            raise ValueError(f"a model named {key!r} is already registered")
        _REGISTRY[key] = builder
        return builder

    return decorator


def available() -> list[str]:
    """Names accepted by :func:`build_model`, sorted."""
    return sorted(_REGISTRY)


def build_model(name: str, image_size: int = 256, **options: Any) -> keras.Model:
    """Build the model registered as ``name`` (case-insensitive; ``-`` works for ``_``).

    Args:
        name: one of :func:`available`.
        image_size: side of the square input image in pixels (at least 32).
        **options: builder options, e.g. ``uncertainty=True`` (adds a log-variance to the
            output), ``dropout=0.2`` (overrides the head dropout rate), ``sex_units=(16, 8)``;
            each builder's docstring lists its own. Unknown options raise ``TypeError``.
    """
    key = _normalise(name)
    try:
        builder = _REGISTRY[key]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(available())}") from None
    return builder(image_size=int(image_size), **options)


# The builder modules register themselves on import; the layers, loss and metric register
# with Keras's serialisation on import. Imported last because they need ``register``.
from boneage.models import (  # noqa: E402, F401
    calibration,
    compact,
    densenet,
    layers,
    losses,
    resnet_cbam,
    small,
)
