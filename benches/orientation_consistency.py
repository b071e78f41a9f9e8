"""Does orientation normalisation keep the bone-age estimate of a turned film where it was?

    python benches/orientation_consistency.py [--n 60] [--data data/rsna100-lin]
        [--model MODEL] [--orientation CLASSIFIER] [--json]

Issue 32's goal: rotating a film by 90/180/270 degrees or mirroring it (7 transforms) moves the
estimate by at most 3 months on average and 8 at worst; without normalisation it moved by 23 on
average and 111 at worst. This takes ``--n`` validation films (never test: the threshold and
the classifier were chosen on validation, and this bench is a check to look at freely), the
source files that the shards' ``manifest.csv`` names, as a clinician's file would arrive, and
for each of the 7 transforms compares the bone-age model's estimate (its own preprocessing
and test-time augmentation, as ``Predictor`` does) of:

- ``normalised``: the turned film after :meth:`OrientationDetector.normalise`, against the
  original film as it is (the figure the goal is stated for);
- ``pipeline``: the same, against the original film after normalisation too (what a user
  sees: every film goes through the classifier, the upright one included);
- ``raw``: the turned film without normalisation, against the original (today's behaviour).

It prints, for each, the mean and largest absolute difference in months, and the share of
turned films whose orientation was found and how many were flagged as uncertain.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]


def val_films(data: Path, n: int) -> tuple[list[str], list[np.ndarray], np.ndarray]:
    """The first ``n`` validation films (ids, grey arrays, male 0/1) of the shards in ``data``,
    read from the source files their manifest names (relative to the repository)."""
    from boneage.ingest.dicom import load_image

    rows = [
        r
        for r in csv.DictReader((data / "manifest.csv").open())
        if r["split"] == "val" and r["status"] == "ok"
    ][:n]
    if len(rows) < n:
        raise SystemExit(f"{data}: only {len(rows)} validation films listed, {n} asked for")
    films = []
    for r in rows:
        path = Path(r["source"])
        path = path if path.is_absolute() else REPO / path
        img = load_image(path)[0]
        films.append(img if img.ndim == 2 else img.mean(axis=2).astype(img.dtype))
    male = np.array([int(r["male"]) for r in rows], np.float32)
    return [r["id"] for r in rows], films, male


def measure(n: int, data: Path, model: str | None, orientation: str | None) -> dict[str, Any]:
    from boneage.inference import LoadedModel
    from boneage.inference.orientation import OrientationDetector, Transform, apply
    from boneage.ingest.preparation import prepare

    loaded = LoadedModel.open(model)
    detector = OrientationDetector.open(orientation)
    _ids, films, male = val_films(data, n)
    turns = [t for t in Transform if t is not Transform.IDENTITY]

    turned = [apply(f, t) for f in films for t in turns]
    normalised = detector.normalise_many(turned)
    upright = detector.normalise_many(films)
    groups = {
        "original": films,
        "original_normalised": [u for u, _ in upright],
        "turned_raw": turned,
        "turned_normalised": [u for u, _ in normalised],
    }
    # One call for every image: the estimates do not depend on the batch (TTA seeded per image).
    order = [im for g in groups.values() for im in g]
    sexes = np.concatenate([np.repeat(male, len(g) // len(films)) for g in groups.values()])
    prepared = np.stack([prepare(im, loaded.preprocessing)[0] for im in order])
    est, _ = loaded.predict(prepared, sexes)
    parts, start = {}, 0
    for name, g in groups.items():
        parts[name] = est[start : start + len(g)].reshape(len(films), -1)
        start += len(g)

    def gap(turned_est: np.ndarray, reference: np.ndarray) -> dict[str, float]:
        d = np.abs(turned_est - reference)
        return {"mean": float(d.mean()), "max": float(d.max())}

    found = np.array([o.found for _, o in normalised]).reshape(len(films), len(turns))
    wanted = np.array([int(t) for t in turns])[None, :]
    return {
        "films": len(films),
        "transforms": [t.key for t in turns],
        "model": loaded.name,
        "tta": loaded.tta,
        "normalised": gap(parts["turned_normalised"], parts["original"]),
        "pipeline": gap(parts["turned_normalised"], parts["original_normalised"]),
        "raw": gap(parts["turned_raw"], parts["original"]),
        "per_transform_normalised_mean": {
            t.key: float(np.abs(parts["turned_normalised"][:, i] - parts["original"][:, 0]).mean())
            for i, t in enumerate(turns)
        },
        "orientation_found": float(np.mean(found == wanted)),
        "originals_found_upright": float(
            np.mean([o.found is Transform.IDENTITY for _, o in upright])
        ),
        "low_confidence": int(sum(o.low_confidence for _, o in normalised)),
        "threshold": detector.threshold,
        "goal": {"mean": 3.0, "max": 8.0},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=60, help="validation films (x 7 transforms)")
    ap.add_argument("--data", default=str(REPO / "data" / "rsna100-lin"), help="shard folder")
    ap.add_argument("--model", help="bone-age model (default: the shipped one)")
    ap.add_argument("--orientation", help="orientation classifier (default: the shipped one)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    data = Path(args.data)
    if not (data / "manifest.csv").is_file():
        print(f"no shards with a manifest at {data}: nothing to measure", file=sys.stderr)
        return 2
    r = measure(args.n, data, args.model, args.orientation)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"{r['films']} validation films x 7 transforms, model {r['model']} (TTA {r['tta']})")
    for key, label in [
        ("normalised", "turned + normalised vs original"),
        ("pipeline", "turned + normalised vs original + normalised"),
        ("raw", "turned, not normalised vs original"),
    ]:
        g = r[key]
        print(f"  {label:<48} mean {g['mean']:6.2f}  max {g['max']:7.2f} months")
    print(
        f"  orientation found for {100 * float(r['orientation_found']):.1f} % of turned films; "
        f"originals found upright {100 * float(r['originals_found_upright']):.1f} %; "
        f"{r['low_confidence']} flagged uncertain (below {r['threshold']:.3f})"
    )
    per = ", ".join(f"{k} {v:.2f}" for k, v in r["per_transform_normalised_mean"].items())
    print(f"  goal: mean <= 3, max <= 8 months; mean per transform: {per}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
