"""``python -m boneage.shipping RUN``: make a run's best model the package's shipped default.

For maintainers. Chooses the test-time augmentation count on the run's *validation* split
(never on test data), records it in the model file next to the preprocessing, drops the
optimizer state (a shipped model only predicts, and the file must stay small enough for the
wheel), and writes it to ``boneage/shipped/``, replacing the previous model there.

The provenance it keeps names the data folder and the training command as they were typed,
not absolute paths of the machine that trained it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from boneage.predict import SHIPPED

MAX_BYTES = 30 * 2**20
"""The repository may carry one large file, the shipped model, of at most 30 MB."""


def choose_tta(model: Any, data: str, split: str, candidates: Sequence[int]) -> dict[int, float]:
    """Validation MAE for each TTA count (the caller picks the smallest)."""
    from boneage.evaluation import predict_split

    out = {}
    for n in candidates:
        pred = predict_split(model, data, split, tta=n)
        out[int(n)] = float(abs(pred.y_pred - pred.y_true).mean())
    return out


def ship(run: str, data: str | None, split: str, candidates: Sequence[int]) -> dict[str, Any]:
    from boneage import modelio

    model, meta = modelio.load(run)
    run_dir = Path(run) if Path(run).is_dir() else Path(run).parent
    if data is None:
        data = json.loads((run_dir / "config.json").read_text())["data"]
    maes = choose_tta(model, data, split, candidates)
    best = min(maes, key=lambda n: (round(maes[n], 2), n))
    meta.extra["tta"] = best
    meta.extra["tta_chosen_on"] = {"split": split, "val_mae_by_tta": maes}
    SHIPPED.mkdir(parents=True, exist_ok=True)
    target = SHIPPED / f"boneage-{meta.extra.get('trained_on', 'model')}-{meta.model_name}.keras"
    for old in SHIPPED.glob("*.keras"):
        old.unlink()
    modelio.save(model, target, meta)  # loaded with compile=False: no optimizer state
    size = target.stat().st_size
    if size > MAX_BYTES:
        target.unlink()
        raise ValueError(f"{target.name} is {size / 2**20:.1f} MiB, over the 30 MiB limit")
    return {"model": str(target), "bytes": size, "tta": best, "val_mae_by_tta": maes}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m boneage.shipping", description=__doc__)
    p.add_argument("run", help="run directory or model file")
    p.add_argument("--data", help="shard directory (default: the run's own)")
    p.add_argument("--split", default="val", help="validation split used to choose the TTA")
    p.add_argument("--tta", type=int, nargs="+", default=[0, 4, 8], help="TTA counts to try")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        result = ship(args.run, args.data, args.split, args.tta)
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
