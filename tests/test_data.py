"""The input pipelines over shards: boneage.shards.make_dataset (tf.data) and
boneage.shards.pydataset.ShardDataset (keras.utils.PyDataset)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf

from boneage import _native as native
from boneage.shards import (
    Augment,
    augment_params,
    count_examples,
    find_shards,
    inverse_affine,
    make_dataset,
)
from boneage.shards.arrays import area_resize
from boneage.shards.pydataset import ShardDataset

SIZE = 24
N = 50


def smooth_images(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Distinct images (a per-case gradient plus noise) so each output can be matched back."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.empty((n, h, w), np.uint8)
    for i in range(n):
        base = (xx * rng.uniform(0, 4) + yy * rng.uniform(0, 4) + rng.uniform(0, 80)) % 200
        out[i] = np.clip(base + rng.integers(0, 40, (h, w)), 0, 255).astype(np.uint8)
    return out


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """A labelled train split (4 shards) and an unlabeled GZIP test split (2 shards)."""
    d = tmp_path_factory.mktemp("shards")
    images = smooth_images(N, SIZE, SIZE)
    rng = np.random.default_rng(1)
    males = rng.integers(0, 2, N)
    ages = np.round(rng.uniform(1, 228, N), 1)
    ids = [f"c{i}" for i in range(N)]
    with native.ShardWriter(d, "train", 4) as w:
        w.write_batch(images, ids, males=males, ages=ages)
    with native.ShardWriter(d, "test", 2, "GZIP") as w:
        w.write_batch(images[:10], ids[:10], males=males[:10])
    table = {images[i].tobytes(): (int(males[i]), float(np.float32(ages[i]))) for i in range(N)}
    return d, images, table


def batches(ds):
    return [(x["image"].numpy(), x["male"].numpy(), y.numpy()) for x, y in ds]


# ------------------------------------------------------------------------------------------
# find_shards


def test_find_shards_complete_set(shards):
    d, _, _ = shards
    files = find_shards(d, "train")
    assert [os.path.basename(f) for f in files] == [
        f"train-{i:05d}-of-00004.tfrecord" for i in range(4)
    ]
    assert find_shards(d, "test")[0].endswith("test-00000-of-00002.tfrecord.gz")
    assert find_shards(str(d / "train-*"), "ignored") == files
    assert find_shards(files[:2], "train") == files[:2]
    assert count_examples(d, "train") == N


def test_corrupt_shards_fail_at_make_dataset_naming_file_offset_and_case(shards, tmp_path):
    """Issue 11: TensorFlow reported a bad data checksum as an anonymous DataLossError mid-epoch
    and a checksum-valid non-Example as a parse error; the native check names the shard."""
    d, _, _ = shards
    src = find_shards(d, "train")[0]
    data = bytearray(open(src, "rb").read())
    data[40] ^= 0xFF  # inside the first record's data: its length checksum still holds
    bad = tmp_path / "flipped" / "train-00000-of-00001.tfrecord"
    bad.parent.mkdir()
    bad.write_bytes(bytes(data))
    with pytest.raises(native.CorruptRecordError, match=r"train-00000-of-00001\.tfrecord") as e:
        make_dataset(bad.parent, "train", batch_size=4, image_size=SIZE)
    assert e.value.offset == 0 and e.value.path.endswith("train-00000-of-00001.tfrecord")

    junk = tmp_path / "junk" / "train-00000-of-00001.tfrecord"
    junk.parent.mkdir()
    with tf.io.TFRecordWriter(str(junk)) as w:  # checksums valid, content not an Example
        w.write(b"\xff\xfe not a protobuf message")
    with pytest.raises(native.CorruptRecordError, match="train-00000-of-00001"):
        make_dataset(junk.parent, "train", batch_size=4, image_size=SIZE)

    nosex = tmp_path / "nosex"
    with native.ShardWriter(nosex, "train", 1) as w:
        w.write(np.zeros((SIZE, SIZE), np.uint8), "case-7", age=100.0)
    with pytest.raises(ValueError, match="record 0 \\(id 'case-7'\\) has no male"):
        make_dataset(nosex, "train", batch_size=1, image_size=SIZE)


def test_find_shards_refuses_incomplete_or_mixed_sets(tmp_path):
    for i in (0, 2):
        (tmp_path / f"train-{i:05d}-of-00003.tfrecord").write_bytes(b"")
    (tmp_path / ".train-00001-of-00003.tfrecord.tmp-1-0").write_bytes(b"")
    with pytest.raises(ValueError, match="2 of 3 shards present, missing index 1"):
        find_shards(tmp_path, "train")
    (tmp_path / "train-00001-of-00003.tfrecord").write_bytes(b"")
    assert len(find_shards(tmp_path, "train")) == 3
    (tmp_path / "train-00000-of-00002.tfrecord").write_bytes(b"")
    with pytest.raises(ValueError, match="different shard counts"):
        find_shards(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="no shards of split 'val'"):
        find_shards(tmp_path, "val")
    with pytest.raises(FileNotFoundError):
        find_shards(str(tmp_path / "nothing-*"), "train")


# ------------------------------------------------------------------------------------------
# make_dataset


def test_eval_dataset_structure_and_values(shards):
    d, _, table = shards
    ds = make_dataset(d, "train", batch_size=16, image_size=SIZE, training=False)
    spec = ds.element_spec
    assert set(spec[0]) == {"image", "male"}
    assert spec[0]["image"].shape.as_list() == [None, SIZE, SIZE, 1]
    assert spec[0]["image"].dtype == tf.float32
    assert spec[0]["male"].shape.as_list() == [None, 1]
    assert spec[1].shape.as_list() == [None] and spec[1].dtype == tf.float32
    got = batches(ds)
    assert [len(b[2]) for b in got] == [16, 16, 16, 2]  # no repeat, keeps the remainder
    # A known length, so Keras need not run off the end to learn it (and warn each epoch).
    assert int(ds.cardinality()) == len(got)
    dropped = make_dataset(d, "train", batch_size=16, image_size=SIZE, training=False,
                           drop_remainder=True)  # fmt: skip
    assert int(dropped.cardinality()) == len(batches(dropped)) == 3
    seen = set()
    for image, male, age in got:
        assert image.min() >= 0.0 and image.max() <= 1.0
        for i in range(len(age)):
            key = np.rint(image[i, ..., 0] * 255).astype(np.uint8).tobytes()
            assert table[key] == (int(male[i, 0]), float(age[i]))
            seen.add(key)
    assert len(seen) == N
    # Deterministic order when not training.
    again = batches(make_dataset(d, "train", batch_size=16, image_size=SIZE, training=False))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(got, again, strict=True))


def test_training_dataset_repeats_shuffles_and_drops_remainder(shards):
    d, _, table = shards
    ds = make_dataset(d, "train", batch_size=8, image_size=SIZE, augment=False, seed=3)
    assert ds.cardinality() == tf.data.INFINITE_CARDINALITY
    assert ds.element_spec[0]["image"].shape.as_list() == [8, SIZE, SIZE, 1]
    steps = count_examples(d, "train") // 8
    it = iter(ds)
    epochs = []
    for _ in range(2):
        keys = []
        for _ in range(steps):
            x, _ = next(it)
            for img in x["image"].numpy():
                keys.append(np.rint(img[..., 0] * 255).astype(np.uint8).tobytes())
        epochs.append(keys)
    assert all(k in table for e in epochs for k in e)
    assert len(set(epochs[0])) == len(epochs[0])  # no case twice within an epoch
    assert epochs[0] != epochs[1]  # reshuffled


def test_augmentation_changes_images_but_keeps_range_and_labels(shards):
    d, _, _ = shards
    plain = make_dataset(d, "train", 16, SIZE, training=False)
    aug = make_dataset(d, "train", 16, SIZE, training=False, augment=True)
    (x0, y0), (x1, y1) = next(iter(plain)), next(iter(aug))
    np.testing.assert_array_equal(y0, y1)
    np.testing.assert_array_equal(x0["male"], x1["male"])
    a = x1["image"].numpy()
    assert a.shape == (16, SIZE, SIZE, 1) and a.min() >= 0.0 and a.max() <= 1.0
    assert not np.allclose(a, x0["image"].numpy())
    # An all-zero Augment is the identity.
    none = Augment(rotation=0, shift=0, zoom=0, brightness=0, contrast=0)
    x2, _ = next(iter(make_dataset(d, "train", 16, SIZE, training=False, augment=none)))
    np.testing.assert_array_equal(x2["image"].numpy(), x0["image"].numpy())


def test_flip_only_happens_when_asked(shards):
    d, _, _ = shards
    (x0, _) = next(iter(make_dataset(d, "train", 32, SIZE, training=False)))
    cfg = {"rotation": 0, "shift": 0, "zoom": 0, "brightness": 0, "contrast": 0, "flip": True}
    (x1, _) = next(iter(make_dataset(d, "train", 32, SIZE, training=False, augment=cfg)))
    a, b = x0["image"].numpy(), x1["image"].numpy()
    same = [np.allclose(a[i], b[i], atol=1e-6) for i in range(32)]
    mirrored = [np.allclose(a[i, :, ::-1], b[i], atol=1e-6) for i in range(32)]
    assert all(s or m for s, m in zip(same, mirrored, strict=True))
    assert any(mirrored) and any(same)
    assert Augment().flip is False


def test_split_mean_age_is_the_mean_of_the_read_ages(shards):
    from boneage.shards import read_split
    from boneage.shards.arrays import split_mean_age

    d, _, _ = shards
    ages = read_split(d, "train")[2]
    assert split_mean_age(d, "train") == pytest.approx(float(np.nanmean(ages)), rel=1e-6)
    with pytest.raises(FileNotFoundError):
        split_mean_age(d / "nowhere", "train")


def test_noise_is_bounded_zero_mean_and_only_when_asked():
    """Pixel noise: off by default; with only noise on, each image differs from the plain one
    by zero-mean noise whose spread stays within the bound, and values stay in [0, 1]."""
    from boneage.shards.augment import augment_images

    rng = np.random.default_rng(0)
    images = rng.integers(40, 216, (64, 24, 24), dtype=np.uint8)  # no clipping at the ends
    quiet = {"rotation": 0, "shift": 0, "zoom": 0, "brightness": 0, "contrast": 0}
    plain = augment_images(images, Augment(**quiet), np.random.default_rng(1))
    noisy = augment_images(images, Augment(**quiet, noise=0.05), np.random.default_rng(1))
    delta = (noisy - plain).reshape(len(images), -1)
    spread = delta.std(axis=1)
    assert noisy.min() >= 0.0 and noisy.max() <= 1.0
    assert abs(float(delta.mean())) < 2e-3
    assert spread.max() <= 0.05 * 1.1 and spread.min() < 0.02 < spread.max()
    assert Augment().noise == 0.0
    with pytest.raises(ValueError, match="noise"):
        Augment(noise=-0.1)


def tf_warp(images_u8: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """TensorFlow's own bilinear projective transform (zeros outside), as the reference."""
    t = np.concatenate([affine, np.zeros((len(affine), 2), np.float32)], axis=1)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=images_u8[..., None].astype(np.float32),
        transforms=t.astype(np.float32),
        output_shape=images_u8.shape[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )
    return out.numpy()[..., 0] / 255.0


