"""Sharded TFRecord writing and checked reading (boneage._native), against TensorFlow itself."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf

from boneage import _native as native

SETTINGS = settings(
    max_examples=int(os.environ.get("BONEAGE_HYPOTHESIS_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
RESERVED = set(native.RESERVED_KEYS)


# ------------------------------------------------------------------------------------------
# Helpers: the same case built by TensorFlow's own protobuf classes


def tf_feature(value: object) -> tf.train.Feature:
    """What the writer's **extra conversion is specified to produce, built with TensorFlow."""
    if isinstance(value, str):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
    if isinstance(value, bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
    if isinstance(value, bool | int):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
    if isinstance(value, float):
        return tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
    assert isinstance(value, list | tuple)
    if value and all(isinstance(v, str | bytes) for v in value):
        return tf.train.Feature(
            bytes_list=tf.train.BytesList(
                value=[v.encode() if isinstance(v, str) else v for v in value]
            )
        )
    if any(isinstance(v, float) for v in value):
        return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in value]))
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in value]))


def tf_example(image, id, male=None, age=None, **extra) -> tf.train.Example:
    f = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image.tobytes()])),
        "height": tf.train.Feature(int64_list=tf.train.Int64List(value=[image.shape[0]])),
        "width": tf.train.Feature(int64_list=tf.train.Int64List(value=[image.shape[1]])),
        "id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(id).encode()])),
    }
    if male is not None:
        f["male"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(male)]))
    if age is not None:
        f["age"] = tf.train.Feature(float_list=tf.train.FloatList(value=[age]))
    for k, v in extra.items():
        f[k] = tf_feature(v)
    return tf.train.Example(features=tf.train.Features(feature=f))


def make_cases(n: int, h: int = 12, w: int = 10, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        case = {
            "image": rng.integers(0, 256, (h, w), dtype=np.uint8),
            "id": f"case-{i}",
            "male": None if i % 7 == 3 else int(rng.integers(0, 2)),
            "age": None if i % 5 == 4 else float(np.float32(rng.uniform(1, 228))),
            "source": f"img{i}.png",
            "box": [int(v) for v in rng.integers(0, 1000, 4)],
            "score": float(np.float32(rng.uniform())),
        }
        cases.append(case)
    return cases


def write_cases(directory, cases, num_shards=3, compression=None, split="train") -> dict:
    with native.ShardWriter(directory, split, num_shards, compression) as w:
        for c in cases:
            w.write(**c)
    return w.summary


def shard_paths(summary: dict) -> list[str]:
    return [s["path"] for s in summary["shards"]]


def record_offsets(path) -> list[tuple[int, int]]:
    """(offset, data length) of each record of a plain file, from its headers."""
    data = Path(path).read_bytes()
    out, pos = [], 0
    while pos < len(data):
        (n,) = struct.unpack("<Q", data[pos : pos + 8])
        out.append((pos, n))
        pos += 16 + n
    return out


def assert_same_case(ex: dict, case: dict) -> None:
    np.testing.assert_array_equal(ex["image"], case["image"])
    assert ex["image"].dtype == np.uint8
    assert (ex["height"], ex["width"]) == case["image"].shape
    assert ex["id"] == case["id"]
    assert ex.get("male") == case["male"]
    # Floats are stored as float32 and read back as the shortest decimal of that float32.
    assert ("age" in ex) == (case["age"] is not None)
    if case["age"] is not None:
        assert np.float32(ex["age"]) == np.float32(case["age"])
    assert ex["source"] == case["source"]
    assert ex["box"] == case["box"]
    assert np.float32(ex["score"]) == np.float32(case["score"])


# ------------------------------------------------------------------------------------------
# Byte-for-byte against TensorFlow

extra_values = st.one_of(
    st.text(max_size=8),
    st.binary(max_size=8),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, width=32),
    st.lists(st.integers(-(2**63), 2**63 - 1), min_size=2, max_size=5),
    st.lists(st.floats(allow_nan=False, width=32), min_size=2, max_size=4),
    st.lists(st.text(max_size=4), min_size=2, max_size=3),
)
extra_keys = st.text(min_size=1, max_size=10).filter(lambda k: k not in RESERVED)


