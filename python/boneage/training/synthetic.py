"""Synthetic hand radiographs whose skeletal maturity is a known function of age and sex.

The real RSNA images cannot be downloaded on these machines, so this module is the embedded
default dataset: fast tests, demos and smoke-training all run on it. Each phantom is a left
hand seen postero-anterior (thumb on the image's right, as in RSNA): soft tissue of forearm,
palm and fingers, and the radius, ulna, carpals, metacarpals and phalanges with their
epiphyses. A bone's X-ray thickness ``sqrt(1 - (d/R)^2)`` at distance ``d`` from its axis
gives a tube-like shading, minus a medullary cavity, which makes the cortex look bright.

What carries the age, and why it survives downscaling to 64 px:

* a latent maturity ``u`` (0 at birth, 1 at a closed skeleton) grows with age and is
  sex-specific: girls reach ``u = 1`` at 192 months, boys at 216, so girls are about 1.5
  years ahead at 12 years; an individual offset (SD 7 months) plays the reader's variability;
* the number of ossified carpal bones (0 at birth, 8 by about 9 to 11 years) and their size:
  the wrist turns from an empty soft-tissue gap into a block of bone, a large structure;
* bones are short, thin and separated by wide cartilage gaps in infants, long and touching
  in adolescents: the fingers turn from dashed lines into solid rods;
* epiphyses appear as small discs, widen to cap their shaft, and the growth-plate gap
  narrows and closes (phalanges first, radius and ulna last);
* the hand grows in the frame and its bones get denser.

Acquisition is drawn independently of age (exposure level, contrast and tone curve,
heel-effect gradient, blur, rotation of a few degrees, position jitter, film grain, a burnt-in
letter marker), so mean brightness is a poor age proxy and a model has to read anatomy.

Determinism: a case's anatomy depends only on the case (its id, sex and age) and its
acquisition also on ``seed``; :func:`render` and :func:`generate` return the same bytes for
the same arguments. The same case rendered ``framed=True`` at a larger size shows the same
hand, which lets the bulk preprocessing (crop, CLAHE, pad, resize) be checked on it.

How it is drawn fast (about 3 ms per 256 px image on one core, so 300+ images/s): every
structure is a "stroke", a straight axis with a tabulated radius ``R(a)`` along it (a
generalised cylinder); a finger's phalanges and epiphyses lie on one axis and form one
stroke. The tables are built once per case in canonical units, vectorised over all strokes.
Rendering evaluates each stroke only inside its bounding box with eight array operations
(position along the axis looks up ``1/R^2``; ``(d/R)^2`` looks up the thickness profile),
draws the smooth soft tissue at half resolution, and reuses per-thread frames, because a
fresh 256 x 256 float temporary costs more than the arithmetic done on it.
"""

from __future__ import annotations

import math
import threading
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

_MATURE_AT = {0: 192.0, 1: 216.0}
"""Age in months at which ``u`` reaches 1, by ``male`` (0 = girl, 1 = boy)."""
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

    RSNA bone ages have mean about 127 months and SD about 41 with a thin tail of infants,
    in whole months; 54 % of the subjects are boys. A normal truncated to [1, 228] (by
    redrawing) plus 6 % spread uniformly over the first five years matches that.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x5A17])
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
    """A stable 32-bit key for a case (Python's ``hash`` of a str is salted per process)."""
    return zlib.crc32(f"{case.id}|{int(case.male)}|{float(case.age_months)!r}".encode())


# --------------------------------------------------------------------------- anatomy

# Carpal bones in canonical units (see _Anatomy): centre x, y, long-axis angle (degrees from
# +x), half segment, radius, and the maturity at which the bone appears (boys' ages of about
# 3, 4, 28, 45, 62, 66, 68 and 108 months, divided by 216).
_CARPALS = (
    (0.016, -0.108, 90.0, 0.018, 0.037, 0.014),  # capitate
    (-0.052, -0.102, 70.0, 0.012, 0.034, 0.019),  # hamate
    (-0.066, -0.042, 30.0, 0.008, 0.029, 0.130),  # triquetrum
    (-0.003, -0.034, 0.0, 0.006, 0.031, 0.210),  # lunate
    (0.104, -0.068, 60.0, 0.010, 0.029, 0.287),  # trapezium
    (0.068, -0.118, 90.0, 0.006, 0.025, 0.306),  # trapezoid
    (0.060, -0.042, 50.0, 0.022, 0.027, 0.315),  # scaphoid
    (-0.086, -0.026, 0.0, 0.000, 0.020, 0.500),  # pisiform
)

