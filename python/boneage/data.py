"""Training data from TFRecord shards: a ``tf.data`` pipeline (:func:`make_dataset`).

Shards are what :class:`boneage._native.ShardWriter` writes: ``{split}-{i:05d}-of-{n:05d}.tfrecord``
(``.tfrecord.gz`` with GZIP), one ``tf.train.Example`` per case with the keys ``image`` (raw
uint8 pixels, row major), ``height``, ``width``, ``id``, ``male`` (0/1) and ``age`` (months).

Every dataset yields ``(inputs, age)`` where ``inputs`` is a dict, so it feeds a Keras model
whose inputs are *named* ``image`` and ``male``:

- ``inputs["image"]``: float32 in [0, 1], shape ``(batch, image_size, image_size, 1)``;
- ``inputs["male"]``: float32 0.0/1.0, shape ``(batch, 1)``;
- ``age``: float32 months, shape ``(batch,)``.

A dict is used rather than a tuple because Keras matches dict keys to input names, so the
order of a model's inputs cannot silently swap image and sex.

TensorFlow is imported inside the functions that need it: ``import boneage.data`` works
without TensorFlow (for :func:`find_shards` and :class:`Augment`, which the TensorFlow-free
:mod:`boneage.pydataset` shares).
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from boneage import _native

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

__all__ = [
    "Augment",
    "augment_images",
    "augment_params",
    "count_examples",
    "find_shards",
    "is_gzip_file",
    "make_dataset",
]

_SHARD_RE = r"^{split}-(\d{{5}})-of-(\d{{5}})\.tfrecord(\.gz)?$"


@dataclasses.dataclass(frozen=True)
class Augment:
    """Random augmentation, drawn independently per image and per epoch.

    Applied in one fused native pass per image (``_native.augment_images``, without the GIL):
    an affine warp (bilinear, zeros outside, as the padding of the preprocessing), then
    contrast about the image mean and brightness on the [0, 1] image, clipped to [0, 1].

    - ``rotation``: degrees, uniform in ``[-rotation, rotation]``.
    - ``shift``: fraction of the image side, uniform in ``[-shift, shift]`` on each axis.
    - ``zoom``: scale uniform in ``[1 - zoom, 1 + zoom]`` (> 1 zooms in).
    - ``brightness``: added offset uniform in ``[-brightness, brightness]``.
    - ``contrast``: factor uniform in ``[1 - contrast, 1 + contrast]`` about the mean of the
      (unwarped) image.
    - ``flip``: mirror left/right with probability 0.5. Off by default: a radiograph's
      left/right is meaningful (and the RSNA hands are mostly left hands).
    """

    rotation: float = 10.0
    shift: float = 0.05
    zoom: float = 0.1
    brightness: float = 0.1
    contrast: float = 0.1
    flip: bool = False

    def __post_init__(self) -> None:
        for name in ("rotation", "shift", "zoom", "brightness", "contrast"):
            value = getattr(self, name)
            if not (value >= 0):  # also rejects NaN
                raise ValueError(f"Augment.{name} must be >= 0, got {value!r}")
        if self.zoom >= 1:
            raise ValueError(f"Augment.zoom must be < 1, got {self.zoom!r}")

    @classmethod
    def coerce(cls, augment: bool | Augment | dict[str, Any] | None) -> Augment | None:
        """``None``/``False`` -> no augmentation, ``True`` -> defaults, a dict -> overrides."""
        if augment is None or augment is False:
            return None
        if augment is True:
            return cls()
        if isinstance(augment, cls):
            return augment
        if isinstance(augment, dict):
            return cls(**augment)
        raise TypeError(f"augment must be a bool, an Augment or a dict, got {type(augment)!r}")


def is_gzip_file(path: str | os.PathLike[str]) -> bool:
    """Whether a TFRecord file is GZIP-compressed, judged by content as the native reader does.

    Gzip magic ``1f 8b`` unless the first 12 bytes also form a valid record header.
    """
    with open(path, "rb") as f:
        head = f.read(12)
    if head[:2] != b"\x1f\x8b":
        return False
    if len(head) == 12:
        import struct

        # A plain file whose first record is 0x..8b1f bytes long starts with the same bytes.
        stored = struct.unpack("<I", head[8:12])[0]
        return _masked_crc32c(head[:8]) != stored
    return True


def _masked_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    crc ^= 0xFFFFFFFF
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def find_shards(
    pattern_or_dir: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], split: str
) -> list[str]:
    """The shard files of ``split``, sorted.

    - A directory: the files named ``{split}-NNNNN-of-MMMMM.tfrecord[.gz]`` in it. The set must
      be complete and consistent: all ``MMMMM`` equal, every index present once. Leftovers of a
      run with another shard count, or a missing shard, are errors rather than silently wrong
      data. Hidden temporaries of an unfinished writer never match.
    - A glob pattern (or a single file): the matching files, as they are; ``split`` is then only
      a label.
    - A list of paths: taken as they are.
    """
    if isinstance(pattern_or_dir, (list, tuple)):
        files = [os.fspath(p) for p in pattern_or_dir]
        if not files:
            raise ValueError("no shard files given (empty list)")
        for f in files:
            if not os.path.isfile(f):
                raise FileNotFoundError(f"shard file not found: {f}")
        return files
    path = os.fspath(pattern_or_dir)  # type: ignore[arg-type]
    if os.path.isdir(path):
        regex = re.compile(_SHARD_RE.format(split=re.escape(split)))
        found: dict[int, dict[int, list[str]]] = {}
        for name in os.listdir(path):
            m = regex.match(name)
            if m:
                index, total = int(m.group(1)), int(m.group(2))
                found.setdefault(total, {}).setdefault(index, []).append(name)
        if not found:
            raise FileNotFoundError(
                f"no shards of split {split!r} in {path} "
                f"(expected files named {split}-NNNNN-of-MMMMM.tfrecord[.gz])"
            )
        if len(found) > 1:
            counts = ", ".join(f"{len(v)} of {k}" for k, v in sorted(found.items()))
            raise ValueError(
                f"{path} holds shards of split {split!r} from runs with different shard counts "
                f"({counts}); remove the stale ones"
            )
        ((total, by_index),) = found.items()
        missing = sorted(set(range(total)) - set(by_index))
        if missing:
            shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
            raise ValueError(
                f"{path}: split {split!r} is incomplete: {len(by_index)} of {total} shards "
                f"present, missing index {shown}"
            )
        doubles = [names for names in by_index.values() if len(names) > 1]
        if doubles:
            raise ValueError(f"{path}: shards present both plain and compressed: {doubles[0]}")
        return [os.path.join(path, by_index[i][0]) for i in range(total)]
    if os.path.isfile(path):
        return [path]
    files = sorted(glob.glob(path))
    files = [f for f in files if os.path.isfile(f)]
    if not files:
        raise FileNotFoundError(f"no files match {path!r}")
    return files


def count_examples(
    pattern_or_dir: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], split: str
) -> int:
    """Number of records in the shards of ``split`` (e.g. for ``steps_per_epoch``)."""
    return _native.count_records(find_shards(pattern_or_dir, split))


def _decode_fn(image_size: int, labels: bool) -> Any:
    import tensorflow as tf

    spec = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "height": tf.io.FixedLenFeature([], tf.int64),
        "width": tf.io.FixedLenFeature([], tf.int64),
        "male": tf.io.FixedLenFeature([], tf.int64),
    }
    if labels:
        spec["age"] = tf.io.FixedLenFeature([], tf.float32)
    size = image_size

    def resize(image: tf.Tensor) -> tf.Tensor:
        # Pad to a square (centred zeros, as the preprocessing does), then area-average.
        shape = tf.shape(image)
        h, w = shape[0], shape[1]
        side = tf.maximum(h, w)
        image = tf.image.pad_to_bounding_box(image, (side - h) // 2, (side - w) // 2, side, side)
        out = tf.image.resize(image, [size, size], method="area")
        return tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)

    def decode(record: tf.Tensor) -> tuple[tf.Tensor, ...]:
        ex = tf.io.parse_single_example(record, spec)
        h, w = ex["height"], ex["width"]
        pixels = tf.io.decode_raw(ex["image"], tf.uint8)
        tf.debugging.assert_equal(
            tf.size(pixels, out_type=tf.int64),
            h * w,
            message="image bytes do not match height * width",
        )
        image = tf.reshape(pixels, tf.stack([h, w, 1]))
        same = tf.logical_and(tf.equal(h, size), tf.equal(w, size))
        image = tf.cond(same, lambda: image, lambda: resize(image))
        image = tf.ensure_shape(image, [size, size, 1])
        male = tf.cast(ex["male"], tf.uint8)
        if labels:
            return image, male, ex["age"]
        return image, male

    return decode


def inverse_affine(
    cos: Any, sin: Any, scale: Any, tx: Any, ty: Any, size: Any, flip: Any, where: Any
) -> tuple[Any, Any, Any, Any, Any, Any]:
    """The map from output to input pixel of a rotation by theta (counter-clockwise on
    screen, with y pointing down: clockwise), a zoom by ``scale`` about the centre, then a
    shift by (tx, ty) pixels (content moves right/down), and optionally a left/right mirror
    (where ``flip`` is true). Returns ``a0, a1, a2, b0, b1, b2`` with
    ``x_in = a0 x + a1 y + a2``, ``y_in = b0 x + b1 y + b2``.

    Plain arithmetic on numpy arrays or tensors (``where`` is ``np.where`` or ``tf.where``),
    shared by the ``tf.data`` and the numpy paths.
    """
    c = (size - 1.0) / 2.0
    # Output p comes from input q = R(-theta) (p - c - t) / scale + c.
    a0, a1 = cos / scale, sin / scale
    b0, b1 = -sin / scale, cos / scale
    a2 = c - (a0 * (c + tx) + a1 * (c + ty))
    b2 = c - (b0 * (c + tx) + b1 * (c + ty))
    if flip is not None:
        # Mirror the output first: x -> (size - 1) - x.
        a2 = where(flip, a2 + a0 * (size - 1.0), a2)
        b2 = where(flip, b2 + b0 * (size - 1.0), b2)
        a0 = where(flip, -a0, a0)
        b0 = where(flip, -b0, b0)
    return a0, a1, a2, b0, b1, b2


def augment_params(
    rng: np.random.Generator, n: int, size: int, cfg: Augment
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random parameters for ``_native.augment_images``: ``(affine (n, 6), contrast (n,),
    brightness (n,))``, float32, drawn from ``rng``."""
    theta = np.deg2rad(rng.uniform(-cfg.rotation, cfg.rotation, n))
    scale = rng.uniform(1.0 - cfg.zoom, 1.0 + cfg.zoom, n)
    tx = rng.uniform(-cfg.shift, cfg.shift, n) * size
    ty = rng.uniform(-cfg.shift, cfg.shift, n) * size
    flip = rng.uniform(0.0, 1.0, n) < 0.5 if cfg.flip else None
    affine = np.stack(
        inverse_affine(np.cos(theta), np.sin(theta), scale, tx, ty, float(size), flip, np.where),
        axis=1,
    )
    contrast = rng.uniform(1.0 - cfg.contrast, 1.0 + cfg.contrast, n)
    brightness = rng.uniform(-cfg.brightness, cfg.brightness, n)
    return affine.astype(np.float32), contrast.astype(np.float32), brightness.astype(np.float32)


