"""boneage: bone age (months) from a hand radiograph.

The heavy image work lives in the Rust extension :mod:`boneage._native`; the Python package
adds hand localisation, bulk preprocessing into TFRecord shards, Keras 3 models, training,
evaluation and prediction. Importing :mod:`boneage` is cheap: the deep-learning stacks load
only when a submodule that needs them is imported.
"""

from __future__ import annotations

from typing import Any

from boneage._native import __version__  # one owner: Cargo.toml's version

__all__ = ["Predictor", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy so that `import boneage` does not pull in Keras/TensorFlow.
    if name == "Predictor":
        from boneage.inference import Predictor

        return Predictor
    raise AttributeError(f"module 'boneage' has no attribute {name!r}")