# Rays from the little finger to the thumb: metacarpal base x, y, metacarpal angle (degrees
# from "up", positive toward the thumb), metacarpal length, finger angle, phalanx lengths
# (proximal, middle, distal; the thumb has no middle one), bone radius, soft-tissue radius.
_RAYS = (
    (-0.090, -0.150, -17.0, 0.300, -26.0, (0.170, 0.100, 0.085), 0.021, 0.044),
    (-0.035, -0.168, -7.0, 0.320, -10.0, (0.220, 0.140, 0.095), 0.023, 0.049),
    (0.020, -0.172, 0.0, 0.340, 0.0, (0.235, 0.150, 0.100), 0.024, 0.051),
    (0.075, -0.165, 9.0, 0.350, 13.0, (0.210, 0.125, 0.090), 0.024, 0.049),
    (0.118, -0.090, 42.0, 0.200, 40.0, (0.150, 0.110), 0.025, 0.056),
)

_NB = 256
"""Samples of ``R(a)`` along a stroke."""
_MARGIN = 128
"""Empty samples either side of a stroke's table (see :meth:`_Builder.build`)."""
_NT = _NB + 2 * _MARGIN
_NQ = 255
"""Steps of the thickness profile over ``(d/R)^2`` in [0, 1]."""


def _profile(cavity: float) -> npt.NDArray[np.float32]:
    """X-ray thickness across a tube over ``q = (d/R)^2`` (``_NQ + 1`` steps, 0 at q >= 1).

    ``sqrt(1 - q)`` is the chord through a cylinder; subtracting ``cavity`` times the chord
    through a medullary cavity of radius 0.6 R makes the cortex look bright, as in a
    radiograph (short bones and epiphyses show a rim too).
    """
    q = np.arange(_NQ + 1, dtype=np.float64) / _NQ
    chord = np.sqrt(np.maximum(1.0 - q, 0.0))
    return (chord - cavity * np.sqrt(np.maximum(1.0 - q / 0.36, 0.0))).astype(_F)


_SOFT_PROFILE = _profile(0.0)
_BONE_PROFILE = _profile(0.3)


@dataclass(frozen=True)
class _Strokes:
    """A set of strokes in canonical units (see :class:`_Anatomy`).

    Stroke ``i`` runs from ``start[i]`` along the unit vector ``axis[i]`` over ``span[i]``;
    ``inv_r2[i, j]`` is ``_NQ / R^2`` at table sample ``j`` (``inf`` where ``R = 0``) and
    ``reach[i]`` the largest ``R``.
    """

    start: npt.NDArray[np.float64]  # (S, 2)
    axis: npt.NDArray[np.float64]  # (S, 2)
    span: npt.NDArray[np.float64]  # (S,)
    reach: npt.NDArray[np.float64]  # (S,)
    gain: npt.NDArray[np.float64]  # (S,)
    inv_r2: npt.NDArray[np.float32]  # (S, _NT)


@dataclass(frozen=True)
class _Anatomy:
    """One individual's hand: soft-tissue strokes (max-combined) and bone strokes (summed).

    Canonical units: 1 is the length from the wrist (radio-carpal joint, at the origin) to
    the tip of the middle finger; +x points to the thumb and -y to the fingertips.
    """

    u: float
    scale: float
    n_carpals: int
    soft: _Strokes
    bone: _Strokes


