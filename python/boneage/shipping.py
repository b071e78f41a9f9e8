"""``python -m boneage.shipping RUN``: make a run's best model the package's shipped default.

For maintainers. Two choices are made on the run's *validation* split (never on test data):

- whether to re-estimate the batch-norm statistics on unaugmented training images ("precise
  BN"): training keeps running averages of *augmented* batches taken while the weights were
  still moving, while the model is used on plain images with fixed weights;
- how many test-time augmentation copies to average.

The chosen TTA count is recorded in the model file next to the preprocessing; the optimizer
state is dropped (a shipped model only predicts, and the file must stay small enough for the
wheel); the model is written to ``boneage/shipped/``, replacing the previous model there.

The provenance it keeps names the data folder and the training command as they were typed,
not absolute paths of the machine that trained it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from boneage.cli import quiet_native_logs, run_command
from boneage.inference import SHIPPED

MAX_BYTES = 30 * 2**20
"""The repository may carry one large file, the shipped model, of at most 30 MB."""


def choose_tta(model: Any, data: str, split: str, candidates: Sequence[int]) -> dict[int, float]:
    """Validation MAE for each TTA count (the caller picks the smallest)."""
    from boneage.evaluation.predictions import predict_split

    out = {}
    for n in candidates:
        pred = predict_split(model, data, split, tta=n)
        out[int(n)] = float(np.mean(np.abs(pred.y_pred - pred.y_true)))
    return out


def recalibrate_bn(model: Any, data: str, split: str, batch_size: int = 128) -> int:
    """Sets every BatchNormalization layer's statistics to their average over the plain
    (unaugmented) images of ``split``; returns the number of batches used.

    Each batch is run in training mode with the layer's momentum set to ``k / (k + 1)`` for
    the k-th batch, which makes the stored statistics the exact mean of the batch statistics
    rather than an exponential average. No weight is trained.
    """
    import keras

    from boneage.evaluation.predictions import to_model_inputs
    from boneage.shards import read_split

    images, male, _age, _ids = read_split(data, split)
    order = np.random.default_rng(0).permutation(len(images))
    layers = [lay for lay in model.layers if isinstance(lay, keras.layers.BatchNormalization)]
    saved = [layer.momentum for layer in layers]
    size = int(model.inputs[0].shape[1])
    k = 0
    try:
        for start in range(0, len(order) - batch_size + 1, batch_size):
            pick = order[start : start + batch_size]
            for layer in layers:
                layer.momentum = k / (k + 1.0)
            model(to_model_inputs(images[pick], male[pick], size), training=True)
            k += 1
    finally:
        for layer, m in zip(layers, saved, strict=True):
            layer.momentum = m
    return k


def ship(
    run: str, data: str | None, split: str, candidates: Sequence[int], train_split: str = "train"
) -> dict[str, Any]:
    from boneage import modelio

    model, meta = modelio.load(run)
    run_dir = Path(run) if Path(run).is_dir() else Path(run).parent
    if data is None:
        data = json.loads((run_dir / "config.json").read_text())["data"]
    plain = choose_tta(model, data, split, candidates)
    recalibrated, _ = modelio.load(run)
    batches = recalibrate_bn(recalibrated, data, train_split)
    precise = choose_tta(recalibrated, data, split, candidates)
    use_precise = min(precise.values()) < min(plain.values())
    maes = precise if use_precise else plain
    if use_precise:
        model = recalibrated
    best = min(maes, key=lambda n: (round(maes[n], 2), n))
    meta.extra["tta"] = best
    meta.extra["choices_on_validation"] = {
        "split": split,
        "val_mae_by_tta_training_bn": plain,
        "val_mae_by_tta_precise_bn": precise,
        "precise_bn": {"used": use_precise, "batches": batches, "from_split": train_split},
    }
    SHIPPED.mkdir(parents=True, exist_ok=True)
    target = SHIPPED / f"boneage-{meta.extra.get('trained_on', 'model')}-{meta.model_name}.keras"
    for old in SHIPPED.glob("*.keras"):
        old.unlink()
    modelio.save(model, target, meta)  # loaded with compile=False: no optimizer state
    size = target.stat().st_size
    if size > MAX_BYTES:
        target.unlink()
        raise ValueError(f"{target.name} is {size / 2**20:.1f} MiB, over the 30 MiB limit")
    return {"model": str(target), "bytes": size, "tta": best, **meta.extra["choices_on_validation"]}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m boneage.shipping", description=__doc__)
    p.add_argument("run", help="run directory or model file")
    p.add_argument("--data", help="shard directory (default: the run's own)")
    p.add_argument("--split", default="val", help="validation split used to choose the TTA")
    p.add_argument("--tta", type=int, nargs="+", default=[0, 4, 8], help="TTA counts to try")
    args = p.parse_args(argv)
    quiet_native_logs()
    return run_command(lambda: _print(ship(args.run, args.data, args.split, args.tta)))


def _print(result: dict[str, Any]) -> int:
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
