"""Ensembles: several trained models averaged into one Keras model, one file, one prediction.

Why: on this project's CPU a single network stops improving on validation after a few
sessions of training, while independently trained networks make partly independent errors;
averaging their estimates lowers the error without retraining either. Packing the average
into one ordinary functional model keeps everything downstream unchanged: the ``.keras`` file
still holds one model with the two usual inputs (``image``, ``male``) and one ``bone_age``
output, so ``Predictor``, test-time augmentation, ``evaluate`` and ``serve`` treat it like any
other model, and :mod:`boneage.inference.explain` explains it member by member.

Members must share an input size and have the deterministic ``(batch, 1)`` output: averaging
a log-variance as if it were an age would be wrong, so uncertainty models are refused. Members
keep their own weights (including batch-norm statistics); they are renamed ``member_0``,
``member_1``, ... because a Keras model needs distinct layer names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

__all__ = ["MEMBER_PREFIX", "ensemble", "members"]

MEMBER_PREFIX = "member_"
"""Name prefix of an ensemble's members: how :func:`members` recognises them."""


def ensemble(models: Sequence[keras.Model], name: str = "ensemble") -> keras.Model:
    """One model whose ``bone_age`` is the mean of ``models``' outputs.

    Raises ``ValueError`` for fewer than two models, differing input sizes or an output that
    is not ``(batch, 1)``.
    """
    models = list(models)
    if len(models) < 2:
        raise ValueError(f"an ensemble needs at least two models, got {len(models)}")
    sizes = {tuple(m.inputs[0].shape[1:]) for m in models}
    if len(sizes) != 1:
        raise ValueError(f"ensemble members take different image shapes: {sorted(sizes)}")
    for m in models:
        if tuple(m.outputs[0].shape[1:]) != (1,):
            raise ValueError(
                f"{m.name}: output {tuple(m.outputs[0].shape)} is not (batch, 1); uncertainty "
                "models cannot be averaged as ages"
            )
    # The members' own input shape, whatever it is: they were built and checked already.
    image = keras.Input(shape=next(iter(sizes)), name="image")
    male = keras.Input(shape=(1,), name="male")
    outs = []
    for i, m in enumerate(models):
        m.name = f"{MEMBER_PREFIX}{i}"
        outs.append(m({"image": image, "male": male}))
    mean = keras.layers.Average(name="bone_age", dtype="float32")(outs)
    return keras.Model(inputs=[image, male], outputs=mean, name=name)


def members(model: Any) -> list[Any]:
    """The member models of an ensemble built by :func:`ensemble`, in order; ``[]`` for a
    plain model."""
    return [
        layer
        for layer in getattr(model, "layers", [])
        if isinstance(layer, keras.Model) and layer.name.startswith(MEMBER_PREFIX)
    ]
