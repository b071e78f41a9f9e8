"""Subprocess side of tests/test_explain.py: Grad-CAM under the JAX backend.

Usage: KERAS_BACKEND=jax python tests/_jax_explain.py WORKDIR

WORKDIR holds ``inputs.npz`` (``image`` uint8 (N, S, S), ``male``) and ``cases.json``, a list
of ``{"key", "name", "image_size", "weights"}``. For each case this script builds the model,
loads the TensorFlow process's weights, runs :class:`boneage.inference.explain.GradCam` and writes
``WORKDIR/jax_explain.npz`` with ``{key}_heat``, ``{key}_output``, ``{key}_baseline``, plus
``backend`` (must read "jax"). As in ``_jax_forward.py``, weights are created as zeros (all
are overwritten from the file) because JAX compiles each random initialiser per shape.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import keras
import numpy as np

import boneage.models
from boneage.inference.explain import GradCam

_add_weight = keras.layers.Layer.add_weight


def _add_zero_weight(self: keras.layers.Layer, *args: object, **kwargs: object) -> object:
    kwargs["initializer"] = "zeros"
    return _add_weight(self, *args, **kwargs)


def main(workdir: Path) -> None:
    data = np.load(workdir / "inputs.npz")
    cases = json.loads((workdir / "cases.json").read_text())
    keras.layers.Layer.add_weight = _add_zero_weight
    out: dict[str, np.ndarray] = {"backend": np.array(keras.backend.backend())}
    for case in cases:
        model = boneage.models.build_model(case["name"], image_size=case["image_size"])
        model.load_weights(case["weights"])
        maps = GradCam.of(model).maps(data["image"], data["male"])
        out[f"{case['key']}_heat"] = maps.heat
        out[f"{case['key']}_output"] = maps.output
        out[f"{case['key']}_baseline"] = maps.baseline
    np.savez(workdir / "jax_explain.npz", **out)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
