"""The native module's contract: shapes, determinism, batches, and clear errors on bad input."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from boneage import _native as native
from boneage.ingest import reference as ref

RNG = np.random.default_rng(42)
IMG = cv2.GaussianBlur(RNG.integers(0, 256, (300, 220), dtype=np.uint8), (0, 0), 4)


def write_png(path: Path, img: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), img)
    return path


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    out = []
    for i in range(12):
        img = np.roll(IMG, i * 7, axis=1)
        out.append(write_png(tmp_path / f"case{i}.png", img))
    return out


def test_outputs_are_new_uint8_arrays_and_inputs_untouched():
    before = IMG.copy()
    for out in (
        native.clahe(IMG),
        native.pad_to_square(IMG),
        native.resize_area(IMG, 64, 50),
        native.resize_linear(IMG, 64, 50),
        native.preprocess(IMG, size=64),
    ):
        assert out.dtype == np.uint8 and out.flags.c_contiguous and out.flags.writeable
        assert not np.shares_memory(out, IMG)
    np.testing.assert_array_equal(IMG, before)


def test_pad_to_square_is_centred():
    out = native.pad_to_square(IMG)
    assert out.shape == (300, 300)
    np.testing.assert_array_equal(out, ref.pad_to_square(IMG))
    np.testing.assert_array_equal(out[:, 40:260], IMG)
    assert out[:, :40].max() == 0 and out[:, 260:].max() == 0


def test_non_contiguous_views_work():
    view = IMG[10:200:1, 5:150]  # row-strided view: borrowed without a copy
    np.testing.assert_array_equal(native.clahe(view), ref.clahe(np.ascontiguousarray(view)))
    transposed = IMG.T  # column stride != 1: copied once, same result
    np.testing.assert_array_equal(
        native.resize_area(transposed, 50, 40),
        ref.resize_area(np.ascontiguousarray(transposed), 50, 40),
    )
    flipped = IMG[::-1, ::2]
    np.testing.assert_array_equal(native.clahe(flipped), ref.clahe(np.ascontiguousarray(flipped)))


@pytest.mark.parametrize(
    ("bad", "exc", "match"),
    [
        (np.zeros((0, 5), np.uint8), ValueError, "empty"),
        (np.zeros((5, 0), np.uint8), ValueError, "empty"),
        (np.zeros((4, 4, 3), np.uint8), ValueError, "2-D"),
        (np.zeros(16, np.uint8), ValueError, "2-D"),
        (np.zeros((4, 4), np.float32), ValueError, "uint8"),
        (np.zeros((4, 4), np.uint16), ValueError, "uint8"),
        ([[1, 2], [3, 4]], TypeError, "numpy"),
    ],
)
def test_bad_arrays_raise_clear_errors(bad, exc, match):
    for fn in (native.clahe, native.pad_to_square, native.preprocess):
        with pytest.raises(exc, match=match):
            fn(bad)
    with pytest.raises(exc, match=match):
        native.resize_area(bad, 4, 4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"clip_limit": -1.0}, "clip_limit"),
        ({"clip_limit": float("nan")}, "clip_limit"),
        ({"tile_grid": (0, 8)}, "tile_grid"),
        ({"tile_grid": (8, -2)}, "tile_grid"),
        ({"size": 0}, "size"),
        ({"crop": (10, 10, 5, 50)}, "crop"),
        ({"crop": (-1, 0, 50, 50)}, "crop"),
        ({"crop": (500, 0, 600, 50)}, "crop"),
    ],
)
def test_bad_parameters_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        native.preprocess(IMG, **kwargs)


def test_bad_resize_sizes():
    with pytest.raises(ValueError, match="width"):
        native.resize_area(IMG, 0, 10)
    with pytest.raises(ValueError, match="height"):
        native.resize_linear(IMG, 10, -3)


def test_thin_images():
    thin = RNG.integers(0, 256, (1, 100000), dtype=np.uint8)
    np.testing.assert_array_equal(native.clahe(thin), ref.clahe(thin))
    # OpenCV would materialise a 100000 x 100000 padded square (10 GB) here; the fused native
    # path never builds it. Parity is checked on a thin image OpenCV can still pad.
    assert native.preprocess(thin, size=64).shape == (64, 64)
    thinner = thin[:, :3001]
    np.testing.assert_array_equal(
        native.preprocess(thinner, size=64), ref.preprocess(thinner, size=64)
    )
    np.testing.assert_array_equal(
        native.resize_area(thin.T, 1, 100), ref.resize_area(thin.T, 1, 100)
    )


def test_extremely_thin_arrays_cost_their_pixels_not_their_long_side_squared():
    """Issue 31, item 10: the fused resize summed the whole padded row (as long as the image)
    for every source row, so a 2,560,000 x 1 array ran for minutes and a 3,000,000 x 1 one
    stored 3 GB of horizontal sums; now only the output columns the content reaches are
    worked, so both paths (integer and general factor) take a pass over the pixels."""
    import time

    rng = np.random.default_rng(31)
    # 512,000 rows: integer factor 2000 (took ~20 s); 1,000,001 rows: general factor.
    arrays = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in
              ((512_000, 1), (1_000_001, 2), (1, 512_000))]  # fmt: skip
    start = time.perf_counter()
    for a in arrays:
        assert native.preprocess(a).shape == (256, 256)
    batch, errors = native.preprocess_batch(arrays, threads=2)
    assert batch.shape == (3, 256, 256) and errors == []
    assert time.perf_counter() - start < 3.0
    # Still byte-identical to the padded square resized by OpenCV, content cut by the blocks
    # or not, both factors, both orientations.
    for shape in ((5120, 3), (5120, 7), (3, 5120), (5121, 7), (7, 5121), (2999, 9)):
        a = rng.integers(0, 256, shape, dtype=np.uint8)
        np.testing.assert_array_equal(native.preprocess(a), ref.preprocess(a), err_msg=str(shape))


def png_with_header(width: int, height: int) -> bytes:
    """A tiny, valid-looking PNG whose header claims a huge image."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")
        )

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_decompression_bomb_header_is_refused_quickly():
    with pytest.raises(OSError, match="over the limit"):
        native.decode_gray(png_with_header(60000, 60000))
    # The limit is configurable and applies to the real pixel count.
    small = cv2.imencode(".png", IMG)[1].tobytes()
    with pytest.raises(OSError, match="over the limit"):
        native.decode_gray(small, max_pixels=1000)
    assert native.decode_gray(small, max_pixels=300 * 220).shape == (300, 220)
    with pytest.raises(ValueError, match="max_pixels"):
        native.decode_gray(small, max_pixels=0)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not an image at all",
        bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8)),
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,
        b"\xff\xd8\xff\xe0" + b"\x00" * 40,
    ],
    ids=["empty", "text", "random", "png-garbage", "jpeg-garbage"],
)
def test_undecodable_bytes_raise_oserror(data):
    with pytest.raises(OSError):
        native.decode_gray(data)


