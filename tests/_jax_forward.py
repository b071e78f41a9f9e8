"""Subprocess side of tests/test_models.py: forward passes under the JAX backend.

Usage: KERAS_BACKEND=jax python tests/_jax_forward.py WORKDIR

WORKDIR holds ``inputs.npz`` (``image``, ``male``) and ``cases.json``, a list of
``{"key", "name", "image_size", "options", "weights", "keras"}``. For each case this script
(1) builds the model with ``boneage.models.build_model`` and loads the ``.weights.h5`` file,
(2) loads the ``.keras`` file with nothing but ``import boneage.models`` (no custom_objects),
runs both on the inputs and writes ``WORKDIR/jax_outputs.npz`` with ``{key}_built`` and
``{key}_loaded``, plus ``backend`` (must read "jax").

Every weight is created with zeros here: all of them are overwritten from the files, so the
values do not matter, and under JAX each random initialiser compiles once per weight shape,
which made building DenseNet take 20 s instead of 3 on a small CPU. (Zeros also make a weight
that fails to load show up as a wrong output instead of a plausible random one.)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import keras
import numpy as np

import boneage.models

_add_weight = keras.layers.Layer.add_weight


def _add_zero_weight(self: keras.layers.Layer, *args: object, **kwargs: object) -> object:
    kwargs["initializer"] = "zeros"
    return _add_weight(self, *args, **kwargs)


def main(workdir: Path) -> None:
    data = np.load(workdir / "inputs.npz")
    x = {"image": data["image"], "male": data["male"]}
    cases = json.loads((workdir / "cases.json").read_text())
    keras.layers.Layer.add_weight = _add_zero_weight
    out: dict[str, np.ndarray] = {"backend": np.array(keras.backend.backend())}
    for case in cases:
        model = boneage.models.build_model(
            case["name"], image_size=case["image_size"], **case["options"]
        )
        model.load_weights(case["weights"])
        out[f"{case['key']}_built"] = np.asarray(model.predict_on_batch(x))
        loaded = keras.saving.load_model(case["keras"])
        out[f"{case['key']}_loaded"] = np.asarray(loaded.predict_on_batch(x))
    np.savez(workdir / "jax_outputs.npz", **out)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
