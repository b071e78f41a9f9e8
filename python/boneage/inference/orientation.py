"""Orientation: which of the 8 rotations and mirrorings a film arrived in, and undoing it.

Why: the bone-age networks learned from RSNA films, which are upright (fingers up) left hands.
A film scanned sideways, upside down, or of a right hand (or flipped on export) is outside
what they saw: the same film rotated by 90 degrees was estimated 60 months younger, and over
the 7 rotations and mirrorings the estimate moved by 23 months on average, 111 at worst.
Rather than teach every bone-age network all 8 orientations, a tiny classifier says how a film
arrived and the film is turned back to the training convention before the estimate.

The 8 orientations are the dihedral group of the square (:class:`Transform`): 4 clockwise
quarter turns, each with or without a left/right mirror first. :func:`apply` makes a film in
orientation ``t`` from an upright one and :func:`undo` turns it back; both only permute pixels,
so they are exact for any array shape.

The classifier sees the whole film squashed to 64 x 64 by area averaging and rank-equalised
(:func:`squash`). For a square target, squashing then rotating equals rotating then squashing,
so the classifier can be trained on rotated squashed copies. Rank equalisation makes its input
the same for any bit depth or linear window, and nearly the same under a gamma or CLAHE (exactly
for a mapping applied at the classifier's side), so 16-bit exports and the CLAHE'd training
copies look alike to it.

:class:`OrientationDetector` also averages over the group: it classifies all 8 transforms of a
film and pools the answers consistently (:meth:`OrientationDetector.probabilities`), so a film
and any rotation or mirror of it get the same answer up to resampling rounding, and the upright
film that comes out of :meth:`~OrientationDetector.normalise` is then the same pixels whatever
orientation the film arrived in. A confidence below the threshold chosen on validation (stored
in the model file) is reported in :class:`Orientation`, never hidden.
"""

from __future__ import annotations

import enum
import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from boneage.inference.model import SHIPPED

__all__ = [
    "DEFAULT_THRESHOLD",
    "INPUT_SIZE",
    "ORIENTATION_MODEL",
    "Orientation",
    "OrientationDetector",
    "Transform",
    "apply",
    "compose",
    "inverse",
    "squash",
    "squash_batch",
    "undo",
]

INPUT_SIZE = 64
"""The classifier's input side: enough to tell fingers from wrist and the thumb's side."""

ORIENTATION_MODEL = SHIPPED / "orientation-rsna100.keras"
"""The orientation classifier shipped in the package (trained by
``python -m boneage.training.orientation``)."""

DEFAULT_THRESHOLD = 0.9
"""Confidence below which an orientation is flagged when the model file records no threshold
of its own (the shipped file does: chosen on validation films)."""

QUANTUM_LEVELS = 4095
"""Grey levels a squashed film is rounded to (over its range) before ranking."""

META_KIND = "orientation"
"""``meta.extra["kind"]`` of an orientation classifier's file: a bone-age model file handed to
:class:`OrientationDetector` by mistake is refused instead of giving nonsense."""


