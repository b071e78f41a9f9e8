"""Training data from TFRecord shards without TensorFlow: a ``keras.utils.PyDataset``.

For the JAX and PyTorch backends (and machines without TensorFlow), :class:`ShardDataset`
reads the shards with the native checked reader (:func:`boneage._native.read_examples`), keeps
the decoded uint8 images in memory (the equivalent of ``cache()``), and yields the same
structure as :func:`boneage.data.make_dataset`::

    ({"image": float32 (batch, size, size, 1) in [0, 1], "male": float32 (batch, 1)},
     age float32 (batch,))

Shuffling is over all examples, redone every epoch; augmentation (:class:`boneage.data.Augment`)
is the same native batch augmentation the ``tf.data`` path uses (it releases the GIL, so
``workers`` threads run it in parallel).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from boneage import _native
from boneage.data import Augment, _resolve_options, augment_images, find_shards

__all__ = ["ShardDataset", "area_resize", "augment_batch", "load_examples"]


def area_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Pads a 2-D uint8 image to a square (centred zeros) and resizes it to size x size with
    area averaging: the preprocessing's own ``pad_to_square`` + ``resize_area`` (bit-exact
    ``cv2.copyMakeBorder`` + ``cv2.resize(..., INTER_AREA)``). The ``tf.data`` path's
    ``tf.image.resize(method="area")`` agrees with it up to rounding."""
    square = _native.pad_to_square(np.ascontiguousarray(image))
    if square.shape[0] == size:
        return square
    return _native.resize_area(square, size, size)


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


def augment_batch(images: np.ndarray, cfg: Augment, rng: np.random.Generator) -> np.ndarray:
    """Augments float images ``(n, S, S)`` in [0, 1] (what the pipelines yield, before the
    channel axis) to float32 in [0, 1]: the same native augmentation as training.

    The images are quantised back to uint8 first, which is exact for images that came from
    uint8 / 255; prefer :func:`boneage.data.augment_images` on the uint8 images directly.
    """
    pixels = np.clip(np.rint(np.asarray(images, np.float32) * 255.0), 0, 255).astype(np.uint8)
    return augment_images(pixels, cfg, rng)


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
        opts = _resolve_options(
            split,
            batch_size,
            image_size,
            training,
            augment,
            shuffle=shuffle,
            drop_remainder=drop_remainder,
        )
        self.batch_size = int(batch_size)
        self.image_size = int(image_size)
        self.labels = labels
        self.augment = opts.augment
        self.shuffle = opts.shuffle
        self.drop_remainder = opts.drop_remainder
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
        if self.augment is None:
            x = self.images[rows].astype(np.float32) * np.float32(1.0 / 255.0)
        else:
            # One generator per (epoch, batch): reproducible whatever the worker threads do.
            rng = np.random.default_rng([self._seed, self._epoch, index])
            x = augment_images(self.images[rows], self.augment, rng)
        inputs = {
            "image": x[..., None],
            "male": self.male[rows].astype(np.float32)[:, None],
        }
        return (inputs, self.age[rows].copy()) if self.labels else inputs

    def on_epoch_end(self) -> None:
        self._epoch += 1
        if self.shuffle:
            self._rng.shuffle(self._order)
