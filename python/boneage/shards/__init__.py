"""Shards -> arrays or batches: the second stage of archive -> shards -> run -> model -> estimate.

- :mod:`~boneage.shards.discovery`: the file-name rule, finding a split's shards, counting.
- :mod:`~boneage.shards.arrays`: the one reader to numpy (evaluation, PyDataset, checks).
- :mod:`~boneage.shards.augment`: training-time augmentation, shared by both pipelines.
- :mod:`~boneage.shards.tfdata`: the ``tf.data`` pipeline (:func:`make_dataset`).
- :mod:`~boneage.shards.pydataset`: the TensorFlow-free ``keras.utils.PyDataset`` (JAX, torch).

The names below are the stable public surface; ``boneage.data`` re-exports them.
"""

from boneage.shards.arrays import read_split
from boneage.shards.augment import Augment, augment_images, augment_params, inverse_affine
from boneage.shards.discovery import count_examples, find_shards, is_gzip_file
from boneage.shards.tfdata import make_dataset

__all__ = [
    "Augment",
    "augment_images",
    "augment_params",
    "count_examples",
    "find_shards",
    "inverse_affine",
    "is_gzip_file",
    "make_dataset",
    "read_split",
]
