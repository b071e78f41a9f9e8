"""The one road from a model file to numbers: :class:`LoadedModel`.

Why: evaluate, shipping, training's final evaluation, predict and the web app each used to
load a model and settle its test-time augmentation (TTA) count their own way. Now each holds a
``LoadedModel``: the network, the settings that travel inside its file (preprocessing,
provenance, TTA chosen on validation), and the TTA count settled once, when it is opened; its
:meth:`~LoadedModel.check_data` is the one check that shards were made as the model expects.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from boneage import modelio
from boneage.inference.batch import predict_arrays
from boneage.settings import Preprocessing

__all__ = ["SHIPPED", "LoadedModel", "default_model"]

SHIPPED = Path(__file__).resolve().parent.parent / "shipped"
"""The shipped model's folder: inside the package, so an installed wheel has it too."""
SHIPPED_PATTERN = "boneage-*.keras"
"""The shipped bone-age model's file name; the folder also holds the orientation detector."""


def default_model() -> Path:
    """``$BONEAGE_MODEL``, else the model shipped in the package (``boneage/shipped/``)."""
    env = os.environ.get("BONEAGE_MODEL")
    if env:
        return Path(env)
    shipped = sorted(SHIPPED.glob(SHIPPED_PATTERN))
    if not shipped:
        raise FileNotFoundError(
            f"no model given and none shipped in {SHIPPED}; pass --model RUN_OR_MODEL "
            "(train one with python -m boneage.train)"
        )
    return shipped[0]


@dataclass(frozen=True)
class LoadedModel:
    """A network with its file's settings and the TTA count every estimate from it uses."""

    model: Any
    meta: modelio.ModelMeta
    tta: int = 0
    path: Path | None = None

    def __post_init__(self) -> None:
        if isinstance(self.tta, bool) or int(self.tta) != self.tta or self.tta < 0:
            raise ValueError(f"tta must be 0 or more copies, got {self.tta!r}")

    @classmethod
    def open(
        cls, path: str | os.PathLike[str] | None = None, tta: int | None = None
    ) -> LoadedModel:
        """Loads a model file or run folder (default: :func:`default_model`), vetted so it
        cannot run code; ``tta`` None takes the count recorded in the file."""
        file = modelio.resolve(path or default_model())
        model, meta = modelio.load(file)
        return cls(model, meta, meta.tta_or(tta), file)

    @property
    def preprocessing(self) -> Preprocessing:
        return self.meta.preprocessing

    @property
    def name(self) -> str:
        return self.meta.model_name or (self.path.stem if self.path else "model")

    def with_tta(self, tta: int) -> LoadedModel:
        """The same network with another TTA count (shipping compares several)."""
        return dataclasses.replace(self, tta=int(tta))

    def check_data(self, data: str | os.PathLike[str]) -> None:
        """Refuses shards preprocessed otherwise than this model's training data: its figures
        on them would be meaningless. Shards without ``preprocessing.json`` are taken at
        their word (older data)."""
        stored = Preprocessing.read(data)
        if stored is not None and stored != self.preprocessing:
            raise ValueError(
                f"{data} was preprocessed with {stored.to_dict()}, but the model expects "
                f"{self.preprocessing.to_dict()}: its figures would be meaningless. "
                "Preprocess the images with the model's settings, or evaluate with --images"
            )

    def predict(
        self, images: np.ndarray, male: np.ndarray, batch_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Estimates (months) and sigmas (None without an uncertainty head) for prepared
        uint8 images, with this model's TTA count."""
        return predict_arrays(self.model, images, male, batch_size, self.tta)
