"""``small_cnn``: a compact ConvNet for the demo, the tests and quick experiments on a CPU.

Not from the paper: a stride-2 3x3 stem (16 channels), three stages of two 3x3
conv-BN-GELU layers and a max-pool (32, 64, 128 channels), global average pooling, the
paper's sex branch, ``Dense(64)``-GELU, dropout and the shared regression output. About
0.3 M parameters and 40 M multiply-adds at 64 px: it learns the synthetic phantoms in a few
minutes on a laptop CPU, where DenseNet121 would take most of an hour.
"""

from __future__ import annotations

from typing import Any

import keras

from boneage.models import register
from boneage.models.heads import check_dropout, inputs, regression_output, sex_branch


def _stage(x: Any, filters: int, name: str) -> Any:
    for i in (1, 2):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(
            x
        )
        # momentum 0.9: the moving statistics settle within the few hundred steps of a demo.
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn{i}")(x)
        x = keras.layers.Activation("gelu", name=f"{name}_gelu{i}")(x)
    return keras.layers.MaxPooling2D(2, name=f"{name}_pool")(x)


@register("small_cnn")
def small_cnn(
    image_size: int = 256,
    *,
    widths: tuple[int, ...] = (32, 64, 128),
    stem: int = 16,
    dropout: float = 0.1,
    uncertainty: bool = False,
    mean_bias: float = 0.0,
) -> keras.Model:
    """Builds ``small_cnn``; ``stem`` and ``widths`` set the channels."""
    image, male = inputs(image_size)
    x = keras.layers.Conv2D(
        int(stem), 3, strides=2, padding="same", use_bias=False, name="stem_conv"
    )(image)
    x = keras.layers.BatchNormalization(momentum=0.9, name="stem_bn")(x)
    x = keras.layers.Activation("gelu", name="stem_gelu")(x)
    for i, w in enumerate(widths, start=1):
        x = _stage(x, int(w), f"stage{i}")
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Concatenate(name="features")([x, sex_branch(male)])
    x = keras.layers.Dense(64, activation="gelu", name="head_dense")(x)
    rate = check_dropout(dropout)
    if rate:
        x = keras.layers.Dropout(rate, name="head_dropout")(x)
    out = regression_output(x, uncertainty=uncertainty, mean_bias=mean_bias)
    return keras.Model(inputs=[image, male], outputs=out, name="small_cnn")
