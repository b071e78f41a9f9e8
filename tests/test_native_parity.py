"""Bit-exact parity of boneage._native with OpenCV (the paper's pipeline), pixel for pixel."""

from __future__ import annotations

import functools
import io
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from boneage import _native as native
from boneage.ingest import reference as ref
from shared_data import image_files

# BONEAGE_HYPOTHESIS_EXAMPLES=1000 for a long soak; the default keeps the suite fast.
SETTINGS = settings(
    max_examples=int(os.environ.get("BONEAGE_HYPOTHESIS_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def make_image(seed: int, h: int, w: int, kind: str) -> np.ndarray:
    """Random noise, or smooth structure (realistic histograms, long flat runs), or a few levels."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w), dtype=np.uint8)
    if kind == "smooth":
        img = cv2.GaussianBlur(img, (0, 0), 3 + seed % 7)
        img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX)
    elif kind == "levels":
        img = (img // 64) * 60
    return img


images = st.builds(
    make_image,
    seed=st.integers(0, 2**32 - 1),
    h=st.integers(1, 1200),
    w=st.integers(1, 1200),
    kind=st.sampled_from(["noise", "smooth", "levels"]),
)
# Odd, prime and power-of-two sides deserve to be hit on purpose.
awkward = st.sampled_from([1, 2, 3, 7, 8, 13, 97, 127, 256, 509, 512, 1021, 1024, 1199])
awkward_images = st.builds(
    make_image,
    seed=st.integers(0, 2**32 - 1),
    h=awkward,
    w=awkward,
    kind=st.sampled_from(["noise", "smooth"]),
)


def assert_same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype == np.uint8
    assert a.shape == b.shape
    diff = np.argwhere(a != b)
    assert diff.size == 0, f"{len(diff)} pixels differ, first at {diff[:5].tolist()}"


@SETTINGS
@given(
    img=st.one_of(images, awkward_images),
    grid=st.tuples(st.integers(1, 16), st.integers(1, 16)),
    clip=st.one_of(st.sampled_from([0.0, 1.0, 2.0, 4.0, 40.0]), st.floats(0, 40)),
)
def test_clahe_matches_opencv(img, grid, clip):
    assert_same(native.clahe(img, clip, grid), ref.clahe(img, clip, grid))


def dst_sizes(img: np.ndarray, data: st.DataObject) -> tuple[int, int]:
    h, w = img.shape
    mode = data.draw(st.sampled_from(["any", "down", "integer", "up"]))
    if mode == "integer":
        k = data.draw(st.integers(1, 8))
        return max(w // k, 1), max(h // k, 1)
    if mode == "down":
        return data.draw(st.integers(1, w)), data.draw(st.integers(1, h))
    if mode == "up":
        return data.draw(st.integers(w, 2 * w + 3)), data.draw(st.integers(h, 2 * h + 3))
    return data.draw(st.integers(1, 700)), data.draw(st.integers(1, 700))


@SETTINGS
@given(img=st.one_of(images, awkward_images), data=st.data())
def test_resize_area_matches_opencv(img, data):
    w, h = dst_sizes(img, data)
    assert_same(native.resize_area(img, w, h), ref.resize_area(img, w, h))


@SETTINGS
@given(img=st.one_of(images, awkward_images), data=st.data())
def test_resize_linear_matches_opencv(img, data):
    w, h = dst_sizes(img, data)
    assert_same(native.resize_linear(img, w, h), ref.resize_linear(img, w, h))


@pytest.mark.parametrize(("src", "dst"), [(2048, 256), (2044, 256), (1536, 256), (512, 256)])
def test_resize_area_common_radiograph_sizes(src, dst):
    img = make_image(src, src, src - 3 if src % 2 else src, "smooth")
    _h, _w = img.shape
    assert_same(native.resize_area(img, dst, dst), ref.resize_area(img, dst, dst))


@SETTINGS
@given(
    img=images,
    data=st.data(),
    size=st.sampled_from([1, 32, 64, 100, 224, 256, 299, 384]),
    grid=st.tuples(st.integers(1, 16), st.integers(1, 16)),
    clip=st.floats(0, 40),
)
def test_preprocess_matches_opencv_pipeline(img, data, size, grid, clip):
    h, w = img.shape
    box = None
    if data.draw(st.booleans()):
        x0 = data.draw(st.integers(0, w - 1))
        y0 = data.draw(st.integers(0, h - 1))
        # Far edges may overshoot the image: both sides clamp them.
        box = (
            x0,
            y0,
            data.draw(st.integers(x0 + 1, w + 50)),
            data.draw(st.integers(y0 + 1, h + 50)),
        )
    assert_same(
        native.preprocess(img, box, size, clip, grid), ref.preprocess(img, box, size, clip, grid)
    )


def png_bytes(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    h=st.integers(1, 300),
    w=st.integers(1, 300),
    layout=st.sampled_from(["gray8", "gray16", "bgr8", "bgra8", "bgr16"]),
)
def test_decode_png_matches_opencv(seed, h, w, layout):
    rng = np.random.default_rng(seed)
    channels = {"gray8": 1, "gray16": 1, "bgr8": 3, "bgra8": 4, "bgr16": 3}[layout]
    dtype = np.uint16 if layout.endswith("16") else np.uint8
    img = rng.integers(0, np.iinfo(dtype).max + 1, (h, w, channels), dtype=dtype)
    if channels == 3 and seed % 3 == 0:
        img[..., 1] = img[..., 0]  # grey-looking colour pixels take libpng's shortcut
        img[..., 2] = img[..., 0]
    data = png_bytes(img if channels > 1 else img[..., 0])
    assert_same(native.decode_gray(data), ref.decode_gray(data))


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    h=st.integers(1, 400),
    w=st.integers(1, 400),
    colour=st.booleans(),
    quality=st.integers(5, 100),
)
def test_decode_jpeg_matches_opencv(seed, h, w, colour, quality):
    img = make_image(seed, h, w, "smooth")
    if colour:
        img = cv2.merge([img, np.roll(img, 3, axis=1), 255 - img])
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    assert_same(native.decode_gray(buf.tobytes()), ref.decode_gray(buf.tobytes()))


@pytest.mark.parametrize("mode", ["P", "1", "L;4", "LA", "I;16"])
def test_decode_png_palette_and_low_bit_depths(mode):
    from PIL import Image

    rng = np.random.default_rng(7)
    base = Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8))
    if mode == "P":
        im = base.quantize(17)
    elif mode == "1":
        im = base.convert("1")
    elif mode == "L;4":
        im = base.convert("L").point(lambda v: v // 17 * 17)
        buf = io.BytesIO()
        im.save(buf, format="PNG", bits=4)
        data = buf.getvalue()
        assert_same(native.decode_gray(data), ref.decode_gray(data))
        return
    elif mode == "LA":
        im = base.convert("LA")
    else:
        im = Image.fromarray(rng.integers(0, 65536, (37, 53), dtype=np.uint16))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    data = buf.getvalue()
    assert_same(native.decode_gray(data), ref.decode_gray(data))


REAL = image_files("fullres", "unlabeled")


@pytest.mark.skipif(not REAL, reason="real RSNA radiographs not found under ../shared/data/rsna")
@pytest.mark.parametrize("path", REAL, ids=[p.name for p in REAL])
def test_real_radiographs_decode_and_preprocess_like_opencv(path: Path):
    mine, theirs = native.read_gray(path), ref.read_gray(path)
    assert_same(mine, theirs)
    h, w = mine.shape
    box = (w // 10, h // 12, w - w // 9, h - h // 20)
    assert_same(native.preprocess(mine), ref.preprocess(theirs))
    assert_same(native.preprocess(mine, box), ref.preprocess(theirs, box))


def exif_block(orientation: int, big_endian: bool) -> bytes:
    """A minimal TIFF-structured EXIF block: IFD0 with one Orientation (0x0112) entry."""
    e = ">" if big_endian else "<"
    head = (b"MM" if big_endian else b"II") + struct.pack(e + "HI", 42, 8)
    return head + struct.pack(e + "HHHIHHI", 1, 0x0112, 3, 1, orientation, 0, 0)


def with_exif(data: bytes, orientation: int, big_endian: bool) -> bytes:
    """``data`` (PNG or JPEG from cv2) with an EXIF orientation inserted where readers look."""
    block = exif_block(orientation, big_endian)
    if data.startswith(b"\xff\xd8"):
        body = b"Exif\0\0" + block
        return data[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + data[2:]
    chunk = b"eXIf" + block
    packed = struct.pack(">I", len(block)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    at = data.index(b"IDAT") - 4  # before the first image data chunk
    return data[:at] + packed + data[at:]


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    h=st.integers(1, 120),
    w=st.integers(1, 120),
    orientation=st.integers(1, 8),
    big_endian=st.booleans(),
    fmt=st.sampled_from([".png", ".jpg"]),
)
def test_exif_orientation_matches_opencv(seed, h, w, orientation, big_endian, fmt):
    ok, buf = cv2.imencode(fmt, make_image(seed, h, w, "smooth"))
    assert ok
    data = with_exif(buf.tobytes(), orientation, big_endian)
    got, want = native.decode_gray(data), ref.decode_gray(data)
    if orientation >= 5 and h != w:
        assert got.shape == (w, h)  # the sides swap: the check can fail
    assert_same(got, want)


# -- every PNG colour type and bit depth, every JPEG colour space and sampling (issue 11) ----


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@functools.lru_cache(maxsize=1)
def _icc_profile() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


# colour type -> the bit depths the PNG specification allows for it
PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def make_png(
    rng: np.random.Generator,
    h: int,
    w: int,
    colour: int,
    depth: int,
    trns: bool,
    extra: str,
    gamma: int,
) -> bytes:
    """A PNG written by hand, so every colour type, depth and ancillary chunk can be chosen."""
    channels = PNG_CHANNELS[colour]
    top = (1 << depth) - 1
    if colour == 3:
        entries = int(rng.integers(1, top + 2))
        samples = rng.integers(0, entries, (h, w, 1))
    else:
        samples = rng.integers(0, top + 1, (h, w, channels))
        if colour in (2, 6) and rng.random() < 0.3:
            samples[..., 1] = samples[..., 0]  # some grey-looking colour pixels
            samples[..., 2] = samples[..., 0]
    rows = []
    for y in range(h):
        row = samples[y].reshape(-1)
        if depth == 16:
            raw = row.astype(">u2").tobytes()
        elif depth == 8:
            raw = row.astype(np.uint8).tobytes()
        else:
            per = 8 // depth
            padded = np.zeros(-(-len(row) // per) * per, np.int64)
            padded[: len(row)] = row
            packed = np.zeros(len(padded) // per, np.int64)
            for k in range(per):
                packed |= padded[k::per] << (8 - depth * (k + 1))
            raw = packed.astype(np.uint8).tobytes()
        rows.append(b"\x00" + raw)
    out = b"\x89PNG\r\n\x1a\n" + _chunk(
        b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0)
    )
    if extra == "gAMA":
        out += _chunk(b"gAMA", struct.pack(">I", gamma))
    elif extra == "sRGB":
        out += _chunk(b"sRGB", b"\x00") + _chunk(b"gAMA", struct.pack(">I", 45455))
    elif extra == "iCCP":
        out += _chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(_icc_profile()))
    if colour == 3:
        palette = rng.integers(0, 256, (entries, 3), dtype=np.uint8)
        if rng.random() < 0.3:
            palette[:, 1] = palette[:, 0]
            palette[:, 2] = palette[:, 0]
        out += _chunk(b"PLTE", palette.tobytes())
    if trns and colour in (0, 2, 3):
        if colour == 3:
            body = rng.integers(0, 256, int(rng.integers(1, entries + 1)), dtype=np.uint8).tobytes()
        else:
            key = samples[0, 0] if rng.random() < 0.5 else rng.integers(0, top + 1, channels)
            body = np.asarray(key).astype(">u2").tobytes()
        out += _chunk(b"tRNS", body)
    out += _chunk(b"IDAT", zlib.compress(b"".join(rows)))
    return out + _chunk(b"IEND", b"")


png_layouts = st.sampled_from([(c, d) for c, ds in PNG_DEPTHS.items() for d in ds])


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    layout=png_layouts,
    trns=st.booleans(),
    extra=st.sampled_from(["none", "gAMA", "sRGB", "iCCP"]),
    gamma=st.sampled_from([45455, 100000, 55555, 220000, 30000, 97000]),
)
def test_decode_every_png_layout_matches_opencv(seed, h, w, layout, trns, extra, gamma):
    colour, depth = layout
    data = make_png(np.random.default_rng(seed), h, w, colour, depth, trns, extra, gamma)
    want = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if want is None:  # OpenCV refuses it: the native decoder must raise, not crash
        with pytest.raises(OSError):
            native.decode_gray(data)
        return
    assert_same(native.decode_gray(data), want)


def _jpeg(img: np.ndarray, space: str, quality: int, sampling: str, progressive: bool) -> bytes:
    """JPEG bytes in one of the colour spaces libjpeg writes."""
    from PIL import Image

    if space in ("gray", "ycbcr"):
        params = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)]
        if space == "ycbcr":
            factor = getattr(cv2, f"IMWRITE_JPEG_SAMPLING_FACTOR_{sampling}")
            params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, factor]
        ok, buf = cv2.imencode(".jpg", img if space == "ycbcr" else img[..., 0], params)
        assert ok
        return buf.tobytes()
    rgb = Image.fromarray(np.ascontiguousarray(img[..., ::-1]))
    out = io.BytesIO()
    if space == "rgb":
        rgb.save(out, "JPEG", quality=quality, keep_rgb=True, progressive=progressive)
        return out.getvalue()
    rgb.convert("CMYK").save(out, "JPEG", quality=quality, progressive=progressive)
    data = out.getvalue()
    if space == "ycck":  # the same samples, declared YCCK (Adobe transform 2): a valid file
        at = data.index(b"Adobe") + 11
        data = data[:at] + b"\x02" + data[at + 1 :]
    return data


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    h=st.integers(1, 120),
    w=st.integers(1, 120),
    space=st.sampled_from(["gray", "ycbcr", "rgb", "cmyk", "ycck"]),
    sampling=st.sampled_from(["444", "422", "420", "440", "411"]),
    progressive=st.booleans(),
    quality=st.integers(5, 100),
)
def test_decode_every_jpeg_colour_space_matches_opencv(
    seed, h, w, space, sampling, progressive, quality
):
    base = make_image(seed, h, w, "smooth")
    img = cv2.merge([base, np.roll(base, 3, axis=1), 255 - base])
    data = _jpeg(img, space, quality, sampling, progressive)
    want = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if want is None:
        with pytest.raises(OSError):
            native.decode_gray(data)
        return
    assert_same(native.decode_gray(data), want)