class _Builder:
    """Collects strokes and the pieces along them, stroke by stroke.

    A piece occupies ``[v0, v1]`` along its stroke with radius
    ``r * (1 + flare*s^2 + taper*s)`` (``s`` from -1 to 1 over the piece) and ends rounded
    with radius ``rc``: ``rc = (v1 - v0) / 2`` makes an ellipse, a small ``rc`` a flat end.
    """

    def __init__(self) -> None:
        self.strokes: list[tuple[float, float, float, float, float, float]] = []
        self.pieces: list[tuple[int, float, float, float, float, float, float]] = []

    def stroke(self, p0: tuple[float, float], p1: tuple[float, float], gain: float = 1.0) -> float:
        """Opens a stroke from ``p0`` to ``p1``; returns its length."""
        dx, dy = p1[0] - p0[0], p1[1] - p0[1]
        length = math.hypot(dx, dy)
        self.strokes.append((p0[0], p0[1], dx / length, dy / length, length, gain))
        return length

    def piece(
        self,
        v0: float,
        v1: float,
        r: float,
        flare: float = 0.0,
        taper: float = 0.0,
        rc: float | None = None,
    ) -> None:
        """Adds a piece to the last stroke."""
        half = 0.5 * (v1 - v0)
        rc = min(r * (1.0 + flare + abs(taper)) if rc is None else rc, half)
        self.pieces.append((len(self.strokes) - 1, v0, v1, r, flare, taper, max(rc, 1e-6)))

    def ellipse(self, centre: float, half_len: float, half_width: float) -> None:
        self.piece(centre - half_len, centre + half_len, half_width, rc=half_len)

    def capsule(
        self,
        a: tuple[float, float],
        b: tuple[float, float],
        r: float,
        gain: float = 1.0,
        taper: float = 0.0,
    ) -> None:
        """A stroke holding one capsule whose segment (without its caps) is ``a``-``b``."""
        dx, dy = b[0] - a[0], b[1] - a[1]
        n = math.hypot(dx, dy)
        ex, ey = (dx / n * r, dy / n * r) if n > 0.0 else (r, 0.0)  # a disc: any axis
        length = self.stroke((a[0] - ex, a[1] - ey), (b[0] + ex, b[1] + ey), gain)
        self.piece(0.0, length, r, taper=taper, rc=r)

    def build(self) -> _Strokes:
        """Tabulates ``_NQ / R^2`` for all strokes, vectorised over all pieces.

        Sample ``j`` of a stroke's table sits at ``(j - _MARGIN + 0.5) * span / _NB`` along
        it; the ``_MARGIN`` samples either side are empty, so that the pixels of a stroke's
        bounding box index inside its table and draw nothing off the stroke.
        """
        p = np.array(self.pieces, dtype=_F)
        st = np.array(self.strokes, dtype=np.float64)
        sid = p[:, 0].astype(np.intp)
        span = st[:, 4].astype(_F)
        grid = (np.arange(_NB, dtype=_F) + _F(0.5))[None, :] * (span[sid] / _NB)[:, None]
        v0, v1, r, flare, taper, rc = (p[:, k : k + 1] for k in range(1, 7))
        t = np.clip((grid - v0) / (v1 - v0), 0.0, 1.0)
        t *= 2.0
        t -= 1.0
        radius = r * (1.0 + flare * t * t + taper * t)
        grid -= 0.5 * (v0 + v1)
        e = np.maximum(np.abs(grid) - (0.5 * (v1 - v0) - rc), 0.0) / rc
        radius *= np.sqrt(np.maximum(1.0 - e * e, 0.0))
        # Per-stroke maximum over its pieces (a few at most: loop over the piece's rank).
        firsts = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]])
        rank = np.arange(len(sid)) - firsts[sid]
        big = np.zeros((len(st), _NB), dtype=_F)
        for j in range(int(rank.max()) + 1):
            sel = rank == j
            big[sid[sel]] = np.maximum(big[sid[sel]], radius[sel])
        inv = np.full((len(st), _NT), np.inf, dtype=_F)
        with np.errstate(divide="ignore"):
            inv[:, _MARGIN : _MARGIN + _NB] = _NQ / (big * big)
        return _Strokes(
            start=st[:, 0:2],
            axis=st[:, 2:4],
            span=st[:, 4],
            reach=big.max(axis=1).astype(np.float64),
            gain=st[:, 5],
            inv_r2=inv,
        )


def maturity(case: Case) -> float:
    """Latent skeletal maturity ``u`` of a case (0 at birth, 1 fully mature, may exceed 1).

    Includes the individual offset, so it is exactly what the rendered anatomy shows.
    """
    return _anatomy(case).u


def visible_carpals(case: Case) -> int:
    """How many of the 8 carpal bones are ossified (drawn) for this case."""
    return _anatomy(case).n_carpals


def _smoothstep(e0: float, e1: float, x: float) -> float:
    t = min(max((x - e0) / (e1 - e0), 0.0), 1.0)
    return t * t * (3.0 - 2.0 * t)


def _unit(deg: float) -> tuple[float, float]:
    """Unit vector at ``deg`` from "up" (-y), positive angles toward the thumb (+x)."""
    rad = math.radians(deg)
    return math.sin(rad), -math.cos(rad)


