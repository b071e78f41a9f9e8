"""Model file -> its embedded preprocessing -> an estimate: the one path every caller takes.

:class:`Predictor` is what ``boneage.predict``, ``boneage.evaluate --images`` and any server
use, so an image is prepared exactly as the model's training images were (the settings come
from the model file, never from a caller's flags). With no model given, ``$BONEAGE_MODEL``,
else the model shipped inside the package.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from boneage import _native as native
from boneage import modelio
from boneage.evaluation.predictions import predict_arrays
from boneage.ingest import hands
from boneage.ingest.preparation import prepare
from boneage.settings import parse_sex

__all__ = ["SHIPPED", "Estimate", "Predictor", "default_model"]

SHIPPED = Path(__file__).resolve().parent / "shipped"
"""The shipped model's folder: inside the package, so an installed wheel has it too."""


def default_model() -> Path:
    """``$BONEAGE_MODEL``, else the model shipped in the package (``boneage/shipped/``)."""
    env = os.environ.get("BONEAGE_MODEL")
    if env:
        return Path(env)
    shipped = sorted(SHIPPED.glob("*.keras"))
    if not shipped:
        raise FileNotFoundError(
            f"no model given and none shipped in {SHIPPED}; pass --model RUN_OR_MODEL "
            "(train one with python -m boneage.train)"
        )
    return shipped[0]


@dataclass
class Estimate:
    source: str
    male: int
    months: float
    years: float
    sigma_months: float | None
    localiser: str
    box: tuple[int, int, int, int]


class Predictor:
    """Loads a model once and estimates bone age for images or arrays.

    >>> p = Predictor()                    # the shipped model
    >>> p.predict("hand.png", male=True)   # months

    ``tta``: test-time augmentation copies averaged with the plain prediction; ``None`` takes
    the number recorded in the model file (chosen on validation data when it was shipped).
    """

    def __init__(
        self, model_path: str | os.PathLike[str] | None = None, tta: int | None = None
    ) -> None:
        self.path = modelio.resolve(model_path or default_model())
        self.model, self.meta = modelio.load(self.path)
        self.tta = self.meta.tta if tta is None else int(tta)
        self._detector: Any = None

    def prepare(
        self, image: str | os.PathLike[str] | np.ndarray
    ) -> tuple[np.ndarray, str, tuple[int, int, int, int]]:
        """Decode and prepare the image as the model's training images were (its mode)."""
        pp = self.meta.preprocessing
        img = image if isinstance(image, np.ndarray) else native.read_gray(image)
        if img.ndim == 3:
            import cv2

            img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        if pp.mode == "crop" and pp.localiser in ("mediapipe", "auto") and self._detector is None:
            self._detector = hands.MediaPipeHands()
        return prepare(img, pp, detector=self._detector)

    def estimate(
        self, image: str | os.PathLike[str] | np.ndarray, male: int | bool | str
    ) -> Estimate:
        sex = parse_sex(male)
        if sex is None:
            raise ValueError(f"unknown sex value {male!r}: use M or F")
        pre, loc, box = self.prepare(image)
        mean, sigma = predict_arrays(
            self.model, pre[None], np.array([sex], np.float32), tta=self.tta
        )
        months = float(mean[0])
        return Estimate(
            source=str(image) if not isinstance(image, np.ndarray) else "<array>",
            male=sex,
            months=months,
            years=months / 12.0,
            sigma_months=None if sigma is None else float(sigma[0]),
            localiser=loc,
            box=tuple(int(v) for v in box),  # type: ignore[arg-type]
        )

    def predict(self, image: str | os.PathLike[str] | np.ndarray, male: int | bool | str) -> float:
        """Bone age in months."""
        return self.estimate(image, male).months
