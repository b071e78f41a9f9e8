"""Vetting a ``.keras`` file before Keras builds anything from it.

Why: a ``.keras`` file is a recipe, and some recipes run code. Keras' ``safe_mode`` refuses
pickled Python lambdas, but not the layers that wrap foreign code by design: ``TFSMLayer``
calls whatever TensorFlow graph its SavedModel path holds (and graph operations can write
any file), ``TorchModuleWrapper`` unpickles a module, ``JaxLayer``/``FlaxLayer`` call
functions given to them. A model handed to ``predict --model``, ``$BONEAGE_MODEL``,
``serve --model`` or left in a shared run folder must not be able to do any of that.

So the file's ``config.json`` is read as data and every object in it is checked against an
allowlist before Keras deserialises it: the project's own registered classes, Keras'
built-in layers, initialisers, regularisers, constraints, dtype policies and functional
models (less the code-carrying layers above), and Keras' inert value markers (tensors,
tuples, arrays). Anything else is refused with :class:`UnsafeModelError`, naming the file
and the object.
"""

from __future__ import annotations

import importlib
import json
import os
import zipfile
from collections.abc import Iterator
from typing import Any

__all__ = ["CODE_CARRYING", "UnsafeModelError", "check_model_config", "check_model_file"]

CODE_CARRYING = frozenset({"Lambda", "TFSMLayer", "TorchModuleWrapper", "JaxLayer", "FlaxLayer"})
"""Keras built-in layers whose job is to run code that the file (or a path in it) supplies."""

_KERAS_MODULES = frozenset(
    {
        "keras",
        "keras.layers",
        "keras.initializers",
        "keras.regularizers",
        "keras.constraints",
        "keras.activations",
        "keras.losses",
        "keras.metrics",
        "keras.optimizers",
        "keras.optimizers.schedules",
    }
)
"""Public Keras namespaces a built-in object may name; its class must be an attribute there."""

_MODEL_MODULES = frozenset(
    {"keras.src.models.functional", "keras.src.models.sequential", "keras.src.models.model",
     "keras.models"}
)  # fmt: skip
_MODEL_CLASSES = frozenset({"Functional", "Sequential", "Model"})
"""Keras' model containers, which serialise under their private module paths."""

_INERT_MARKERS = frozenset(
    {"__keras_tensor__", "__tuple__", "__numpy__", "__tensor__", "__bytes__", "__ellipsis__",
     "__slice__"}
)  # fmt: skip
"""Keras' markers for plain values inside a config (never ``__lambda__`` or ``__typespec__``)."""

_OWN_PACKAGE = "boneage"


class UnsafeModelError(ValueError):
    """A model file names an object that could run code, or one this project does not know."""


def check_model_file(path: str | os.PathLike[str]) -> None:
    """Refuses ``path`` unless it is a ``.keras`` zip whose config holds only allowed objects.

    Legacy HDF5 and SavedModel formats are refused too: their loaders deserialise without
    this check (an HDF5 ``Lambda`` layer carries marshalled bytecode).
    """
    if not zipfile.is_zipfile(path):
        raise UnsafeModelError(
            f"{path}: not a .keras model file (a zip); other formats (HDF5, SavedModel) are "
            "not loaded, because they can carry code"
        )
    try:
        with zipfile.ZipFile(path) as zf:
            config = json.loads(zf.read("config.json"))
    except KeyError as e:
        raise UnsafeModelError(f"{path}: no config.json in this .keras file") from e
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UnsafeModelError(f"{path}: unreadable .keras config ({e})") from e
    check_model_config(config, str(path))


def check_model_config(config: Any, where: str = "model") -> None:
    """Walks a deserialised ``config.json`` and raises on the first object not allowed."""
    for obj, trail in _objects(config, "config"):
        reason = _refusal(obj)
        if reason is not None:
            inner = obj.get("config")
            name = inner.get("name") if isinstance(inner, dict) else None
            label = f"{obj.get('class_name')!s}" + (f" {name!r}" if name else "")
            raise UnsafeModelError(
                f"{where}: refused to load: {label} at {trail} {reason}; only this project's "
                "layers and Keras' built-in layers are loaded, since a model file must not run "
                "code"
            )


def _objects(node: Any, trail: str) -> Iterator[tuple[dict[str, Any], str]]:
    """Every serialised object (a dict with ``class_name``) in ``node``, depth first."""
    if isinstance(node, dict):
        if "class_name" in node:
            yield node, trail
        for key, value in node.items():
            yield from _objects(value, f"{trail}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _objects(value, f"{trail}[{i}]")


def _refusal(obj: dict[str, Any]) -> str | None:
    """Why ``obj`` may not be deserialised, or None when it may."""
    cls, module, registered = obj.get("class_name"), obj.get("module"), obj.get("registered_name")
    if not isinstance(cls, str):
        return "has no class name"
    if cls in _INERT_MARKERS:
        return None
    if cls in CODE_CARRYING or cls in ("__lambda__", "__typespec__"):
        return "runs code supplied from outside the model's weights"
    if isinstance(registered, str) and ">" in registered:
        return _own_class(registered)
    if cls == "function":
        return _keras_function(obj, module)
    if module in _MODEL_MODULES:
        return None if cls in _MODEL_CLASSES else f"is not a Keras model class in {module}"
    if module in _KERAS_MODULES:
        if registered not in (None, cls):
            return f"claims the registered name {registered!r}"
        try:
            found = getattr(importlib.import_module(module), cls, None)
        except ImportError:
            found = None
        return None if isinstance(found, type) else f"is not a Keras built-in in {module}"
    return f"comes from {module!r}, which is neither Keras nor {_OWN_PACKAGE}"


def _own_class(registered: str) -> str | None:
    """A registered custom object: allowed only when this package registered it."""
    import keras

    # Every module that registers a class: the layers, losses and calibration of the models,
    # and the learning-rate schedule a checkpoint's optimizer config names.
    import boneage.models
    import boneage.training.schedules  # noqa: F401

    package = registered.split(">", 1)[0]
    if package != _OWN_PACKAGE:
        return f"is a custom object of package {package!r}, not {_OWN_PACKAGE}'s"
    found = keras.saving.get_registered_object(registered)
    if found is None or not str(getattr(found, "__module__", "")).startswith(_OWN_PACKAGE + "."):
        return f"names {registered!r}, which {_OWN_PACKAGE} does not register"
    return None


def _keras_function(obj: dict[str, Any], module: Any) -> str | None:
    """A serialised function: only a Keras built-in activation, loss or metric by name."""
    if module not in ("keras.activations", "keras.losses", "keras.metrics"):
        return f"is a function from {module!r}"
    name = obj.get("config")
    if not isinstance(name, str):
        return "is a function without a name"
    found = getattr(importlib.import_module(module), name, None)
    return None if callable(found) else f"is not a Keras built-in function in {module}"