def _long_bone(
    b: _Builder,
    e0: float,
    e1: float,
    r: float,
    u: float,
    epi_at_start: bool,
    epi_appears: float,
    fuse: tuple[float, float],
    flare: float = 0.3,
    taper: float = 0.0,
    epi_thick: float = 0.16,
    free_margin: bool = True,
    ref_len: float | None = None,
) -> None:
    """Adds a tubular bone on the current stroke; its template element spans ``[e0, e1]``.

    The ossified shaft covers less of the element when young: cartilage takes
    ``(0.01 + 0.15 (1-u)) L`` at the free end, and at the growth end a zone holds the
    epiphysis (``epi_thick * L`` thick when grown) and a growth-plate gap that narrows with
    ``u`` and closes between ``fuse[0]`` and ``fuse[1]``. The epiphysis is a flat ellipse
    across the axis: a small disc when it appears, as wide as the shaft's end when grown.
    ``L`` is ``ref_len`` if given (bones running off the frame), else the element length.
    """
    ref = (e1 - e0) if ref_len is None else ref_len
    um = min(u, 1.0)
    fused = _smoothstep(fuse[0], fuse[1], u)
    margin = (0.01 + 0.15 * (1.0 - um)) * ref if free_margin else 0.0
    te = epi_thick * ref
    gap = (0.05 + 0.10 * (1.0 - um)) * ref * (1.0 - fused)
    inner = 0.01 * ref + te + gap  # growth end to the visible end of the shaft
    s0, s1 = (e0 + inner, e1 - margin) if epi_at_start else (e0 + margin, e1 - inner)
    end_r = r * (1.0 + flare + abs(taper))
    if s1 - s0 > 1.5 * end_r:
        b.piece(s0, s1, r, flare, taper)
    else:  # a short nub: a round ossification centre
        b.ellipse(0.5 * (s0 + s1), max(0.5 * (s1 - s0), 0.3 * r), max(0.5 * (s1 - s0), 0.3 * r))
    if u < epi_appears:
        return
    grown = min((u - epi_appears) / 0.35, 1.0)
    thick = te * (0.4 + 0.6 * grown)
    width = r * (1.0 + 0.8 * flare + abs(taper)) * (0.3 + 0.7 * grown)
    off = 0.01 * ref + te - 0.5 * thick  # keeps the epiphysis against the joint
    b.ellipse(e0 + off if epi_at_start else e1 - off, 0.5 * thick, width)