class Transform(enum.IntEnum):
    """How a film differs from the training convention (upright left hand).

    The value is the classifier's class index. A film in orientation ``t`` is made from an
    upright one by mirroring it left/right when ``t.mirrored``, then turning it clockwise by
    ``t.quarter_turns`` quarter turns (:func:`apply`).
    """

    IDENTITY = 0
    ROT90 = 1
    ROT180 = 2
    ROT270 = 3
    MIRROR = 4
    MIRROR_ROT90 = 5
    MIRROR_ROT180 = 6
    MIRROR_ROT270 = 7

    @property
    def quarter_turns(self) -> int:
        """Clockwise quarter turns (after the mirror, if any)."""
        return int(self.value) % 4

    @property
    def mirrored(self) -> bool:
        """Whether the film is mirrored left/right: a right hand where a left one is expected."""
        return int(self.value) >= 4

    @property
    def key(self) -> str:
        """A stable lower-case name for files and JSON (``rot90``, ``mirror_rot180``...)."""
        return self.name.lower()

    @property
    def description(self) -> str:
        """What a person would say about a film in this orientation."""
        return _DESCRIPTIONS[self]

    @classmethod
    def parse(cls, value: Transform | int | str) -> Transform:
        """A transform from itself, its class index or its :attr:`key`/name."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            try:
                return cls[value.strip().upper()]
            except KeyError:
                names = ", ".join(t.key for t in cls)
                raise ValueError(f"unknown orientation {value!r}; use one of {names}") from None
        return cls(int(value))


_DESCRIPTIONS = {
    Transform.IDENTITY: "upright",
    Transform.ROT90: "rotated 90° clockwise",
    Transform.ROT180: "rotated 180° (upside down)",
    Transform.ROT270: "rotated 90° counter-clockwise",
    Transform.MIRROR: "mirrored (right hand)",
    Transform.MIRROR_ROT90: "mirrored (right hand) and rotated 90° clockwise",
    Transform.MIRROR_ROT180: "mirrored (right hand) and rotated 180° (upside down)",
    Transform.MIRROR_ROT270: "mirrored (right hand) and rotated 90° counter-clockwise",
}


def apply(
    image: np.ndarray, t: Transform | int | str, axes: tuple[int, int] = (0, 1)
) -> np.ndarray:
    """``image`` as it looks in orientation ``t`` (an upright film -> a film arriving as ``t``).

    ``axes`` are the (row, column) axes: ``(0, 1)`` for one film ``(H, W[, C])``, ``(1, 2)``
    for a batch ``(N, H, W[, C])``. A pure permutation of pixels (a new C-contiguous array).
    """
    t = Transform.parse(t)
    out = np.flip(image, axis=axes[1]) if t.mirrored else image
    # np.rot90 turns from the first axis towards the second: counter-clockwise on screen.
    out = np.rot90(out, -t.quarter_turns, axes=axes)
    return np.ascontiguousarray(out)


def undo(image: np.ndarray, t: Transform | int | str, axes: tuple[int, int] = (0, 1)) -> np.ndarray:
    """Turns a film that arrived in orientation ``t`` back upright (``undo(apply(x, t), t)``
    is ``x``)."""
    return apply(image, inverse(t), axes)


@functools.cache
def _table() -> tuple[tuple[int, ...], ...]:
    """``table[first][then]``: the one transform equal to ``first`` followed by ``then``.

    Found by applying them to a 3 x 3 pattern whose 8 orientations all differ, so it cannot
    disagree with :func:`apply` whatever conventions :func:`apply` uses.
    """
    pattern = np.arange(9).reshape(3, 3)
    seen = {apply(pattern, t).tobytes(): t for t in Transform}
    assert len(seen) == 8
    return tuple(
        tuple(int(seen[apply(apply(pattern, a), b).tobytes()]) for b in Transform)
        for a in Transform
    )


def compose(first: Transform | int | str, then: Transform | int | str) -> Transform:
    """The transform equal to applying ``first``, then ``then``."""
    return Transform(_table()[Transform.parse(first)][Transform.parse(then)])


def inverse(t: Transform | int | str) -> Transform:
    """The transform that takes a film in orientation ``t`` back upright."""
    t = Transform.parse(t)
    return next(u for u in Transform if compose(t, u) is Transform.IDENTITY)


def squash(image: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """A 2-D film (uint8, uint16, any real dtype, any shape) -> the classifier's input: float32
    ``(size, size)`` in ``[-0.5, 0.5]``.

    The whole film is area-resized to a square (aspect ratio not kept, as the RSNA copies were
    made), then each pixel is replaced by its mid-rank among the image's pixels. The ranks make
    the input independent of bit depth and linear windows, and nearly so of a gamma or CLAHE;
    a uniform image becomes 0.
    """
    import cv2

    img = np.asarray(image)
    if img.ndim != 2 or img.size == 0:
        raise ValueError(f"expected a non-empty grey film (H, W), got shape {img.shape}")
    if img.dtype.kind not in "biuf":
        raise ValueError(f"expected a numeric film, got dtype {img.dtype}")
    pixels = np.ascontiguousarray(img, dtype=np.float32)
    if not np.isfinite(pixels).all():
        pixels = np.nan_to_num(pixels, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(pixels.min()), float(pixels.max())
    if pixels.shape != (size, size):
        resized = cv2.resize(pixels, (size, size), interpolation=cv2.INTER_AREA)
        pixels = np.asarray(resized, np.float32)
    # Resampling a turned film rounds differently in the last bits; a flat region would then
    # split its tied rank into two. Levels of 1/4096 of the film's own range (the same for
    # every orientation) keep every real difference and drop that noise.
    levels = np.rint((pixels - low) * (QUANTUM_LEVELS / max(high - low, 1e-12)))
    return _rank(levels)


def _rank(pixels: np.ndarray) -> np.ndarray:
    """Mid-ranks of ``pixels`` in ``(0, 1)`` less 0.5: ties share one value, so a film and
    its rotations get the same numbers in permuted places."""
    flat = pixels.ravel()
    ordered = np.sort(flat)
    lo = np.searchsorted(ordered, flat, side="left")
    hi = np.searchsorted(ordered, flat, side="right")
    return ((lo + hi) / (2.0 * flat.size) - 0.5).astype(np.float32).reshape(pixels.shape)


def squash_batch(images: Sequence[np.ndarray], size: int = INPUT_SIZE) -> np.ndarray:
    """:func:`squash` of each film: float32 ``(N, size, size)``."""
    if not len(images):
        return np.zeros((0, size, size), np.float32)
    return np.stack([squash(im, size) for im in images])


@dataclass(frozen=True)
class Orientation:
    """What orientation normalisation found and did, for the ``orientation`` field of an
    estimate.

    ``found`` is how the film arrived; the film was turned back upright with
    ``inverse(found)`` when ``corrected``. ``confidence`` is the classifier's probability of
    ``found``; below ``threshold`` (chosen on validation films) the finding is
    ``low_confidence`` and the note asks for the film to be checked: a wrong turn would give
    a wrong estimate.
    """

    found: Transform
    confidence: float
    threshold: float

    @property
    def corrected(self) -> bool:
        return self.found is not Transform.IDENTITY

    @property
    def low_confidence(self) -> bool:
        return self.confidence < self.threshold

    @property
    def note(self) -> str | None:
        """A sentence for the estimate's notes, or None for a film found upright with
        confidence (nothing to say)."""
        pct = f"{100 * self.confidence:.0f} %"
        if self.low_confidence:
            return (
                f"orientation uncertain: the film looks {self.found.description} "
                f"(confidence {pct}, below {100 * self.threshold:.0f} %)"
                + ("; it was turned upright as a left hand" if self.corrected else "")
                + "; check that the film shows an upright left hand"
            )
        if self.corrected:
            return (
                f"the film arrived {self.found.description} (confidence {pct}); it was "
                "turned upright as a left hand before the estimate"
            )
        return None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of the ``orientation`` field."""
        return {
            "found": self.found.key,
            "description": self.found.description,
            "corrected": self.corrected,
            "confidence": round(float(self.confidence), 4),
            "low_confidence": self.low_confidence,
            "threshold": round(float(self.threshold), 4),
        }


