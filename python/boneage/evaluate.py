"""``python -m boneage.evaluate [RUN_OR_MODEL] --data DIR --split test``: how good is a model?

Or on image files: ``python -m boneage.evaluate --images DIR_OR_ZIP --labels CSV``, where each
image is prepared by the model's own preprocessing, exactly as ``predict`` does. Without a
model the shipped one is evaluated.

Prints and writes the paper's metrics (MAE, RMSE, R^2) plus median and 90th-percentile
error, errors by sex and by age band, each with a bootstrap 95 % confidence interval; plots
(prediction vs truth, Bland-Altman, error histogram) and a Markdown report. ``--compare``
sets two or more models side by side, like the paper's Table IV.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from boneage.cli import command_parser, quiet_native_logs, run_command
from boneage.evaluation import metrics, report
from boneage.evaluation.predictions import predict_files, predict_split
from boneage.inference import LoadedModel, Predictor, default_model
from boneage.ingest.labels import read_labels
from boneage.ingest.sources import iter_items
from boneage.runs import RunDir


def build_parser() -> argparse.ArgumentParser:
    p = command_parser(
        "evaluate",
        "Evaluate a trained model (a .keras file or a run directory) on a split of shards, "
        "or on labelled image files (--images).",
    )
    p.add_argument(
        "model", nargs="?", help="model file or run directory (default: the shipped model)"
    )
    p.add_argument("--data", help="shard directory (default: the run's own data)")
    p.add_argument("--images", nargs="+", metavar="PATH",
                   help="evaluate on image files instead of shards: folders, archives or files, "
                        "prepared with the model's own preprocessing; needs --labels")  # fmt: skip
    p.add_argument("--labels", nargs="+", metavar="CSV", help="label CSVs for --images")
    p.add_argument("--split", default="test", help="which split of the shards to evaluate")
    p.add_argument(
        "--out",
        help="report directory: metrics.json, report.md, plots and "
        "predictions.csv, one row per case (default: <run>/eval-<split>)",
    )
    p.add_argument("--tta", type=int,
                   help="test-time augmentation copies to average (default: the number the "
                        "model file records, as predict uses; 0 if none)")  # fmt: skip
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the CIs")
    p.add_argument("--batch-size", type=int, default=64, help="images per prediction batch")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--compare", nargs="+", metavar="RUN", help="compare these models side by side")
    return p


def _default_data(model_path: str) -> str | None:
    return RunDir.of(model_path).data()


def evaluate_one(
    model_path: str,
    data: str | None,
    split: str,
    tta: int | None,
    n_boot: int,
    batch: int,
    images: list[str] | None = None,
    labels: list[str] | None = None,
) -> dict[str, Any]:
    if images:
        predictor = Predictor(model_path, tta=tta)
        loaded = predictor.loaded
        pred, problems = predict_files(
            predictor, list(iter_items(images)), read_labels(labels or []), batch
        )
        for line in problems:
            print(f"skipped: {line}", file=sys.stderr)
        split = "images"
    else:
        assert data is not None
        loaded = LoadedModel.open(model_path, tta)
        pred = predict_split(loaded, data, split, batch_size=batch)
    model, meta, tta = loaded.model, loaded.meta, loaded.tta
    labelled = ~(pred.y_true != pred.y_true)  # drop unlabeled (NaN) cases
    summary = metrics.summary(
        pred.y_true[labelled], pred.y_pred[labelled], pred.male[labelled], n_boot=n_boot
    )
    summary["model"] = str(loaded.path)
    summary["model_name"] = meta.model_name
    summary["params"] = int(model.count_params())
    summary["split"] = split
    summary["tta"] = tta
    summary["_arrays"] = (pred.y_true[labelled], pred.y_pred[labelled])
    summary["_predictions"] = pred
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    quiet_native_logs()
    args = build_parser().parse_args(argv)
    return run_command(lambda: _evaluate(args))


def _evaluate(args: argparse.Namespace) -> int:
    results: dict[str, dict[str, Any]] = {}
    if args.images and not args.labels:
        raise ValueError("--images needs --labels (the ground truth)")
    models = args.compare or [args.model or str(default_model())]
    for mp in models:
        data = None if args.images else (args.data or _default_data(mp))
        if not data and not args.images:
            raise ValueError(f"{mp}: no --data given and the run records none (or use --images)")
        results[mp] = evaluate_one(
            mp, data, args.split, args.tta, args.bootstrap, args.batch_size,
            args.images, args.labels,
        )  # fmt: skip
    if args.compare:
        table = report.compare_table({k: _public(v) for k, v in results.items()})
        print(table)
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / "comparison.md").write_text(table + "\n")
        return 0
    mp = models[0]
    res = results[mp]
    run = Path(mp) if Path(mp).is_dir() else Path(mp).parent
    out = Path(args.out) if args.out else run / f"eval-{res['split']}"
    out.mkdir(parents=True, exist_ok=True)
    y_true, y_pred = res["_arrays"]
    plots = report.plot_predictions(y_true, y_pred, out)
    public = _public(res)
    (out / "metrics.json").write_text(json.dumps(public, indent=2))
    res["_predictions"].write_csv(out / "predictions.csv")
    md = report.write_report(
        public, plots, out, title=f"boneage evaluation: {Path(mp).name} on {res['split']}"
    )
    if args.json:
        print(json.dumps(public, indent=2))
    else:
        print(
            f"{public['n']} cases: MAE {public['mae']:.2f}, RMSE {public['rmse']:.2f}, "
            f"R^2 {public['r2']:.3f}"
        )
        print(f"report: {md}")
    return 0


def _public(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if not k.startswith("_")}


if __name__ == "__main__":
    sys.exit(main())
