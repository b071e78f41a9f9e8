"""Training data from TFRecord shards without TensorFlow: a ``keras.utils.PyDataset``.

For the JAX and PyTorch backends (and machines without TensorFlow), :class:`ShardDataset`
reads the shards with the native checked reader (:func:`boneage._native.read_examples`), keeps
the decoded uint8 images in memory (the equivalent of ``cache()``), and yields the same
structure as :func:`boneage.data.make_dataset`::

    ({"image": float32 (batch, size, size, 1) in [0, 1], "male": float32 (batch, 1)},
     age float32 (batch,))

Shuffling is over all examples, redone every epoch; augmentation (:class:`boneage.data.Augment`)
is done in numpy: a bilinear affine warp with zeros outside, then brightness/contrast. It is
slower than the ``tf.data`` path; use ``workers`` (threads) to spread it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from boneage import _native
from boneage.data import Augment, find_shards, inverse_affine

__all__ = ["ShardDataset", "area_resize", "load_examples"]


def area_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Pads a 2-D uint8 image to a square (centred zeros) and area-averages it to size x size.

    Area averaging as separable weight matrices (exact box-filter weights, float32), rounded
    half to even. It matches the ``tf.data`` path's ``resize_with_pad(method="area")`` up to
    rounding; for OpenCV-exact images, preprocess at the training size instead.
    """
    h, w = image.shape
    side = max(h, w)
    if (h, w) != (side, side):
        square = np.zeros((side, side), dtype=np.uint8)
        top, left = (side - h) // 2, (side - w) // 2
        square[top : top + h, left : left + w] = image
        image = square
    if side == size:
        return image
    weights = _area_weights(side, size)
    out = weights @ image.astype(np.float32) @ weights.T
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _area_weights(src: int, dst: int) -> np.ndarray:
    """(dst, src) matrix: row d averages the source interval [d, d + 1) * src / dst."""
    scale = src / dst
    edges = np.arange(dst + 1, dtype=np.float64) * scale
    lo, hi = edges[:-1, None], edges[1:, None]
    idx = np.arange(src, dtype=np.float64)[None, :]
    overlap = np.clip(np.minimum(hi, idx + 1) - np.maximum(lo, idx), 0.0, None)
    return (overlap / scale).astype(np.float32)


