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

from boneage.modelcheck import check_model_file
from boneage.runs import RunDir
from boneage.settings import Preprocessing

__all__ = [
    "META_NAME",
    "ModelMeta",
    "Preprocessing",
    "load",
    "read_meta",
    "resolve",
    "restore_optimizer",
    "round_to_half",
    "save",
]

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

    def member(self, index: int) -> ModelMeta:
        """The metadata of an ensemble's member ``index``: the shared preprocessing with that
        member's own name and provenance (recorded in ``extra["members"]`` when it was built).

        Why: a member taken out of an ensemble (to ship it in another subset, or to fine-tune
        it) must say what it is and how it was trained, not repeat the ensemble's summary.
        An ensemble saved without that record gives its members its own name and provenance.
        """
        described = self.extra.get("members") or []
        if not described:
            return ModelMeta(self.preprocessing, self.model_name, False, dict(self.extra))
        if not 0 <= index < len(described):
            raise ValueError(f"member {index}: the ensemble has members 0 to {len(described) - 1}")
        extra = dict(described[index])
        name = str(extra.pop("model_name", ""))
        return ModelMeta(self.preprocessing, name, False, extra)


WEIGHTS_NAME = "model.weights.h5"
"""The member of a ``.keras`` zip that holds the weights (Keras's own name)."""

HALF_MAX = 65504.0
"""The largest finite float16: a weight beyond it cannot be stored in half precision."""


def save(model: Any, path: str | os.PathLike[str], meta: ModelMeta, half: bool = False) -> Path:
    """Saves ``model`` as ``.keras`` with ``meta`` embedded; atomic (temp file + rename).

    ``half`` stores the float32 weights as float16, halving the file (how a three-network
    ensemble fits the package's 30 MB). Keras casts them back to float32 when it loads the
    file, with plain ``keras.saving.load_model`` too, so nothing that reads the model changes;
    what it computes changes by the rounding alone (see :func:`round_to_half`).
    """
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp.keras")
    model.save(tmp)
    if half:
        _halve_weights(tmp)
    with zipfile.ZipFile(tmp, "a") as zf:
        d = asdict(meta)
        d["preprocessing"] = meta.preprocessing.to_dict()
        zf.writestr(META_NAME, json.dumps(d, indent=2))
    tmp.replace(path)
    return path


def round_to_half(model: Any) -> None:
    """Rounds ``model``'s float32 weights, in place, to the values float16 storage keeps, so
    the model in memory predicts exactly what the file written with ``half=True`` will."""
    import numpy as np

    weights = model.get_weights()
    _check_half_range(weights, model.name)
    model.set_weights(
        [w.astype(np.float16).astype(np.float32) if w.dtype == np.float32 else w for w in weights]
    )


def _check_half_range(weights: Any, where: str) -> None:
    import numpy as np

    for w in weights:
        if w.dtype == np.float32 and w.size and float(np.max(np.abs(w))) > HALF_MAX:
            raise ValueError(f"{where}: a weight of {np.max(np.abs(w)):g} overflows float16")


def _halve_weights(file: Path) -> None:
    """Rewrites the weights member of the ``.keras`` zip ``file`` with float16 datasets.

    The HDF5 file is copied into a new one rather than edited: HDF5 does not give back the
    space of a deleted dataset, so an edited file would not shrink.
    """
    import tempfile

    import h5py
    import numpy as np

    def copy(src: Any, dst: Any) -> None:
        dst.attrs.update(src.attrs)
        for name, item in src.items():
            if isinstance(item, h5py.Group):
                copy(item, dst.create_group(name))
                continue
            data = item[()]
            if getattr(data, "dtype", None) == np.float32:
                _check_half_range([data], f"{file.name}: {item.name}")
                data = data.astype(np.float16)
            # Other data (integer seeds and counters, scalars) is kept as it is.
            dst.create_dataset(name, data=data).attrs.update(item.attrs)

    with tempfile.TemporaryDirectory(dir=file.parent) as scratch:
        full, half = Path(scratch) / "full.h5", Path(scratch) / "half.h5"
        with zipfile.ZipFile(file) as zin:
            full.write_bytes(zin.read(WEIGHTS_NAME))
            members = [(info, zin.read(info.filename)) for info in zin.infolist()]
        with h5py.File(full, "r") as src, h5py.File(half, "w") as dst:
            copy(src, dst)
        with zipfile.ZipFile(file, "w") as zout:
            for info, body in members:
                zout.writestr(info, half.read_bytes() if info.filename == WEIGHTS_NAME else body)


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


def restore_optimizer(model: Any, path: str | os.PathLike[str]) -> bool:
    """Puts the optimizer state saved in the ``.keras`` file ``path`` into ``model``'s
    (compiled) optimizer; True when it did, False when the file has none or another layout.

    :func:`load` reads a model without its compiled state, so a resumed run would otherwise
    restart Adam's moment estimates from zero and lose about an epoch to re-estimating them.
    Keras stores the optimizer's variables by position; they are restored only when their
    count and every shape match, which the same model compiled the same way guarantees.
    """
    import io

    import h5py

    with zipfile.ZipFile(path) as zf, h5py.File(io.BytesIO(zf.read(WEIGHTS_NAME)), "r") as f:
        group = f.get("optimizer/vars")
        saved = {} if group is None else {name: group[name][()] for name in group}
    optimizer = model.optimizer
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    variables = list(optimizer.variables)
    if len(saved) != len(variables) or any(
        tuple(saved[str(i)].shape) != tuple(v.shape) for i, v in enumerate(variables)
    ):
        return False
    for i, variable in enumerate(variables):
        variable.assign(saved[str(i)])
    return True


def resolve(path: str | os.PathLike[str]) -> Path:
    """A model file, or a run directory (its ``best.keras``, else ``last.keras``)."""
    p = Path(path)
    if p.is_dir():
        return RunDir(p).model_file()
    if not p.is_file():
        raise FileNotFoundError(f"model not found: {p}")
    return p


def load(path: str | os.PathLike[str]) -> tuple[Any, ModelMeta]:
    """Loads a model (file or run directory) and its settings.

    The file is vetted first (:func:`boneage.modelcheck.check_model_file`): only the
    project's layers and Keras' built-in ones are built, so a model file cannot run code.
    This is the one road from a file to a model in the package; keep it that way.
    """
    import keras

    import boneage.models  # noqa: F401  (registers the custom layers and losses)

    file = resolve(path)
    check_model_file(file)  # before Keras builds anything: a model file must not run code
    model = keras.saving.load_model(file, compile=False, safe_mode=True)
    meta = read_meta(file) or ModelMeta(
        preprocessing=Preprocessing(image_size=int(model.inputs[0].shape[1]))
    )
    return model, meta