def augment_images(images: np.ndarray, cfg: Augment, rng: np.random.Generator) -> np.ndarray:
    """Augments uint8 images ``(n, S, S)`` to float32 ``(n, S, S)`` in [0, 1] (native, one
    fused pass per pixel, without the GIL)."""
    affine, contrast, brightness = augment_params(rng, len(images), images.shape[1], cfg)
    return _native.augment_images(images, affine, contrast, brightness)


@dataclasses.dataclass(frozen=True)
class _Options:
    """The pipeline choices whose defaults follow ``training``, resolved once for both paths."""

    augment: Augment | None
    shuffle: bool
    repeat: bool
    drop_remainder: bool


def _resolve_options(
    split: str,
    batch_size: int,
    image_size: int,
    training: bool | None,
    augment: bool | Augment | dict[str, Any] | None,
    *,
    shuffle: bool | None,
    repeat: bool | None = None,
    drop_remainder: bool | None,
) -> _Options:
    """Checks the sizes and fills in the ``training`` defaults of :func:`make_dataset`.

    Shared with :class:`boneage.pydataset.ShardDataset` so that the ``tf.data`` and the
    TensorFlow-free paths accept the same arguments, reject them with the same messages and
    resolve the same defaults (``training`` is ``split == "train"`` when not given).
    ``ShardDataset`` has no ``repeat``: it leaves it ``None`` and ignores the result.
    """
    if training is None:
        training = split == "train"
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(image_size, bool) or int(image_size) != image_size or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
    return _Options(
        augment=Augment.coerce(training if augment is None else augment),
        shuffle=training if shuffle is None else shuffle,
        repeat=training if repeat is None else repeat,
        drop_remainder=training if drop_remainder is None else drop_remainder,
    )