def test_affine_directions():
    """A shift of +2 px in x moves content right, -3 px in y moves it up."""
    img = np.zeros((1, 9, 9), np.uint8)
    img[0, 4, 4] = 255
    one = np.ones(1, np.float32)
    for tx, ty, where in ((2.0, 0.0, (4, 6)), (0.0, -3.0, (1, 4))):
        params = inverse_affine(one, 0 * one, one, tx * one, ty * one, 9.0, None, np.where)
        affine = np.stack(params, axis=1).astype(np.float32)
        out = native.augment_images(img, affine)
        assert np.unravel_index(out[0].argmax(), (9, 9)) == where
        np.testing.assert_allclose(out, tf_warp(img, affine), atol=1e-6)


def test_native_augmentation_matches_tensorflow_warp():
    rng = np.random.default_rng(7)
    images = smooth_images(8, 40, 40, seed=9)
    cfg = Augment(rotation=15, shift=0.1, zoom=0.2, brightness=0, contrast=0, flip=True)
    affine, contrast, brightness = augment_params(rng, 8, 40, cfg)
    assert np.all(contrast == 1) and np.all(brightness == 0)
    ours = native.augment_images(images, affine, contrast, brightness)
    assert ours.dtype == np.float32 and ours.shape == (8, 40, 40)
    np.testing.assert_allclose(ours, tf_warp(images, affine), atol=2e-4)
    # Identity: exactly what the pipelines do without augmentation, x * float32(1 / 255).
    ident = np.tile(np.float32([1, 0, 0, 0, 1, 0]), (8, 1))
    plain = images.astype(np.float32) * np.float32(1.0 / 255.0)
    np.testing.assert_array_equal(native.augment_images(images, ident), plain)
    # Contrast about the image mean, then brightness, clipped.
    c, b = np.full(8, 1.5, np.float32), np.full(8, 0.05, np.float32)
    x = images / np.float32(255)
    mean = x.mean(axis=(1, 2), keepdims=True)
    want = np.clip((x - mean) * 1.5 + mean + 0.05, 0, 1)
    np.testing.assert_allclose(native.augment_images(images, ident, c, b), want, atol=1e-5)
    with pytest.raises(ValueError, match="rows for 8 images"):
        native.augment_images(images, ident[:3])
    with pytest.raises(ValueError, match="finite"):
        native.augment_images(images, ident, np.full(8, np.nan, np.float32))


