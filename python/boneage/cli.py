"""The ``boneage`` console script: one entry point for every job.

``boneage preprocess ...`` is ``python -m boneage.preprocess ...``, and so on; each
subcommand's ``--help`` is its module's.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

COMMANDS = {
    "preprocess": ("boneage.preprocess", "archives of radiographs -> shards + manifest"),
    "train": ("boneage.train", "train a model (synthetic demo data when no --data)"),
    "evaluate": ("boneage.evaluate", "MAE/RMSE/R^2 with confidence intervals, plots, report"),
    "predict": ("boneage.predict", "bone age for images, as a table, CSV or JSON"),
}


def usage() -> str:
    lines = ["usage: boneage COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<11} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run 'boneage COMMAND --help' for a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        from boneage import __version__

        print(__version__)
        return 0
    if args[0] not in COMMANDS:
        print(f"boneage: unknown command {args[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[args[0]][0])
    return int(module.main(args[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