@lru_cache(maxsize=256)
def _anatomy(case: Case) -> _Anatomy:
    """Samples one individual's hand for a case (seeded by the case alone), cached.

    About 60 kB each; the cache serves :func:`maturity` and :func:`visible_carpals` next to
    :func:`render` and repeated renders of one case (several seeds, sizes, framings).
    """
    rng = np.random.default_rng([_case_key(case), 0xA7A])
    z = iter(rng.standard_normal(96).tolist())
    male = 1 if case.male else 0
    u = max(float(case.age_months) + _MATURITY_SD_MONTHS * next(z), 0.0) / _MATURE_AT[male]
    um = min(u, 1.0)
    # Hand size in the frame, bone robustness and soft-tissue bulk change with maturity.
    scale = (0.80 + 0.20 * um**0.7) * min(max(1.0 + 0.035 * next(z), 0.9), 1.1)
    bone_w = (0.60 + 0.40 * um) * (1.0 + 0.05 * next(z))
    soft_w = (1.12 - 0.12 * um) * (1.0 + 0.04 * next(z))
    finger_len = 1.0 + 0.03 * next(z)
    spread = 1.0 + 0.15 * next(z)

    soft, b = _Builder(), _Builder()
    soft.capsule((0.0, -0.02), (0.02, 1.6), 0.155 * soft_w, gain=1.15, taper=0.05)  # forearm
    soft.capsule((-0.02, -0.12), (-0.035, -0.33), 0.21 * soft_w)  # palm
    soft.capsule((0.07, -0.06), (0.18, -0.20), 0.085 * soft_w, gain=0.95)  # thenar
    # Radius (thumb side, wide distal end) and ulna, running off the bottom of the frame.
    b.stroke((0.050, 0.0), (0.075, 1.2))
    _long_bone(
        b,
        0.0,
        1.2,
        0.040 * bone_w,
        u,
        True,
        0.05,
        (0.88, 0.99),
        flare=0.35,
        taper=-0.35,
        free_margin=False,
        ref_len=0.22,
    )
    b.stroke((-0.068, 0.010), (-0.075, 1.2))
    _long_bone(
        b,
        0.0,
        1.2,
        0.022 * bone_w,
        u,
        True,
        0.32,
        (0.86, 0.97),
        flare=0.2,
        taper=-0.2,
        epi_thick=0.14,
        free_margin=False,
        ref_len=0.18,
    )
    # Carpals appear in order and grow from a small round centre to full size.
    n_carpals = 0
    for x, y, ang, half, r, u_app in _CARPALS:
        jit_app, jit_size, jx, jy = next(z), next(z), next(z), next(z)
        if u < u_app + 0.02 * jit_app:
            continue
        n_carpals += 1
        grown = min((u - u_app - 0.02 * jit_app) / 0.35, 1.0) ** 0.8
        size = (0.3 + 0.7 * grown) * (1.0 + 0.05 * jit_size)
        cx, cy = x + 0.004 * jx, y + 0.004 * jy
        hx = math.cos(math.radians(ang)) * half * grown
        hy = math.sin(math.radians(ang)) * half * grown
        b.capsule((cx - hx, cy - hy), (cx + hx, cy + hy), 0.92 * r * size)
    # Rays: a metacarpal stroke, then one stroke for the phalanges, in finger soft tissue.
    for i, (bx, by, mc_ang, mc_len, f_ang, phal, br, sr) in enumerate(_RAYS):
        thumb = i == len(_RAYS) - 1
        jitter = 2.0 * next(z)
        base = (bx + 0.004 * next(z), by + 0.004 * next(z))
        mdx, mdy = _unit(mc_ang * spread + jitter)
        length = mc_len * finger_len
        head = (base[0] + mdx * length, base[1] + mdy * length)
        b.stroke(base, head)
        # MC1 grows at its base, MC2-5 at their heads.
        _long_bone(b, 0.0, length, br * bone_w * 1.05, u, thumb, 0.10, (0.80, 0.92), flare=0.25)
        fdx, fdy = _unit(f_ang * spread + jitter + 2.0 * next(z))
        joint = 0.008
        lengths = [p * finger_len * (1.0 + 0.02 * next(z)) for p in phal]
        total = sum(lengths) + joint * (len(lengths) - 1)
        first = (head[0] + fdx * joint, head[1] + fdy * joint)
        b.stroke(first, (first[0] + fdx * total, first[1] + fdy * total))
        pos = 0.0
        for k, plen in enumerate(lengths):
            distal = k == len(lengths) - 1
            r_k = br * bone_w * (0.68 if distal else 1.0 - 0.08 * k)
            _long_bone(
                b,
                pos,
                pos + plen,
                r_k,
                u,
                True,
                0.06 + 0.03 * k,
                (0.78, 0.90),
                flare=0.3,
                taper=-0.35 if distal else 0.0,
            )
            pos += plen + joint
        back = 0.06 if thumb else 0.10
        tip = (first[0] + fdx * (total + 0.012 - sr), first[1] + fdy * (total + 0.012 - sr))
        root = (head[0] - mdx * back, head[1] - mdy * back)
        soft.capsule(root, tip, sr * soft_w, gain=0.85, taper=-0.15)
    return _Anatomy(u=u, scale=scale, n_carpals=n_carpals, soft=soft.build(), bone=b.build())


# --------------------------------------------------------------------------- rendering

# 5x7 bitmaps of letters seen on RSNA side markers.
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


