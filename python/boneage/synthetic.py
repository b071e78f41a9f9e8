"""Synthetic hand radiographs whose skeletal maturity is a known function of age and sex.

The real RSNA images cannot be downloaded on these machines, so this module is the embedded
default dataset: fast tests, demos and smoke-training all run on it. Each phantom is a left
hand seen postero-anterior (thumb on the image's right, as in RSNA), drawn from analytic
"capsules" (a segment with a radius): soft tissue of palm, fingers and forearm, and bones whose
X-ray thickness ``sqrt(1 - (d/r)^2)`` gives a tube-like shading with a brighter cortex.

What carries the age, and why it survives downscaling to 64 px:

* a latent maturity ``u`` in [0, 1] (0 at birth, 1 at a closed skeleton) grows with age and
  is sex-specific: girls reach ``u = 1`` at 192 months, boys at 216 (girls are about 1.5 years
  ahead at 12 years), plus an individual offset (SD 7 months, like a reader's variability);
* the number of ossified carpal bones (0 at birth, 8 by about 9 to 11 years) and their size:
  the wrist goes from an empty soft-tissue gap to a block of bone, a large structure;
* bones are short, thin and separated by wide cartilage gaps in infants, long and touching
  in adolescents: the fingers change from "dashed" to solid rods;
* epiphyses appear as small discs, widen to cap their shaft, and the growth-plate gap
  narrows and closes (phalanges first, radius and ulna last);
* the whole hand grows in the frame and bones get denser.

Acquisition noise is drawn independently of age (exposure level and contrast, tone curve,
heel-effect gradient, blur, rotation of a few degrees, position jitter, film grain and a
burnt-in letter marker), so that the mean brightness is a poor age proxy and a model must
look at anatomy.

Determinism: a case's anatomy depends only on ``(case.id, case.age_months, case.male)``, and
its acquisition on ``seed`` too; :func:`render` and :func:`generate` return the same bytes
for the same arguments. The same case rendered ``framed=True`` at a large size shows the same
hand, which lets bulk preprocessing (crop, CLAHE, pad, resize) be checked against it.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

__all__ = [
    "AGE_MAX",
    "AGE_MIN",
    "Case",
    "generate",
    "generate_arrays",
    "maturity",
    "render",
    "sample_cases",
    "visible_carpals",
]

AGE_MIN = 1.0
"""Youngest age sampled, months (as in RSNA)."""
AGE_MAX = 228.0
"""Oldest age sampled, months (as in RSNA)."""

_MATURE_AT = {0: 216.0, 1: 192.0}
"""Age in months at which ``u`` reaches 1, by ``male`` (1 = boy, 0 = girl)."""
_MATURITY_SD_MONTHS = 7.0

Image = npt.NDArray[np.uint8]
_F = np.float32


@dataclass(frozen=True)
class Case:
    """One subject: an identifier, sex (``male`` is 1 for a boy, 0 for a girl) and age."""

    id: str
    male: int
    age_months: float


# --------------------------------------------------------------------------- cases


def sample_cases(n: int, seed: int = 0) -> list[Case]:
    """Draws ``n`` cases whose ages and sexes look like the RSNA training set.

    RSNA bone ages have mean about 127 months and SD about 41, with a thin tail of infants
    and integer months; 54 % of the subjects are boys. A truncated normal (kept inside
    [1, 228] by redrawing) plus 6 % spread uniformly over the first five years matches that.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = np.random.default_rng([int(seed), 0x5A17])
    ages = rng.normal(133.0, 36.0, size=n)
    bad = (ages < AGE_MIN) | (ages > AGE_MAX)
    while bad.any():
        ages[bad] = rng.normal(133.0, 36.0, size=int(bad.sum()))
        bad = (ages < AGE_MIN) | (ages > AGE_MAX)
    young = rng.random(n) < 0.06
    ages[young] = rng.uniform(AGE_MIN, 60.0, size=int(young.sum()))
    ages = np.clip(np.round(ages), AGE_MIN, AGE_MAX)
    male = (rng.random(n) < 0.54).astype(int)
    return [
        Case(id=f"syn{seed}-{i:06d}", male=int(m), age_months=float(a))
        for i, (m, a) in enumerate(zip(male, ages, strict=True))
    ]