class OrientationDetector:
    """The orientation classifier with its settings (threshold, input side) from its file.

    >>> det = OrientationDetector.open()          # the shipped classifier
    >>> upright, orientation = det.normalise(film)
    >>> orientation.to_dict()["found"], orientation.low_confidence
    """

    def __init__(self, model: Any, meta: Any = None, threshold: float | None = None) -> None:
        self.model = model
        self.meta = meta
        extra = dict(getattr(meta, "extra", None) or {})
        self.size = int(model.inputs[0].shape[1])
        stored = extra.get("low_confidence_below", DEFAULT_THRESHOLD)
        self.threshold = float(stored if threshold is None else threshold)

    @classmethod
    def open(
        cls, path: str | os.PathLike[str] | None = None, threshold: float | None = None
    ) -> OrientationDetector:
        """Loads a classifier file (default: :data:`ORIENTATION_MODEL`) through
        :func:`boneage.modelio.load`, which vets it so that it cannot run code.
        ``threshold`` None takes the one chosen on validation and stored in the file."""
        from boneage import modelio

        model, meta = modelio.load(ORIENTATION_MODEL if path is None else path)
        kind = meta.extra.get("kind")
        out = model.outputs[0].shape[-1]
        if kind != META_KIND or out != len(Transform):
            raise ValueError(
                f"{path or ORIENTATION_MODEL}: not an orientation classifier (kind {kind!r}, "
                f"{out} outputs); train one with python -m boneage.training.orientation"
            )
        return cls(model, meta, threshold)

    def _predict(self, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """Class probabilities ``(N, 8)`` for squashed inputs ``(N, S, S)``."""
        parts = [
            np.asarray(self.model.predict_on_batch(x[i : i + batch_size, ..., None]))
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(parts).astype(np.float64) if parts else np.zeros((0, 8))

    def probabilities(self, squashed: np.ndarray, pooled: bool = True) -> np.ndarray:
        """``(N, 8)``: the probability of each orientation for squashed films ``(N, S, S)``.

        ``pooled`` classifies the 8 transforms of every film and pools them: if a film ``z``
        arrived as ``t``, then ``apply(z, g)`` arrived as ``compose(t, g)``, so the answer for
        ``t`` is the mean over ``g`` of the classifier's probability of ``compose(t, g)`` on
        ``apply(z, g)``. Why: every orientation of a film then gets the same (permuted)
        answer, so a film is turned to the same upright pixels whichever way it arrived, and
        the classifier's errors on any one view are averaged out.
        """
        x = np.asarray(squashed, np.float32)
        if not pooled:
            return self._predict(x)
        views = np.concatenate([apply(x, g, axes=(1, 2)) for g in Transform])
        raw = self._predict(views).reshape(len(Transform), len(x), len(Transform))
        table = np.asarray(_table())  # table[t][g] = compose(t, g)
        pooled_p = np.zeros((len(x), len(Transform)))
        for g in Transform:
            pooled_p += raw[g][:, table[:, g]]
        return pooled_p / len(Transform)

    def detect(self, images: Sequence[np.ndarray]) -> list[tuple[Transform, float]]:
        """For each 2-D film (any size, uint8 or uint16): the orientation it arrived in and
        its probability. One batched pass through the classifier for all films."""
        p = self.probabilities(squash_batch(images, self.size))
        best = p.argmax(axis=1)
        return [(Transform(int(b)), float(p[i, b])) for i, b in enumerate(best)]

    def normalise(self, image: np.ndarray) -> tuple[np.ndarray, Orientation]:
        """The film turned upright (a left hand, fingers up), and what was found and done.

        The most probable orientation is undone even when its confidence is low: it is the
        best guess there is, and :attr:`Orientation.low_confidence` says to check it.
        """
        ((found, confidence),) = self.detect([image])
        return undo(image, found), Orientation(found, confidence, self.threshold)

    def normalise_many(self, images: Sequence[np.ndarray]) -> list[tuple[np.ndarray, Orientation]]:
        """:meth:`normalise` for several films in one batched pass."""
        return [
            (undo(im, found), Orientation(found, confidence, self.threshold))
            for im, (found, confidence) in zip(images, self.detect(images), strict=True)
        ]