def _rasterise(
    canvas: npt.NDArray[np.float32],
    strokes: _Strokes,
    profile: npt.NDArray[np.float32],
    add: bool,
    rot: float,
    unit: float,
    centre: tuple[float, float],
) -> None:
    """Draws ``strokes`` into ``canvas``, summed (``add``) or max-combined, no temporaries
    larger than a stroke's bounding box.

    Canonical points map to pixels as ``centre + unit * Rot(rot) @ p``. Inside a stroke's
    box, the position along the axis indexes ``_NQ / R^2``; times the squared distance to
    the axis that gives ``q * _NQ`` with ``q = (d/R)^2``, which indexes ``profile`` (scaled
    by the stroke's gain). Where ``R = 0`` the product is ``inf`` (or ``nan`` on the axis
    itself), which ``fmin`` turns into the last, empty, profile step.
    """
    h, w = canvas.shape
    c, s = math.cos(rot), math.sin(rot)
    ax = c * strokes.axis[:, 0] - s * strokes.axis[:, 1]
    ay = s * strokes.axis[:, 0] + c * strokes.axis[:, 1]
    ox = centre[0] + unit * (c * strokes.start[:, 0] - s * strokes.start[:, 1])
    oy = centre[1] + unit * (s * strokes.start[:, 0] + c * strokes.start[:, 1])
    length = unit * strokes.span
    rr = unit * strokes.reach + 1.0
    ex, ey = ox + ax * length, oy + ay * length
    rx, ry = rr * np.abs(ay), rr * np.abs(ax)
    box = np.array(
        [
            np.floor(np.minimum(ox, ex) - rx),
            np.ceil(np.maximum(ox, ex) + rx + 1),
            np.floor(np.minimum(oy, ey) - ry),
            np.ceil(np.maximum(oy, ey) + ry + 1),
        ]
    )
    x0, x1, y0, y1 = np.clip(box, 0, np.array([[w], [w], [h], [h]])).astype(int)
    k = _NB / length  # table samples per pixel along the axis
    # Table index at the box corners; only a box reaching past the margins needs clamping.
    corners = [((xc - ox) * ax + (yc - oy) * ay) * k for xc in (x0, x1) for yc in (y0, y1)]
    clamp = (np.minimum.reduce(corners) < -_MARGIN + 1) | (
        np.maximum.reduce(corners) > _NB + _MARGIN - 2
    )
    # Both coordinates are separable in x and y: their per-column and per-row parts are
    # computed for all strokes at once. The index is along * k + _MARGIN (folded into the
    # origin); the distance to the axis is in canonical units (unchanged by that shift).
    ox0, oy0 = ox - ax * _MARGIN / k, oy - ay * _MARGIN / k
    dxs = np.arange(w, dtype=_F)[None, :] - ox0.astype(_F)[:, None]
    dys = np.arange(h, dtype=_F)[None, :] - oy0.astype(_F)[:, None]
    along_x, along_y = dxs * (ax * k).astype(_F)[:, None], dys * (ay * k).astype(_F)[:, None]
    across_x = dxs * (ay / unit).astype(_F)[:, None]
    across_y = dys * (ax / unit).astype(_F)[:, None]
    luts = profile[None, :] * strokes.gain.astype(_F)[:, None]
    boxes = zip(x0.tolist(), x1.tolist(), y0.tolist(), y1.tolist(), clamp.tolist(), strict=True)
    with np.errstate(invalid="ignore"):  # 0 * inf on an empty axis: nan, handled by fmin
        _draw_boxes(canvas, boxes, along_x, along_y, across_x, across_y, strokes.inv_r2, luts, add)


def _draw_boxes(
    canvas: npt.NDArray[np.float32],
    boxes: Iterator[tuple[int, int, int, int, bool]],
    along_x: npt.NDArray[np.float32],
    along_y: npt.NDArray[np.float32],
    across_x: npt.NDArray[np.float32],
    across_y: npt.NDArray[np.float32],
    inv_r2: npt.NDArray[np.float32],
    luts: npt.NDArray[np.float32],
    add: bool,
) -> None:
    """The per-stroke loop of :func:`_rasterise` (eight array operations per stroke)."""
    h, w = canvas.shape
    combine = np.add if add else np.maximum
    top = _F(_NQ)
    iscr, qscr, fscr = _scratch(h * w)
    for i, (xa, xb, ya, yb, clamp_i) in enumerate(boxes):
        if xa >= xb or ya >= yb:
            continue
        shape = (yb - ya, xb - xa)
        n = shape[0] * shape[1]
        idx, qi, d = iscr[:n].reshape(shape), qscr[:n].reshape(shape), fscr[:n].reshape(shape)
        np.add(along_y[i, ya:yb, None], along_x[i, xa:xb], out=idx, casting="unsafe")
        if clamp_i:
            np.clip(idx, 0, _NT - 1, out=idx)
        np.subtract(across_y[i, ya:yb, None], across_x[i, xa:xb], out=d)
        np.multiply(d, d, out=d)
        np.multiply(d, inv_r2[i][idx], out=d)
        np.fmin(d, top, out=qi, casting="unsafe")
        view = canvas[ya:yb, xa:xb]
        combine(view, luts[i][qi], out=view)


@lru_cache(maxsize=4)
def _grain_bank(h: int, w: int) -> npt.NDArray[np.float32]:
    """A fixed field of unit Gaussian noise a little larger than the frame.

    Fresh normals for every image would cost as much as the phantom itself; a random window
    of a cached field, flipped at random, is as good a grain for a model.
    """
    rng = np.random.default_rng(0x6A41)
    return rng.standard_normal((h + 128, w + 128), dtype=np.float32)


def _blur(img: npt.NDArray[np.float32], tmp: npt.NDArray[np.float32], weight: float) -> None:
    """In-place separable ``[w, 1-2w, w]`` smoothing, a focal-spot blur.

    The outermost rows and columns are left as they are; ``tmp`` is scratch of the same
    shape, so nothing is allocated.
    """
    inner = img[1:-1]
    np.add(img[:-2], img[2:], out=tmp[1:-1])
    tmp[1:-1] *= _F(weight)
    inner *= _F(1.0 - 2.0 * weight)
    inner += tmp[1:-1]
    inner = img[:, 1:-1]
    np.add(img[:, :-2], img[:, 2:], out=tmp[:, 1:-1])
    tmp[:, 1:-1] *= _F(weight)
    inner *= _F(1.0 - 2.0 * weight)
    inner += tmp[:, 1:-1]