def test_resize_on_read(tmp_path):
    """Stored 30x20 (not square, not the training size): padded to 30x30, area-resized."""
    images = smooth_images(6, 30, 20, seed=5)
    with native.ShardWriter(tmp_path, "train", 1) as w:
        w.write_batch(images, [str(i) for i in range(6)], males=[1] * 6, ages=[10.0] * 6)
    ds = make_dataset(tmp_path, "train", 6, 15, training=False)
    (x, _) = next(iter(ds))
    got = np.rint(x["image"].numpy()[..., 0] * 255).astype(np.int16)
    want = np.stack([area_resize(im, 15) for im in images]).astype(np.int16)
    assert got.shape == (6, 15, 15)
    assert np.abs(got - want).max() <= 1
    assert np.all(got[:, :, :2] == 0)  # the padding columns stay black (5 px of 30 -> 2.5 of 15)
    # The PyDataset path resizes with the preprocessing's own (cv2-exact) functions.
    py = ShardDataset(tmp_path, "train", 6, 15, training=False)
    x, _ = py[0]
    np.testing.assert_array_equal(np.rint(x["image"][..., 0] * 255).astype(np.int16), want)


def test_unlabeled_split(shards):
    d, _, _ = shards
    ds = make_dataset(d, "test", 4, SIZE, labels=False)
    assert set(ds.element_spec) == {"image", "male"}
    assert sum(int(x["image"].shape[0]) for x in ds) == 10
    # Asking for labels that the shards do not hold fails at once, naming the file and case
    # (TensorFlow alone would fail mid-iteration with a parse error).
    with pytest.raises(ValueError, match=r"test-00000-of-00002\.tfrecord\.gz: record 0 .* no age"):
        make_dataset(d, "test", 4, SIZE)


