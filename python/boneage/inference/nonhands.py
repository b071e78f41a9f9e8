"""Images that are not hand radiographs, for fitting and testing the input gate.

Why: a gate's false-accept rate can only be measured on things it should refuse, and the
ones a user may really upload are varied: an empty or black export, a test pattern, noise, a
scanned page, a photograph, another body part or modality, a thumbnail, a film destroyed by
noise or blur. :func:`generate` makes them reproducibly (seeded), from code, from the sample
images matplotlib ships (photographs, an MRI slice, terrain maps) and, when pydicom is
installed, from the DICOM test images it ships (CT, MR, ultrasound, nuclear medicine).

The set is split in two parts that share no source file and no seed: ``"fit"`` (to fit or
tune a gate) and ``"test"`` (kept apart, to report false accepts on images the gate's maker
never looked at). Each kind is in both parts; where a kind draws from files, the files are
divided between the parts.

Every image is grey ``uint8`` (H, W), as :func:`boneage.ingest.dicom.load_image` gives a
film once its colour is dropped; photographs and DICOM pixels are stretched over their own
range, as a viewer windows them.
"""

from __future__ import annotations

import gzip
import string
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["KINDS", "PARTS", "NonHand", "generate"]

PARTS = ("fit", "test")
KINDS = (
    "uniform",
    "black",
    "white",
    "gradient",
    "gaussian_noise",
    "salt_pepper",
    "text",
    "shapes",
    "photo",
    "medical",
    "tiny",
    "corrupted",
)
"""What :func:`generate` makes; ``corrupted`` only when real films are given to corrupt."""


@dataclass(frozen=True)
class NonHand:
    """One generated image: its ``kind`` (one of :data:`KINDS`), a ``name`` saying how it
    was made, and the grey ``image``."""

    kind: str
    name: str
    image: np.ndarray


def _size(rng: np.random.Generator) -> tuple[int, int]:
    """A plausible upload's (height, width): 96-1024 px, aspect 0.6-1.6."""
    h = int(rng.integers(96, 1025))
    w = int(np.clip(h * rng.uniform(0.6, 1.6), 64, 1400))
    return h, w


def _u8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _to_grey_u8(a: np.ndarray) -> np.ndarray:
    """Any decoded array -> grey uint8, stretched over its own range (as a viewer windows)."""
    a = np.asarray(a)
    if a.ndim == 3:
        a = a[..., :3].astype(np.float64).mean(axis=2)
    a = a.astype(np.float64)
    lo, hi = np.percentile(a, [0.5, 99.5])
    if hi <= lo:
        hi = lo + 1.0
    return _u8((a - lo) / (hi - lo) * 255.0)


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    import cv2

    inter = cv2.INTER_AREA if h * w < img.shape[0] * img.shape[1] else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(img, (w, h), interpolation=inter))