def _case_key(case: Case) -> int:
    """A stable 32-bit key for a case (Python's ``hash`` of str is salted per process)."""
    text = f"{case.id}|{case.male}|{case.age_months!r}"
    return zlib.crc32(text.encode())


# --------------------------------------------------------------------------- anatomy

# Carpal bones, in canonical hand units (see _Anatomy): centre x, y, axis angle (deg from
# the +x axis), half segment, radius, and the maturity u at which the bone appears (boys'
# ages 3, 4, 28, 45, 62, 66, 68 and 108 months divided by 216).
_CARPALS = np.array(
    [
        # x       y      ang   half   r     u_app
        [0.016, -0.108, 90.0, 0.018, 0.037, 0.014],  # capitate
        [-0.052, -0.102, 70.0, 0.012, 0.034, 0.019],  # hamate
        [-0.066, -0.042, 30.0, 0.008, 0.029, 0.130],  # triquetrum
        [-0.003, -0.034, 0.0, 0.006, 0.031, 0.210],  # lunate
        [0.104, -0.068, 60.0, 0.010, 0.029, 0.287],  # trapezium
        [0.068, -0.118, 90.0, 0.006, 0.025, 0.306],  # trapezoid
        [0.060, -0.042, 50.0, 0.022, 0.027, 0.315],  # scaphoid
        [-0.086, -0.026, 0.0, 0.000, 0.020, 0.500],  # pisiform
    ],
    dtype=np.float64,
)

# Rays from the little finger (5) to the thumb (1): metacarpal base x, y, metacarpal angle
# (deg from "up", positive toward the thumb), metacarpal length, finger angle, phalanx
# lengths (proximal, middle, distal; the thumb has no middle), bone radius, soft radius.
_RAYS = (
    # base_x, base_y, mc_ang, mc_len, f_ang, phalanges, bone_r, soft_r
    (-0.090, -0.150, -17.0, 0.300, -26.0, (0.170, 0.100, 0.085), 0.021, 0.044),
    (-0.035, -0.168, -7.0, 0.320, -10.0, (0.220, 0.140, 0.095), 0.023, 0.049),
    (0.020, -0.172, 0.0, 0.340, 0.0, (0.235, 0.150, 0.100), 0.024, 0.051),
    (0.075, -0.165, 9.0, 0.350, 13.0, (0.210, 0.125, 0.090), 0.024, 0.049),
    (0.118, -0.090, 42.0, 0.200, 40.0, (0.150, 0.110), 0.025, 0.056),
)


@dataclass(frozen=True)
class _Anatomy:
    """Individual anatomy in canonical units: 1 unit is wrist-to-middle-fingertip length.

    The canonical frame has the wrist (radio-carpal joint) at the origin, +x toward the
    thumb and -y toward the fingertips (image axes: y grows downward).
    """

    u: float
    scale: float
    soft: npt.NDArray[np.float64]  # (k, 9) capsule rows, see _capsule
    bone: npt.NDArray[np.float64]
    n_carpals: int


def maturity(case: Case) -> float:
    """Latent skeletal maturity ``u`` of a case (0 at birth, 1 fully mature, can exceed 1).

    Includes the individual offset, so it is exactly what the rendered anatomy shows.
    """
    return _anatomy(case).u


def visible_carpals(case: Case) -> int:
    """How many of the 8 carpal bones are ossified (drawn) for this case."""
    return _anatomy(case).n_carpals


def _smoothstep(e0: float, e1: float, x: float) -> float:
    t = min(max((x - e0) / (e1 - e0), 0.0), 1.0)
    return t * t * (3.0 - 2.0 * t)


def _capsule(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    r: float,
    gain: float = 1.0,
    flare: float = 0.0,
    taper: float = 0.0,
    hollow: float = 0.0,
) -> list[float]:
    """One primitive row: segment a-b, radius ``r * (1 + flare*s^2 + taper*s)``, s in [-1, 1].

    ``hollow`` dims a medullary cavity of radius 0.6 r, which makes the cortex look bright.
    """
    return [float(a[0]), float(a[1]), float(b[0]), float(b[1]), r, gain, flare, taper, hollow]