def test_bad_arguments(shards):
    d, _, _ = shards
    with pytest.raises(ValueError, match="batch_size"):
        make_dataset(d, "train", batch_size=0)
    with pytest.raises(ValueError, match="zoom"):
        make_dataset(d, "train", augment={"zoom": 1.5})
    with pytest.raises(TypeError, match="augment"):
        make_dataset(d, "train", augment="yes")


def tiny_model(size: int) -> keras.Model:
    image = keras.Input((size, size, 1), name="image")
    male = keras.Input((1,), name="male")
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(image))
    x = keras.layers.Concatenate()([x, male])
    out = keras.layers.Dense(1)(x)
    model = keras.Model({"image": image, "male": male}, out)
    model.compile(optimizer="adam", loss=keras.losses.Huber(15.0), metrics=["mae"])
    return model


def test_keras_fits_on_both_pipelines(shards):
    d, _, _ = shards
    model = tiny_model(SIZE)
    ds = make_dataset(d, "train", 8, SIZE)
    hist = model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])
    py = ShardDataset(d, "train", 8, SIZE, augment=True, seed=0)
    hist = model.fit(py, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])


# ------------------------------------------------------------------------------------------
# ShardDataset (no TensorFlow needed)


def test_pydataset_matches_the_tfdata_structure(shards):
    d, _, table = shards
    py = ShardDataset(d, "train", 16, SIZE, training=False)
    assert len(py) == 4  # 50 cases, remainder kept when not training
    x, y = py[3]
    assert set(x) == {"image", "male"}
    assert x["image"].shape == (2, SIZE, SIZE, 1) and x["image"].dtype == np.float32
    assert x["male"].shape == (2, 1) and x["male"].dtype == np.float32
    assert y.shape == (2,) and y.dtype == np.float32
    seen = set()
    for i in range(len(py)):
        x, y = py[i]
        for j in range(len(y)):
            key = np.rint(x["image"][j, ..., 0] * 255).astype(np.uint8).tobytes()
            assert table[key] == (int(x["male"][j, 0]), float(y[j]))
            seen.add(key)
    assert len(seen) == N
    with pytest.raises(IndexError):
        py[4]