@SETTINGS
@given(
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    seed=st.integers(0, 2**32 - 1),
    id=st.one_of(st.text(min_size=1, max_size=12), st.integers(0, 10**12)),
    male=st.sampled_from([None, 0, 1, True, False]),
    age=st.one_of(st.none(), st.floats(0, 300, width=32)),
    extra=st.dictionaries(extra_keys, extra_values, max_size=4),
)
# A key that is a prefix of another: upb writes "height" before "h" (not plain sorted order).
@example(h=1, w=1, seed=0, id="0", male=None, age=None, extra={"h": "", "i": 1, "ag": 2.5})
def test_example_bytes_equal_tensorflow_serialisation(h, w, seed, id, male, age, extra):
    image = np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)
    ours = native.encode_example(image, id, male=male, age=age, **extra)
    theirs = tf_example(image, id, male, age, **extra)
    assert ours == theirs.SerializeToString(deterministic=True)
    assert tf.train.Example.FromString(ours) == theirs
    back = native.decode_example(ours)
    np.testing.assert_array_equal(back["image"], image)
    assert back["id"] == str(id)
    assert back.get("male", None) == (None if male is None else int(male))


@pytest.mark.parametrize("size", [(12, 10), (256, 256)])
def test_file_bytes_equal_tfrecordwriter(tmp_path, size):
    # 256x256 pixels are written from their own memory (vectored writes): same bytes.
    cases = make_cases(25 if size[0] < 100 else 6, *size)
    summary = write_cases(tmp_path / "native", cases, num_shards=1)
    ref = tmp_path / "tf.tfrecord"
    with tf.io.TFRecordWriter(str(ref)) as w:
        for c in cases:
            w.write(tf_example(**c).SerializeToString(deterministic=True))
    assert Path(shard_paths(summary)[0]).read_bytes() == ref.read_bytes()
    with native.ShardWriter(tmp_path / "batch", "train", 1) as b:
        b.write_batch(
            np.stack([c["image"] for c in cases]),
            [c["id"] for c in cases],
            males=[c["male"] for c in cases],
            ages=[c["age"] for c in cases],
            extras={k: [c[k] for c in cases] for k in ("source", "box", "score")},
        )
    assert Path(b.paths[0]).read_bytes() == ref.read_bytes()


def test_tensorflow_decodes_every_native_record(tmp_path):
    cases = make_cases(30)
    summary = write_cases(tmp_path, cases, num_shards=4)
    by_id = {c["id"]: c for c in cases}
    seen = 0
    for rec in tf.data.TFRecordDataset(shard_paths(summary)):
        ex = tf.train.Example.FromString(rec.numpy())
        case_id = ex.features.feature["id"].bytes_list.value[0].decode()
        assert ex == tf_example(**by_id[case_id])
        assert "age" in ex.features.feature or by_id[case_id]["age"] is None
        assert "male" in ex.features.feature or by_id[case_id]["male"] is None
        seen += 1
    assert seen == len(cases)


# ------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("compression", [None, "GZIP"])
def test_round_trip_native_to_tfdata_and_read_examples(tmp_path, compression):
    cases = make_cases(40, h=20, w=16)
    summary = write_cases(tmp_path, cases, num_shards=3, compression=compression)
    paths = shard_paths(summary)
    suffix = ".tfrecord.gz" if compression else ".tfrecord"
    assert all(p.endswith(suffix) for p in paths)
    assert summary["records"] == 40 and summary["compression"] == compression
    by_id = {c["id"]: c for c in cases}

    spec = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "height": tf.io.FixedLenFeature([], tf.int64),
        "width": tf.io.FixedLenFeature([], tf.int64),
        "id": tf.io.FixedLenFeature([], tf.string),
        "male": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
        "age": tf.io.FixedLenFeature([], tf.float32, default_value=-1.0),
        "box": tf.io.FixedLenFeature([4], tf.int64),
    }
    ds = tf.data.TFRecordDataset(paths, compression_type=compression or "")
    n = 0
    for ex in ds.map(lambda r: tf.io.parse_single_example(r, spec)):
        case = by_id[ex["id"].numpy().decode()]
        img = tf.reshape(tf.io.decode_raw(ex["image"], tf.uint8), [ex["height"], ex["width"]])
        np.testing.assert_array_equal(img.numpy(), case["image"])
        assert int(ex["male"]) == (-1 if case["male"] is None else case["male"])
        assert float(ex["age"]) == (-1.0 if case["age"] is None else case["age"])
        assert ex["box"].numpy().tolist() == case["box"]
        n += 1
    assert n == 40

    got = list(native.read_examples(paths))
    assert len(got) == 40
    for ex in got:
        assert_same_case(ex, by_id[ex["id"]])
    # read_records yields exactly the stored records.
    raw = list(native.read_records(paths))
    assert raw == [r.numpy() for r in tf.data.TFRecordDataset(paths, compression or "")]