def make_dataset(
    pattern_or_dir: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    split: str,
    batch_size: int = 64,
    image_size: int = 256,
    training: bool | None = None,
    augment: bool | Augment | dict[str, Any] | None = None,
    *,
    labels: bool = True,
    cache: bool | str = True,
    shuffle: bool | None = None,
    repeat: bool | None = None,
    drop_remainder: bool | None = None,
    seed: int | None = None,
) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` of ``({"image": ..., "male": ...}, age)`` batches (see the module
    docstring for shapes and dtypes).

    Args:
        pattern_or_dir: a shard directory, a glob pattern or a list of files
            (:func:`find_shards`). GZIP files are recognised by content.
        split: the split name (``"train"``, ``"val"``, ``"test"``...).
        batch_size: cases per batch.
        image_size: side of the images fed to the model. Stored images of another size are
            padded to a square (centred zeros) and resized with area averaging on read (once,
            before the cache); store them at the training size to skip that.
        training: defaults to ``split == "train"``; sets the defaults of ``augment``,
            ``shuffle``, ``repeat`` and ``drop_remainder``.
        augment: ``True`` for :class:`Augment` defaults, an :class:`Augment`, a dict of its
            fields, or ``False``. Default: ``training``. Never flips unless ``flip=True``.
        labels: when False, yields only the inputs dict (and ``age`` may be absent).
        cache: True caches decoded uint8 images in memory after the first pass; a string
            caches to that file prefix; False re-reads the shards every epoch.
        shuffle: shuffle over the full number of examples (the count comes from the shard
            headers); default ``training``.
        repeat: repeat forever (then pass ``steps_per_epoch``, e.g.
            ``count_examples(...) // batch_size``); default ``training``.
        drop_remainder: drop a last partial batch; default ``training``.
        seed: seeds shuffling and augmentation (reproducible runs).

    The pipeline: files interleaved in parallel -> parse + decode (``num_parallel_calls``
    AUTOTUNE) -> cache (uint8) -> shuffle -> repeat -> batch -> to float, or augment (a
    ``tf.numpy_function`` calling the native batch augmentation, parallel map) ->
    prefetch(AUTOTUNE). Augmentation draws from a numpy generator seeded with ``seed``; with
    parallel calls the order in which batches draw is not fixed, so augmented runs are
    reproducible in distribution, not bit for bit.
    """
    import tensorflow as tf

    opts = _resolve_options(
        split,
        batch_size,
        image_size,
        training,
        augment,
        shuffle=shuffle,
        repeat=repeat,
        drop_remainder=drop_remainder,
    )
    aug, shuffle, repeat = opts.augment, opts.shuffle, opts.repeat
    drop_remainder = opts.drop_remainder
    autotune = tf.data.AUTOTUNE

    files = find_shards(pattern_or_dir, split)
    kinds = ["GZIP" if is_gzip_file(f) else "" for f in files]
    ds = tf.data.Dataset.from_tensor_slices((files, kinds))
    ds = ds.interleave(
        lambda f, kind: tf.data.TFRecordDataset(f, compression_type=kind),
        cycle_length=min(len(files), 16),
        num_parallel_calls=autotune,
        deterministic=not shuffle,
    )
    ds = ds.map(
        _decode_fn(int(image_size), labels),
        num_parallel_calls=autotune,
        deterministic=not shuffle,
    )
    if cache:
        ds = ds.cache("" if cache is True else str(cache))
    # The record count sizes the shuffle buffer and a finite set's length; reading it costs a
    # pass over the shards, so only when one of them needs it.
    n = _native.count_records(files) if shuffle or not repeat else 0
    if shuffle:
        ds = ds.shuffle(max(n, 1), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(int(batch_size), drop_remainder=drop_remainder, num_parallel_calls=autotune)
    if not repeat:
        # TFRecord datasets have unknown length; Keras then learns it only by running off the
        # end of the validation set, warning "Your input ran out of data" every epoch.
        bs = int(batch_size)
        batches = n // bs if drop_remainder else -(-n // bs)
        ds = ds.apply(tf.data.experimental.assert_cardinality(batches))

    rng = np.random.default_rng(seed)

    def augment(images: np.ndarray) -> np.ndarray:
        return augment_images(images[..., 0], aug, rng)[..., None]

    def to_model(image: tf.Tensor, male: tf.Tensor, *age: tf.Tensor) -> Any:
        if aug is None:
            x = tf.cast(image, tf.float32) * (1.0 / 255.0)
        else:
            x = tf.numpy_function(augment, [image], tf.float32, stateful=True)
            x.set_shape(image.shape)
        inputs = {"image": x, "male": tf.cast(male, tf.float32)[:, None]}
        return (inputs, age[0]) if labels else inputs

    ds = ds.map(to_model, num_parallel_calls=autotune, deterministic=not shuffle)
    return ds.prefetch(autotune)