def test_float_augment_batch_matches_the_uint8_path(shards):
    """boneage.shards.augment.augment_batch (float in, as evaluation's TTA calls it)."""
    from boneage.shards import augment_images
    from boneage.shards.augment import augment_batch

    _, images, _ = shards
    x = images[:4].astype(np.float32) * np.float32(1.0 / 255.0)
    cfg = Augment()
    a = augment_batch(x, cfg, np.random.default_rng(3))
    b = augment_images(images[:4], cfg, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (4, SIZE, SIZE) and a.dtype == np.float32


def test_pydataset_training_shuffles_and_augments(shards):
    d, _, _ = shards
    py = ShardDataset(d, "train", 8, SIZE, seed=1)
    assert len(py) == N // 8
    first = py[0][1].copy()
    x, _ = py[0]
    assert x["image"].min() >= 0.0 and x["image"].max() <= 1.0
    py.on_epoch_end()
    assert not np.array_equal(first, py[0][1])
    again = ShardDataset(d, "train", 8, SIZE, seed=1)
    np.testing.assert_array_equal(again[0][0]["image"], x["image"])  # seeded: reproducible
    unlabeled = ShardDataset(d, "test", 4, SIZE, labels=False)
    assert set(unlabeled[0]) == {"image", "male"}
    with pytest.raises(ValueError, match="no 'age' label"):
        ShardDataset(d, "test", 4, SIZE)


def test_without_tensorflow_on_jax(shards):
    """The PyDataset path runs on the JAX backend and never imports TensorFlow."""
    pytest.importorskip("jax")
    d, _, _ = shards
    code = textwrap.dedent(
        f"""
        import os, sys
        os.environ["KERAS_BACKEND"] = "jax"
        import boneage.shards, boneage.shards.pydataset
        import keras, numpy as np
        ds = boneage.shards.pydataset.ShardDataset({str(d)!r}, "train", 8, {SIZE}, augment=True)
        x, y = ds[0]
        image = keras.Input(({SIZE}, {SIZE}, 1), name="image")
        male = keras.Input((1,), name="male")
        z = keras.layers.Concatenate()([keras.layers.Flatten()(image), male])
        model = keras.Model({{"image": image, "male": male}}, keras.layers.Dense(1)(z))
        model.compile(optimizer="sgd", loss="mae")
        model.fit(ds, epochs=1, verbose=0)
        print(keras.backend.backend(), "tensorflow" in sys.modules)
        """
    )
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["jax", "False"]
