"""``resnet_compact``: a narrow residual network that trains on real radiographs on a CPU.

Not from the paper. The paper's DenseNet121 and ResNet34+CBAM need a GPU; on a 2-core CPU
they manage about a dozen images a second even at 100 px. This network keeps what makes a
ResNet train well from scratch (batch-normalised 3x3 basic blocks with identity shortcuts)
at a fraction of the cost: a stride-2 stem, then four stages of basic blocks, each stage
after the first halving the resolution and doubling the channels. ReLU rather than GELU,
because it is several times cheaper on a CPU and the difference in accuracy at this size is
within noise. The sex input joins the pooled image features through the paper's small sex
branch, then one hidden ``Dense`` layer and the shared regression output.

Defaults (``widths=(32, 64, 128, 256)``, ``blocks=(1, 2, 2, 2)``): about 2.8 M parameters
and 0.32 G multiply-adds at 100 px (about 46 M in the 50 px stage, 80-100 M in each of the
others). On this project's 2-core CPU it trains at about 55 images/s under TensorFlow
(``benches/cpu_throughput.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from boneage.models import register
from boneage.models.heads import check_dropout, inputs, regression_output, sex_branch

__all__ = ["resnet_compact"]


def _conv_bn(x: Any, filters: int, strides: int, name: str, relu: bool = True) -> Any:
    x = keras.layers.Conv2D(
        filters,
        3,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=f"{name}_conv",
    )(x)
    # A branch's last BN (relu=False) starts at zero: see _block.
    x = keras.layers.BatchNormalization(
        gamma_initializer="ones" if relu else "zeros", name=f"{name}_bn"
    )(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _block(x: Any, filters: int, strides: int, name: str) -> Any:
    """Conv3x3-BN-ReLU-Conv3x3-BN plus the shortcut (1x1 projection when the shape changes)."""
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = keras.layers.Conv2D(
            filters, 1, strides=strides, use_bias=False, name=f"{name}_proj_conv"
        )(x)
        shortcut = keras.layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    y = _conv_bn(x, filters, strides, f"{name}_1")
    y = _conv_bn(y, filters, 1, f"{name}_2", relu=False)
    # The last BN of each residual branch starts at zero, so every block begins as the
    # identity: deep stacks trained from scratch converge faster (Goyal et al., 2017).
    x = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(x)


@register("resnet_compact")
def resnet_compact(
    image_size: int = 100,
    *,
    widths: Sequence[int] = (32, 64, 128, 256),
    blocks: Sequence[int] = (1, 2, 2, 2),
    stem: int = 32,
    head_units: int = 128,
    dropout: float = 0.2,
    sex_units: Sequence[int] = (16, 8),
    uncertainty: bool = False,
    mean_bias: float = 0.0,
) -> keras.Model:
    """Builds ``resnet_compact``.

    Options (keyword only): ``widths`` and ``blocks`` per stage (the same length), ``stem``
    channels, ``head_units`` of the hidden head layer (0: none), ``dropout`` before the
    output, ``sex_units`` ((16, 8)), ``uncertainty`` and ``mean_bias`` as every model here.
    """
    if len(widths) != len(blocks) or not widths:
        raise ValueError(f"widths {tuple(widths)} and blocks {tuple(blocks)} must pair up")
    rate = check_dropout(dropout)
    image, male = inputs(image_size)
    x = _conv_bn(image, int(stem), 2, "stem")
    for i, (w, n) in enumerate(zip(widths, blocks, strict=True), start=1):
        for j in range(1, int(n) + 1):
            strides = 2 if (j == 1 and i > 1) else 1
            x = _block(x, int(w), strides, f"stage{i}_block{j}")
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Concatenate(name="features")([x, sex_branch(male, units=sex_units)])
    if head_units:
        x = keras.layers.Dense(int(head_units), activation="relu", name="head_dense")(x)
    if rate:
        x = keras.layers.Dropout(rate, name="head_dropout")(x)
    out = regression_output(x, uncertainty=uncertainty, mean_bias=mean_bias)
    return keras.Model(inputs=[image, male], outputs=out, name="resnet_compact")
