"""The estimate stage: one road from a model file to numbers, independent of batching."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("keras")

from boneage.inference import LoadedModel, predict_arrays
from boneage.inference.batch import image_seed


@pytest.fixture(scope="module")
def small_model():
    from boneage.models import build_model

    model = build_model("small_cnn", 32, mean_bias=120.0)
    # A fresh network's head starts at its bias whatever the image; random weights everywhere
    # make its output depend on the pixels, which these tests need.
    rng = np.random.default_rng(0)
    model.set_weights(
        [w + rng.normal(0, 0.2, w.shape).astype(w.dtype) for w in model.get_weights()]
    )
    return model


def test_an_estimate_does_not_depend_on_its_batch(small_model):
    """TTA copies are seeded by each image: alone, in a batch, reordered, the same number."""
    rng = np.random.default_rng(4)
    images = rng.integers(0, 255, (7, 32, 32), dtype=np.uint8)
    male = np.array([0, 1, 1, 0, 1, 0, 1], np.float32)
    together, _ = predict_arrays(small_model, images, male, batch_size=4, tta=5)
    alone = [predict_arrays(small_model, images[i : i + 1], male[i : i + 1], tta=5)[0][0]
             for i in range(len(images))]  # fmt: skip
    np.testing.assert_allclose(together, alone, atol=0.01)
    order = rng.permutation(len(images))
    shuffled, _ = predict_arrays(small_model, images[order], male[order], tta=5)
    np.testing.assert_allclose(shuffled, together[order], atol=0.01)
    plain, _ = predict_arrays(small_model, images, male, tta=0)
    assert not np.allclose(plain, together, atol=1e-4)  # the copies were used


def test_image_seed_depends_on_pixels_and_sex():
    a = np.zeros((8, 8), np.uint8)
    b = a.copy()
    b[3, 3] = 1
    assert image_seed(a, 0.0) == image_seed(a.copy(), 0.0)
    assert len({image_seed(a, 0.0), image_seed(b, 0.0), image_seed(a, 1.0)}) == 3
    assert image_seed(a, 0.0) != image_seed(a.reshape(4, 16), 0.0)


def test_loaded_model_settles_tta_and_checks_data(tmp_path, small_model):
    from boneage import modelio
    from boneage.settings import Preprocessing

    meta = modelio.ModelMeta(Preprocessing(image_size=32), "small_cnn", extra={"tta": 3})
    path = modelio.save(small_model, tmp_path / "m.keras", meta)
    assert LoadedModel.open(path).tta == 3  # the file's choice
    assert LoadedModel.open(path, tta=0).tta == 0  # the caller's
    with pytest.raises(ValueError, match="tta must be"):
        LoadedModel.open(path, tta=-1)
    loaded = LoadedModel.open(path)
    data = tmp_path / "data"
    data.mkdir()
    Preprocessing(image_size=48).write(data)
    with pytest.raises(ValueError, match="figures would be meaningless"):
        loaded.check_data(data)
    Preprocessing(image_size=32).write(data)
    loaded.check_data(data)


def _module_imports(root: Path) -> dict[str, set[str]]:
    """Module-level ``boneage`` imports of every module (not those inside functions or under
    ``if TYPE_CHECKING``: those run late, or never)."""
    graph: dict[str, set[str]] = {}
    for file in root.rglob("*.py"):
        parts = file.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found: set[str] = set()
        for node in ast.parse(file.read_text()).body:
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = {m for m in found if m.startswith("boneage")}
    return {k: {m for m in v if m in graph and m != k} for k, v in graph.items()}


def test_no_import_circle_and_evaluation_builds_on_inference():
    """No module-level import circle in the package, and ``boneage.inference`` never imports
    ``boneage.evaluation`` (evaluation builds on inference, not the reverse)."""
    import boneage

    graph = _module_imports(Path(boneage.__file__).parent)
    for name in graph:
        if name.startswith("boneage.inference"):
            assert not any(m.startswith("boneage.evaluation") for m in graph[name]), name

    def parents(m: str) -> set[str]:  # importing a.b.c runs a and a.b first
        bits = m.split(".")
        return {".".join(bits[:i]) for i in range(1, len(bits))} & set(graph)

    edges = {k: v | {p for m in v for p in parents(m)} - {k} for k, v in graph.items()}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in edges[node]:
            if state.get(nxt) == 1 and not node.startswith(nxt + "."):
                raise AssertionError(f"import circle: {' -> '.join([*path, node, nxt])}")
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
