"""Training the orientation classifier (:mod:`boneage.inference.orientation`).

    python -m boneage.training.orientation --data data/rsna100-lin --out runs/orientation \\
        [--epochs 14] [--max-minutes 20] [--ship]

Why a classifier of its own: the bone-age networks learned from upright left hands only, and
a film scanned sideways or of a right hand moved their estimate by up to 111 months. Films in
any of the 8 orientations are made from the training split by :func:`~boneage.inference.
orientation.apply` (one drawn per film and epoch, so the classes are balanced and their labels
exact), with light augmentation on top (rotation within 15 degrees, shift, zoom, brightness,
contrast, pixel noise, crops of the film's edges) so that a film that is not quite square to
the scanner, or framed otherwise, is still recognised. A few RSNA films are themselves right
hands or rotated: that label noise is small and left in.

The network is small on purpose (five 3x3 convolution blocks on a 64 px input, about 110,000
weights, a file of well under 1 MB): the orientation of a hand is visible at that size, and
the classifier runs in front of every estimate. It is plain Keras built-in layers, so its file
passes :func:`boneage.modelcheck.check_model_file`.

After training, every validation film is classified in all 8 orientations: from the shards
(what it trained on: CLAHE'd copies) and, when the shards' ``manifest.csv`` names source files
that are present, from those files as they are (the road a clinician's film takes). The
accuracy per orientation, with and without pooling over the group, goes into the model file
with the confidence threshold chosen on the source films (see :func:`choose_threshold`).
``--reevaluate MODEL`` does that part alone for a trained file (keeping its training record).

Read the figures knowing that they count the data's own errors as the classifier's: of the
1,260 validation films of ``data/rsna100-lin``, 29 are not called upright as stored; checked by
eye, the 16 found with confidence are right hands, mirrored films or upside down (the
classifier is right), and the other 13 are turned by 30 to 70 degrees, faint or not a hand,
all below the threshold, so reported as uncertain.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from boneage.inference.orientation import (
    INPUT_SIZE,
    META_KIND,
    ORIENTATION_MODEL,
    OrientationDetector,
    Transform,
    apply,
    squash_batch,
)

__all__ = ["build_model", "choose_threshold", "evaluate", "main"]

FILTERS = (16, 32, 48, 64, 96)
"""Filters of the five convolution blocks (each halves the side: 64 -> 2)."""

TARGET_BAND_ACCURACY = 0.95
"""A finding is flagged where findings of its confidence were right less often than this."""

CONFIDENCE_BANDS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99, 1.0)
"""Edges of the confidence bands the threshold is chosen from."""


def build_model(size: int = INPUT_SIZE, filters: Sequence[int] = FILTERS) -> Any:
    """The classifier: conv-BN-ReLU-maxpool blocks, then the flattened 2 x 2 map (where things
    lie is the whole point, so no global pooling) -> dropout -> 8-way softmax."""
    import keras

    inp = keras.Input((size, size, 1), name="image")
    x = inp
    for i, f in enumerate(filters):
        x = keras.layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
        x = keras.layers.MaxPooling2D(name=f"pool{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(0.3, name="dropout")(x)
    out = keras.layers.Dense(len(Transform), activation="softmax", name="orientation")(x)
    return keras.Model(inp, out, name="orientation_cnn")


def _crop(image: np.ndarray, rng: np.random.Generator, most: float) -> np.ndarray:
    """``image`` with up to ``most`` of its side cut from each edge, independently (a film
    framed more tightly, or not square)."""
    h, w = image.shape
    top, bottom, left, right = (rng.uniform(0.0, most, 4) * [h, h, w, w]).astype(int)
    return image[top : h - bottom, left : w - right]


def make_batches(
    images: np.ndarray, batch_size: int, seed: int, size: int = INPUT_SIZE, **kwargs: Any
) -> Any:
    """A ``keras.utils.PyDataset`` of ``(x (B, size, size, 1), orientation (B,))`` from uint8
    films ``(N, S, S)``: each film augmented, cropped, squashed and put in a random one of
    the 8 orientations, drawn anew every epoch (reproducibly from ``seed``)."""
    import keras

    from boneage.shards.augment import Augment, augment_images

    augment = Augment(rotation=15.0, shift=0.05, zoom=0.1, brightness=0.1, contrast=0.2, noise=0.02)

    class Batches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__(**kwargs)
            self.epoch = 0
            self.order = np.random.default_rng([seed, 0]).permutation(len(images))

        def __len__(self) -> int:
            return len(images) // batch_size

        def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
            rng = np.random.default_rng([seed, self.epoch + 1, index])
            rows = self.order[index * batch_size : (index + 1) * batch_size]
            films = augment_images(images[rows], augment, rng)
            x = squash_batch([_crop(f, rng, 0.08) for f in films], size)
            y = rng.integers(0, len(Transform), len(rows))
            for t in Transform:
                pick = y == t
                x[pick] = apply(x[pick], t, axes=(1, 2))
            return x[..., None], y.astype(np.int32)

        def on_epoch_end(self) -> None:
            self.epoch += 1
            self.order = np.random.default_rng([seed, self.epoch]).permutation(len(images))

    return Batches()


def evaluate(detector: OrientationDetector, films: Sequence[np.ndarray]) -> dict[str, Any]:
    """Every film classified in each of the 8 orientations (the transform applied to the film
    as it is, then squashed: the road a film takes). Returns per-orientation accuracy of the
    plain classifier and of the pooled one, and the pooled confidences with whether each
    pooled finding was right (for :func:`choose_threshold`)."""
    per: dict[str, dict[str, float]] = {}
    confidence, correct = [], []
    for t in Transform:
        x = squash_batch([apply(f, t) for f in films], detector.size)
        plain = detector.probabilities(x, pooled=False).argmax(axis=1)
        p = detector.probabilities(x)
        found = p.argmax(axis=1)
        per[t.key] = {
            "plain": float(np.mean(plain == t)),
            "pooled": float(np.mean(found == t)),
        }
        confidence.append(p.max(axis=1))
        correct.append(found == t)
    conf, ok = np.concatenate(confidence), np.concatenate(correct)
    return {
        "films": len(films),
        "accuracy_plain": float(np.mean([v["plain"] for v in per.values()])),
        "accuracy_pooled": float(np.mean(ok)),
        "per_transform": per,
        "_confidence": conf,
        "_correct": ok,
    }


def choose_threshold(
    confidence: np.ndarray,
    correct: np.ndarray,
    target: float = TARGET_BAND_ACCURACY,
    edges: Sequence[float] = CONFIDENCE_BANDS,
) -> dict[str, Any]:
    """The confidence below which a finding is reported as uncertain.

    The findings are grouped in bands of confidence (``edges``). Walking down from the most
    confident band, the threshold is the lower edge of the last band whose findings were
    right at least ``target`` of the time: a finding is flagged where findings of its
    confidence were wrong more than 1 - ``target`` of the time on validation. A guess under
    even odds (0.5) is always flagged.

    Why bands, not the accuracy of everything above the threshold: a few RSNA films are right
    hands or upside down, and the classifier says so with confidence. Counted as its errors
    (their label is "upright"), they sit among the most confident findings, where no threshold
    removes them; they are the data's errors, not the classifier's. In wide bands of
    confidence they barely move the accuracy; the classifier's own uncertainty shows as a
    drop of accuracy below some confidence (it is calibrated: a band's accuracy is close to
    its confidence).

    Returns the threshold with the share of findings it flags, the errors it catches on these
    (validation) findings, and the accuracy per band (the calibration, for the record).
    """
    correct = correct.astype(bool)
    bands = []
    for lo, hi in itertools.pairwise(edges):
        inside = (confidence >= lo) & ((confidence < hi) if hi < 1 else (confidence <= hi))
        if inside.any():
            bands.append((lo, hi, int(inside.sum()), float(correct[inside].mean())))
    threshold = max(0.5, float(edges[0]))
    for lo, _, _, accuracy in reversed(bands):
        if accuracy < target:
            break
        threshold = max(0.5, lo)
    flagged = confidence < threshold
    wrong = ~correct
    return {
        "low_confidence_below": threshold,
        "band_accuracy_target": target,
        "flagged": float(np.mean(flagged)),
        "errors": int(wrong.sum()),
        "errors_flagged": int((wrong & flagged).sum()),
        "accuracy_above": float(np.mean(correct[~flagged])) if (~flagged).any() else math.nan,
        "accuracy_below": float(np.mean(correct[flagged])) if flagged.any() else math.nan,
        "accuracy_by_confidence": {
            f"{lo:.2f}-{hi:.2f}": {"findings": n, "accuracy": round(a, 4)} for lo, hi, n, a in bands
        },
    }


def source_films(data: Path, split: str) -> list[np.ndarray] | None:
    """The original files of a split's films, as the shards' ``manifest.csv`` names them
    (paths relative to where the shards were made, this repository), or None when the
    manifest or any file is missing."""
    from boneage.ingest.dicom import load_image

    manifest = data / "manifest.csv"
    if not manifest.is_file():
        return None
    rows = [
        r for r in csv.DictReader(manifest.open()) if r["split"] == split and r["status"] == "ok"
    ]
    paths = [Path(r["source"]) for r in rows]
    if not paths or not all(p.is_file() for p in paths):
        return None
    films = []
    for p in paths:
        img = load_image(p)[0]
        if img.ndim == 3:
            img = img.mean(axis=2).astype(img.dtype)
        films.append(img)
    return films


def _public(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if not k.startswith("_")}


def _table(name: str, report: dict[str, Any]) -> str:
    lines = [f"{name}: {report['films']} films x 8 orientations"]
    lines.append(f"  {'orientation':<60} {'plain':>7} {'pooled':>7}")
    for t in Transform:
        r = report["per_transform"][t.key]
        label = f"{t.key} ({t.description})"
        lines.append(f"  {label:<60} {100 * r['plain']:6.2f}% {100 * r['pooled']:6.2f}%")
    lines.append(
        f"  {'all':<60} {100 * report['accuracy_plain']:6.2f}% "
        f"{100 * report['accuracy_pooled']:6.2f}%"
    )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m boneage.training.orientation",
        description="Train the orientation classifier (8 rotations/mirrorings) on TFRecord shards.",
    )
    ap.add_argument("--data", required=True, help="shard folder with train and val splits")
    ap.add_argument("--out", default="runs/orientation", help="run folder (model, report)")
    ap.add_argument("--epochs", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (cosine decay)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-minutes", type=float, default=20.0, help="stop after this epoch")
    ap.add_argument("--limit", type=int, default=0, help="use only this many training films")
    ap.add_argument(
        "--reevaluate",
        metavar="MODEL",
        help="do not train: evaluate this classifier file on --data's val split again, choose "
        "its threshold again and rewrite its figures (its training record is kept)",
    )
    ap.add_argument(
        "--ship",
        action="store_true",
        help=f"also write the model into the package ({ORIENTATION_MODEL.name})",
    )
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from boneage.shards.arrays import read_split

    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python -m boneage.training.orientation " + shlex.join(
        sys.argv[1:] if argv is None else list(argv)
    )
    val_images = list(read_split(data, "val")[0])
    if args.reevaluate:
        detector = OrientationDetector.open(args.reevaluate)
        kept = ("trained_on", "command", "epochs", "minutes")  # the figures are made anew
        record = {k: v for k, v in detector.meta.extra.items() if k in kept}
        record["reevaluated_by"] = command
        return _finish(detector.model, record, data, val_images, out, args.ship)

    train = read_split(data, "train")[0]
    if args.limit:
        train = train[: args.limit]
    print(f"train: {len(train)} films, val: {len(val_images)} films", flush=True)
    model, epochs_run, minutes = _train(train, val_images, args)
    record = {
        "trained_on": f"{data.name} (train split, {len(train)} films, 8 orientations "
        "drawn per film and epoch, augmented)",
        "command": command,
        "epochs": epochs_run,
        "minutes": round(minutes, 1),
    }
    return _finish(model, record, data, val_images, out, args.ship)


def _train(train: np.ndarray, val_images: list[np.ndarray], args: Any) -> tuple[Any, int, float]:
    """Fits a new classifier; returns it without optimizer state (the file only classifies),
    with the epochs run and the minutes taken."""
    import keras

    from boneage.training.callbacks import TimeLimit

    keras.utils.set_random_seed(args.seed)
    model = build_model()
    steps = args.epochs * (len(train) // args.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, steps, warmup_target=args.lr, warmup_steps=max(1, steps // 20)
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-4),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    # The val split in one fixed orientation per film: a quick figure per epoch.
    val_x = squash_batch(val_images)
    val_y = np.arange(len(val_x)) % len(Transform)
    for t in Transform:
        val_x[val_y == t] = apply(val_x[val_y == t], t, axes=(1, 2))
    start = time.perf_counter()
    history = model.fit(
        make_batches(train, args.batch_size, args.seed, workers=2, max_queue_size=6),
        validation_data=(val_x[..., None], val_y),
        epochs=args.epochs,
        callbacks=[TimeLimit(args.max_minutes)],
        verbose=2,
    )
    minutes = (time.perf_counter() - start) / 60
    clean = build_model()
    clean.set_weights(model.get_weights())
    return clean, len(history.history["loss"]), minutes


def _finish(
    model: Any,
    record: dict[str, Any],
    data: Path,
    val_images: list[np.ndarray],
    out: Path,
    ship: bool,
) -> int:
    """Evaluates ``model`` on the val films (shards, and source files when present), chooses
    the threshold, and saves the model with its record and figures (and ships it)."""
    from boneage import modelio
    from boneage.settings import Preprocessing

    detector = OrientationDetector(model)
    reports = {"shards": evaluate(detector, val_images)}
    sources = source_films(data, "val")
    if sources is not None:
        reports["source_files"] = evaluate(detector, sources)
    chosen_on = "source_files" if sources is not None else "shards"
    chosen = reports[chosen_on]
    threshold = choose_threshold(chosen["_confidence"], chosen["_correct"])
    for name, report in reports.items():
        print(_table(f"val {name}", report), flush=True)
    print(json.dumps(threshold), flush=True)
    meta = modelio.ModelMeta(
        # What the classifier's input is made by: the whole film, area-resized (no CLAHE:
        # squash() rank-equalises instead, see boneage.inference.orientation).
        preprocessing=Preprocessing(
            image_size=INPUT_SIZE, clip_limit=0.0, localiser="none", mode="squash"
        ),
        model_name="orientation_cnn",
        extra={
            **record,
            "kind": META_KIND,
            "classes": [t.key for t in Transform],
            "input": "whole film area-resized to 64x64, then per-image mid-ranks - 0.5 "
            "(boneage.inference.orientation.squash)",
            "val": {name: _public(r) for name, r in reports.items()},
            "threshold_chosen_on": f"val {chosen_on}, pooled over the group",
            **threshold,
        },
    )
    saved = modelio.save(model, out / "orientation.keras", meta)
    report = {"model": str(saved), "bytes": saved.stat().st_size, **meta.extra}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {saved} ({saved.stat().st_size / 1024:.0f} KiB)")
    if ship:
        shipped = modelio.save(model, ORIENTATION_MODEL, meta)
        print(f"shipped {shipped} ({shipped.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
