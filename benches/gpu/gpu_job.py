"""The whole GPU job in one process: real RSNA shards, two models trained with the paper's
recipe, test-set figures with confidence intervals, and a throughput table.

Runs on the lent GPU machine (JAX backend; no TensorFlow there) through ``run.sh``, and on a
CPU with ``--tiny`` (a few hundred images, one short epoch) so every step is tested before a
GPU is spent on it. Everything it measures goes to ``--out`` as JSON, and a table is printed
last.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

MODELS = ("densenet121", "resnet34_cbam")


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rsna", required=True, help="folder with train100/, test299/, labels.csv")
    p.add_argument("--out", required=True)
    p.add_argument("--size", type=int, default=128, help="training image side")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--minutes-per-model", type=float, default=3.2)
    p.add_argument("--limit", type=int, default=0, help="use only this many training images")
    p.add_argument("--tiny", action="store_true", help="CPU rehearsal: 300 images, 1 epoch, 64 px")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--models", nargs="+", default=list(MODELS),
                   help="architectures to train (the rehearsal uses small_cnn: XLA takes many "
                        "minutes to compile DenseNet121 on a 2-core CPU)")  # fmt: skip
    return p.parse_args()


def stage(title: str) -> None:
    print(f"\n=== {title} ({time.strftime('%H:%M:%S')})", flush=True)


def prepare_data(args: argparse.Namespace, work: Path) -> tuple[Path, Path]:
    """train100 -> train/val shards (stratified 90/10); test299 -> area-resized to 100 px
    like the training images, then the same preprocessing, into test shards."""
    from boneage import _native as native
    from boneage.ingest.bulk import Options, run
    from boneage.settings import Preprocessing

    rsna = Path(args.rsna)
    train_src = rsna / "train100"
    if args.limit:
        train_src = work / "train100-subset"
        train_src.mkdir(parents=True, exist_ok=True)
        for f in sorted((rsna / "train100").glob("*.png"))[: args.limit]:
            shutil.copy(f, train_src / f.name)
    test_src = work / "test100"
    test_src.mkdir(parents=True, exist_ok=True)
    for f in sorted((rsna / "test299").glob("*.png")):
        img = native.read_gray(f)
        import cv2

        cv2.imwrite(str(test_src / f.name), native.resize_area(img, 100, 100))
    train_dir, test_dir = work / "shards-train", work / "shards-test"
    # The 100 px copies are whole films squashed to squares: the models learn (and ship) the
    # squash mode, which prepares any input the same way.
    squash = Preprocessing(image_size=args.size, mode="squash", localiser="none")
    common = dict(labels=[str(rsna / "labels.csv")], preprocessing=squash, progress=False,
                  sheet=0)  # fmt: skip
    s1 = run(Options(inputs=[str(train_src)], out=str(train_dir),
                     split_by={"train": 0.9, "val": 0.1}, **common))  # fmt: skip
    s2 = run(Options(inputs=[str(test_src)], out=str(test_dir), **common))
    print(f"train/val shards: {s1.per_split} in {s1.seconds:.1f} s; test: {s2.per_split}")
    if s2.per_split.get("test", 0) == 0:
        raise SystemExit("no test cases: labels.csv must mark the test299 ids as test")
    return train_dir, test_dir


def train_and_test(
    args: argparse.Namespace, name: str, train_dir: Path, test_dir: Path, out: Path
) -> dict[str, Any]:
    from boneage.evaluation import metrics
    from boneage.evaluation.predictions import predict_split
    from boneage.inference import LoadedModel
    from boneage.training.loop import TrainConfig, train

    cfg = TrainConfig(
        model=name, data=str(train_dir), out=str(out / name), image_size=args.size,
        batch_size=64, epochs=args.epochs, mixed_precision="bf16" if not args.tiny else "off",
        max_minutes=args.minutes_per_model, verbose=2,
    )  # fmt: skip
    start = time.perf_counter()
    val_metrics = train(cfg)
    seconds = time.perf_counter() - start
    best = LoadedModel.open(out / name / "best.keras", tta=0)
    pred = predict_split(best, test_dir, "test", batch_size=64)
    pred_tta = predict_split(best.with_tta(4), test_dir, "test", batch_size=64)
    result = {
        "model": name,
        "params": int(best.model.count_params()),
        "train_seconds": seconds,
        "val": val_metrics,
        "test": metrics.summary(pred.y_true, pred.y_pred, pred.male, n_boot=1000),
        "test_tta4": metrics.regression_metrics(pred_tta.y_true, pred_tta.y_pred),
        "_pred": pred.y_pred.tolist(),
        "_true": pred.y_true.tolist(),
        "_male": pred.male.tolist(),
    }
    return result


def throughput(name: str, size: int, batch: int, steps: int) -> dict[str, Any]:
    """Training images/s on random data and the peak device memory (JAX)."""
    import keras
    import numpy as np

    from boneage.models import build_model

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = build_model(name, size)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=0.01),
                  loss=keras.losses.Huber(15.0))  # fmt: skip
    rng = np.random.default_rng(0)
    x = {"image": rng.random((batch, size, size, 1), dtype=np.float32),
         "male": rng.integers(0, 2, (batch, 1)).astype(np.float32)}  # fmt: skip
    y = rng.uniform(0, 228, (batch, 1)).astype(np.float32)
    for _ in range(3):
        model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(steps):
        loss = model.train_on_batch(x, y)
    float(np.asarray(loss))  # wait for the device
    seconds = time.perf_counter() - start
    peak = None
    if keras.backend.backend() == "jax":
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        peak = stats.get("peak_bytes_in_use")
    keras.mixed_precision.set_global_policy("float32")
    ips = steps * batch / seconds
    return {"model": name, "images_per_s": ips, "peak_bytes": peak,
            "epoch_60_minutes_12611": 60 * 12611 / ips / 60}  # fmt: skip


def main() -> int:
    args = parse()
    if args.tiny:
        args.size, args.epochs, args.limit = 64, 1, args.limit or 300
        args.minutes_per_model = 2.0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    import keras

    stage(f"backend {keras.backend.backend()}, devices")
    from boneage.training.distribution import devices

    print(devices() or "cpu only")
    stage("shards from the real RSNA images")
    train_dir, test_dir = prepare_data(args, work)
    results: dict[str, Any] = {"size": args.size, "tiny": args.tiny, "models": {}}
    for name in args.models:
        stage(f"train + test {name}")
        results["models"][name] = train_and_test(args, name, train_dir, test_dir, out)
        (out / "results.json").write_text(json.dumps(results, indent=2))
    stage("ensemble of the two models")
    import numpy as np

    from boneage.evaluation import metrics

    preds = [np.array(r["_pred"]) for r in results["models"].values()]
    truth = np.array(next(iter(results["models"].values()))["_true"])
    results["ensemble"] = metrics.regression_metrics(truth, np.mean(preds, axis=0))
    if not args.skip_throughput:
        stage("throughput at 256x256, batch 64, bf16")
        steps = 3 if args.tiny else 30
        size = 64 if args.tiny else 256
        results["throughput"] = [
            throughput(n, size, 16 if args.tiny else 64, steps) for n in args.models
        ]
    (out / "results.json").write_text(json.dumps(results, indent=2))
    stage("results")
    print(f"{'model':<16}{'test MAE':>10}{'RMSE':>8}{'R2':>7}{'TTA MAE':>9}{'train s':>9}")
    for name, r in results["models"].items():
        t = r["test"]
        print(f"{name:<16}{t['mae']:>10.2f}{t['rmse']:>8.2f}{t['r2']:>7.3f}"
              f"{r['test_tta4']['mae']:>9.2f}{r['train_seconds']:>9.0f}")  # fmt: skip
    e = results["ensemble"]
    print(f"{'ensemble':<16}{e['mae']:>10.2f}{e['rmse']:>8.2f}{e['r2']:>7.3f}")
    for t in results.get("throughput", []):
        mem = f"{t['peak_bytes'] / 2**30:.1f} GiB" if t["peak_bytes"] else "n/a"
        print(f"{t['model']:<16} {t['images_per_s']:.0f} img/s, peak {mem}, "
              f"60 epochs of 12,611: {t['epoch_60_minutes_12611']:.1f} min")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
