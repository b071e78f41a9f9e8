"""Training data from TFRecord shards: a ``tf.data`` pipeline (:func:`make_dataset`).

Every dataset yields ``(inputs, age)`` where ``inputs`` is a dict, so it feeds a Keras model
whose inputs are *named* ``image`` and ``male``:

- ``inputs["image"]``: float32 in [0, 1], shape ``(batch, image_size, image_size, 1)``;
- ``inputs["male"]``: float32 0.0/1.0, shape ``(batch, 1)``;
- ``age``: float32 months, shape ``(batch,)``.

A dict is used rather than a tuple because Keras matches dict keys to input names, so the
order of a model's inputs cannot silently swap image and sex. The record keys are
:data:`boneage._native.RECORD_KEYS`' (see :mod:`boneage.shards.discovery` for the files).

TensorFlow is imported inside the functions that need it, so the rest of
:mod:`boneage.shards` (and :class:`~boneage.shards.pydataset.ShardDataset`) works without it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from boneage import _native
from boneage.shards.augment import Augment, AugmentSpec, augment_images
from boneage.shards.discovery import ShardSource, find_shards, is_gzip_file

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

    from boneage.training.distill import Teacher

__all__ = ["check_shards", "make_dataset", "resolve_options"]


def _decode_fn(image_size: int, labels: bool, teacher: Teacher | None = None) -> Any:
    import tensorflow as tf

    spec = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "height": tf.io.FixedLenFeature([], tf.int64),
        "width": tf.io.FixedLenFeature([], tf.int64),
        "male": tf.io.FixedLenFeature([], tf.int64),
    }
    if labels:
        spec["age"] = tf.io.FixedLenFeature([], tf.float32)
    blend = None
    if labels and teacher is not None:
        spec["id"] = tf.io.FixedLenFeature([], tf.string, default_value="")
        blend = teacher.tf_blend()
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
        if blend is not None:
            return image, male, blend(ex["id"], ex["age"])
        if labels:
            return image, male, ex["age"]
        return image, male

    return decode


@dataclasses.dataclass(frozen=True)
class _Options:
    """The pipeline choices whose defaults follow ``training``, resolved once for both paths."""

    augment: Augment | None
    shuffle: bool
    repeat: bool
    drop_remainder: bool


def resolve_options(
    split: str,
    batch_size: int,
    image_size: int,
    training: bool | None,
    augment: AugmentSpec,
    *,
    shuffle: bool | None,
    repeat: bool | None = None,
    drop_remainder: bool | None,
) -> _Options:
    """Checks the sizes and fills in the ``training`` defaults of :func:`make_dataset`.

    Shared with :class:`boneage.shards.pydataset.ShardDataset` so that the ``tf.data`` and the
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


def check_shards(files: Sequence[str], labels: bool = True) -> int:
    """Reads every record of ``files`` with the native checked reader; returns the count.

    TensorFlow reports a bad data checksum as a ``DataLossError`` in the middle of an epoch,
    and a checksum-valid record that is not an Example as a bare parse error, neither naming
    the file. The native reader verifies both checksums and the Example encoding and raises
    :class:`boneage._native.CorruptRecordError` with the file and byte offset; the keys the
    pipeline parses are checked here too, naming the file, the record and the case.
    """
    need = {"image", "height", "width", "male"} | ({"age"} if labels else set())
    n = 0
    for f in files:
        for i, ex in enumerate(_native.read_examples([f])):
            missing = need - ex.keys()
            if missing:
                hint = " (pass labels=False for unlabelled data)" if missing == {"age"} else ""
                raise ValueError(
                    f"{f}: record {i} (id {ex.get('id', '?')!r}) has no "
                    f"{', '.join(sorted(missing))}{hint}"
                )
            if not isinstance(ex["image"], np.ndarray):
                raise ValueError(
                    f"{f}: record {i} (id {ex.get('id', '?')!r}): image bytes do not match "
                    f"height {ex['height']} x width {ex['width']}"
                )
            n += 1
    return n


