"""Applying a :class:`~boneage.settings.Preprocessing` to one decoded image.

The one place that turns a grey radiograph into the model's input for either mode, used by
the bulk job (for the paths that do not go through the fused native call) and by
:class:`boneage.Predictor`, so that training data and prediction inputs are made by the
same code.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np

from boneage import _native as native
from boneage.ingest import hands
from boneage.settings import Preprocessing


def _grid(pp: Preprocessing) -> tuple[int, int]:
    """``pp.tile_grid`` as the ``(columns, rows)`` tuple the native calls take."""
    return cast("tuple[int, int]", tuple(pp.tile_grid))


def squash_resize(img: np.ndarray, pp: Preprocessing) -> np.ndarray:
    """The ``squash`` mode's resize alone: the whole film to ``pp.image_size`` squared with
    ``pp.interpolation`` (an image already at that size is kept as it is)."""
    side = int(pp.image_size)
    if img.shape == (side, side):
        return img
    resize = native.resize_linear if pp.interpolation == "linear" else native.resize_area
    return resize(img, side, side)


def squash(img: np.ndarray, pp: Preprocessing) -> np.ndarray:
    """The whole film, resized to a square with ``pp.interpolation`` (aspect ratio not
    kept), then CLAHE.

    Resizing first and equalising second makes the result independent of the input's
    resolution: a full-resolution film and its 100 px copy give nearly the same image.
    """
    return native.clahe(squash_resize(img, pp), float(pp.clip_limit), _grid(pp))


def prepare(
    img: np.ndarray, pp: Preprocessing, detector: Any = None, landmarks: Any = None
) -> tuple[np.ndarray, str, hands.Box]:
    """``(model input uint8 (S, S), localiser used, crop box in source pixels)``.

    ``detector`` (a :class:`hands.MediaPipeHands`) or precomputed ``landmarks`` serve the
    ``crop`` mode's MediaPipe localisers; ``squash`` ignores both.
    """
    if img.ndim != 2:
        raise ValueError(f"expected a grey image (H, W), got shape {img.shape}")
    if pp.mode == "squash":
        return squash(img, pp), "none", hands.whole(img)
    found = hands.choose(img, pp.localiser, landmarks=landmarks, detector=detector)
    out = native.preprocess(img, found.box, pp.image_size, pp.clip_limit, _grid(pp))
    return out, found.localiser, found.box