@pytest.mark.parametrize("compression", [None, "GZIP"])
def test_read_examples_reads_tensorflow_files(tmp_path, compression):
    cases = make_cases(12)
    path = tmp_path / ("tf.tfrecord" + (".gz" if compression else ""))
    opts = tf.io.TFRecordOptions(compression_type=compression or "")
    with tf.io.TFRecordWriter(str(path), opts) as w:
        for c in cases:
            w.write(tf_example(**c).SerializeToString())  # not deterministic: any key order
        # A record using other feature kinds: bytes that are not UTF-8, empty lists.
        odd = tf.train.Example(
            features=tf.train.Features(
                feature={
                    "blob": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"\xff\xfe"])),
                    "empty": tf.train.Feature(int64_list=tf.train.Int64List(value=[])),
                    "neg": tf.train.Feature(int64_list=tf.train.Int64List(value=[-5])),
                }
            )
        )
        w.write(odd.SerializeToString())
    if compression:
        assert path.read_bytes()[:2] == b"\x1f\x8b"
    got = list(native.read_examples(str(path)))
    for ex, case in zip(got, cases, strict=False):
        assert_same_case(ex, case)
    assert got[-1] == {"blob": b"\xff\xfe", "empty": [], "neg": -5}
    assert native.count_records(path) == 13


def test_float_labels_read_back_as_written_decimals(tmp_path):
    image = np.zeros((2, 2), np.uint8)
    data = native.encode_example(image, "a", age=120.3, weights=[0.1, 2.5])
    ex = native.decode_example(data)
    assert ex["age"] == 120.3 and ex["weights"] == [0.1, 2.5]
    parsed = tf.io.parse_single_example(data, {"age": tf.io.FixedLenFeature([], tf.float32)})
    assert parsed["age"].numpy() == np.float32(ex["age"])


def test_empty_shards_are_valid_files(tmp_path):
    summary = write_cases(tmp_path, make_cases(1), num_shards=5)
    paths = shard_paths(summary)
    assert len(paths) == 5 and all(os.path.exists(p) for p in paths)
    assert sorted(s["records"] for s in summary["shards"]) == [0, 0, 0, 0, 1]
    assert sum(1 for _ in tf.data.TFRecordDataset(paths)) == 1
    assert len(list(native.read_examples(paths))) == 1
    gz = write_cases(tmp_path / "gz", [], num_shards=2, compression="GZIP")
    for p in shard_paths(gz):
        assert sum(1 for _ in tf.data.TFRecordDataset(p, "GZIP")) == 0
        assert list(native.read_records(p)) == []


def test_write_batch_equals_single_writes(tmp_path):
    cases = make_cases(30, h=8, w=8)
    single = write_cases(tmp_path / "a", cases)
    with native.ShardWriter(tmp_path / "b", "train", 3) as w:
        shards = w.write_batch(
            np.stack([c["image"] for c in cases]),
            [c["id"] for c in cases],
            males=[c["male"] for c in cases],
            ages=np.array([np.nan if c["age"] is None else c["age"] for c in cases]),
            extras={k: [c[k] for c in cases] for k in ("source", "box", "score")},
        )
    assert shards == [native.shard_index(c["id"], 3) for c in cases]
    for a, b in zip(shard_paths(single), shard_paths(w.summary), strict=True):
        assert Path(a).read_bytes() == Path(b).read_bytes()
    # A list of 2-D arrays (sizes may differ) works too.
    with native.ShardWriter(tmp_path / "c", "train", 1) as w:
        w.write_batch([np.zeros((2, 3), np.uint8), np.ones((4, 1), np.uint8)], ["x", "y"])
    assert [e["image"].shape for e in native.read_examples(w.paths)] == [(2, 3), (4, 1)]