def make_dataset(
    pattern_or_dir: ShardSource,
    split: str,
    batch_size: int = 64,
    image_size: int = 256,
    training: bool | None = None,
    augment: AugmentSpec = None,
    *,
    labels: bool = True,
    cache: bool | str = True,
    shuffle: bool | None = None,
    repeat: bool | None = None,
    drop_remainder: bool | None = None,
    seed: int | None = None,
    shard: tuple[int, int] | None = None,
    verify: bool = True,
    teacher: Teacher | None = None,
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
        verify: read every record natively first (:func:`check_shards`), so a corrupt shard
            fails here naming the file, byte offset and case, not mid-epoch as TensorFlow's
            anonymous ``DataLossError``. Costs one fast native pass over the files; turn it
            off only for data checked before.
        shard: ``(index, count)``: this worker's disjoint part of the data, for multi-worker
            training (:func:`shard_files`). Auto-sharding is then switched off, so
            ``tf.distribute`` does not split the part again.
        teacher: distillation (:class:`boneage.training.distill.Teacher`): the ``age`` each
            case yields is its label blended with the teacher's estimate (training splits).

    The pipeline: files interleaved in parallel -> parse + decode (``num_parallel_calls``
    AUTOTUNE) -> cache (uint8) -> shuffle -> repeat -> batch -> to float, or augment (a
    ``tf.numpy_function`` calling the native batch augmentation, parallel map) ->
    prefetch(AUTOTUNE). Augmentation draws from a numpy generator seeded with ``seed``; with
    parallel calls the order in which batches draw is not fixed, so augmented runs are
    reproducible in distribution, not bit for bit.
    """
    import tensorflow as tf

    opts = resolve_options(
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

    files, by_record = shard_files(find_shards(pattern_or_dir, split), shard)
    kinds = ["GZIP" if is_gzip_file(f) else "" for f in files]
    ds = tf.data.Dataset.from_tensor_slices((files, kinds))
    ds = ds.interleave(
        lambda f, kind: tf.data.TFRecordDataset(f, compression_type=kind),
        cycle_length=min(len(files), 16),
        num_parallel_calls=autotune,
        deterministic=not shuffle,
    )
    if by_record:
        ds = ds.shard(by_record[1], by_record[0])
    ds = ds.map(
        _decode_fn(int(image_size), labels, teacher),
        num_parallel_calls=autotune,
        deterministic=not shuffle,
    )
    if cache:
        ds = ds.cache("" if cache is True else str(cache))
    # The record count sizes the shuffle buffer and a finite set's length; reading it costs a
    # pass over the shards, so only when one of them needs it.
    if verify:
        n = check_shards(files, labels)
    else:
        n = _native.count_records(files) if shuffle or not repeat else 0
    if by_record:  # records index, index + count, ... of the n
        n = max(0, -(-(n - by_record[0]) // by_record[1]))
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

    def augment_batch(images: np.ndarray) -> np.ndarray:
        assert aug is not None  # to_model maps it only when there is an augmentation
        return augment_images(images[..., 0], aug, rng)[..., None]

    def to_model(image: tf.Tensor, male: tf.Tensor, *age: tf.Tensor) -> Any:
        if aug is None:
            x = tf.cast(image, tf.float32) * (1.0 / 255.0)
        else:
            x = tf.numpy_function(augment_batch, [image], tf.float32, stateful=True)
            x.set_shape(image.shape)
        inputs = {"image": x, "male": tf.cast(male, tf.float32)[:, None]}
        return (inputs, age[0]) if labels else inputs

    ds = ds.map(to_model, num_parallel_calls=autotune, deterministic=not shuffle)
    if shard is not None:
        options = tf.data.Options()
        off = tf.data.experimental.AutoShardPolicy.OFF
        options.experimental_distribute.auto_shard_policy = off
        ds = ds.with_options(options)
    return ds.prefetch(autotune)


def shard_files(
    files: list[str], shard: tuple[int, int] | None
) -> tuple[list[str], tuple[int, int] | None]:
    """Worker ``index`` of ``count``'s part of ``files``: (its files, record sharding or None).

    With at least as many files as workers each worker reads whole files, round-robin
    (``files[index::count]``), so no worker opens another's. With fewer, every worker reads
    all files and keeps records ``index, index + count, ...`` (returned as ``(index, count)``):
    disjoint too, at the cost of each worker reading everything.
    """
    if shard is None:
        return files, None
    index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"shard index {index} is not in 0..{count - 1}")
    if count == 1:
        return files, None
    if len(files) >= count:
        return files[index::count], None
    return files, (index, count)
