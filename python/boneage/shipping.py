"""``boneage shipping RUN [RUN ...]``: make a run's best model the package's default.

The command line only; the choices it makes on validation (precise batch-norm statistics,
the TTA count, the calibration line, an ensemble or one network) and how the file is written
are :mod:`boneage.training.shipping`'s.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from boneage.cli import command_parser, quiet_native_logs, run_command


def build_parser() -> argparse.ArgumentParser:
    p = command_parser(
        "shipping",
        "Make a trained run's best model (or the best of several runs and their averages) the "
        "model packaged with boneage. The TTA count, precise batch-norm statistics and the "
        "calibration line are chosen on the validation split, never on test data; the file is "
        "written to boneage/shipped/, replacing the model there (at most 30 MB).",
    )
    p.add_argument(
        "run",
        nargs="+",
        help="run directory or model file ('shipped': the packaged model); several: ship the "
        "best on validation of them and their averages (ensembles); an ensemble given here "
        "takes part as its members",
    )
    p.add_argument("--data", help="shard directory (default: the first run's own)")
    p.add_argument("--split", default="val", help="validation split used for every choice")
    p.add_argument("--tta", type=int, nargs="+", default=[0, 4, 8], help="TTA counts to try")
    p.add_argument(
        "--no-calibration",
        action="store_true",
        help="ship the age as the networks give it, without the straight-line correction "
        "fitted on the validation split (by default it is used when cross-validation on that "
        "split says it lowers the MAE)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    quiet_native_logs()
    args = build_parser().parse_args(argv)

    def body() -> int:
        from boneage.training.shipping import ship

        result = ship(args.run, args.data, args.split, args.tta, calibrate=not args.no_calibration)
        print(json.dumps(result, indent=2))
        return 0

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
