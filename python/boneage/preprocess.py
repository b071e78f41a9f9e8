"""``python -m boneage.preprocess``: turn folders and archives of radiographs into shards.

Example::

    python -m boneage.preprocess boneage-training-dataset.zip boneage-test-dataset.zip \\
        --labels train.csv test.csv --out data/rsna

Exit status: 0 when every input became a record, 1 when the run finished but skipped some
inputs (each is in ``OUT/manifest.csv`` with its reason), 2 on a usage or fatal error.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from collections.abc import Sequence

from boneage.cli import command_parser, quiet_native_logs, run_command
from boneage.settings import INTERPOLATIONS, LOCALISERS, MODES


def build_parser() -> argparse.ArgumentParser:
    p = command_parser(
        "preprocess",
        "Decode, localise the hand, crop, CLAHE, pad and resize every radiograph in the "
        "inputs, and write sharded TFRecords plus OUT/manifest.csv (one row per input, "
        "with its status and reason). Archives are streamed, never extracted.",
    )
    p.add_argument("inputs", nargs="+", help="folders, .zip or .tar[.gz] archives, or image files")
    p.add_argument("--labels", nargs="*", default=[], metavar="CSV",
                   help="RSNA label CSVs (training, validation or test schema); images without a "
                        "label are kept as 'unlabeled'")  # fmt: skip
    p.add_argument("--out", required=True, help="output directory for shards and manifest")
    p.add_argument("--localiser", choices=LOCALISERS, default="auto",
                   help="auto: a plausible MediaPipe box (merged with the native one when they "
                        "agree), else the native radiograph localiser, else the whole "
                        "image")  # fmt: skip
    p.add_argument(
        "--engine",
        choices=("native", "opencv", "beam"),
        default="native",
        help="opencv runs the same job through boneage.ingest.reference (cv2), for comparison; "
        "beam runs the native job as an Apache Beam pipeline (pip install 'boneage[beam]'): "
        "options this command does not know go to Beam as --name=value, e.g. "
        "--runner=FlinkRunner (without one, the DirectRunner: a process per core; --workers "
        "then counts MediaPipe processes per Beam worker)",
    )
    p.add_argument("--mode", choices=MODES, default="crop",
                   help="crop: the paper's hand crop, CLAHE, pad, resize; squash: the whole "
                        "film resized to a square, then CLAHE (how the public 100/299 px RSNA "
                        "copies were made; the localiser is not used)")  # fmt: skip
    p.add_argument("--interpolation", choices=INTERPOLATIONS, default="area",
                   help="squash mode's resize filter: area (OpenCV INTER_AREA) or linear "
                        "(INTER_LINEAR, no anti-aliasing: how the public 100 px RSNA copies "
                        "were made, so the match for models trained on them); crop mode "
                        "always area-resizes")  # fmt: skip
    p.add_argument("--image-size", "--size", dest="image_size", type=int, default=256,
                   help="output side in pixels (the same option as train's; --size is its "
                        "older spelling)")  # fmt: skip
    p.add_argument("--clip-limit", type=float, default=2.0, help="CLAHE clip limit")
    p.add_argument("--tile-grid", type=int, nargs=2, default=(8, 8), metavar=("COLS", "ROWS"),
                   help="CLAHE tile grid")  # fmt: skip
    p.add_argument("--split-by", metavar="SPEC",
                   help="seeded stratified split instead of the CSVs' own, e.g. "
                        "train=0.8,val=0.1,test=0.1")  # fmt: skip
    p.add_argument("--val-fraction", type=float, default=0.0, metavar="F",
                   help="hold out this seeded, stratified fraction of the training cases as "
                        "'val', keeping the label files' own test split (e.g. 0.1 with the RSNA "
                        "training and test CSVs)")  # fmt: skip
    p.add_argument("--keep-copies", action="store_true",
                   help="make a record of every copy of a case (e.g. the same film at 100 and "
                        "299 px, from two archives) instead of the first one only; a case's "
                        "copies all land in its one split, so none leaks between "
                        "train and val")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed for --split-by / --val-fraction")
    p.add_argument(
        "--shards", type=int, default=0, help="shards per split (0: one per ~1000 images)"
    )
    p.add_argument("--gzip", action="store_true", help="GZIP-compress the shards")
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="MediaPipe worker processes and native threads (0: all cores)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run in the same --out, skipping finished parts",
    )
    p.add_argument(
        "--part-size",
        type=int,
        default=256,
        help="inputs per resumable part (memory holds one part's encoded files)",
    )
    p.add_argument("--keep-work", action="store_true", help="keep OUT/.work after finishing")
    p.add_argument(
        "--contact-sheet",
        type=int,
        default=60,
        metavar="N",
        help="thumbnails with crop boxes in OUT/contact_sheet.png (0: none)",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=100_000_000,
        help="refuse images with more pixels than this",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    quiet_native_logs()
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    if beam_args and args.engine != "beam":
        parser.error(f"unrecognized arguments: {' '.join(beam_args)}")
    if args.engine == "beam" and importlib.util.find_spec("apache_beam") is None:
        parser.error(
            "--engine beam needs Apache Beam, an optional extra: pip install 'boneage[beam]'"
        )
    return run_command(
        lambda: _preprocess(args, beam_args),
        interrupted="interrupted: rerun to start afresh"
        if args.engine == "beam"  # the runner owns retries; there is no --resume
        else "interrupted: rerun with --resume to continue",
    )


def _preprocess(args: argparse.Namespace, beam_args: Sequence[str] = ()) -> int:
    from boneage.ingest.bulk import Options, run
    from boneage.ingest.splits import parse_fractions
    from boneage.settings import Preprocessing

    if args.image_size < 1 or args.part_size < 1 or args.shards < 0 or args.workers < 0:
        raise ValueError("--image-size and --part-size must be >= 1; --shards, --workers >= 0")
    if args.split_by and args.val_fraction:
        raise ValueError("--split-by and --val-fraction are alternatives: give one")
    opts = Options(
        inputs=args.inputs,
        out=args.out,
        labels=args.labels,
        preprocessing=Preprocessing(
            image_size=args.image_size,
            clip_limit=args.clip_limit,
            tile_grid=(args.tile_grid[0], args.tile_grid[1]),
            # The squash mode keeps the whole film: no localiser.
            localiser="none" if args.mode == "squash" else args.localiser,
            mode=args.mode,
            interpolation=args.interpolation,
        ),
        engine=args.engine,
        shards=args.shards,
        compression="GZIP" if args.gzip else None,
        split_by=parse_fractions(args.split_by) if args.split_by else None,
        seed=args.seed,
        val_fraction=args.val_fraction,
        keep_copies=args.keep_copies,
        workers=args.workers,
        resume=args.resume,
        part_size=args.part_size,
        keep_work=args.keep_work,
        sheet=args.contact_sheet,
        max_pixels=args.max_pixels,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    if args.engine == "beam":
        from boneage.ingest import beam

        summary = beam.run(opts, beam_args)
    else:
        summary = run(opts)
    print(
        f"{summary.ok} of {summary.total} inputs written in {summary.seconds:.1f} s "
        f"({summary.images_per_s:.1f} images/s); {summary.skipped} skipped",
        file=sys.stderr,
    )
    print(f"per split: {json.dumps(summary.per_split)}", file=sys.stderr)
    print(f"localiser: {json.dumps(summary.localisers)}", file=sys.stderr)
    if summary.reasons:
        print(f"skipped:   {json.dumps(summary.reasons)}", file=sys.stderr)
    print(f"manifest:  {os.path.join(args.out, 'manifest.csv')}", file=sys.stderr)
    return 1 if summary.skipped else 0


if __name__ == "__main__":
    sys.exit(main())
