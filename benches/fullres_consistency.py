"""Does a model's own preprocessing make a hospital film look like its training images?

    python benches/fullres_consistency.py [--model MODEL] [--json]

``shared/data/rsna/fullres`` holds full-resolution films of 48 training ids that are also in
``train100`` (the 100 px copies a squash-mode model learned from). For each, this prepares the
full-resolution file and the 100 px file with the model's preprocessing and reports:

- the mean absolute grey-level difference between the full-resolution film squashed to the
  model's size and the train100 image (before CLAHE: how well the resize reproduces the
  copy), and between the two prepared inputs (after CLAHE: what the model actually sees);
- the mean and largest gap, in months, between the predictions from the two files.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
RSNA = Path(os.environ.get("BONEAGE_SHARED", REPO.parent / "shared")) / "data" / "rsna"


def pairs(rsna: Path = RSNA) -> list[tuple[str, Path, Path, int]]:
    """(id, full-resolution file, train100 file, male) for ids in both subsets."""
    rows = list(csv.DictReader((rsna / "labels.csv").open()))
    male = {r["id"]: int(r["male"] == "True") for r in rows}
    full = {
        r["id"]: rsna / r["file"]
        for r in rows
        if r["subset"] == "fullres" and "parma_fitted" not in r["file"]
    }
    small = {r["id"]: rsna / r["file"] for r in rows if r["subset"] == "train100"}
    return [(i, full[i], small[i], male[i]) for i in sorted(full) if i in small]


def measure(model: str | None, rsna: Path = RSNA, limit: int | None = None) -> dict[str, float]:
    from boneage import _native as native
    from boneage.evaluation.predictions import predict_arrays
    from boneage.inference import Predictor

    predictor = Predictor(model)
    side = predictor.meta.preprocessing.image_size
    raw_diff, prep_diff = [], []
    chosen = pairs(rsna)[:limit]
    big, small, male = [], [], []
    for _id, full_path, small_path, is_male in chosen:
        full_img = native.read_gray(full_path)
        small_img = native.read_gray(small_path)
        squashed = native.resize_area(full_img, side, side)
        copy = (
            small_img
            if small_img.shape == (side, side)
            else native.resize_area(small_img, side, side)
        )
        raw_diff.append(np.mean(np.abs(squashed.astype(int) - copy.astype(int))))
        a, _, _ = predictor.prepare(full_img)
        b, _, _ = predictor.prepare(small_img)
        prep_diff.append(np.mean(np.abs(a.astype(int) - b.astype(int))))
        big.append(a)
        small.append(b)
        male.append(is_male)
    m = np.asarray(male, np.float32)
    pa, _ = predict_arrays(predictor.model, np.stack(big), m)
    pb, _ = predict_arrays(predictor.model, np.stack(small), m)
    gaps = np.abs(pa - pb)
    return {
        "pairs": len(chosen),
        "mode": predictor.meta.preprocessing.mode,
        "grey_diff_resize_mean": float(np.mean(raw_diff)),
        "grey_diff_prepared_mean": float(np.mean(prep_diff)),
        "gap_months_mean": float(np.mean(gaps)),
        "gap_months_max": float(np.max(gaps)),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="model file or run directory (default: the shipped model)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not (RSNA / "fullres").is_dir():
        print(f"real RSNA data not found at {RSNA}", file=sys.stderr)
        return 2
    result = measure(args.model)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k:<26} {v:.2f}" if isinstance(v, float) else f"{k:<26} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
