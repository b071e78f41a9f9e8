"""Hand localisation: MediaPipe Hands as the paper uses it, checked and backed by the native
radiograph localiser.

MediaPipe was trained on photographs; on radiographs it finds the hand in only part of the
images, and occasionally "finds" one in a label or a ruler. So its box is used only when it
is plausible: enough landmarks spread over a sensible part of the image and, in ``auto`` mode,
agreeing with the native localiser's box. Landmarks sit at joint centres, so a wide-spread
thumb or little finger can reach past MediaPipe's box; when both localisers agree, ``auto``
takes the union of the two boxes (``mediapipe+native``), so neither one's miss cuts the hand.
Otherwise the native box is used, and when neither is sure the whole image is kept (nothing
of the hand is ever cut away by a bad guess).

The box follows the paper: the landmarks' extent widened by a margin of 5 % of the image
height, and everything below the top of the hand kept (the wrist and the distal radius and
ulna, whose growth plates carry much of the age signal).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

from boneage import _native as native
from boneage.nativelogs import GLOG_LEVEL, filtered_stderr
from boneage.settings import LOCALISERS

__all__ = ["LOCALISERS", "Box", "Found", "MediaPipeHands", "choose", "whole"]

Box = tuple[int, int, int, int]
LocaliserName = Literal["mediapipe", "native", "auto", "none"]

MARGIN = native.HAND_MARGIN
MEDIAPIPE_SIDE = 512
"""MediaPipe sees a copy at most this large: plenty for 21 landmarks, and fast."""


@dataclass(frozen=True)
class Found:
    """A crop box and which localiser produced it (``none``: the whole image)."""

    box: Box
    localiser: str


def whole(img: np.ndarray) -> Box:
    h, w = img.shape[:2]
    return (0, 0, w, h)


def box_from_landmarks(xs: np.ndarray, ys: np.ndarray, width: int, height: int) -> Box:
    """Landmark extent (normalised coordinates) -> source box with the paper's margin.

    The box runs from the top of the hand to the bottom of the image, so the wrist stays in.
    """
    margin = MARGIN * height
    x0 = max(0, int(np.floor(xs.min() * width - margin)))
    x1 = min(width, int(np.ceil(xs.max() * width + margin)))
    y0 = max(0, int(np.floor(ys.min() * height - margin)))
    return (x0, y0, max(x1, x0 + 1), height)


def area_fraction(box: Box, width: int, height: int) -> float:
    x0, y0, x1, y1 = box
    return (x1 - x0) * (y1 - y0) / float(width * height)


def union(a: Box, b: Box) -> Box:
    """The smallest box holding both."""
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


class MediaPipeHands:
    """A reusable MediaPipe Hands detector in static-image mode (bundled model, offline)."""

    def __init__(self, min_confidence: float = 0.3) -> None:
        # MediaPipe logs through absl as its graph is built and first runs, up to its first
        # hand, whatever the settings say: those calls run under the filter that applies
        # GLOG_minloglevel to the lines (boneage.nativelogs; a no-op unless a command or the
        # user set the variable).
        with filtered_stderr(GLOG_LEVEL):
            import mediapipe as mp  # heavy: imported only where a detector is built

            self._hands: Any = mp.solutions.hands.Hands(
                static_image_mode=True,
                max_num_hands=1,
                model_complexity=1,
                min_detection_confidence=min_confidence,
            )
        self._quiet_until_hand = True

    def landmarks(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
        """Normalised landmark x, y arrays and the handedness score, or None when no hand."""
        h, w = img.shape[:2]
        scale = min(1.0, MEDIAPIPE_SIDE / max(h, w))
        small = native.resize_area(img, max(1, round(w * scale)), max(1, round(h * scale)))
        rgb = cv2.cvtColor(small, cv2.COLOR_GRAY2RGB)
        if self._quiet_until_hand:
            with filtered_stderr(GLOG_LEVEL):
                result = self._hands.process(rgb)
            self._quiet_until_hand = not result.multi_hand_landmarks
        else:
            result = self._hands.process(rgb)
        if not result.multi_hand_landmarks:
            return None
        marks = result.multi_hand_landmarks[0].landmark
        xs = np.array([m.x for m in marks], dtype=np.float64)
        ys = np.array([m.y for m in marks], dtype=np.float64)
        score = float(result.multi_handedness[0].classification[0].score)
        return xs, ys, score

    def close(self) -> None:
        self._hands.close()


def plausible_mediapipe(box: Box, score: float, width: int, height: int) -> bool:
    """A hand that fills a sensible part of the frame, found with some confidence."""
    frac = area_fraction(box, width, height)
    return score >= 0.5 and 0.08 <= frac <= 0.98


def choose(
    img: np.ndarray,
    mode: str,
    detector: MediaPipeHands | None = None,
    landmarks: tuple[np.ndarray, np.ndarray, float] | None = None,
) -> Found:
    """Picks the crop box for one image under ``mode`` (see the module docstring).

    ``landmarks`` may be passed in when MediaPipe already ran elsewhere (a worker process).
    """
    h, w = img.shape[:2]
    if mode == "none":
        return Found(whole(img), "none")
    nat_box: Box | None = None
    if mode in ("native", "auto"):
        # The native rule (plausible box, else none) is the bulk job's own, from one place.
        nat = native.choose_crop(img, "native", MARGIN)
        if nat["localiser"] == "native":
            x0, y0, x1, y1 = (int(v) for v in nat["box"])
            nat_box = (x0, y0, x1, y1)
    if mode in ("mediapipe", "auto"):
        if landmarks is None and detector is not None:
            landmarks = detector.landmarks(img)
        if landmarks is not None:
            xs, ys, score = landmarks
            box = box_from_landmarks(xs, ys, w, h)
            if plausible_mediapipe(box, score, w, h):
                if nat_box is None:
                    return Found(box, "mediapipe")
                # MediaPipe's box must agree with where the radiograph's hand is.
                if iou(box, nat_box) >= 0.3:
                    return Found(union(box, nat_box), "mediapipe+native")
    if nat_box is not None:
        return Found(nat_box, "native")
    return Found(whole(img), "none")
