"""Contact sheets: a grid of thumbnails with their crop boxes, so a person can check at a glance."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

Box = tuple[int, int, int, int]

COLOURS = {
    "mediapipe": (60, 200, 60),
    "mediapipe+native": (200, 200, 40),
    "native": (40, 160, 255),
    "none": (60, 60, 230),
}


def contact_sheet(
    images: Sequence[np.ndarray],
    boxes: Sequence[Box | None],
    labels: Sequence[str],
    localisers: Sequence[str],
    out_path: str | Path,
    thumb: int = 160,
    columns: int = 10,
) -> Path:
    """Writes a PNG grid: each source image shrunk to ``thumb`` px with its box drawn.

    Box colours: green MediaPipe, teal MediaPipe + native union, orange native localiser,
    red whole image (no hand found).
    """
    n = len(images)
    cols = max(1, min(columns, n))
    rows = max(1, math.ceil(n / cols))
    cell = thumb + 18
    sheet = np.full((rows * cell, cols * thumb, 3), 255, np.uint8)
    for i, (img, box, label, loc) in enumerate(zip(images, boxes, labels, localisers, strict=True)):
        h, w = img.shape[:2]
        s = thumb / max(h, w)
        tw, th = max(1, round(w * s)), max(1, round(h * s))
        small = cv2.resize(img, (tw, th), interpolation=cv2.INTER_AREA)
        tile = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR) if small.ndim == 2 else small
        r, c = divmod(i, cols)
        y, x = r * cell, c * thumb + (thumb - tw) // 2
        sheet[y : y + th, x : x + tw] = tile
        if box is not None:
            x0, y0, x1, y1 = (round(v * s) for v in box)
            colour = COLOURS.get(loc, (0, 0, 0))
            cv2.rectangle(
                sheet, (x + x0, y + y0), (x + min(x1, tw) - 1, y + min(y1, th) - 1), colour, 2
            )
        cv2.putText(
            sheet,
            label[:22],
            (c * thumb + 2, y + thumb + 13),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.38,
            (0, 0, 0),
            1,
        )
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), sheet)
    return out
