"""16-bit grey PNGs whose values use only a few of their 16 bits (12-bit detector data
exported as 16-bit PNG, a common export), read as the N-bit data they hold.

Why: the project's decoder reads a 16-bit PNG as OpenCV does, keeping the high byte. For
12-bit data (values 0..4095) that leaves 16 grey levels, a near-black film, and the model
answered 22.8 months for a 65.8-month film. A DICOM without a window is mapped from its
robust range; such a PNG is read as the N-bit data it holds instead: ``0..2**N - 1`` mapped
linearly to 0..255 (N: the bits its largest value needs), the mapping its exporter applied
the other way, so the film keeps its own contrast. A robust stretch (as for a DICOM without a
window) was tried first and moved a film's estimate by 8.5 months: the networks read absolute
contrast, and a stretch changes it. A note says what was done. A 16-bit file that uses its
high bits keeps the decoder's answer (OpenCV's), so the parity with ``cv2.imread`` holds
wherever the high byte carries the image.
"""

from __future__ import annotations

import struct

import numpy as np

__all__ = ["NARROW_BELOW", "is_sixteen_bit_grey_png", "window_narrow"]

NARROW_BELOW = 2**14
"""A 16-bit file whose largest value is below this (data in 14 bits or fewer) is windowed:
its high byte would hold at most 64 grey levels."""

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_GREY_TYPES = (0, 4)  # grey, grey + alpha


def is_sixteen_bit_grey_png(head: bytes) -> bool:
    """Whether the first 26+ bytes of a file are a PNG header for 16-bit grey samples."""
    if len(head) < 26 or not head.startswith(_PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return False
    depth, colour = struct.unpack(">BB", head[24:26])
    return depth == 16 and colour in _GREY_TYPES


def window_narrow(data: bytes) -> tuple[np.ndarray, str] | None:
    """``(uint8 grey, note)`` for a 16-bit grey PNG that uses few of its bits, else None
    (the caller keeps the decoder's image). Only called for files whose header says 16-bit
    grey, after the decoder has accepted them (size limits included)."""
    import cv2

    from boneage.ingest.dicom import scale_to_8bit

    raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.dtype != np.uint16:
        return None
    grey = raw if raw.ndim == 2 else raw[..., 0]  # grey + alpha: the grey channel
    top = int(grey.max())
    if top >= NARROW_BELOW:
        return None
    bits = max(8, top.bit_length())
    hi = float(2**bits - 1)
    note = (
        f"16-bit file with values up to {top} ({bits}-bit data): read as {bits}-bit "
        f"(0-{hi:g} to 0-255) instead of keeping its nearly empty high byte"
    )
    return scale_to_8bit(grey.astype(np.float64), 0.0, hi), note
