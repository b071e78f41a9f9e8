"""Training data from TFRecord shards without TensorFlow: a ``keras.utils.PyDataset``.

For the JAX and PyTorch backends (and machines without TensorFlow), :class:`ShardDataset`
reads the shards with the native checked reader (:func:`boneage._native.read_examples`), keeps
the decoded uint8 images in memory (the equivalent of ``cache()``), and yields the same
structure as :func:`boneage.shards.tfdata.make_dataset`::

    ({"image": float32 (batch, size, size, 1) in [0, 1], "male": float32 (batch, 1)},
     age float32 (batch,))

Shuffling is over all examples, redone every epoch; augmentation
(:class:`boneage.shards.augment.Augment`) is the same native batch augmentation the
``tf.data`` path uses (it releases the GIL, so ``workers`` threads run it in parallel).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from boneage.shards.arrays import read_records
from boneage.shards.augment import AugmentSpec, augment_images
from boneage.shards.discovery import ShardSource, find_shards
from boneage.shards.tfdata import resolve_options, shard_files

if TYPE_CHECKING:  # pragma: no cover
    from boneage.training.distill import Teacher

__all__ = ["ShardDataset"]


class ShardDataset(keras.utils.PyDataset):
    """Batches from TFRecord shards for ``model.fit`` on any Keras backend.

    Arguments mirror :func:`boneage.shards.tfdata.make_dataset` (``training`` defaults to
    ``split == "train"`` and sets the defaults of ``augment``, ``shuffle`` and
    ``drop_remainder``); ``workers``, ``use_multiprocessing`` and ``max_queue_size`` go to
    ``keras.utils.PyDataset``; ``teacher`` blends each label with a teacher's estimate
    (distillation, :mod:`boneage.training.distill`). An epoch is one pass (``len(self)``
    batches); Keras calls :meth:`on_epoch_end`, which reshuffles.
    """

    def __init__(
        self,
        pattern_or_dir: ShardSource,
        split: str,
        batch_size: int = 64,
        image_size: int = 256,
        training: bool | None = None,
        augment: AugmentSpec = None,
        *,
        labels: bool = True,
        shuffle: bool | None = None,
        drop_remainder: bool | None = None,
        seed: int | None = None,
        skip_corrupt: bool = False,
        shard: tuple[int, int] | None = None,
        teacher: Teacher | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        opts = resolve_options(
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
        # shard=(index, count): this worker's disjoint part, as make_dataset takes it.
        self.files, by_record = shard_files(find_shards(pattern_or_dir, split), shard)
        self.images, self.male, self.age, self.ids = read_records(
            self.files, self.image_size, labels=labels, skip_corrupt=skip_corrupt
        )
        if by_record:
            part = slice(by_record[0], None, by_record[1])
            self.images, self.male, self.age, self.ids = (
                self.images[part], self.male[part], self.age[part], self.ids[part]
            )  # fmt: skip
        if teacher is not None and labels:  # distillation: blended targets, computed once
            self.age = teacher.blend(self.ids, self.age)
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
