"""A model file must not run code: every road from a file to a model vets it first.

The first test is the attack itself: a ``.keras`` file whose ``TFSMLayer`` points at a
SavedModel whose graph writes a file when called. Keras' own ``safe_mode`` lets it through;
``boneage.modelio.load`` (behind ``predict --model``, ``$BONEAGE_MODEL``, ``serve --model``,
``evaluate``, ``shipping`` and ``train --init-from``/``--resume``) must refuse it before
anything is built or called.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from boneage import modelio  # noqa: E402
from boneage.modelcheck import UnsafeModelError, check_model_config  # noqa: E402

SHIPPED = next((Path(__file__).parents[1] / "python/boneage/shipped").glob("boneage-*.keras"))


def _payload_savedmodel(folder: Path, marker: Path) -> None:
    """A SavedModel whose serving function writes ``marker`` (as a hostile one would)."""

    class Payload(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            tf.io.write_file(str(marker), "ran")
            return {"out": x * 1.0}

    module = Payload()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})


@pytest.fixture
def hostile_run(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """A shared run folder: ``best.keras`` with its payload in a folder beside it, found by a
    relative path (the reader's working directory is the folder)."""
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.chdir(run)
    marker = tmp_path / "pwned.txt"
    _payload_savedmodel(run / "payload", marker)
    inp = keras.Input((4,))
    out = keras.layers.TFSMLayer("payload", call_endpoint="serving_default")(inp)
    keras.Model(inp, out).save(run / "best.keras")
    return run, marker


def test_tfsmlayer_payload_is_real(hostile_run):
    """The attack works when Keras loads the file on its own: the test below guards a real
    hole, not a hypothetical one."""
    run, marker = hostile_run
    model = keras.saving.load_model(run / "best.keras", compile=False, safe_mode=True)
    model(np.zeros((1, 4), np.float32))
    assert marker.read_text() == "ran"


def test_modelio_refuses_tfsmlayer(hostile_run):
    run, marker = hostile_run
    with pytest.raises(UnsafeModelError, match=r"TFSMLayer.*runs code"):
        modelio.load(run)  # the run folder, as predict --model RUN gives it
    with pytest.raises(UnsafeModelError, match=re.escape(str(run / "best.keras"))):
        modelio.load(run / "best.keras")
    assert not marker.exists()


def test_predictor_and_env_model_refuse_it(hostile_run, monkeypatch):
    from boneage.inference import Predictor

    run, marker = hostile_run
    with pytest.raises(UnsafeModelError):
        Predictor(run / "best.keras")
    monkeypatch.setenv("BONEAGE_MODEL", str(run / "best.keras"))
    with pytest.raises(UnsafeModelError):
        Predictor()
    assert not marker.exists()


def _rewrite_config(src: Path, dst: Path, edit: object) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            body = zin.read(info.filename)
            if info.filename == "config.json":
                config = json.loads(body)
                edit(config)  # type: ignore[operator]
                body = json.dumps(config).encode()
            zout.writestr(info, body)
    return dst


def _first_layer(config: dict) -> dict:
    return next(
        layer for layer in config["config"]["layers"] if layer["class_name"] != "InputLayer"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # A class from any importable module: Keras would import the module by name.
        ({"module": "os", "class_name": "system", "registered_name": None}, "neither Keras"),
        # A custom object registered by another package.
        ({"module": "evil", "class_name": "Thing", "registered_name": "evil>Thing"}, "'evil'"),
        # Our prefix, but a name we never registered.
        ({"registered_name": "boneage>Nope"}, "does not register"),
        # Keras' code-carrying built-ins.
        ({"module": "keras.layers", "class_name": "Lambda", "registered_name": None}, "Lambda"),
        (
            {"module": "keras.layers", "class_name": "TorchModuleWrapper", "registered_name": None},
            "TorchModuleWrapper",
        ),
        # A name that is not a Keras class at all.
        ({"module": "keras.layers", "class_name": "Nothing", "registered_name": None}, "built-in"),
    ],
)
def test_foreign_objects_refused(tmp_path, change, message):
    def edit(config: dict) -> None:
        _first_layer(config).update(change)

    bad = _rewrite_config(SHIPPED, tmp_path / "bad.keras", edit)
    with pytest.raises(UnsafeModelError, match=message):
        modelio.load(bad)


def test_function_objects_refused():
    config = {
        "class_name": "Functional",
        "module": "keras.src.models.functional",
        "config": {
            "layers": [
                {"class_name": "__lambda__", "config": {"code": "..."}},
            ]
        },
    }
    with pytest.raises(UnsafeModelError, match="runs code"):
        check_model_config(config)
    config["config"]["layers"] = [
        {"class_name": "function", "module": "builtins", "config": "eval", "registered_name": None}
    ]
    with pytest.raises(UnsafeModelError, match="function from 'builtins'"):
        check_model_config(config)


def test_legacy_formats_refused(tmp_path):
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(1)(inp))
    h5 = tmp_path / "model.h5"
    model.save(h5)
    with pytest.raises(UnsafeModelError, match=r"not a \.keras model file"):
        modelio.load(h5)


def test_project_models_pass(tmp_path):
    """The guard is an allowlist: every model this project builds (and the shipped one) must
    still load through it."""
    from boneage.models import available, build_model

    for name in available():
        model = build_model(name, image_size=64)
        check_model_config(json.loads(model.to_json()), name)
    model, meta = modelio.load(SHIPPED)
    assert meta.model_name and model.count_params() > 0
    assert os.path.getsize(SHIPPED) > 0


def test_a_checkpoint_with_its_schedule_passes_in_a_fresh_process(tmp_path):
    """A training checkpoint (``last.keras``) names the project's learning-rate schedule in
    its optimizer config; the guard must know it in a process that never imported training
    (``predict --model RUN`` found it unregistered before)."""
    import subprocess
    import sys

    from boneage.training.schedules import WarmupCosine

    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(1)(inp))
    model.compile(optimizer=keras.optimizers.AdamW(WarmupCosine(1e-3, 10, 0.1)), loss="mse")
    model.fit(np.zeros((4, 4)), np.zeros(4), verbose=0)
    path = tmp_path / "last.keras"
    model.save(path)
    code = f"from boneage.modelcheck import check_model_file; check_model_file({str(path)!r})"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
