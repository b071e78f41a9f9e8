"""Type stubs for boneage._native, the Rust image core.

Every image is a 2-D ``numpy.ndarray`` of ``uint8`` (height, width). Inputs are never
modified; outputs are new C-contiguous arrays. Pixel work runs with the GIL released and
batch functions run in parallel. Bad arguments raise ``ValueError`` (``TypeError`` for a
non-array), unreadable or corrupt files raise ``OSError`` naming the file and the reason.
"""

import os
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]
Box = tuple[int, int, int, int]
StrPath = str | os.PathLike[str]
ItemError = tuple[int, str, str]
"""(index in the input, path or ``images[i]``, reason)."""

__version__: str
DEFAULT_MAX_PIXELS: int
"""Decoders refuse images with more pixels than this (decompression-bomb guard): 100 MP."""

def clahe(img: Image, clip_limit: float = 2.0, tile_grid: tuple[int, int] = (8, 8)) -> Image:
    """CLAHE; bit-exact with ``cv2.createCLAHE(clip_limit, tile_grid).apply(img)``.

    ``tile_grid`` is (columns, rows), like OpenCV's ``tileGridSize``; ``clip_limit=0``
    disables clipping.
    """

def pad_to_square(img: Image) -> Image:
    """Centred zero padding to an m x m square, m = max(h, w).

    ``x_pad = (m - w) // 2`` and ``y_pad = (m - h) // 2``; equivalent to
    ``cv2.copyMakeBorder(img, y_pad, m-h-y_pad, x_pad, m-w-x_pad, cv2.BORDER_CONSTANT, 0)``.
    """

def resize_area(img: Image, width: int, height: int) -> Image:
    """``cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)``, bit-exact."""

def resize_linear(img: Image, width: int, height: int) -> Image:
    """``cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)``, bit-exact."""

def decode_gray(data: bytes, max_pixels: int = ...) -> Image:
    """PNG or JPEG bytes to 8-bit grey, as ``cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)``.

    16-bit grey keeps the high byte; colour is converted as libpng/libjpeg do for OpenCV.
    Raises ``OSError`` for undecodable bytes or images over ``max_pixels``.
    """

def read_gray(path: StrPath, max_pixels: int = ...) -> Image:
    """A PNG/JPEG file to 8-bit grey, as ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)``."""

def preprocess(
    img: Image,
    crop: Box | None = None,
    size: int = 256,
    clip_limit: float = 2.0,
    tile_grid: tuple[int, int] = (8, 8),
) -> Image:
    """crop (x0, y0, x1, y1) -> CLAHE -> pad_to_square -> resize_area to size x size.

    Fused (no intermediate images on the downscaling path), byte-identical to the steps one
    by one and to :func:`boneage.reference.preprocess`. The crop's far edges are clamped to
    the image; it must start inside the image and be non-empty.
    """

def preprocess_batch(
    images: Sequence[Image],
    crops: Sequence[Box | None] | None = None,
    size: int = 256,
    clip_limit: float = 2.0,
    tile_grid: tuple[int, int] = (8, 8),
    threads: int | None = None,
) -> tuple[npt.NDArray[np.uint8], list[ItemError]]:
    """:func:`preprocess` over many arrays in parallel.

    Returns an (N, size, size) array in input order and the per-item errors; a failed
    item's slot is all zeros. ``threads=None`` uses all cores.
    """

def preprocess_files(
    paths: Sequence[StrPath],
    crops: Sequence[Box | None] | None = None,
    size: int = 256,
    clip_limit: float = 2.0,
    tile_grid: tuple[int, int] = (8, 8),
    threads: int | None = None,
    max_pixels: int = ...,
) -> tuple[npt.NDArray[np.uint8], list[ItemError]]:
    """Decode + :func:`preprocess` for many files in parallel.

    One bad file never loses the others: it is listed in the errors with its path and the
    reason, and its slot in the (N, size, size) result is all zeros.
    """

def read_gray_files(
    paths: Sequence[StrPath], threads: int | None = None, max_pixels: int = ...
) -> tuple[list[Image | None], list[ItemError]]:
    """Decodes many files in parallel; ``None`` where a file failed (see the errors)."""
