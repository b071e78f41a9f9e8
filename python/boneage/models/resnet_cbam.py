"""ResNet34 with CBAM in every basic block, for bone-age regression (paper section V-B).

Layout (names follow ``keras.applications.ResNet``)::

    ZeroPadding(3) - Conv7x7/2(64) - BN - GELU - ZeroPadding(1) - MaxPool3x3/2
    stages of basic blocks [3, 4, 6, 3] with 64, 128, 256, 512 channels (stride 2 from the
    second stage on); basic block:
        Conv3x3 - BN - GELU - Conv3x3 - BN - CBAM  (+ shortcut)  - GELU
        shortcut: identity, or Conv1x1/stride + BN when the shape changes
    CBAM: channel attention (shared MLP C -> C/16 -> ReLU -> C over global average and max
          pooling, summed, sigmoid), then spatial attention (channel-wise mean and max,
          concatenated, Conv7x7, sigmoid)
    global average pooling, concatenated with the sex branch Dense(16)-GELU-Dense(8),
    Dense(1024)-GELU-Dropout(0.4)-Dense(512)-GELU-Dropout(0.4)-Dense(1)

Parameter count against the paper's Table V (22,590,634 total, 17,024 non-trainable)
------------------------------------------------------------------------------------
The non-trainable count is matched exactly: 17,024 = 2 x 8,512 BN channels = the stem (64),
two BNs per block (7,552) and the three projection shortcuts (128 + 256 + 512); the paper's
network therefore has BN exactly where this one has it.

The total here, at any input size, is **22,525,701** (22,508,677 trainable), 64,933 (0.29 %)
below the paper. The parts (Keras defaults, as the paper's DenseNet evidently used, since its
count is only reached with a bias on every convolution):

========================================================  ==========
convolution kernels (stem, 32 block convs, 3 projections)  21,261,376
convolution biases (every convolution)                          8,512
batch normalisation (gamma, beta; mean, var)             17,024 + 17,024
CBAM MLPs, 16 blocks (kernels 157,184 + biases 4,012)         161,196
CBAM 7x7 spatial convolutions (16 x (98 + 1))                   1,584
sex branch Dense(16)-Dense(8)                                     168
head Dense(1024) (520 inputs), Dense(512), Dense(1)          1,058,817
========================================================  ==========

Variants explored (totals): no convolution biases 22,517,189 (-0.32 %); no biases in CBAM
either 22,513,161; raw 0/1 sex instead of the two-layer branch 22,518,365 (-0.32 %); three
input channels +6,272; the activation in the head (none/ReLU/GELU) changes nothing. No
combination of these (nor CBAM reduction 8 or 32, nor a CBAM after the stem) gives the
paper's figure; the remainder, 64,933 = 63.4 x 1,024, is almost
exactly what a 64-unit sex embedding feeding the Dense(1024) would add (``sex_units=(128,
64)`` gives 22,591,389, 755 above the paper), so the paper's sex branch was probably wider
than the Dense(16)-Dense(8) it describes for DenseNet. We keep the documented widths; pass
``sex_units`` to change them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from boneage.models import register
from boneage.models.heads import check_dropout, inputs, regression_output, sex_branch
from boneage.models.layers import cbam, conv2d

__all__ = ["resnet34_cbam"]

_BN_EPSILON = 1.001e-5
_STAGES_34 = ((64, 3), (128, 4), (256, 6), (512, 3))


def _bn(name: str) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(epsilon=_BN_EPSILON, name=name)


def _basic_block(x: Any, filters: int, strides: int, cbam_reduction: int, name: str) -> Any:
    """Conv3x3-BN-GELU-Conv3x3-BN-CBAM plus shortcut, then GELU."""
    if strides != 1 or x.shape[-1] != filters:
        shortcut = conv2d(filters, 1, strides=strides, name=f"{name}_0_conv")(x)
        shortcut = _bn(f"{name}_0_bn")(shortcut)
    else:
        shortcut = x

    y = conv2d(filters, 3, strides=strides, padding="same", name=f"{name}_1_conv")(x)
    y = _bn(f"{name}_1_bn")(y)
    y = keras.layers.Activation("gelu", name=f"{name}_1_gelu")(y)
    y = conv2d(filters, 3, padding="same", name=f"{name}_2_conv")(y)
    y = _bn(f"{name}_2_bn")(y)
    y = cbam(y, reduction=cbam_reduction, name=f"{name}_cbam")

    x = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.Activation("gelu", name=f"{name}_out")(x)


def _stage(x: Any, filters: int, blocks: int, strides: int, cbam_reduction: int, name: str) -> Any:
    x = _basic_block(x, filters, strides, cbam_reduction, name=f"{name}_block1")
    for i in range(2, blocks + 1):
        x = _basic_block(x, filters, 1, cbam_reduction, name=f"{name}_block{i}")
    return x


@register("resnet34_cbam")
def resnet34_cbam(
    image_size: int = 256,
    *,
    dropout: float = 0.4,
    head_units: Sequence[int] = (1024, 512),
    sex_units: Sequence[int] = (16, 8),
    cbam_reduction: int = 16,
    uncertainty: bool = False,
    mean_bias: float = 0.0,
) -> keras.Model:
    """ResNet34 + CBAM (Table V: 22,590,634 parameters; here 22,525,701, see the module doc).

    Options (keyword only): ``dropout`` (0.4, after each hidden head layer), ``head_units``
    ((1024, 512)), ``sex_units`` ((16, 8); ``()`` for the raw 0/1 value), ``cbam_reduction``
    (16), ``uncertainty`` (False), ``mean_bias`` (0.0).
    """
    dropout = check_dropout(dropout)
    image, male = inputs(image_size)

    x = keras.layers.ZeroPadding2D(padding=((3, 3), (3, 3)), name="conv1_pad")(image)
    x = conv2d(64, 7, strides=2, name="conv1_conv")(x)
    x = _bn("conv1_bn")(x)
    x = keras.layers.Activation("gelu", name="conv1_gelu")(x)
    x = keras.layers.ZeroPadding2D(padding=((1, 1), (1, 1)), name="pool1_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)

    for i, (filters, blocks) in enumerate(_STAGES_34):
        x = _stage(
            x,
            filters,
            blocks,
            strides=1 if i == 0 else 2,
            cbam_reduction=cbam_reduction,
            name=f"conv{i + 2}",
        )

    features = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    sex = sex_branch(male, units=sex_units)
    x = keras.layers.Concatenate(name="features_sex")([features, sex])
    for i, n in enumerate(head_units, start=1):
        x = keras.layers.Dense(int(n), activation="gelu", name=f"head_dense{i}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"head_dropout{i}")(x)
    out = regression_output(x, uncertainty=uncertainty, mean_bias=mean_bias)
    return keras.Model(inputs=[image, male], outputs=out, name="resnet34_cbam")