def _unit(deg: float) -> npt.NDArray[np.float64]:
    """Unit vector at ``deg`` from "up" (-y), positive angles toward the thumb (+x)."""
    rad = math.radians(deg)
    return np.array([math.sin(rad), -math.cos(rad)])


def _long_bone(
    rows: list[list[float]],
    p0: npt.NDArray[np.float64],
    p1: npt.NDArray[np.float64],
    r: float,
    u: float,
    epi_at_start: bool | None,
    epi_appears: float,
    fuse: tuple[float, float],
    density: float,
    flare: float = 0.3,
    taper: float = 0.0,
    epi_thick: float = 0.16,
    free_margin: bool = True,
    ref_len: float | None = None,
) -> None:
    """Appends a tubular bone spanning the template element ``p0 -> p1`` (its full extent).

    The ossified shaft covers less of the element when young: a cartilage margin of
    ``(0.02 + 0.14 (1-u)) L`` at the free end, and at the epiphysis end a zone holding the
    epiphysis (``epi_thick * L`` thick when grown) and a growth-plate gap that narrows with
    ``u`` and closes between ``fuse[0]`` and ``fuse[1]``. The epiphysis is a flat capsule
    across the bone axis: a small disc when it appears, as wide as the shaft end when grown.
    Margins, gap and epiphysis scale with ``ref_len`` (default: the element's length), so a
    long bone running off the frame (radius, ulna) keeps a realistic growth zone.
    """
    vec = p1 - p0
    length = float(np.hypot(*vec))
    d = vec / length
    ref = length if ref_len is None else ref_len
    um = min(u, 1.0)
    fused = _smoothstep(fuse[0], fuse[1], u)
    margin = (0.01 + 0.15 * (1.0 - um)) * ref if free_margin else 0.0
    te = epi_thick * ref
    gap = (0.05 + 0.10 * (1.0 - um)) * ref * (1.0 - fused)
    inner = 0.01 * ref + te + gap  # from the epiphysis end to the shaft's visible end
    if epi_at_start is None:
        s0, s1 = margin, length - margin
    elif epi_at_start:
        s0, s1 = inner, length - margin
    else:
        s0, s1 = margin, length - inner
    r_end = r * (1.0 + abs(flare) + abs(taper))
    if s1 - s0 > 2 * r_end:
        a, b = p0 + d * (s0 + r_end), p0 + d * (s1 - r_end)
        rows.append(_capsule(a, b, r, density, flare, taper, hollow=0.45))
    else:  # a short nub: a round ossification centre
        mid = p0 + d * 0.5 * (s0 + s1)
        rows.append(_capsule(mid, mid, max(0.5 * (s1 - s0), 0.3 * r), density, hollow=0.2))
    if epi_at_start is None or u < epi_appears:
        return
    grown = min((u - epi_appears) / 0.35, 1.0)
    thick = te * (0.4 + 0.6 * grown)
    width = 2.0 * r * (1.0 + 0.8 * abs(flare) + abs(taper)) * (0.3 + 0.7 * grown)
    half = max(0.5 * (width - thick), 0.0)
    off = 0.01 * ref + te - 0.5 * thick  # keeps the epiphysis against the joint side
    centre = p0 + d * off if epi_at_start else p1 - d * off
    across = np.array([-d[1], d[0]]) * half
    rows.append(_capsule(centre - across, centre + across, 0.5 * thick, density, hollow=0.15))


@lru_cache(maxsize=4096)
def _anatomy_cached(case: Case) -> _Anatomy:
    return _build_anatomy(case)


def _anatomy(case: Case) -> _Anatomy:
    return _anatomy_cached(case)