def test_truncated_png_raises_with_path(tmp_path):
    good = cv2.imencode(".png", IMG)[1].tobytes()
    path = tmp_path / "truncated.png"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(OSError, match=r"truncated\.png"):
        native.read_gray(path)
    with pytest.raises(FileNotFoundError, match=r"nope\.png"):
        native.read_gray(tmp_path / "nope.png")


def test_errors_never_crash_the_interpreter(tmp_path):
    """A corrupt JPEG goes through libjpeg's error path: it must surface as OSError."""
    code = (
        "import numpy as np, cv2\n"
        "from boneage import _native as n\n"
        "ok, buf = cv2.imencode('.jpg', np.full((64, 64), 9, np.uint8))\n"
        "data = buf.tobytes()\n"
        "for cut in (20, 100, 300, len(data) - 10):\n"
        "    bad = data[:cut] + b'\\x00\\xff' * 50\n"
        "    try:\n"
        "        n.decode_gray(bad)\n"
        "    except OSError:\n"
        "        pass\n"
        "print('alive')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "alive" in out.stdout


def test_preprocess_files_keeps_order_and_reports_bad_files(files, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    paths = [*files[:3], bad, tmp_path / "missing.png", *files[3:6]]
    batch, errors = native.preprocess_files(paths, size=64, threads=2)
    assert batch.shape == (len(paths), 64, 64)
    assert [e[0] for e in errors] == [3, 4]
    assert "bad.png" in errors[0][1] and "missing.png" in errors[1][1]
    for i, p in enumerate(paths):
        if i in (3, 4):
            assert batch[i].max() == 0
        else:
            np.testing.assert_array_equal(batch[i], ref.preprocess_file(p, size=64))


def test_batch_functions_are_deterministic_across_thread_counts(files):
    crops = [(i, 2 * i, 200 - i, 290) for i in range(len(files))]
    one, _ = native.preprocess_files(files, crops=crops, threads=1)
    two, _ = native.preprocess_files(files, crops=crops, threads=2)
    many, _ = native.preprocess_files(files, crops=crops, threads=7)
    assert one.tobytes() == two.tobytes() == many.tobytes()
    imgs = [native.read_gray(p) for p in files]
    arr1, err1 = native.preprocess_batch(imgs, crops=crops, threads=1)
    arr2, err2 = native.preprocess_batch(imgs, crops=crops)
    assert not err1 and not err2
    assert arr1.tobytes() == arr2.tobytes() == one.tobytes()


def test_batch_argument_errors(files):
    with pytest.raises(ValueError, match="crops"):
        native.preprocess_files(files, crops=[None])
    with pytest.raises(ValueError, match="threads"):
        native.preprocess_files(files, threads=0)
    with pytest.raises(ValueError, match=r"images\[1\]"):
        native.preprocess_batch([IMG, IMG.astype(np.float32)])
    _, errors = native.preprocess_batch([IMG, IMG], crops=[None, (500, 0, 600, 10)])
    assert len(errors) == 1 and errors[0][0] == 1 and "crop" in errors[0][2]


def test_read_gray_files(files, tmp_path):
    images, errors = native.read_gray_files([files[0], tmp_path / "x.png"])
    assert images[1] is None and errors[0][0] == 1
    np.testing.assert_array_equal(images[0], cv2.imread(str(files[0]), cv2.IMREAD_GRAYSCALE))


def test_module_has_type_stubs_and_docs():
    """Every exported name is in the stub and documented (the list comes from the module)."""
    import boneage

    pkg = Path(boneage.__file__).parent
    stub = (pkg / "_native.pyi").read_text()
    assert (pkg / "py.typed").exists()
    assert len(native.__all__) > 25
    for name in native.__all__:
        assert f'"{name}"' in stub, name
        obj = getattr(native, name)
        if callable(obj):
            assert obj.__doc__, name


def test_stub_matches_the_built_module():
    """mypy.stubtest: every signature, default and class in the stub against the module."""
    pytest.importorskip("mypy")
    out = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "boneage._native"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_one_core_error_maps_to_one_python_exception_everywhere(tmp_path):
    """A missing file is the same FileNotFoundError (errno, OS text, file name) whether an image
    or a shard reader meets it: one conversion from the core's error serves every binding."""
    missing = tmp_path / "missing.bin"
    calls = (
        lambda: native.read_gray(missing),
        lambda: native.read_examples([missing]),
        lambda: native.read_records(missing),
        lambda: native.count_records([missing]),
    )
    seen = set()
    for call in calls:
        with pytest.raises(FileNotFoundError) as err:
            call()
        e = err.value
        seen.add((type(e), e.errno, e.strerror, e.filename, str(e)))
    assert seen == {
        (
            FileNotFoundError,
            errno.ENOENT,
            os.strerror(errno.ENOENT),
            str(missing),
            f"[Errno {errno.ENOENT}] {os.strerror(errno.ENOENT)}: {str(missing)!r}",
        )
    }


def test_decode_errors_name_the_file_or_nothing(tmp_path):
    """In-memory bytes give the reason alone (no '<bytes>' stand-in); a file gives its path,
    and the batch readers report the very message the single call raises."""
    with pytest.raises(OSError) as err:
        native.decode_gray(b"not an image")
    assert str(err.value) == "not a PNG or JPEG image (unrecognised signature)"
    assert "<bytes>" not in str(err.value)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(OSError) as err:
        native.read_gray(bad)
    assert str(err.value) == f"{bad}: not a PNG or JPEG image (unrecognised signature)"
    _, errors = native.read_gray_files([bad])
    assert errors == [(0, str(bad), str(err.value))]
    _, errors = native.decode_many([b"not an image"])
    assert errors == [(0, "item 0", "not a PNG or JPEG image (unrecognised signature)")]


def test_shard_naming_has_one_owner(tmp_path):
    """shard_name is what ShardWriter writes, parse_shard_name and shard_glob read it back."""
    for compression in (None, "GZIP"):
        out = tmp_path / str(compression)
        with native.ShardWriter(str(out), "train", 3, compression) as w:
            w.write(IMG[:4, :5], "a")
        written = sorted(p.name for p in out.iterdir())
        names = [native.shard_name("train", i, 3, compression) for i in range(3)]
        assert written == names
        assert [native.parse_shard_name(n) for n in names] == [
            ("train", i, 3, compression == "GZIP") for i in range(3)
        ]
        assert sorted(p.name for p in out.glob(native.shard_glob("train"))) == names
        assert sorted(p.name for p in out.glob(native.shard_glob())) == names
        assert [native.is_gzip_file(out / n) for n in names] == [compression == "GZIP"] * 3
    assert native.shard_name("val", 7, 12) == "val-00007-of-00012.tfrecord"
    for bad in (".val-00001-of-00002.tfrecord.tmp-9-0", "val-1-of-2.tfrecord", "x.png"):
        assert native.parse_shard_name(bad) is None
    with pytest.raises(ValueError, match="out of range"):
        native.shard_name("val", 2, 2)
    with pytest.raises(ValueError, match="split"):
        native.shard_name("a/b", 0, 1)
    with pytest.raises(FileNotFoundError):
        native.is_gzip_file(tmp_path / "missing")


def test_reserved_keys_are_the_keys_the_writer_sets(tmp_path):
    assert isinstance(native.RESERVED_KEYS, tuple)
    ex = native.decode_example(native.encode_example(IMG[:3, :4], "id1", male=1, age=3.5))
    assert set(ex) == set(native.RESERVED_KEYS)
    with native.ShardWriter(str(tmp_path), "t", 1) as w:
        for key in native.RESERVED_KEYS:
            with pytest.raises(ValueError, match="reserved"):
                w.write_batch([IMG[:3, :4]], ["id1"], extras={key: [1]})
        w.write_batch([IMG[:3, :4]], ["id1"], extras={"box": [[0, 0, 4, 3]]})


def _zero_png(width: int, height: int) -> bytes:
    """A valid grey PNG of zeros, built by hand (tiny for thin images: it compresses well)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body).to_bytes(4, "big")
        return len(body).to_bytes(4, "big") + kind + body + crc

    z = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_thin_images_and_huge_derived_buffers_raise_quickly(tmp_path):
    """Issue 11: a valid 99,000,000 x 1 PNG aborted the bulk run (a 101 GB allocation in the
    resize) and pad_to_square of a 1 x 200,000 array aborted Python. Now: quick errors (the
    aspect-ratio policy on decoded files, the derived-buffer ceiling on arrays), the process
    alive, and the policy's edge cases still work."""
    import time

    png = _zero_png(99_000_000, 1)
    assert len(png) < 200_000
    path = tmp_path / "thin.png"
    path.write_bytes(png)
    start = time.monotonic()
    with pytest.raises(OSError, match=r"99000000x1.*radiograph"):
        native.decode_gray(png)
    with pytest.raises(OSError, match=r"thin\.png: image is 99000000x1"):
        native.read_gray(path)
    _, _, errors = native.process_encoded([png], ["thin"], size=64)
    assert errors and errors[0][1] == "thin" and "radiograph" in errors[0][2]
    with pytest.raises(ValueError, match=r"padded square would be 200000x200000.*over the limit"):
        native.pad_to_square(np.zeros((200_000, 1), np.uint8))
    with pytest.raises(ValueError, match="over the limit"):
        native.pad_to_square(np.zeros((1, 40_000), np.uint8))
    with pytest.raises(ValueError, match="over the limit"):
        native.resize_area(IMG, 65536, 65536)
    with pytest.raises(ValueError, match="over the limit"):
        native.preprocess(IMG, size=65536)
    assert time.monotonic() - start < 10
    # The policy's edges: a small thin image and a 1:10 one are fine.
    assert native.pad_to_square(np.ones((1, 4096), np.uint8)).shape == (4096, 4096)
    assert native.decode_gray(_zero_png(500, 5000)).shape == (5000, 500)
    assert native.preprocess(np.ones((10, 100), np.uint8), size=32).shape == (32, 32)


def _real(suffix: str) -> Path:
    """A real RSNA radiograph whose content (not only its name) is of that format."""
    from shared_data import image_files

    magic = {".jpg": b"\xff\xd8", ".png": b"\x89PNG"}[suffix]
    found = [
        p
        for p in image_files("unlabeled", "fullres")
        if p.suffix.lower() == suffix and p.read_bytes()[:4].startswith(magic)
    ]
    if not found:
        pytest.skip(f"no real RSNA {suffix} under ../shared/data/rsna")
    return found[0]


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_real_radiograph_is_an_error_naming_file_and_reason(tmp_path, suffix):
    """Issue 11: a truncated JPEG decoded as an 'ok' record with half the film grey. Every
    native entry point now refuses it by default, naming the file and libjpeg's reason."""
    data = _real(suffix).read_bytes()
    cut = data[: len(data) * 2 // 3]
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(cut)
    reason = "Premature end of JPEG file" if suffix == ".jpg" else "truncated PNG"
    with pytest.raises(OSError, match=rf"cut\{suffix}: .*{reason}"):
        native.read_gray(path)
    with pytest.raises(OSError, match=reason):
        native.decode_gray(cut)
    _, errors = native.read_gray_files([path])
    assert len(errors) == 1 and reason in errors[0][2]
    _, errors = native.decode_many([cut])
    assert len(errors) == 1 and reason in errors[0][2]
    # The bulk job's fused call: a skipped row with the reason, the good copy still written.
    _, infos, errors = native.process_encoded([cut, data], ["cut", "good"], size=32)
    assert [e[1] for e in errors] == ["cut"] and reason in errors[0][2]
    assert infos[0] is None and infos[1] is not None
    # OpenCV (4.11) refuses such files too: the strict default is also the parity answer.
    with pytest.raises(OSError):
        ref.decode_gray(cut)
    if suffix == ".jpg":
        # Accepted on request: what was decoded before the cut as in the whole file, the rest
        # filled in by libjpeg.
        whole = native.decode_gray(data)
        got = native.decode_gray(cut, allow_truncated=True)
        assert got.shape == whole.shape
        assert 0.3 < np.mean(got == whole) < 1.0
        assert native.read_gray(path, allow_truncated=True).shape == got.shape


def test_choose_crop_is_the_bulk_jobs_rule():
    """The crop rule exists once: choose_crop on a decoded film gives the box and the
    localiser name that the fused bulk call reports for the same bytes, and hands.choose
    (Python, MediaPipe off) gives the same box."""
    from boneage.ingest import hands

    data = _real(".png").read_bytes()
    img = native.decode_gray(data)
    chosen = native.choose_crop(img)
    _out, infos, errors = native.process_encoded([data], localiser="native", size=64)
    assert not errors
    assert tuple(chosen["box"]) == tuple(infos[0]["box"])
    assert chosen["localiser"] == infos[0]["localiser"]
    assert tuple(hands.choose(img, "native").box) == tuple(chosen["box"])
    whole = native.choose_crop(img, "none")
    assert whole["box"] == (0, 0, img.shape[1], img.shape[0]) and whole["native"] is None
    with pytest.raises(ValueError, match="MediaPipe runs in Python"):
        native.choose_crop(img, "auto")