def load_examples(
    files: Sequence[str | os.PathLike[str]],
    image_size: int,
    labels: bool = True,
    skip_corrupt: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Reads every example: ``(images uint8 (N, S, S), male uint8 (N,), age float32 (N,),
    ids)``. ``age`` is NaN where absent when ``labels`` is False."""
    images: list[np.ndarray] = []
    males: list[int] = []
    ages: list[float] = []
    ids: list[str] = []
    for ex in _native.read_examples(list(files), skip_corrupt=skip_corrupt):
        case = ex.get("id", "?")
        image = ex.get("image")
        if not isinstance(image, np.ndarray):
            raise ValueError(f"case {case!r}: no decodable image (needs image/height/width)")
        if "male" not in ex:
            raise ValueError(f"case {case!r} has no 'male' feature (the model needs it)")
        if labels and "age" not in ex:
            raise ValueError(f"case {case!r} has no 'age' label (pass labels=False)")
        if image.shape != (image_size, image_size):
            image = area_resize(image, image_size)
        images.append(image)
        males.append(int(ex["male"]))
        ages.append(float(ex.get("age", math.nan)))
        ids.append(str(case))
    stacked = np.stack(images) if images else np.zeros((0, image_size, image_size), dtype=np.uint8)
    return (
        stacked,
        np.asarray(males, dtype=np.uint8),
        np.asarray(ages, dtype=np.float32),
        ids,
    )


def _affine_params(rng: np.random.Generator, n: int, size: int, cfg: Augment) -> np.ndarray:
    """(n, 6) inverse affine maps [a0, a1, a2, b0, b1, b2]: input = A @ (x, y, 1)."""
    theta = np.deg2rad(rng.uniform(-cfg.rotation, cfg.rotation, n))
    scale = rng.uniform(1.0 - cfg.zoom, 1.0 + cfg.zoom, n)
    tx = rng.uniform(-cfg.shift, cfg.shift, n) * size
    ty = rng.uniform(-cfg.shift, cfg.shift, n) * size
    flip = rng.uniform(0.0, 1.0, n) < 0.5 if cfg.flip else None
    a0, a1, a2, b0, b1, b2 = inverse_affine(
        np.cos(theta), np.sin(theta), scale, tx, ty, float(size), flip, np.where
    )
    return np.stack([a0, a1, a2, b0, b1, b2], axis=1).astype(np.float32)


def _warp(images: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Bilinear affine warp of float32 (n, S, S) images, zeros outside."""
    n, size, _ = images.shape
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.empty_like(images)
    flat_len = size * size
    for i in range(n):
        a0, a1, a2, b0, b1, b2 = params[i]
        sx = a0 * xs + a1 * ys + a2
        sy = b0 * xs + b1 * ys + b2
        x0 = np.floor(sx)
        y0 = np.floor(sy)
        fx, fy = sx - x0, sy - y0
        x0 = x0.astype(np.int64)
        y0 = y0.astype(np.int64)
        src = images[i].reshape(flat_len)
        acc = np.zeros((size, size), dtype=np.float32)
        for dy, wy in ((0, 1.0 - fy), (1, fy)):
            for dx, wx in ((0, 1.0 - fx), (1, fx)):
                xx, yy = x0 + dx, y0 + dy
                inside = (xx >= 0) & (xx < size) & (yy >= 0) & (yy < size)
                idx = np.where(inside, yy * size + xx, 0)
                acc += np.where(inside, src[idx], 0.0) * (wx * wy)
        out[i] = acc
    return out


def augment_batch(images: np.ndarray, cfg: Augment, rng: np.random.Generator) -> np.ndarray:
    """The numpy twin of the ``tf.data`` augmentation: float32 (n, S, S) in [0, 1]."""
    n, size, _ = images.shape
    if cfg.rotation or cfg.shift or cfg.zoom or cfg.flip:
        images = _warp(images, _affine_params(rng, n, size, cfg))
    if cfg.brightness or cfg.contrast:
        mean = images.mean(axis=(1, 2), keepdims=True)
        factor = rng.uniform(1.0 - cfg.contrast, 1.0 + cfg.contrast, (n, 1, 1))
        delta = rng.uniform(-cfg.brightness, cfg.brightness, (n, 1, 1))
        images = np.clip((images - mean) * factor + mean + delta, 0.0, 1.0)
    return images.astype(np.float32, copy=False)


class ShardDataset(keras.utils.PyDataset):
    """Batches from TFRecord shards for ``model.fit`` on any Keras backend.

    Arguments mirror :func:`boneage.data.make_dataset` (``training`` defaults to
    ``split == "train"`` and sets the defaults of ``augment``, ``shuffle`` and
    ``drop_remainder``); ``workers``, ``use_multiprocessing`` and ``max_queue_size`` go to
    ``keras.utils.PyDataset``. An epoch is one pass (``len(self)`` batches); Keras calls
    :meth:`on_epoch_end`, which reshuffles.
    """

    def __init__(
        self,
        pattern_or_dir: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        split: str,
        batch_size: int = 64,
        image_size: int = 256,
        training: bool | None = None,
        augment: bool | Augment | dict[str, Any] | None = None,
        *,
        labels: bool = True,
        shuffle: bool | None = None,
        drop_remainder: bool | None = None,
        seed: int | None = None,
        skip_corrupt: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if training is None:
            training = split == "train"
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if isinstance(image_size, bool) or int(image_size) != image_size or image_size < 1:
            raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
        self.batch_size = int(batch_size)
        self.image_size = int(image_size)
        self.labels = labels
        self.augment = Augment.coerce(training if augment is None else augment)
        self.shuffle = training if shuffle is None else shuffle
        self.drop_remainder = training if drop_remainder is None else drop_remainder
        self.files = find_shards(pattern_or_dir, split)
        self.images, self.male, self.age, self.ids = load_examples(
            self.files, self.image_size, labels=labels, skip_corrupt=skip_corrupt
        )
        self._seed = int(np.random.SeedSequence(seed).generate_state(1)[0])
        self._epoch = 0
        self._rng = np.random.default_rng([self._seed, 2**32 - 1])
        self._order = np.arange(len(self.ids))
        if self.shuffle:
            self._rng.shuffle(self._order)

    def __len__(self) -> int:
        n = len(self.ids)
        return n // self.batch_size if self.drop_remainder else math.ceil(n / self.batch_size)

    @property
    def num_batches(self) -> int:
        return len(self)

    def __getitem__(self, index: int) -> Any:
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range ({len(self)} batches)")
        rows = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        x = self.images[rows].astype(np.float32) * np.float32(1.0 / 255.0)
        if self.augment is not None:
            # One generator per (epoch, batch): reproducible whatever the worker threads do.
            rng = np.random.default_rng([self._seed, self._epoch, index])
            x = augment_batch(x, self.augment, rng)
        inputs = {
            "image": x[..., None],
            "male": self.male[rows].astype(np.float32)[:, None],
        }
        return (inputs, self.age[rows].copy()) if self.labels else inputs

    def on_epoch_end(self) -> None:
        self._epoch += 1
        if self.shuffle:
            self._rng.shuffle(self._order)