def _build_anatomy(case: Case) -> _Anatomy:
    """Samples one individual's hand for a case (seeded by the case alone)."""
    rng = np.random.default_rng([_case_key(case), 0xA7A])
    male = 1 if case.male else 0
    age = float(case.age_months) + rng.normal(0.0, _MATURITY_SD_MONTHS)
    u = max(age, 0.0) / _MATURE_AT[male]
    um = min(u, 1.0)
    # Hand size in the frame and bone robustness grow with maturity.
    scale = (0.80 + 0.20 * um**0.7) * float(np.clip(rng.normal(1.0, 0.035), 0.9, 1.1))
    bone_w = (0.60 + 0.40 * um) * float(rng.normal(1.0, 0.05))
    density = 0.80 + 0.20 * um
    soft_w = (1.12 - 0.12 * um) * float(rng.normal(1.0, 0.04))
    finger_len = float(rng.normal(1.0, 0.03))
    spread = float(rng.normal(1.0, 0.15))

    soft: list[list[float]] = []
    bone: list[list[float]] = []
    # Forearm and palm soft tissue.
    soft.append(_capsule((0.0, -0.02), (0.02, 1.6), 0.155 * soft_w, 1.15, taper=0.05))
    soft.append(_capsule((-0.015, -0.12), (-0.03, -0.33), 0.20 * soft_w, 1.0))
    soft.append(_capsule((0.07, -0.06), (0.18, -0.20), 0.085 * soft_w, 0.95))  # thenar
    # Radius (thumb side) and ulna: long shafts running off the bottom of the frame.
    _long_bone(bone, np.array([0.050, 0.0]), np.array([0.075, 1.5]), 0.036 * bone_w, u,
               True, 0.05, (0.88, 0.99), density, flare=0.0, taper=-0.5, epi_thick=0.16,
               free_margin=False, ref_len=0.22)
    _long_bone(bone, np.array([-0.068, 0.010]), np.array([-0.075, 1.5]), 0.024 * bone_w, u,
               True, 0.32, (0.86, 0.97), density, flare=0.0, taper=-0.3, epi_thick=0.14,
               free_margin=False, ref_len=0.18)
    # Carpals: appear in order, grow from a small round centre to full size.
    n_carpals = 0
    for x, y, ang, half, r, u_app in _CARPALS:
        u_app_i = u_app + rng.normal(0.0, 0.02)
        if u < u_app_i:
            continue
        n_carpals += 1
        grown = min((u - u_app_i) / 0.35, 1.0) ** 0.8
        size = (0.3 + 0.7 * grown) * float(rng.normal(1.0, 0.05))
        c = np.array([x, y]) + rng.normal(0.0, 0.004, size=2)
        rad = math.radians(ang)
        ax = np.array([math.cos(rad), math.sin(rad)]) * half * grown
        bone.append(_capsule(c - ax, c + ax, r * size, density, hollow=0.15))
    # Rays: metacarpal, then the phalanges, with finger soft tissue around them.
    for i, (bx, by, mc_ang, mc_len, f_ang, phal, br, sr) in enumerate(_RAYS):
        thumb = i == len(_RAYS) - 1
        jitter = rng.normal(0.0, 2.0)
        base = np.array([bx, by]) + rng.normal(0.0, 0.004, size=2)
        mc_dir = _unit(mc_ang * spread + jitter)
        head = base + mc_dir * mc_len * finger_len
        mc_epi_start = thumb  # MC1 grows at its base, MC2-5 at their heads
        _long_bone(bone, base, head, br * bone_w * 1.05, u, mc_epi_start, 0.10,
                   (0.80, 0.92), density, flare=0.25)
        f_dir = _unit(f_ang * spread + jitter + rng.normal(0.0, 2.0))
        joint = 0.008
        pos = head + f_dir * joint
        for k, plen in enumerate(phal):
            plen *= finger_len * float(rng.normal(1.0, 0.02))
            end = pos + f_dir * plen
            distal = k == len(phal) - 1
            r_k = br * bone_w * (0.85 if distal else 1.0 - 0.08 * k)
            taper = 0.35 if distal else 0.0  # distal phalanx: wide base, narrow tuft
            _long_bone(bone, pos, end, r_k * (0.8 if distal else 1.0), u, True,
                       0.06 + 0.03 * k, (0.78, 0.90), density, flare=0.3, taper=-taper)
            pos = end + f_dir * joint
        tip = pos + f_dir * 0.012
        root = head - mc_dir * (0.06 if thumb else 0.10)
        soft.append(_capsule(root, tip, sr * soft_w, 0.85, taper=-0.15))
    return _Anatomy(
        u=u,
        scale=scale,
        soft=np.asarray(soft, dtype=np.float64),
        bone=np.asarray(bone, dtype=np.float64),
        n_carpals=n_carpals,
    )


