"""Custom Keras layers: the two halves of CBAM (Woo et al., 2018), and a convolution builder.

Both layers are written with ``keras.ops`` only, so they run on every Keras 3 backend, and are
registered with :func:`keras.saving.register_keras_serializable` under the ``boneage`` package:
after ``import boneage.models``, ``keras.saving.load_model(path)`` restores a model that uses
them without ``custom_objects``.

CBAM refines a feature map ``F`` (``channels_last``) in two steps::

    F'  = M_c(F)  * F       channel attention, M_c: (B, 1, 1, C)
    F'' = M_s(F') * F'      spatial attention, M_s: (B, H, W, 1)

:func:`cbam` applies the two layers in that order. :func:`conv2d` builds the plain Keras
``Conv2D`` that the DenseNet and ResNet backbones share (nothing custom to register).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

__all__ = ["ChannelAttention", "SpatialAttention", "cbam", "conv2d"]


@keras.saving.register_keras_serializable(package="boneage")
class ChannelAttention(keras.layers.Layer):
    """CBAM channel attention: a shared MLP over global average and max pooling.

    ``M_c(F) = sigmoid(MLP(avgpool(F)) + MLP(maxpool(F)))`` with
    ``MLP = Dense(C // reduction) -> ReLU -> Dense(C)`` whose weights are shared by the two
    pooled descriptors. The output is ``M_c(F) * F`` (same shape as the input).

    Args:
        reduction: channel reduction ratio of the hidden layer (at least one hidden unit).
        use_bias: whether the two MLP layers carry a bias (Keras ``Dense`` default: yes).
    """

    def __init__(self, reduction: int = 16, use_bias: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if reduction < 1:
            raise ValueError(f"reduction must be >= 1, got {reduction}")
        self.reduction = int(reduction)
        self.use_bias = bool(use_bias)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        channels = input_shape[-1]
        if channels is None:
            raise ValueError("ChannelAttention needs a known number of channels")
        hidden = max(int(channels) // self.reduction, 1)
        self.hidden_kernel = self.add_weight(
            name="hidden_kernel", shape=(channels, hidden), initializer="glorot_uniform"
        )
        self.hidden_bias = (
            self.add_weight(name="hidden_bias", shape=(hidden,), initializer="zeros")
            if self.use_bias
            else None
        )
        self.output_kernel = self.add_weight(
            name="output_kernel", shape=(hidden, channels), initializer="glorot_uniform"
        )
        self.output_bias = (
            self.add_weight(name="output_bias", shape=(channels,), initializer="zeros")
            if self.use_bias
            else None
        )

    def _mlp(self, v: Any) -> Any:
        h = ops.matmul(v, self.hidden_kernel)
        if self.hidden_bias is not None:
            h = h + self.hidden_bias
        h = ops.relu(h)
        out = ops.matmul(h, self.output_kernel)
        if self.output_bias is not None:
            out = out + self.output_bias
        return out

    def call(self, inputs: Any) -> Any:
        avg = ops.mean(inputs, axis=(1, 2), keepdims=True)
        mx = ops.max(inputs, axis=(1, 2), keepdims=True)
        attention = ops.sigmoid(self._mlp(avg) + self._mlp(mx))
        return inputs * attention

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"reduction": self.reduction, "use_bias": self.use_bias})
        return config


@keras.saving.register_keras_serializable(package="boneage")
class SpatialAttention(keras.layers.Layer):
    """CBAM spatial attention: a ``k x k`` convolution over channel-wise average and max.

    ``M_s(F) = sigmoid(conv_kxk([mean_c(F), max_c(F)]))``, a ``(B, H, W, 1)`` map; the output
    is ``M_s(F) * F``.

    Args:
        kernel_size: side of the square convolution (odd; 7 in CBAM).
        use_bias: whether the convolution carries a bias (Keras ``Conv2D`` default: yes).
    """

    def __init__(self, kernel_size: int = 7, use_bias: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
        self.kernel_size = int(kernel_size)
        self.use_bias = bool(use_bias)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        k = self.kernel_size
        self.kernel = self.add_weight(
            name="kernel", shape=(k, k, 2, 1), initializer="glorot_uniform"
        )
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(1,), initializer="zeros")
        else:
            self.bias = None

    def call(self, inputs: Any) -> Any:
        avg = ops.mean(inputs, axis=-1, keepdims=True)
        mx = ops.max(inputs, axis=-1, keepdims=True)
        pooled = ops.concatenate([avg, mx], axis=-1)
        logits = ops.conv(pooled, self.kernel, strides=1, padding="same")
        if self.bias is not None:
            logits = logits + self.bias
        return inputs * ops.sigmoid(logits)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"kernel_size": self.kernel_size, "use_bias": self.use_bias})
        return config


def cbam(
    x: Any,
    name: str,
    reduction: int = 16,
    kernel_size: int = 7,
    use_bias: bool = True,
) -> Any:
    """Apply CBAM (channel, then spatial attention) to ``x``; layers named ``{name}_ca/_sa``."""
    x = ChannelAttention(reduction=reduction, use_bias=use_bias, name=f"{name}_ca")(x)
    return SpatialAttention(kernel_size=kernel_size, use_bias=use_bias, name=f"{name}_sa")(x)


def conv2d(
    filters: int,
    kernel_size: int,
    name: str,
    *,
    strides: int = 1,
    padding: str = "valid",
    l2: float = 0.0,
) -> keras.layers.Conv2D:
    """The convolution of the DenseNet and ResNet backbones: biased, He-normal initialised.

    One builder so that both backbones keep the bias on every convolution that their paper
    parameter counts rely on (see their module docs). ``l2`` puts an L2 penalty on the kernel
    (DenseNet's ``conv_l2``); 0 adds no regulariser at all, as ResNet has none.
    ``padding`` defaults to Keras's ``"valid"``.
    """
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=True,
        kernel_initializer="he_normal",
        kernel_regularizer=keras.regularizers.L2(l2) if l2 else None,
        name=name,
    )
