"""``boneage.data``: the public name of the shard pipeline, kept stable for users' code.

The code lives in :mod:`boneage.shards`; this module only re-exports it, so
``from boneage.data import make_dataset`` keeps working.
"""

from boneage.shards import (
    Augment,
    augment_images,
    augment_params,
    count_examples,
    find_shards,
    inverse_affine,
    is_gzip_file,
    make_dataset,
    read_split,
)

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