_LOCAL = threading.local()
_LEVELS_01 = np.arange(256) / 255.0


@lru_cache(maxsize=16)
def _ramp(n: int) -> npt.NDArray[np.float32]:
    """``n`` values from -0.5 to 0.5 (cached: ``linspace`` costs more than its use here)."""
    ramp = np.linspace(-0.5, 0.5, n, dtype=_F)
    ramp.flags.writeable = False
    return ramp


def _workspace(h: int, w: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Two per-thread float32 frames, reused between calls.

    A fresh 256 x 256 float32 temporary costs many times its arithmetic (it is above
    glibc's mmap threshold, so every allocation page-faults); reusing frames roughly halves
    the time per phantom. Thread-local, so renders in parallel threads do not collide.
    """
    frames: dict[tuple[int, int], tuple] = _LOCAL.__dict__.setdefault("frames", {})
    if (h, w) not in frames:
        if len(frames) >= 4:
            frames.clear()
        frames[(h, w)] = (np.empty((h, w), dtype=_F), np.empty((h, w), dtype=_F))
    return frames[(h, w)]


def _scratch(n: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.float32]]:
    """Per-thread flat scratch (two index arrays, one float) of at least ``n`` elements."""
    buf = getattr(_LOCAL, "scratch", None)
    if buf is None or buf[0].size < n:
        buf = (np.empty(n, dtype=np.intp), np.empty(n, dtype=np.intp), np.empty(n, dtype=_F))
        _LOCAL.scratch = buf
    return buf


def _draw_marker(
    lin: npt.NDArray[np.float32],
    rng: np.random.Generator,
    hand_box: tuple[float, float, float, float],
) -> None:
    """Burns a side marker (an "L" and initials on a plate) into a corner beside the hand."""
    h, w = lin.shape
    n_letters = int(rng.integers(1, 4))
    k = max(1, round(min(h, w) * rng.uniform(0.006, 0.010)))  # glyph pixel size
    gh, gw, pad = 7 * k, 5 * k, 2 * k
    pw, ph = n_letters * (gw + k) - k + 2 * pad, gh + 2 * pad
    if pw >= w // 2 or ph >= h // 2:
        return
    hx0, hy0, hx1, hy1 = hand_box
    corners = [(0, h - ph), (0, 0), (w - pw, 0), (w - pw, h - ph)]
    rng.shuffle(corners)
    margin = int(min(h, w) * 0.03)
    x0 = y0 = 0
    for cx, cy in corners:  # the first corner clear of the hand, else the last tried
        x0 = int(np.clip(cx + (margin if cx == 0 else -margin), 0, w - pw))
        y0 = int(np.clip(cy + (margin if cy == 0 else -margin), 0, h - ph))
        if x0 + pw < hx0 or x0 > hx1 or y0 + ph < hy0 or y0 > hy1:
            break
    lin[y0 : y0 + ph, x0 : x0 + pw] = _F(rng.uniform(0.1, 0.35))
    ink = _F(rng.uniform(1.1, 1.5))
    letters = ["L", *rng.choice(_LETTERS, size=n_letters - 1).tolist()]
    for j, ch in enumerate(letters):
        glyph = np.kron(_GLYPH_BITS[ch], np.ones((k, k), dtype=bool))
        gx, gy = x0 + pad + j * (gw + k), y0 + pad
        lin[gy : gy + gh, gx : gx + gw][glyph] = ink


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
            (hand crop, pad, resize). ``True`` gives a raw "radiograph": the hand smaller
            and off-centre on a larger field, with collimator borders and a marker more
            often; use it at 800 px or so to exercise the bulk preprocessing.

    Below 128 px the phantom is drawn at an integer multiple of the size (at least 128)
    and block-averaged down, which is what area resampling of a larger image gives: thin
    bones, marker and grain then look as they do in a downscaled radiograph.
    """
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if h < 16 or w < 16:
        raise ValueError(f"size must be at least 16 px, got {size!r}")
    f = math.ceil(128 / min(h, w))
    if f == 1:
        return _render(case, h, w, seed, framed)
    big = _render(case, h * f, w * f, seed, framed).reshape(h, f, w, f)
    return ((big.sum(axis=(1, 3), dtype=np.uint32) + f * f // 2) // (f * f)).astype(np.uint8)


def _render(case: Case, h: int, w: int, seed: int, framed: bool) -> Image:
    """:func:`render` at a size drawn directly."""
    anat = _anatomy(case)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, _case_key(case), 0x3C4])
    side = float(min(h, w))
    rot = math.radians(float(np.clip(rng.normal(0.0, 4.0), -10.0, 10.0)))
    if framed:
        unit = side * 0.50 * anat.scale * rng.uniform(0.85, 1.05)
        cx = w * (0.5 + rng.uniform(-0.12, 0.12))
        cy = h * (0.42 + rng.uniform(-0.08, 0.08))
    else:
        unit = side * 0.72 * anat.scale
        cx = w * 0.5 + rng.normal(0.0, 0.025) * side
        cy = h * 0.44 + rng.normal(0.0, 0.025) * side
    # (cx, cy) is where the middle of the hand, canonical (0, -0.5), lands.
    centre = (cx + 0.5 * unit * math.sin(rot), cy + 0.5 * unit * math.cos(rot))

    # Linear "attenuation": soft tissue, bones on top, then marker and collimator.
    lin, tmp = _workspace(h, w)
    tissue = rng.uniform(0.26, 0.36)
    bone = rng.uniform(0.85, 1.05) * (0.8 + 0.2 * min(anat.u, 1.0))  # denser with age
    if h % 2 == 0 and w % 2 == 0 and min(h, w) >= 128:
        # Soft tissue is smooth: draw it at half resolution (a quarter of the work, and most
        # of the pixels) and repeat each pixel 2 x 2; the blur below hides the steps.
        half = _workspace(h // 2, w // 2)[0]
        half.fill(0.0)
        centre_half = ((centre[0] - 0.5) / 2.0, (centre[1] - 0.5) / 2.0)
        _rasterise(half, anat.soft, _SOFT_PROFILE * _F(tissue), False, rot, unit / 2.0, centre_half)
        pairs = lin.reshape(h // 2, 2, w)  # rows 2i and 2i+1
        pairs[:, 0, 0::2] = half
        pairs[:, 0, 1::2] = half
        pairs[:, 1] = pairs[:, 0]
    else:
        lin.fill(0.0)
        _rasterise(lin, anat.soft, _SOFT_PROFILE * _F(tissue), False, rot, unit, centre)
    _rasterise(lin, anat.bone, _BONE_PROFILE * _F(bone), True, rot, unit, centre)
    if framed and rng.random() < 0.6:  # collimator: unexposed, bright border bands
        level = _F(rng.uniform(0.9, 1.4))
        top, left, bottom, right = (rng.uniform(0.0, 0.06, size=4) * (h, w, h, w)).astype(int)
        lin[:top] = level
        lin[h - bottom :] = level
        lin[:, :left] = level
        lin[:, w - right :] = level
    if rng.random() < (0.8 if framed else 0.35):
        box = (cx - 0.4 * unit, cy - 0.56 * unit, cx + 0.42 * unit, float(h))
        _draw_marker(lin, rng, box)

    # Exposure, all independent of age: black level and contrast, a heel-effect gradient in
    # a random direction (separable product), focal-spot blur (wider on large frames to keep
    # it in proportion), film grain, and last a gamma-like tone curve on the 8-bit values.
    black, white = rng.uniform(3.0, 45.0), rng.uniform(190.0, 255.0)
    lin *= _F((white - black) / 1.35)
    lin += _F(black)
    heel, phi = rng.uniform(-0.12, 0.12), rng.uniform(0.0, 2.0 * math.pi)
    lin *= (_ramp(h) * _F(heel * math.sin(phi)) + _F(1.0))[:, None]
    lin *= _ramp(w) * _F(heel * math.cos(phi)) + _F(1.0)
    weight = rng.uniform(0.05, 0.2)
    for _ in range(max(1, round(side / 256.0))):
        _blur(lin, tmp, weight)
        weight = 0.25
    bank = _grain_bank(h, w)
    oy, ox = int(rng.integers(0, 128)), int(rng.integers(0, 128))
    grain = bank[oy : oy + h, ox : ox + w]
    np.multiply(grain if rng.random() < 0.5 else grain[::-1], _F(rng.uniform(1.5, 6.0)), out=tmp)
    lin += tmp
    np.clip(lin, 0.0, 255.0, out=lin)
    tone = _LEVELS_01 ** rng.uniform(0.8, 1.25) * 255.0 + 0.5
    return tone.astype(np.uint8)[lin.astype(np.uint8)]


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