# --------------------------------------------------------------------------- rendering

# 5x7 bitmaps of the letters seen on RSNA side markers.
_GLYPHS = {
    "L": ("10000", "10000", "10000", "10000", "10000", "10000", "11111"),
    "R": ("11110", "10001", "10001", "11110", "10100", "10010", "10001"),
    "A": ("01110", "10001", "10001", "11111", "10001", "10001", "10001"),
    "S": ("01111", "10000", "10000", "01110", "00001", "00001", "11110"),
    "E": ("11111", "10000", "10000", "11110", "10000", "10000", "11111"),
    "K": ("10001", "10010", "10100", "11000", "10100", "10010", "10001"),
    "H": ("10001", "10001", "10001", "11111", "10001", "10001", "10001"),
    "P": ("11110", "10001", "10001", "11110", "10000", "10000", "10000"),
}
_GLYPH_BITS = {k: np.array([[c == "1" for c in row] for row in v]) for k, v in _GLYPHS.items()}
_LETTERS = tuple(_GLYPHS)


def _rasterise(canvas: npt.NDArray[np.float32], rows: npt.NDArray[np.float64], add: bool) -> None:
    """Draws capsules (pixel units) into ``canvas``: summed (bone) or max-combined (tissue).

    Each capsule is evaluated only inside its bounding box, which keeps a 256 px phantom at
    a few thousand pixels per bone instead of the whole frame.
    """
    h, w = canvas.shape
    xs_all = np.arange(w, dtype=_F)
    ys_all = np.arange(h, dtype=_F)
    for ax, ay, bx, by, r, gain, flare, taper, hollow in rows:
        reach = r * (1.0 + abs(flare) + abs(taper)) + 1.0
        x0, x1 = max(int(min(ax, bx) - reach), 0), min(int(max(ax, bx) + reach) + 2, w)
        y0, y1 = max(int(min(ay, by) - reach), 0), min(int(max(ay, by) + reach) + 2, h)
        if x0 >= x1 or y0 >= y1 or r <= 0.0:
            continue
        px = xs_all[x0:x1] - _F(ax)
        py = (ys_all[y0:y1] - _F(ay))[:, None]
        dx, dy = _F(bx - ax), _F(by - ay)
        len2 = float(dx * dx + dy * dy)
        if len2 > 1e-9:
            t = (px * (dx / len2) + py * (dy / len2)).clip(0.0, 1.0)
            ex, ey = px - t * dx, py - t * dy
            d2 = ex * ex + ey * ey
            if flare or taper:
                s = 2.0 * t - 1.0
                rr = _F(r) * (1.0 + _F(flare) * s * s + _F(taper) * s)
                q = d2 / (rr * rr)
            else:
                q = d2 * _F(1.0 / (r * r))
        else:
            q = (px * px + py * py) * _F(1.0 / (r * r))
        prof = np.sqrt(np.maximum(1.0 - q, 0.0))
        if hollow:
            prof -= _F(hollow) * np.sqrt(np.maximum(1.0 - q * _F(1.0 / 0.36), 0.0))
        prof *= _F(gain)
        view = canvas[y0:y1, x0:x1]
        if add:
            view += prof
        else:
            np.maximum(view, prof, out=view)


def _place(rows: npt.NDArray[np.float64], rot: float, px_per_unit: float,
           cx: float, cy: float) -> npt.NDArray[np.float64]:
    """Maps capsule rows from canonical units to pixels: rotate, scale, translate."""
    out = rows.copy()
    c, s = math.cos(rot), math.sin(rot)
    for i in (0, 2):
        x, y = rows[:, i], rows[:, i + 1]
        out[:, i] = cx + px_per_unit * (c * x - s * y)
        out[:, i + 1] = cy + px_per_unit * (s * x + c * y)
    out[:, 4] *= px_per_unit
    return out