def _variant(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random crop (at least half of each side), flip and rescale of a source image."""
    h, w = img.shape[:2]
    ch, cw = int(h * rng.uniform(0.5, 1.0)), int(w * rng.uniform(0.5, 1.0))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    out = img[y : y + ch, x : x + cw]
    if rng.random() < 0.5:
        out = out[:, ::-1]
    scale = rng.uniform(0.7, 2.0)
    return _resize(np.ascontiguousarray(out), max(40, int(ch * scale)), max(40, int(cw * scale)))


# --- synthetic kinds ------------------------------------------------------------------------


def _uniform(rng: np.random.Generator) -> tuple[str, np.ndarray]:
    h, w = _size(rng)
    level = float(rng.uniform(10, 245))
    faint = float(rng.choice([0.0, 0.5, 1.0]))  # a lossy export's faint grain
    return f"grey {level:.0f} grain {faint}", _u8(level + faint * rng.standard_normal((h, w)))


def _black(rng: np.random.Generator) -> tuple[str, np.ndarray]:
    h, w = _size(rng)
    return "all black", np.zeros((h, w), np.uint8)


def _white(rng: np.random.Generator) -> tuple[str, np.ndarray]:
    h, w = _size(rng)
    return "all white", np.full((h, w), 255, np.uint8)


def _gradient(rng: np.random.Generator) -> tuple[str, np.ndarray]:
    h, w = _size(rng)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    a, b = rng.uniform(0, 255, 2)
    if rng.random() < 0.5:
        t = rng.uniform(0, np.pi)
        ramp = xx * np.cos(t) + yy * np.sin(t)
        name = "linear"
    else:
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ramp = np.hypot(yy - cy, xx - cx)
        name = "radial"
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-9)
    return f"{name} {a:.0f}->{b:.0f}", _u8(a + (b - a) * ramp)


def _gaussian_noise(rng: np.random.Generator) -> tuple[str, np.ndarray]:
    h, w = _size(rng)
    mean, sigma = rng.uniform(60, 190), rng.uniform(20, 90)
    return f"mean {mean:.0f} sigma {sigma:.0f}", _u8(mean + sigma * rng.standard_normal((h, w)))


def _salt_pepper(rng: np.random.Generator) -> tuple[str, np.ndarray]:
    h, w = _size(rng)
    base = float(rng.choice([0.0, 128.0, 255.0, rng.uniform(0, 255)]))
    frac = float(rng.uniform(0.05, 0.5))
    img = np.full((h, w), base)
    hit = rng.random((h, w)) < frac
    img[hit] = rng.choice([0.0, 255.0], int(hit.sum()))
    return f"base {base:.0f} fraction {frac:.2f}", _u8(img)


def _text(rng: np.random.Generator) -> tuple[str, np.ndarray]:
    import cv2

    h, w = _size(rng)
    h, w = max(h, 200), max(w, 160)
    dark = rng.random() < 0.3  # white text on black sometimes (a terminal, a slide)
    page = np.full((h, w), 0 if dark else int(rng.integers(215, 256)), np.uint8)
    ink = 235 if dark else int(rng.integers(0, 60))
    font = int(rng.choice([cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_PLAIN,
                           cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX]))  # fmt: skip
    scale = float(rng.uniform(0.4, 1.2)) * max(h, w) / 600
    line = max(8, int(28 * scale))
    letters = np.array(list(string.ascii_letters + string.digits + "  .,"))
    y = line
    while y < h - 4:
        words = "".join(rng.choice(letters, int(rng.integers(20, 80))))
        at = (int(rng.integers(4, 20)), y)
        cv2.putText(page, words, at, font, scale, (ink,), max(1, int(scale * 1.5)), cv2.LINE_AA)
        y += int(line * rng.uniform(1.1, 1.8))
    return f"{'dark' if dark else 'light'} page, scale {scale:.2f}", page


def _shapes(rng: np.random.Generator) -> tuple[str, np.ndarray]:
    import cv2

    h, w = _size(rng)
    img = np.full((h, w), int(rng.integers(0, 256)), np.uint8)
    n = int(rng.integers(3, 25))
    for _ in range(n):
        colour = (float(rng.integers(0, 256)),)
        kind = int(rng.integers(0, 4))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        if kind == 0:
            cv2.circle(img, p1, int(rng.integers(4, max(5, min(h, w) // 3))), colour, -1)
        elif kind == 1:
            cv2.rectangle(img, p1, p2, colour, -1)
        elif kind == 2:
            cv2.line(img, p1, p2, colour, int(rng.integers(1, 12)))
        else:
            pts = np.stack([rng.integers(0, w, 5), rng.integers(0, h, 5)], 1).astype(np.int32)
            cv2.fillPoly(img, [pts], colour)
    if rng.random() < 0.5:
        img = np.asarray(cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.5, 3.0))), np.uint8)
    return f"{n} shapes", img


def _scene(rng: np.random.Generator) -> np.ndarray:
    """A synthetic photograph: sky, ground, sun, buildings, grain (when no photo ships)."""
    import cv2

    h, w = _size(rng)
    yy = np.linspace(0, 1, h)[:, None]
    horizon = rng.uniform(0.4, 0.7)
    sky = rng.uniform(150, 230) - 60 * yy
    ground = rng.uniform(40, 120) + 30 * yy
    img = np.where(yy < horizon, sky, ground) * np.ones((1, w))
    img = img.astype(np.uint8)
    cv2.circle(img, (int(rng.integers(0, w)), int(horizon * h * 0.4)), int(h * 0.06), (250,), -1)
    for _ in range(int(rng.integers(2, 8))):
        x0 = int(rng.integers(0, w))
        bw, bh = int(rng.integers(w // 20, w // 5)), int(rng.integers(h // 10, h // 2))
        y1 = int(horizon * h)
        cv2.rectangle(img, (x0, y1 - bh), (x0 + bw, y1), (float(rng.integers(30, 200)),), -1)
    img = np.asarray(cv2.GaussianBlur(img, (0, 0), 1.0), np.uint8)
    return _u8(img + 4 * rng.standard_normal(img.shape))


def _sample_data() -> Path | None:
    try:
        import matplotlib
    except ImportError:
        return None
    path = Path(matplotlib.get_data_path()) / "sample_data"
    return path if path.is_dir() else None


def _photo_sources() -> list[tuple[str, Callable[[], np.ndarray]]]:
    """(name, loader) of the photographs and image-like maps matplotlib ships."""
    base = _sample_data()
    if base is None:
        return []
    import cv2

    def image(name: str) -> Callable[[], np.ndarray]:
        return lambda: _to_grey_u8(np.asarray(cv2.imread(str(base / name), cv2.IMREAD_COLOR)))

    def npz(name: str, key: str) -> Callable[[], np.ndarray]:
        return lambda: _to_grey_u8(np.load(base / name)[key])

    found = [
        ("grace_hopper.jpg", image("grace_hopper.jpg")),
        ("Minduka_Present_Blue_Pack.png", image("Minduka_Present_Blue_Pack.png")),
        ("jacksboro_fault_dem.npz", npz("jacksboro_fault_dem.npz", "elevation")),
        ("topobathy.npz", npz("topobathy.npz", "topo")),
        ("logo2.png", image("logo2.png")),
    ]
    return [(n, f) for n, f in found if (base / n).is_file()]


def _photo(
    rng: np.random.Generator, sources: Sequence[tuple[str, np.ndarray]]
) -> tuple[str, np.ndarray]:
    if not sources or rng.random() < 0.25:
        return "synthetic scene", _scene(rng)
    name, img = sources[int(rng.integers(0, len(sources)))]
    return f"{name} crop", _variant(img, rng)


def _chest_phantom(rng: np.random.Generator) -> np.ndarray:
    """A chest-film-like phantom: bright body, dark lungs, spine, heart, ribs; blurred."""
    import cv2

    h, w = _size(rng)
    h = max(h, 160)
    w = max(int(h * rng.uniform(0.8, 1.2)), 128)
    img = np.full((h, w), int(rng.integers(0, 40)), np.uint8)
    c = (w // 2, h // 2)
    body = (float(rng.integers(150, 210)),)
    cv2.ellipse(img, c, (int(w * 0.45), int(h * 0.48)), 0, 0, 360, body, -1)
    for side in (-1, 1):
        lung = (c[0] + side * int(w * 0.2), c[1] - int(h * 0.05))
        air = (float(rng.integers(40, 90)),)
        cv2.ellipse(img, lung, (int(w * 0.15), int(h * 0.32)), 0, 0, 360, air, -1)
        for k in range(8):  # ribs: bright arcs across the lungs
            y = c[1] - int(h * 0.33) + k * int(h * 0.08)
            arc = (180, 270) if side < 0 else (270, 360)
            axes = (int(w * 0.36), int(h * 0.06))
            cv2.ellipse(img, (c[0], y), axes, 0, *arc, (200,), max(2, h // 80))
    cv2.rectangle(img, (c[0] - w // 30, 0), (c[0] + w // 30, h), (230,), -1)  # spine
    cv2.ellipse(img, (c[0] + w // 12, c[1] + h // 8), (w // 8, h // 7), 20, 0, 360, (190,), -1)
    img = np.asarray(cv2.GaussianBlur(img, (0, 0), max(1.0, h / 200)), np.uint8)
    return _u8(img + 3 * rng.standard_normal(img.shape))


def _head_phantom(rng: np.random.Generator) -> np.ndarray:
    """A Shepp-Logan-like head phantom: nested ellipses of tissue densities."""
    import cv2

    side = int(rng.integers(128, 768))
    img = np.zeros((side, side), np.float64)
    c = side / 2
    spec = [  # (cx, cy, a, b, angle, value): the classic Shepp-Logan layout, scaled
        (0, 0, 0.69, 0.92, 0, 1.0), (0, -0.0184, 0.6624, 0.874, 0, -0.8),
        (0.22, 0, 0.11, 0.31, -18, -0.2), (-0.22, 0, 0.16, 0.41, 18, -0.2),
        (0, 0.35, 0.21, 0.25, 0, 0.1), (0, 0.1, 0.046, 0.046, 0, 0.1),
        (0, -0.1, 0.046, 0.046, 0, 0.1), (-0.08, -0.605, 0.046, 0.023, 0, 0.1),
    ]  # fmt: skip
    for cx, cy, a, b, ang, val in spec:
        layer = np.zeros_like(img)
        centre, axes = (int(c + cx * c), int(c - cy * c)), (int(a * c), int(b * c))
        cv2.ellipse(layer, centre, axes, float(ang), 0, 360, (1.0,), -1)
        img += val * layer
    img = (img - img.min()) / max(float(np.ptp(img)), 1e-9) * 255
    return _u8(img + 2 * rng.standard_normal(img.shape))


def _medical_sources() -> list[tuple[str, Callable[[], np.ndarray]]]:
    """(name, loader) of the medical images installed packages ship: matplotlib's MRI slice,
    and pydicom's CT, MR, ultrasound and nuclear-medicine test files when it is there."""
    out: list[tuple[str, Callable[[], np.ndarray]]] = []
    base = _sample_data()
    if base is not None and (base / "s1045.ima.gz").is_file():

        def mri() -> np.ndarray:
            raw = gzip.decompress((base / "s1045.ima.gz").read_bytes())
            return _to_grey_u8(np.frombuffer(raw, np.uint16).reshape(256, 256))

        out.append(("s1045.ima (MRI head)", mri))
    try:
        from pydicom.data import get_testdata_file
    except ImportError:
        return out
    for name in (
        "CT_small.dcm",
        "MR_small.dcm",
        "693_J2KI.dcm",
        "examples_overlay.dcm",
        "JPGExtended.dcm",
        "examples_rgb_color.dcm",
        "examples_palette.dcm",
        "image_dfl.dcm",
    ):

        def load(name: str = name) -> np.ndarray:
            import pydicom

            path = get_testdata_file(name, download=False)
            pixels = pydicom.dcmread(str(path)).pixel_array
            return _to_grey_u8(pixels[0] if pixels.ndim == 4 else pixels)

        out.append((name, load))
    return out


def _medical(
    rng: np.random.Generator, sources: Sequence[tuple[str, np.ndarray]]
) -> tuple[str, np.ndarray]:
    u = rng.random()
    if not sources or u < 0.3:
        if u < 0.15:
            return "chest phantom", _chest_phantom(rng)
        return "head phantom", _head_phantom(rng)
    name, img = sources[int(rng.integers(0, len(sources)))]
    return f"{name} crop", _variant(img, rng)


def _tiny(rng: np.random.Generator) -> tuple[str, np.ndarray]:
    shapes = [(1, 1), (2, 2), (3, 5), (8, 8), (16, 16), (12, 31), (31, 31), (20, 400)]
    h, w = shapes[int(rng.integers(0, len(shapes)))]
    return f"{w}x{h}", _u8(rng.uniform(0, 255, (h, w)))


def _corrupt(rng: np.random.Generator, film: np.ndarray) -> tuple[str, np.ndarray]:
    """A real film damaged past reading: drowned in noise, blurred flat, scrambled in tiles,
    mostly covered, or thresholded to two levels."""
    import cv2

    f = np.asarray(film, np.uint8)
    h, w = f.shape
    how = int(rng.integers(0, 5))
    if how == 0:
        sigma = rng.uniform(70, 120)
        return f"noise sigma {sigma:.0f}", _u8(f + sigma * rng.standard_normal(f.shape))
    if how == 1:
        sigma = rng.uniform(0.06, 0.12) * max(h, w)
        return f"blur sigma {sigma:.0f}px", np.asarray(cv2.GaussianBlur(f, (0, 0), sigma))
    if how == 2:
        t = max(4, min(h, w) // int(rng.integers(6, 16)))
        hh, ww = h // t * t, w // t * t
        tiles = f[:hh, :ww].reshape(hh // t, t, ww // t, t).swapaxes(1, 2).reshape(-1, t, t)
        tiles = tiles[rng.permutation(len(tiles))]
        out = tiles.reshape(hh // t, ww // t, t, t).swapaxes(1, 2).reshape(hh, ww)
        return f"tiles of {t}px shuffled", np.ascontiguousarray(out)
    if how == 3:
        out = f.copy()
        fill = int(rng.choice([0, 255]))
        cover = rng.uniform(0.75, 0.9)
        ch, cw = int(h * np.sqrt(cover)), int(w * np.sqrt(cover))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        out[y : y + ch, x : x + cw] = fill
        return f"{cover:.0%} covered with {fill}", out
    level = float(np.percentile(f, rng.uniform(30, 70)))
    return f"thresholded at {level:.0f}", np.where(f > level, 255, 0).astype(np.uint8)


# --- the set --------------------------------------------------------------------------------


def _split(
    sources: Sequence[tuple[str, Callable[[], np.ndarray]]], part: str
) -> list[tuple[str, np.ndarray]]:
    """Alternate sources go to each part (fit: 0, 2, ...; test: 1, 3, ...); a loader that
    fails (a pydicom without its decoders) is left out."""
    out = []
    for name, load in list(sources)[PARTS.index(part) :: 2]:
        try:
            out.append((name, load()))
        except Exception:  # a missing optional decoder only narrows the set
            continue
    return out


def generate(
    part: str = "fit", per_kind: int = 8, seed: int = 0, films: Sequence[np.ndarray] = ()
) -> list[NonHand]:
    """``per_kind`` images of each of :data:`KINDS` for ``part`` (``"fit"`` or ``"test"``).

    Deterministic for a given ``(part, per_kind, seed, films)``; the two parts use disjoint
    random streams and disjoint source files. ``films``: real grey radiographs to corrupt for
    the ``corrupted`` kind (none: the kind is left out); give the two parts different films.
    """
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    return list(_generate(part, per_kind, seed, films))


def _generate(
    part: str, per_kind: int, seed: int, films: Sequence[np.ndarray]
) -> Iterator[NonHand]:
    photos = _split(_photo_sources(), part)
    medical = _split(_medical_sources(), part)
    simple: dict[str, Callable[[np.random.Generator], tuple[str, np.ndarray]]] = {
        "uniform": _uniform,
        "black": _black,
        "white": _white,
        "gradient": _gradient,
        "gaussian_noise": _gaussian_noise,
        "salt_pepper": _salt_pepper,
        "text": _text,
        "shapes": _shapes,
        "photo": lambda rng: _photo(rng, photos),
        "medical": lambda rng: _medical(rng, medical),
        "tiny": _tiny,
    }
    for kind in KINDS:
        # One stream per (seed, part, kind): adding a kind never changes another's images.
        rng = np.random.default_rng([seed, PARTS.index(part), zlib.crc32(kind.encode())])
        for i in range(per_kind):
            if kind == "corrupted":
                if not films:
                    break
                name, img = _corrupt(rng, films[i % len(films)])
            else:
                name, img = simple[kind](rng)
            yield NonHand(kind, f"{kind} {i}: {name}", np.ascontiguousarray(img))
