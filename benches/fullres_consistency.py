"""Does a model's own preprocessing make other copies of a film look like its training images?

    python benches/fullres_consistency.py [--model MODEL] [--interpolation area|linear] [--json]

A squash-mode model learned from ``train100``, the public 100 px RSNA copies. Hospital films
and the official test images reach it by other roads, so this compares, per training id that
exists at two sizes, the model's input and prediction from each road with the train100 copy:

- ``fullres``: the 41 full-resolution films of training ids in ``shared/data/rsna/fullres``
  (the 7 ``parma_fitted`` files, already cropped and padded by their source, are left out);
- ``299``: the ~690 training ids that also have a 299 px copy in ``train299`` (bilinear,
  squashed: the road the 134 official test images in ``test299`` take).

For each road it reports the mean absolute grey-level difference between the film resized to
the model's side and the train100 image (before CLAHE: how well the resize reproduces the
copy), the same between the two prepared inputs (after CLAHE: what the model sees), and the
mean and largest gap, in months, between the two predictions (without test-time
augmentation), and each road's MAE against the label (meaningful with ``--split DATA val``,
which keeps only films the model did not train on). ``--interpolation`` overrides the model's
resize filter, to choose it on training films rather than on test images.
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


def pairs(road: str, rsna: Path = RSNA) -> list[tuple[str, Path, Path, int, float]]:
    """(id, other copy, train100 file, male, bone age) for ids in ``train100`` and in
    ``road``'s subset (``fullres`` or ``299``)."""
    subset = {"fullres": "fullres", "299": "train299"}[road]
    rows = list(csv.DictReader((rsna / "labels.csv").open()))
    male = {r["id"]: int(r["male"] == "True") for r in rows}
    age = {r["id"]: float(r["boneage"]) for r in rows}
    other = {
        r["id"]: rsna / r["file"]
        for r in rows
        if r["subset"] == subset and "parma_fitted" not in r["file"]
    }
    small = {r["id"]: rsna / r["file"] for r in rows if r["subset"] == "train100"}
    return [(i, other[i], small[i], male[i], age[i]) for i in sorted(other) if i in small]


def split_ids(data: Path, split: str) -> set[str]:
    """The case ids a shard folder's ``manifest.csv`` put in ``split`` (e.g. the validation
    cases, to compare roads on films the model never trained on)."""
    with (data / "manifest.csv").open() as f:
        return {r["id"] for r in csv.DictReader(f) if r["split"] == split and r["status"] == "ok"}


def measure(
    model: str | None,
    rsna: Path = RSNA,
    limit: int | None = None,
    interpolation: str | None = None,
    roads: tuple[str, ...] = ("fullres", "299"),
    ids: set[str] | None = None,
) -> dict[str, float | int | str]:
    import dataclasses

    from boneage import _native as native
    from boneage.inference import Predictor, predict_arrays
    from boneage.ingest.preparation import squash_resize

    predictor = Predictor(model)
    pp = predictor.meta.preprocessing
    if interpolation is not None:
        pp = dataclasses.replace(pp, interpolation=interpolation)
        predictor.loaded = dataclasses.replace(
            predictor.loaded, meta=dataclasses.replace(predictor.meta, preprocessing=pp)
        )
    result: dict[str, float | int | str] = {
        "mode": pp.mode,
        "interpolation": pp.interpolation,
    }
    for road in roads:
        raw_diff, prep_diff = [], []
        chosen = [p for p in pairs(road, rsna) if ids is None or p[0] in ids][:limit]
        if not chosen:
            continue
        big, small, male = [], [], []
        for _id, other_path, small_path, is_male, _age in chosen:
            other_img = native.read_gray(other_path)
            small_img = native.read_gray(small_path)
            squashed = squash_resize(other_img, pp)
            copy = squash_resize(small_img, pp)
            raw_diff.append(np.mean(np.abs(squashed.astype(int) - copy.astype(int))))
            a, _, _ = predictor.prepare(other_img)
            b, _, _ = predictor.prepare(small_img)
            prep_diff.append(np.mean(np.abs(a.astype(int) - b.astype(int))))
            big.append(a)
            small.append(b)
            male.append(is_male)
        m = np.asarray(male, np.float32)
        pa, _ = predict_arrays(predictor.model, np.stack(big), m)
        pb, _ = predict_arrays(predictor.model, np.stack(small), m)
        gaps = np.abs(pa - pb)
        truth = np.asarray([p[4] for p in chosen])
        result.update(
            {
                f"{road}_pairs": len(chosen),
                f"{road}_grey_diff_resize_mean": float(np.mean(raw_diff)),
                f"{road}_grey_diff_prepared_mean": float(np.mean(prep_diff)),
                f"{road}_gap_months_mean": float(np.mean(gaps)),
                f"{road}_gap_months_max": float(np.max(gaps)),
                f"{road}_shift_months_mean": float(np.mean(pa - pb)),
                f"{road}_mae_months": float(np.mean(np.abs(pa - truth))),
                f"{road}_mae_months_100px": float(np.mean(np.abs(pb - truth))),
            }
        )
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="model file or run directory (default: the shipped model)")
    ap.add_argument(
        "--interpolation",
        choices=("area", "linear"),
        help="resize filter to try instead of the model's own",
    )
    ap.add_argument(
        "--split",
        nargs=2,
        metavar=("DATA", "SPLIT"),
        help="only the ids that DATA/manifest.csv puts in SPLIT (e.g. data/rsna100 val: films "
        "the model did not train on, where the MAE of each road means something)",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not (RSNA / "fullres").is_dir():
        print(f"real RSNA data not found at {RSNA}", file=sys.stderr)
        return 2
    ids = split_ids(Path(args.split[0]), args.split[1]) if args.split else None
    result = measure(args.model, interpolation=args.interpolation, ids=ids)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k:<26} {v:.2f}" if isinstance(v, float) else f"{k:<26} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