@lru_cache(maxsize=8)
def _grain_bank(h: int, w: int) -> npt.NDArray[np.float32]:
    """A fixed field of unit Gaussian noise, twice the frame, to crop grain from.

    Drawing 65k normals per image would cost as much as the whole phantom; a random window
    of a cached field (with random flips) is as good as fresh noise for a model.
    """
    rng = np.random.default_rng(0x6A41)
    return rng.standard_normal((2 * h, 2 * w), dtype=np.float32)


def _blur(img: npt.NDArray[np.float32], passes: int, weight: float) -> npt.NDArray[np.float32]:
    """Separable [w, 1-2w, w] smoothing, ``passes`` times (edges replicate)."""
    for _ in range(passes):
        for axis in (0, 1):
            p = np.pad(img, [(1, 1) if a == axis else (0, 0) for a in (0, 1)], mode="edge")
            lo = p[:-2] if axis == 0 else p[:, :-2]
            mid = p[1:-1] if axis == 0 else p[:, 1:-1]
            hi = p[2:] if axis == 0 else p[:, 2:]
            img = mid * _F(1.0 - 2.0 * weight) + (lo + hi) * _F(weight)
    return img


def _draw_marker(lin: npt.NDArray[np.float32], rng: np.random.Generator,
                 hand_box: tuple[float, float, float, float]) -> None:
    """Burns a side marker (an "L" plus initials on a plate) into a corner beside the hand."""
    h, w = lin.shape
    n_letters = int(rng.integers(1, 4))
    k = max(1, round(min(h, w) * rng.uniform(0.006, 0.010)))  # glyph pixel size
    gh, gw = 7 * k, 5 * k
    pad = 2 * k
    pw, ph = n_letters * (gw + k) - k + 2 * pad, gh + 2 * pad
    if pw >= w // 2 or ph >= h // 2:
        return
    hx0, hy0, hx1, hy1 = hand_box
    corners = [(0, h - ph), (0, 0), (w - pw, 0), (w - pw, h - ph)]
    rng.shuffle(corners)
    margin = int(min(h, w) * 0.03)
    for cx, cy in corners:
        x0 = int(np.clip(cx + (margin if cx == 0 else -margin), 0, w - pw))
        y0 = int(np.clip(cy + (margin if cy == 0 else -margin), 0, h - ph))
        if x0 + pw < hx0 or x0 > hx1 or y0 + ph < hy0 or y0 > hy1:
            break
    plate = _F(rng.uniform(0.1, 0.35))
    lin[y0 : y0 + ph, x0 : x0 + pw] = plate
    ink = _F(rng.uniform(1.1, 1.5))
    letters = ["L", *rng.choice(_LETTERS, size=n_letters - 1)]
    for j, ch in enumerate(letters):
        glyph = np.kron(_GLYPH_BITS[str(ch)], np.ones((k, k), dtype=bool))
        gx, gy = x0 + pad + j * (gw + k), y0 + pad
        region = lin[gy : gy + gh, gx : gx + gw]
        region[glyph] = ink


