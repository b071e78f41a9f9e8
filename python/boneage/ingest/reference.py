"""The paper's preprocessing done with OpenCV, step by step.

This is the yardstick for :mod:`boneage._native`: the parity tests compare the two pixel for
pixel, the benchmarks time them against each other, and ``--engine opencv`` in the bulk
preprocessor runs the whole job through it. Every function mirrors one native function and
accepts the same arguments.
"""

from __future__ import annotations

import os
from typing import Any

import cv2
import numpy as np

Box = tuple[int, int, int, int]


def read_gray(path: str | os.PathLike[str]) -> np.ndarray:
    """``cv2.imread(path, IMREAD_GRAYSCALE)``, raising ``OSError`` instead of returning None."""
    img = cv2.imread(os.fspath(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise OSError(f"{os.fspath(path)}: OpenCV could not read this image")
    return img


def decode_gray(data: bytes) -> np.ndarray:
    """``cv2.imdecode`` to 8-bit grey, raising ``OSError`` on undecodable bytes."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise OSError("OpenCV could not decode these bytes as an image")
    return img


def clahe(
    img: np.ndarray, clip_limit: float = 2.0, tile_grid: tuple[int, int] = (8, 8)
) -> np.ndarray:
    """OpenCV CLAHE; ``tile_grid`` is (columns, rows) like ``tileGridSize``."""
    return cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=tile_grid).apply(img)


def pad_to_square(img: np.ndarray) -> np.ndarray:
    """Centred zero padding to a square, ``x_pad = (m - w) // 2``, ``y_pad = (m - h) // 2``."""
    h, w = img.shape
    m = max(h, w)
    x_pad, y_pad = (m - w) // 2, (m - h) // 2
    return cv2.copyMakeBorder(
        img, y_pad, m - h - y_pad, x_pad, m - w - x_pad, cv2.BORDER_CONSTANT, value=(0,)
    )


def resize_area(img: np.ndarray, width: int, height: int) -> np.ndarray:
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)


def resize_linear(img: np.ndarray, width: int, height: int) -> np.ndarray:
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)


def crop(img: np.ndarray, box: Box | None) -> np.ndarray:
    """Crops ``(x0, y0, x1, y1)``; far edges are clamped to the image, as the native code does."""
    if box is None:
        return img
    x0, y0, x1, y1 = box
    h, w = img.shape
    if x0 < 0 or y0 < 0 or x0 >= w or y0 >= h or x1 <= x0 or y1 <= y0:
        raise ValueError(f"crop box {box} is empty or does not start inside the {w}x{h} image")
    return img[y0 : min(y1, h), x0 : min(x1, w)]


def preprocess(
    img: np.ndarray,
    crop_box: Box | None = None,
    size: int = 256,
    clip_limit: float = 2.0,
    tile_grid: tuple[int, int] = (8, 8),
) -> np.ndarray:
    """crop -> CLAHE -> pad to square -> INTER_AREA resize, as the paper describes."""
    out = clahe(crop(img, crop_box), clip_limit, tile_grid)
    return resize_area(pad_to_square(out), size, size)


def preprocess_file(
    path: str | os.PathLike[str],
    crop_box: Box | None = None,
    size: int = 256,
    clip_limit: float = 2.0,
    tile_grid: tuple[int, int] = (8, 8),
) -> np.ndarray:
    """Reads a file and runs :func:`preprocess` on it."""
    return preprocess(read_gray(path), crop_box, size, clip_limit, tile_grid)


def squash(img: np.ndarray, pp: Any) -> np.ndarray:
    """The ``squash`` mode (:func:`boneage.ingest.preparation.squash`) with OpenCV: whole film
    resized (INTER_AREA or INTER_LINEAR, as ``pp.interpolation`` says) to ``pp.image_size``
    squared, then CLAHE."""
    side = int(pp.image_size)
    resize = resize_linear if pp.interpolation == "linear" else resize_area
    small = img if img.shape == (side, side) else resize(img, side, side)
    return clahe(small, float(pp.clip_limit), tuple(pp.tile_grid))
