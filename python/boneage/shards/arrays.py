"""Shards to numpy arrays: the one reader that evaluation, the PyDataset and checks share.

It reads with the native checked reader (:func:`boneage._native.read_examples`: CRCs
verified, errors name the shard and offset) and applies one rule to every record: it must
have an image and ``male``; a stored image of another size is padded to a square and
area-resized exactly as the preprocessing does.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np

from boneage import _native
from boneage.shards.discovery import ShardSource, find_shards

__all__ = ["area_resize", "read_records", "read_split", "split_mean_age"]

Records = tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]
"""``(images uint8 (N, S, S), male uint8 (N,), age float32 (N,), ids)``."""


def area_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Pads a 2-D uint8 image to a square (centred zeros) and resizes it to size x size with
    area averaging: the preprocessing's own ``pad_to_square`` + ``resize_area`` (bit-exact
    ``cv2.copyMakeBorder`` + ``cv2.resize(..., INTER_AREA)``). The ``tf.data`` path's
    ``tf.image.resize(method="area")`` agrees with it up to rounding."""
    square = _native.pad_to_square(np.ascontiguousarray(image))
    if square.shape[0] == size:
        return square
    return _native.resize_area(square, size, size)


def read_records(
    files: Sequence[str | os.PathLike[str]],
    image_size: int | None,
    labels: bool = True,
    skip_corrupt: bool = False,
) -> Records:
    """Reads every example of ``files`` in order (:data:`Records`).

    ``image_size`` None keeps the stored size, which must then be one size for all records
    (shards of different preprocessing runs mixed in one folder are refused). ``age`` is NaN
    where absent when ``labels`` is False.
    """
    keep_size = image_size is None
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
        if keep_size:
            if images and images[0].shape != image.shape:
                raise ValueError(
                    f"case {case!r} holds a {image.shape[1]}x{image.shape[0]} image unlike the "
                    "records before it: shards from different preprocessing runs are mixed; "
                    "preprocess them again into one --out"
                )
        elif image.shape != (image_size, image_size):
            assert image_size is not None  # keep_size is False
            image = area_resize(image, image_size)
        images.append(image)
        males.append(int(ex["male"]))
        ages.append(float(ex.get("age", math.nan)))
        ids.append(str(case))
    side = image_size or 0  # only for an empty result
    stacked = np.stack(images) if images else np.zeros((0, side, side), dtype=np.uint8)
    return (
        stacked,
        np.asarray(males, dtype=np.uint8),
        np.asarray(ages, dtype=np.float32),
        ids,
    )


def read_split(data: ShardSource, split: str, image_size: int | None = None) -> Records:
    """All records of one split, in shard order; an empty split is an error."""
    records = read_records(find_shards(data, split), image_size, labels=False)
    if not records[3]:
        raise ValueError(f"split {split!r} in {data} has no records")
    return records


def split_mean_age(data: ShardSource, split: str = "train") -> float:
    """Mean bone age of a split's labelled records: what the predict-the-mean baseline says.

    Streams the records and keeps only their ages: a large split's images would otherwise be
    stacked in memory just to be thrown away.
    """
    files = [str(f) for f in find_shards(data, split)]
    ages = [float(ex["age"]) for ex in _native.read_examples(files) if "age" in ex]
    ages = [a for a in ages if not np.isnan(a)]
    if not ages:
        raise ValueError(f"no labelled records in split {split!r} of {data}")
    return float(np.mean(ages))
