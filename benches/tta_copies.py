"""How many test-time copies, and how strong, on a validation split?

    python benches/tta_copies.py [--model MODEL] [--data DATA] [--split val] [--copies 16]

A model's ``tta`` setting (chosen by ``boneage.shipping`` among 0, 4 and 8) averages its plain
prediction with that many augmented copies of the image, drawn with
``predictions.TTA_AUGMENT`` (the training augmentation at about half strength). This measures, on
one split, the MAE of the average over the first k copies for k up to ``--copies``, with that
augmentation and with the full training strength (``Augment()``), so both the count and the
strength are chosen on validation, not on the test images. The model's own calibration layer
(if any) is part of every prediction.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def passes(model: Any, image: np.ndarray, male: np.ndarray, cfg: Any, copies: int) -> np.ndarray:
    """(copies, n) predictions of augmented copies (seeded: the same draws for every model)."""
    from boneage.models.heads import split_prediction
    from boneage.shards.augment import augment_batch

    rng = np.random.default_rng(1)
    out = []
    for _ in range(copies):
        x = augment_batch(image[..., 0], cfg, rng)[..., None]
        out.append(split_prediction(model.predict({"image": x, "male": male}, verbose=0))[0])
    return np.stack(out)


def measure(model_path: str | None, data: str, split: str, copies: int) -> dict[str, Any]:
    from boneage.inference import TTA_AUGMENT, Predictor, to_model_inputs
    from boneage.models.heads import split_prediction
    from boneage.shards.arrays import read_split
    from boneage.shards.augment import Augment

    model = Predictor(model_path).model
    images, male, age, _ids = read_split(data, split)
    inputs = to_model_inputs(images, male, int(model.inputs[0].shape[1]))
    plain = split_prediction(model.predict(inputs, verbose=0))[0]
    result: dict[str, Any] = {"n": len(age), "plain": float(np.mean(np.abs(plain - age)))}
    for name, cfg in (("half", TTA_AUGMENT), ("full", Augment())):
        runs = passes(model, inputs["image"], inputs["male"], cfg, copies)
        sums = plain + np.cumsum(runs, axis=0)
        k = np.arange(1, copies + 1)[:, None]
        result[name] = [float(v) for v in np.mean(np.abs(sums / (k + 1) - age), axis=1)]
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="model file or run directory (default: the shipped model)")
    ap.add_argument("--data", default="data/rsna100-lin", help="shard folder")
    ap.add_argument("--split", default="val")
    ap.add_argument("--copies", type=int, default=16, help="the most copies to average")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.copies < 1:
        ap.error("--copies must be at least 1")
    result = measure(args.model, args.data, args.split, args.copies)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['n']} records of {args.data} {args.split}", end="; ")
    print(f"no copies: MAE {result['plain']:.2f}")
    print(f"{'copies':>6} {'half strength':>14} {'full strength':>14}")
    for k in range(args.copies):
        print(f"{k + 1:>6} {result['half'][k]:>14.2f} {result['full'][k]:>14.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