def test_fsync_off_still_publishes_complete_shards(tmp_path):
    cases = make_cases(10)
    with native.ShardWriter(tmp_path, "train", 2, "GZIP", fsync=False, compression_level=1) as w:
        for c in cases:
            w.write(**c)
    assert sorted(e["id"] for e in native.read_examples(w.paths)) == sorted(c["id"] for c in cases)
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]


def test_threads_can_share_a_writer(tmp_path):
    cases = make_cases(200, h=16, w=16)
    with native.ShardWriter(tmp_path, "train", 4) as w:
        chunks = [cases[i::4] for i in range(4)]
        threads = [
            threading.Thread(target=lambda ch=ch: [w.write(**c) for c in ch]) for ch in chunks
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    ids = sorted(e["id"] for e in native.read_examples(w.paths))
    assert ids == sorted(c["id"] for c in cases)


# ------------------------------------------------------------------------------------------
# Stable sharding


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def test_shard_assignment_is_fnv1a_of_the_id():
    for case_id in ["1377", "1378", "abc", "ü-ß", "x" * 100]:
        for n in (1, 2, 7, 16):
            assert native.shard_index(case_id, n) == fnv1a64(case_id.encode()) % n
    assert native.shard_index(1377, 16) == native.shard_index("1377", 16)


def test_shard_assignment_agrees_across_processes(tmp_path):
    ids = [str(i) for i in range(1000, 1200)]
    code = (
        "import sys; from boneage import _native as n; "
        "print([n.shard_index(i, 16) for i in sys.argv[1:]])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *ids], capture_output=True, text=True, check=True
    ).stdout
    assert eval(out) == [native.shard_index(i, 16) for i in ids]
    # The writer puts each case in that shard, whatever the order of writes.
    cases = make_cases(50)
    for order in (cases, cases[::-1]):
        summary = write_cases(tmp_path / str(id(order)), order, num_shards=4)
        for s in summary["shards"]:
            for ex in native.read_examples(s["path"]):
                assert native.shard_index(ex["id"], 4) == s["index"]


def test_parallel_workers_own_disjoint_shards(tmp_path):
    cases = make_cases(60)
    for worker in range(2):
        mine = [0, 1] if worker == 0 else [2, 3]
        with native.ShardWriter(tmp_path, "train", 4, shards=mine) as w:
            for c in cases:
                if native.shard_index(c["id"], 4) in mine:
                    w.write(**c)
        with pytest.raises(ValueError, match="does not own"):
            with native.ShardWriter(tmp_path / "x", "train", 4, shards=mine) as w2:
                foreign = next(c for c in cases if native.shard_index(c["id"], 4) not in mine)
                w2.write(**foreign)
    files = sorted(p for p in os.listdir(tmp_path) if p.endswith(".tfrecord"))
    assert files == [f"train-{i:05d}-of-00004.tfrecord" for i in range(4)]
    paths = [str(tmp_path / f) for f in files]
    assert sorted(e["id"] for e in native.read_examples(paths)) == sorted(c["id"] for c in cases)


# ------------------------------------------------------------------------------------------
# Faults


@pytest.fixture
def one_shard(tmp_path):
    cases = make_cases(10, h=30, w=30)
    summary = write_cases(tmp_path, cases, num_shards=1)
    return Path(shard_paths(summary)[0]), cases


def test_flipped_data_byte_names_file_and_offset(one_shard):
    path, cases = one_shard
    offsets = record_offsets(path)
    off, n = offsets[5]
    data = bytearray(path.read_bytes())
    data[off + 12 + n // 2] ^= 0x10
    path.write_bytes(bytes(data))
    it = native.read_examples(path)
    got = [next(it) for _ in range(5)]
    with pytest.raises(native.CorruptRecordError) as err:
        next(it)
    msg = str(err.value)
    assert str(path) in msg and f"byte offset {off}" in msg and "data checksum" in msg
    assert err.value.path == str(path) and err.value.offset == off
    assert isinstance(err.value, OSError)
    assert [g["id"] for g in got] == [c["id"] for c in cases[:5]]
    with pytest.raises(StopIteration):
        next(it)
    # TensorFlow agrees that the file is corrupt.
    with pytest.raises(tf.errors.DataLossError):
        list(tf.data.TFRecordDataset(str(path)))

    lenient = native.read_examples(path, skip_corrupt=True)
    ids = [e["id"] for e in lenient]
    assert ids == [c["id"] for i, c in enumerate(cases) if i != 5]
    assert lenient.skipped == 1
    (where, at, message) = lenient.problems[0]
    assert where == str(path) and at == off and f"byte offset {off}" in message


def test_flipped_length_byte_is_reported_then_resynchronised(one_shard):
    path, cases = one_shard
    off, _ = record_offsets(path)[3]
    data = bytearray(path.read_bytes())
    data[off + 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(native.CorruptRecordError, match=f"byte offset {off} .*length checksum"):
        list(native.read_records(path))
    with pytest.raises(native.CorruptRecordError, match="length checksum"):
        native.count_records(path)
    lenient = native.read_examples(path, skip_corrupt=True)
    assert [e["id"] for e in lenient] == [c["id"] for i, c in enumerate(cases) if i != 3]
    assert lenient.skipped == 1


@pytest.mark.parametrize("cut", ["header", "data"])
def test_truncated_shard_names_file_and_offset(one_shard, cut):
    path, _ = one_shard
    off, n = record_offsets(path)[-1]
    data = path.read_bytes()
    path.write_bytes(data[: off + (5 if cut == "header" else 12 + n // 2)])
    with pytest.raises(native.CorruptRecordError) as err:
        list(native.read_examples(path))
    assert f"{path}: truncated record at byte offset {off}" in str(err.value)
    lenient = native.read_records(path, skip_corrupt=True)
    assert len(list(lenient)) == 9 and lenient.skipped == 1


def test_corrupt_gzip_shard_is_reported(tmp_path):
    summary = write_cases(tmp_path, make_cases(30, h=40, w=40), num_shards=1, compression="GZIP")
    path = Path(shard_paths(summary)[0])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(native.CorruptRecordError, match=r"GZIP stream .*decompressed byte offset"):
        list(native.read_records(path))
    lenient = native.read_records(path, skip_corrupt=True)
    assert 0 < len(list(lenient)) < 30 and lenient.skipped == 1
    bad = bytearray(data)
    bad[len(bad) // 2] ^= 0xFF
    path.write_bytes(bytes(bad))
    with pytest.raises(native.CorruptRecordError, match=str(path)):
        list(native.read_records(path))


def test_exception_in_with_block_publishes_nothing(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with native.ShardWriter(tmp_path, "train", 3) as w:
            for c in make_cases(5):
                w.write(**c)
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
    assert w.closed and w.summary is None
    with pytest.raises(ValueError, match="aborted"):
        w.write(**make_cases(1)[0])
    # Garbage collection of an unclosed writer also leaves nothing behind.
    w = native.ShardWriter(tmp_path, "train", 2)
    w.write(**make_cases(1)[0])
    assert len(os.listdir(tmp_path)) == 2
    del w
    assert os.listdir(tmp_path) == []


WRITER_SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np
    from boneage import _native as n
    w = n.ShardWriter(sys.argv[1], "train", 3)
    img = np.zeros((64, 64), np.uint8)
    i = 0
    while True:
        w.write(img, f"c{i}", male=1, age=1.0)
        i += 1
        if i == 200:
            print("halfway", flush=True)
    """
)


def test_killed_writer_leaves_no_final_shard_names(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER_SCRIPT, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "halfway"
        time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    names = os.listdir(tmp_path)
    assert len(names) == 3
    assert all(n.startswith(".train-") and ".tmp-" in n for n in names), names
    assert not any(n.endswith(".tfrecord") for n in names)
    from boneage.shards import find_shards

    with pytest.raises(FileNotFoundError, match="no shards"):
        find_shards(tmp_path, "train")


# ------------------------------------------------------------------------------------------
# Bad input


def test_bad_images_are_value_errors(tmp_path):
    with native.ShardWriter(tmp_path, "train", 1) as w:
        with pytest.raises(ValueError, match="dtype uint8, got float32"):
            w.write(np.zeros((4, 4), np.float32), "a")
        with pytest.raises(ValueError, match=r"2-D .*shape \(4, 4, 3\)"):
            w.write(np.zeros((4, 4, 3), np.uint8), "a")
        with pytest.raises(ValueError, match="numpy array"):
            w.write([[1, 2]], "a")
        with pytest.raises(ValueError, match="empty"):
            w.write(np.zeros((0, 4), np.uint8), "a")
        with pytest.raises(ValueError, match="male"):
            w.write(np.zeros((4, 4), np.uint8), "a", male=2)
        with pytest.raises(ValueError, match="id"):
            w.write(np.zeros((4, 4), np.uint8), "")
        with pytest.raises(ValueError, match="reserved"):
            w.write(np.zeros((4, 4), np.uint8), "a", height=3)
        with pytest.raises(ValueError, match="unsupported"):
            w.write(np.zeros((4, 4), np.uint8), "a", meta={"x": 1})
        with pytest.raises(ValueError, match="2 entries but there are 1 images"):
            w.write_batch(np.zeros((1, 4, 4), np.uint8), ["a", "b"])
        with pytest.raises(ValueError, match="dtype uint8"):
            w.write_batch(np.zeros((2, 4, 4), np.int16), ["a", "b"])
        # A non-contiguous view is fine (copied in row-major order).
        img = np.arange(64, dtype=np.uint8).reshape(8, 8)
        w.write(img[::2, ::3], "view")
    assert w.summary["records"] == 1
    (ex,) = native.read_examples(w.paths)
    np.testing.assert_array_equal(ex["image"], img[::2, ::3])


def test_bad_writer_arguments(tmp_path):
    with pytest.raises(ValueError, match="num_shards"):
        native.ShardWriter(tmp_path, "train", 0)
    with pytest.raises(ValueError, match="num_shards"):
        native.ShardWriter(tmp_path, "train", -3)
    with pytest.raises(ValueError, match="compression"):
        native.ShardWriter(tmp_path, "train", 1, "ZLIB")
    with pytest.raises(ValueError, match="split"):
        native.ShardWriter(tmp_path, "../up", 1)
    with pytest.raises(ValueError, match="out of range"):
        native.ShardWriter(tmp_path, "train", 2, shards=[5])
    assert os.listdir(tmp_path) == []


def test_unwritable_directory_is_an_oserror(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError) as err:
        native.ShardWriter(blocker / "shards", "train", 2)
    assert "a-file" in str(err.value)
    if os.geteuid() != 0:  # root ignores permission bits
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        with pytest.raises(PermissionError, match="ro"):
            native.ShardWriter(ro, "train", 2)


def test_write_after_close(tmp_path):
    w = native.ShardWriter(tmp_path, "train", 2)
    w.write(**make_cases(1)[0])
    first = w.close()
    assert w.close() == first  # idempotent
    with pytest.raises(ValueError, match="closed"):
        w.write(**make_cases(1)[0])
    with pytest.raises(ValueError, match="closed"):
        w.write_batch(np.zeros((1, 2, 2), np.uint8), ["x"])
    w.abort()  # no-op once published
    assert sorted(os.listdir(tmp_path)) == [
        "train-00000-of-00002.tfrecord",
        "train-00001-of-00002.tfrecord",
    ]


def test_bad_reader_arguments(tmp_path):
    with pytest.raises(FileNotFoundError):
        native.read_examples(tmp_path / "missing.tfrecord")
    with pytest.raises(OSError, match="directory"):
        native.read_records(tmp_path)
    with pytest.raises(ValueError):
        native.read_records(42)
    with pytest.raises(ValueError, match=r"not a valid tf\.train\.Example"):
        native.decode_example(b"\x0a\x05\x01")
    # Records that are not Examples.
    path = tmp_path / "junk.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as w:
        w.write(b"\x0a\x05\x01")
    with pytest.raises(native.CorruptRecordError, match=r"not a valid tf\.train\.Example"):
        list(native.read_examples(path))
    assert list(native.read_records(path)) == [b"\x0a\x05\x01"]
