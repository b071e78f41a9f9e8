"""DenseNet121 for bone-age regression (paper section V-A), and a CBAM variant.

The backbone is Keras's own ``keras.applications.DenseNet121`` layout, rewritten with GELU, a
bias on every convolution, L2 on the convolution kernels and one input channel::

    ZeroPadding(3) - Conv7x7/2(64) - BN - GELU - ZeroPadding(1) - MaxPool3x3/2
    dense block (6)  - transition      dense layer: BN-GELU-Conv1x1(4k)-BN-GELU-Conv3x3(k),
    dense block (12) - transition                   concatenated to its input (k = 32)
    dense block (24) - transition      transition:  BN-GELU-Conv1x1(C/2)-AvgPool2x2/2
    dense block (16) - BN - GELU - global average pooling (1024 features)

Sex enters through ``Dense(16)-GELU-Dense(8)``, is concatenated with the pooled features and
the head is ``Dense(32)-GELU-Dense(16)-GELU-Dropout(0.01)-Dense(1)`` with L2 0.01.

At 256 x 256 this gives 7,075,241 parameters, 83,648 of them non-trainable (the BN moving
statistics), exactly the paper's Table V: Keras's DenseNet121 without top has 7,037,504; one
input channel instead of three takes 6,272 off, the 120 convolution biases add 10,240 and the
sex branch and head add 33,769.

``densenet121_cbam`` (beyond the paper, after its "future work") puts a CBAM module (reduction
16, 7x7 spatial kernel) after each of the four dense blocks: 7,381,733 parameters (+306,492).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from boneage.models import register
from boneage.models.heads import check_dropout, inputs, regression_output, sex_branch
from boneage.models.layers import cbam as cbam_block
from boneage.models.layers import conv2d

__all__ = ["densenet121", "densenet121_cbam"]

_BN_EPSILON = 1.001e-5
_BLOCKS_121 = (6, 12, 24, 16)


def _bn_act(x: Any, name: str) -> Any:
    x = keras.layers.BatchNormalization(epsilon=_BN_EPSILON, name=f"{name}_bn")(x)
    return keras.layers.Activation("gelu", name=f"{name}_gelu")(x)


def _conv_block(x: Any, growth_rate: int, l2: float, name: str) -> Any:
    """One dense layer: BN-GELU-Conv1x1(4k)-BN-GELU-Conv3x3(k), concatenated to the input."""
    y = _bn_act(x, f"{name}_0")
    y = conv2d(4 * growth_rate, 1, l2=l2, name=f"{name}_1_conv")(y)
    y = _bn_act(y, f"{name}_1")
    y = conv2d(growth_rate, 3, l2=l2, padding="same", name=f"{name}_2_conv")(y)
    return keras.layers.Concatenate(axis=-1, name=f"{name}_concat")([x, y])


def _dense_block(x: Any, blocks: int, growth_rate: int, l2: float, name: str) -> Any:
    for i in range(blocks):
        x = _conv_block(x, growth_rate, l2, name=f"{name}_block{i + 1}")
    return x


def _transition_block(x: Any, reduction: float, l2: float, name: str) -> Any:
    """BN-GELU-Conv1x1(reduction * C)-AvgPool2x2/2."""
    channels = int(x.shape[-1] * reduction)
    x = _bn_act(x, name)
    x = conv2d(channels, 1, l2=l2, name=f"{name}_conv")(x)
    return keras.layers.AveragePooling2D(2, strides=2, name=f"{name}_pool")(x)


def _densenet(
    name: str,
    blocks: Sequence[int],
    image_size: int,
    *,
    cbam: bool,
    growth_rate: int = 32,
    compression: float = 0.5,
    conv_l2: float = 1e-4,
    head_l2: float = 0.01,
    dropout: float = 0.01,
    head_units: Sequence[int] = (32, 16),
    sex_units: Sequence[int] = (16, 8),
    cbam_reduction: int = 16,
    uncertainty: bool = False,
    mean_bias: float = 0.0,
) -> keras.Model:
    dropout = check_dropout(dropout)
    image, male = inputs(image_size)

    x = keras.layers.ZeroPadding2D(padding=((3, 3), (3, 3)), name="zero_padding1")(image)
    x = conv2d(64, 7, l2=conv_l2, strides=2, name="conv1_conv")(x)
    x = _bn_act(x, "conv1")
    x = keras.layers.ZeroPadding2D(padding=((1, 1), (1, 1)), name="zero_padding2")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1")(x)

    for i, n in enumerate(blocks):
        stage = i + 2
        x = _dense_block(x, n, growth_rate, conv_l2, name=f"conv{stage}")
        if cbam:
            x = cbam_block(x, reduction=cbam_reduction, name=f"conv{stage}_cbam")
        if i < len(blocks) - 1:
            x = _transition_block(x, compression, conv_l2, name=f"pool{stage}")

    x = _bn_act(x, "top")
    features = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)

    sex = sex_branch(male, units=sex_units)
    x = keras.layers.Concatenate(name="features_sex")([features, sex])
    reg = keras.regularizers.L2(head_l2) if head_l2 else None
    for i, n in enumerate(head_units, start=1):
        x = keras.layers.Dense(
            int(n), activation="gelu", kernel_regularizer=reg, name=f"head_dense{i}"
        )(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    out = regression_output(x, uncertainty=uncertainty, kernel_regularizer=reg, mean_bias=mean_bias)
    return keras.Model(inputs=[image, male], outputs=out, name=name)


@register("densenet121")
def densenet121(image_size: int = 256, **options: Any) -> keras.Model:
    """DenseNet121 as in the paper (Table V: 7,075,241 parameters, 83,648 non-trainable).

    Options (keyword only): ``growth_rate`` (32), ``compression`` (0.5), ``conv_l2`` (1e-4),
    ``head_l2`` (0.01), ``dropout`` (0.01, before the output), ``head_units`` ((32, 16)),
    ``sex_units`` ((16, 8)), ``uncertainty`` (False), ``mean_bias`` (0.0).
    """
    return _densenet("densenet121", _BLOCKS_121, image_size, cbam=False, **options)


@register("densenet121_cbam")
def densenet121_cbam(image_size: int = 256, **options: Any) -> keras.Model:
    """DenseNet121 with CBAM after each dense block; options as :func:`densenet121` plus
    ``cbam_reduction`` (16)."""
    return _densenet("densenet121_cbam", _BLOCKS_121, image_size, cbam=True, **options)
