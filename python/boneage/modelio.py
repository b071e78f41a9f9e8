"""Saving and loading models together with the preprocessing they were trained on.

A ``.keras`` file is a zip; we add one member, ``boneage.json``, holding the preprocessing
settings (:class:`boneage.settings.Preprocessing`: mode, image size, CLAHE clip limit and
grid, localiser) and provenance. Keras ignores
the extra member, and :func:`load` hands the settings to :class:`boneage.Predictor`, so a
prediction always repeats exactly what training saw.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from boneage.settings import Preprocessing

__all__ = ["META_NAME", "ModelMeta", "Preprocessing", "load", "read_meta", "resolve", "save"]

META_NAME = "boneage.json"


@dataclass
class ModelMeta:
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    model_name: str = ""
    uncertainty: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tta(self) -> int:
        """Test-time augmentation copies this model is meant to be used with (0: none)."""
        return int(self.extra.get("tta", 0))

    def tta_or(self, given: int | None) -> int:
        """The caller's TTA count when given, else the model's own (chosen on validation)."""
        return self.tta if given is None else int(given)


def save(model: Any, path: str | os.PathLike[str], meta: ModelMeta) -> Path:
    """Saves ``model`` as ``.keras`` with ``meta`` embedded; atomic (temp file + rename)."""
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp.keras")
    model.save(tmp)
    with zipfile.ZipFile(tmp, "a") as zf:
        d = asdict(meta)
        d["preprocessing"] = meta.preprocessing.to_dict()
        zf.writestr(META_NAME, json.dumps(d, indent=2))
    tmp.replace(path)
    return path


def read_meta(path: str | os.PathLike[str]) -> ModelMeta | None:
    """The embedded settings, or None for a plain Keras file."""
    try:
        with zipfile.ZipFile(path) as zf:
            if META_NAME not in zf.namelist():
                return None
            d = json.loads(zf.read(META_NAME))
    except zipfile.BadZipFile as e:
        raise OSError(f"{path}: not a .keras model file ({e})") from e
    return ModelMeta(
        preprocessing=Preprocessing.from_dict(d.get("preprocessing", {})),
        model_name=d.get("model_name", ""),
        uncertainty=bool(d.get("uncertainty", False)),
        extra=d.get("extra", {}),
    )


def resolve(path: str | os.PathLike[str]) -> Path:
    """A model file, or a run directory (its ``best.keras``, else ``last.keras``)."""
    p = Path(path)
    if p.is_dir():
        for name in ("best.keras", "last.keras"):
            if (p / name).is_file():
                return p / name
        raise FileNotFoundError(f"{p}: no best.keras or last.keras in this run directory")
    if not p.is_file():
        raise FileNotFoundError(f"model not found: {p}")
    return p


def load(path: str | os.PathLike[str]) -> tuple[Any, ModelMeta]:
    """Loads a model (file or run directory) and its settings."""
    import keras

    import boneage.models  # noqa: F401  (registers the custom layers and losses)

    file = resolve(path)
    model = keras.saving.load_model(file, compile=False)
    meta = read_meta(file) or ModelMeta(
        preprocessing=Preprocessing(image_size=int(model.inputs[0].shape[1]))
    )
    return model, meta
