"""``python -m boneage.train``: train a bone-age model with the paper's recipe.

With no ``--data`` it looks for shards in ``$BONEAGE_DATA`` and ``./data``; failing that it
runs the embedded demo: synthetic hand phantoms whose maturity follows age and sex, written to
shards, a short training run, and an evaluation on held-out phantoms (``metrics.json``).

A run directory holds: ``config.json`` (everything to reproduce), ``best.keras`` and
``last.keras`` (with their preprocessing settings embedded), ``history.csv``, TensorBoard
logs, ``metrics.json`` and the plots (``curves.png``, ``lr_schedule.png``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from boneage.cli import command_parser, positive_int, quiet_native_logs, run_command
from boneage.settings import LOCALISERS, MODES
from boneage.training.demo import DEMO_EPOCHS


def build_parser() -> argparse.ArgumentParser:
    p = command_parser(
        "train",
        "Train a bone-age model (paper defaults). Without --data, finds shards in "
        "$BONEAGE_DATA or ./data, else runs a short demo on synthetic phantoms.",
    )
    p.add_argument(
        "--model",
        help="architecture, see boneage.models.available() "
        "(default densenet121; small_cnn for the synthetic demo)",
    )
    p.add_argument("--data", help="directory of shards written by boneage.preprocess")
    p.add_argument("--out", help="run directory (default: runs/<time>-<model>)")
    p.add_argument("--image-size", type=positive_int,
                   help="input side; default: the data's (preprocessing.json), 64 for the "
                        "demo")  # fmt: skip
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per training step")
    p.add_argument(
        "--epochs",
        type=positive_int,
        help=f"maximum epochs (default 60; {DEMO_EPOCHS} for the demo; with --resume, the "
        "run's own, and a new value reshapes the rest of its schedule)",
    )
    p.add_argument("--lr", type=float, default=5e-3, help="AdamW peak learning rate")
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay")
    p.add_argument("--huber-delta", type=float, default=15.0, help="Huber loss delta (months)")
    p.add_argument("--warmup", type=float, default=0.2, help="warm-up fraction of all steps")
    p.add_argument("--patience", type=int,
                   help="early stopping patience in epochs (val MAE); default 3 (the paper's), "
                        "none for the demo: its short fixed schedule runs to the end and the "
                        "best epoch is kept")  # fmt: skip
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the weights, shuffling and augmentation"
    )
    p.add_argument("--mixed-precision", choices=("auto", "on", "off", "bf16"), default="auto",
                   help="auto: float16 mixed precision on GPUs only")  # fmt: skip
    p.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="rotations, shifts, zoom, brightness/contrast on training batches",
    )
    p.add_argument("--noise", type=float, default=0.0, metavar="SIGMA",
                   help="with --augment, add Gaussian pixel noise whose standard deviation on "
                        "the [0, 1] image is drawn per image up to SIGMA (e.g. 0.02, about 5 "
                        "grey levels): makes predictions steadier across resizing programs "
                        "(default: 0, none)")  # fmt: skip
    p.add_argument(
        "--uncertainty",
        action="store_true",
        help="also predict a variance (Gaussian NLL loss) so predictions carry a ±",
    )
    p.add_argument("--train-split", default="train", help="the split the model learns from")
    p.add_argument("--val-split", default="val", help="the split that chooses the best epoch")
    p.add_argument(
        "--test-split",
        metavar="SPLIT",
        help="report the best model on this split at the end instead of validation (default: "
        "validation: choose models there, then evaluate the chosen one once with "
        "python -m boneage.evaluate --split test)",
    )
    p.add_argument(
        "--steps-per-epoch", type=positive_int, help="default: one pass over the training set"
    )
    p.add_argument(
        "--distribute",
        choices=("auto", "off", "multi-worker"),
        default="auto",
        help="auto: data parallel over all GPUs (MirroredStrategy / keras.distribution); "
        "multi-worker: across processes/machines (TensorFlow: TF_CONFIG; JAX: the three "
        "flags below or BONEAGE_COORDINATOR/BONEAGE_NUM_PROCESSES/BONEAGE_PROCESS_ID); "
        "--batch-size is then the global batch",
    )
    p.add_argument("--coordinator", metavar="HOST:PORT",
                   help="JAX multi-worker: address of process 0")  # fmt: skip
    p.add_argument("--num-processes", type=int, help="JAX multi-worker: number of processes")
    p.add_argument("--process-id", type=int, help="JAX multi-worker: this process's index")
    p.add_argument(
        "--max-minutes", type=float, help="stop after the epoch that crosses this budget"
    )
    p.add_argument(
        "--init-from",
        metavar="MODEL",
        help="fine-tune: start from this trained .keras model's weights (its architecture and "
        "preprocessing must match the run's, but for the input size and the resize filter; "
        "'shipped' names the packaged model)",
    )
    p.add_argument(
        "--init-member",
        type=int,
        metavar="N",
        help="with an ensemble for --init-from (such as the shipped model): fine-tune its "
        "member N (0-based; the metadata's 'members' list them in order)",
    )
    p.add_argument(
        "--teacher",
        metavar="PREDICTIONS_CSV",
        help="distillation: blend each training label with this teacher's estimate for the "
        "case (a predictions.csv that python -m boneage.evaluate --split train writes); "
        "validation stays on the labels",
    )
    p.add_argument("--teacher-weight", type=float, default=0.5, metavar="W",
                   help="with --teacher: target = (1 - W) * label + W * teacher")  # fmt: skip
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last epoch, with the run's settings (only "
        "--epochs, --max-minutes and how the work is spread are taken from this launch)",
    )
    pre = p.add_argument_group(
        "preprocessing",
        "read from the data's preprocessing.json; these may only repeat it (a different "
        "value is an error). Only for shards written without one.",
    )
    pre.add_argument("--clip-limit", type=float, help="CLAHE clip limit")
    pre.add_argument(
        "--tile-grid", type=int, nargs=2, metavar=("COLS", "ROWS"), help="CLAHE tile grid"
    )
    pre.add_argument("--localiser", choices=LOCALISERS, help="how the hand was found")
    pre.add_argument("--mode", choices=MODES, help="crop (the hand) or squash (the whole film)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    quiet_native_logs()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.distribute == "multi-worker" and not args.out:
        # The default name has the start time in it, which workers would not agree on.
        parser.error("--distribute multi-worker needs --out (the same on every worker)")
    if not 0.0 <= args.noise < 1.0:  # also refuses NaN
        parser.error(f"--noise must be in [0, 1) (a standard deviation on the [0, 1] image), "
                     f"got {args.noise}")  # fmt: skip
    if args.noise and not args.augment:
        parser.error("--noise is part of the augmentation: drop --no-augment or --noise")
    from boneage.training import distribution

    if args.distribute == distribution.MULTI_WORKER:
        # First, before any other TensorFlow op or JAX computation (see distribution.py).
        try:
            distribution.init_multi_worker(args.coordinator, args.num_processes, args.process_id)
        except ValueError as e:  # a missing or contradictory cluster setting: say which
            parser.error(str(e))
    else:
        distribution.split_cpu_for_tests()
    from boneage.training.loop import TrainConfig, train
    from boneage.training.plan import Request, demo_banner, plan

    given = {
        "image_size": args.image_size,
        "clip_limit": args.clip_limit,
        "tile_grid": args.tile_grid,
        "localiser": args.localiser,
        "mode": args.mode,
    }
    request = Request(
        data=args.data,
        out=args.out,
        model=args.model,
        epochs=args.epochs,
        patience=args.patience,
        init_from=args.init_from,
        init_member=args.init_member,
        resume=args.resume,
        preprocessing={k: v for k, v in given.items() if v is not None},
        settings=dict(
            batch_size=args.batch_size,
            lr=args.lr,
            weight_decay=args.weight_decay,
            huber_delta=args.huber_delta,
            warmup=args.warmup,
            seed=args.seed,
            mixed_precision=args.mixed_precision,
            augment=args.augment,
            noise=args.noise,
            uncertainty=args.uncertainty,
            train_split=args.train_split,
            val_split=args.val_split,
            test_split=args.test_split,
            steps_per_epoch=args.steps_per_epoch,
            distribute=args.distribute,
            max_minutes=args.max_minutes,
            teacher=args.teacher,
            teacher_weight=args.teacher_weight,
            verbose=0 if args.quiet else (1 if sys.stdout.isatty() else 2),
            command=" ".join(
                ["python -m boneage.train", *(argv if argv is not None else sys.argv[1:])]
            ),
        ),
    )
    planned: list[TrainConfig] = []

    def settle() -> int:
        planned.append(plan(request))
        return 0

    failed = run_command(settle)
    if failed:
        return failed
    cfg = planned[0]
    out = Path(cfg.out)
    if cfg.demo and not args.resume:  # a resumed run takes its data from its config.json
        print(demo_banner(cfg), flush=True)

    def body() -> int:
        metrics = train(cfg, resume=args.resume)
        print(json.dumps(metrics, indent=2))
        if distribution.worker().chief:
            print(f"run directory: {out}")
        return 0

    return run_command(
        body, interrupted=f"interrupted: the best checkpoint is in {out}; --resume continues"
    )


if __name__ == "__main__":
    sys.exit(main())