def render(
    case: Case,
    size: int | tuple[int, int] = 256,
    *,
    seed: int = 0,
    framed: bool = False,
) -> Image:
    """Renders one phantom as a 2-D ``uint8`` image.

    Args:
        case: the subject; its anatomy depends on the case only.
        size: output side in pixels, or ``(height, width)``.
        seed: selects the acquisition (exposure, pose, noise, marker); anatomy is unchanged.
        framed: ``False`` gives a hand filling the frame, like a preprocessed RSNA image
            (MediaPipe crop, pad, resize). ``True`` gives a raw "radiograph": the hand
            smaller and off-centre on a larger background, with collimator borders and a
            marker more often, for testing the bulk preprocessing.
    """
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if h < 16 or w < 16:
        raise ValueError(f"size must be at least 16 px, got {size!r}")
    anat = _anatomy(case)
    rng = np.random.default_rng([int(seed), _case_key(case), 0x3C4])
    side = float(min(h, w))
    rot = math.radians(float(np.clip(rng.normal(0.0, 4.0), -10.0, 10.0)))
    if framed:
        unit = side * 0.50 * anat.scale * rng.uniform(0.85, 1.05)
        cx = w * 0.5 + rng.uniform(-0.12, 0.12) * w
        cy = h * 0.42 + rng.uniform(-0.08, 0.08) * h
    else:
        unit = side * 0.72 * anat.scale
        cx = w * 0.5 + rng.normal(0.0, 0.025) * side
        cy = h * 0.44 + rng.normal(0.0, 0.025) * side
    # (cx, cy) is where the middle of the hand, canonical (0, -0.5), lands.
    cx -= unit * (math.sin(rot) * 0.5)
    cy += unit * (math.cos(rot) * 0.5)

    soft = np.zeros((h, w), dtype=_F)
    bone = np.zeros((h, w), dtype=_F)
    _rasterise(soft, _place(anat.soft, rot, unit, cx, cy), add=False)
    _rasterise(bone, _place(anat.bone, rot, unit, cx, cy), add=True)

    # Linear "attenuation": tissue and bone, then exposure through a tone-curve table.
    tissue = rng.uniform(0.26, 0.36)
    lin = soft * _F(tissue) + bone * _F(rng.uniform(0.85, 1.05))
    if framed and rng.random() < 0.6:  # collimator: unexposed (bright) border bands
        level = _F(rng.uniform(0.9, 1.4))
        t0, l0 = (rng.uniform(0.0, 0.06, size=2) * (h, w)).astype(int)
        b0, r0 = (rng.uniform(0.0, 0.06, size=2) * (h, w)).astype(int)
        lin[:t0] = level
        lin[h - b0 :] = level
        lin[:, :l0] = level
        lin[:, w - r0 :] = level
    if rng.random() < (0.8 if framed else 0.35):
        half = 0.5 * unit
        box = (cx - 0.65 * half * 2, cy - 1.25 * half * 2, cx + 0.65 * half * 2, h)
        _draw_marker(lin, rng, box)

    levels = 1024
    top = 1.35
    black = rng.uniform(3.0, 45.0)
    white = rng.uniform(190.0, 255.0)
    gamma = rng.uniform(0.75, 1.25)
    curve = np.linspace(0.0, 1.0, levels, dtype=np.float64) ** gamma
    lut = (black + (white - black) * curve).astype(_F)
    idx = (np.minimum(lin, _F(top)) * _F((levels - 1) / top)).astype(np.int32)
    img = lut[idx]

    # Heel effect: a gentle linear exposure gradient in a random direction.
    heel = rng.uniform(-0.12, 0.12)
    phi = rng.uniform(0.0, 2.0 * math.pi)
    gx = np.linspace(-0.5, 0.5, w, dtype=_F) * _F(heel * math.cos(phi))
    gy = np.linspace(-0.5, 0.5, h, dtype=_F) * _F(heel * math.sin(phi))
    img *= 1.0 + gy[:, None] + gx[None, :]

    passes = max(1, round(side / 256.0))
    img = _blur(img, passes, rng.uniform(0.05, 0.2))

    bank = _grain_bank(h, w)
    oy, ox = int(rng.integers(0, h)), int(rng.integers(0, w))
    grain = bank[oy : oy + h, ox : ox + w]
    if rng.random() < 0.5:
        grain = grain[::-1]
    img += grain * _F(rng.uniform(1.5, 6.0))
    return np.clip(img, 0.0, 255.0).astype(np.uint8)


# --------------------------------------------------------------------------- datasets


def generate(n: int, seed: int = 0, size: int = 256) -> Iterator[tuple[Case, Image]]:
    """Yields ``n`` ``(case, image)`` pairs; the same ``seed`` gives the same bytes."""
    for case in sample_cases(n, seed):
        yield case, render(case, size, seed=seed)


def generate_arrays(
    n: int, seed: int = 0, size: int = 256
) -> tuple[Image, npt.NDArray[np.float32], npt.NDArray[np.int32]]:
    """``n`` phantoms as arrays: images ``(n, size, size) uint8``, ages (months), male (0/1)."""
    images = np.empty((n, size, size), dtype=np.uint8)
    ages = np.empty(n, dtype=np.float32)
    male = np.empty(n, dtype=np.int32)
    for i, (case, img) in enumerate(generate(n, seed, size)):
        images[i], ages[i], male[i] = img, case.age_months, case.male
    return images, ages, male
