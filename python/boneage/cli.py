"""The ``boneage`` console script, and what every command shares: its parser's look and
its error policy.

``boneage preprocess ...`` is ``python -m boneage.preprocess ...``, and so on; each
subcommand's ``--help`` is its module's, built by :func:`command_parser` so that both
spellings show ``usage: boneage VERB``. :func:`quiet_native_logs` is the first thing each
command does. :func:`run_command` is the one place that turns what a command raises into the
exit codes the README promises: 0 done, 1 done with skipped items (the command returns it), 2
a usage or fatal error in one line, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

COMMANDS = {
    "preprocess": ("boneage.preprocess", "archives of radiographs -> shards + manifest"),
    "train": ("boneage.train", "train a model (synthetic demo data when no --data)"),
    "evaluate": ("boneage.evaluate", "MAE/RMSE/R^2 with confidence intervals, plots, report"),
    "predict": ("boneage.predict", "bone age for images, as a table, CSV or JSON"),
    "serve": ("boneage.serve", "the local web app and JSON API (needs boneage[serve])"),
    "shipping": ("boneage.shipping", "fit, check and package a trained run as the shipped model"),
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` to an option's help only where it tells something.

    Not when there is no default (``None``, an empty list, a flag's ``False``), and not when
    the help already says what the default is (it mentions "default"), so no option reads
    "(default: the shipped model) (default: None)". A list default is shown as it is typed.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_ = action.help or ""
        default = action.default
        if (
            "default" in help_.lower()
            or default is None
            or default is argparse.SUPPRESS
            or (action.nargs == 0 and isinstance(default, bool))
            or (isinstance(default, (list, tuple, str)) and len(default) == 0)
            or (not action.option_strings and action.nargs not in ("?", "*"))
        ):
            return action.help
        if isinstance(default, (list, tuple)):
            shown = " ".join(str(v) for v in default)
        else:
            shown = str(default)
        return f"{help_} (default: {shown.replace('%', '%%')})"


def command_parser(verb: str, description: str | None, **kw: Any) -> argparse.ArgumentParser:
    """The parser of ``boneage VERB``: that usage line whichever way the command is started,
    and the defaults shown by :class:`HelpFormatter`."""
    kw.setdefault("formatter_class", HelpFormatter)
    return argparse.ArgumentParser(prog=f"boneage {verb}", description=description, **kw)


def positive_int(text: str) -> int:
    """An argparse ``type=`` for counts that must be at least 1 (epochs, batch size...).

    A zero or negative count is a usage error at the command line (exit 2, naming the
    option) rather than a silent fallback to a default (``--epochs 0`` trained 8 epochs) or a
    failure deep inside (``--batch-size 0`` ended in ZeroDivisionError).
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """An argparse ``type=`` for sizes that must be finite and above 0 (upload limit in MB).

    ``float()`` accepts ``inf`` and ``nan``, which then overflow or compare false far from
    the command line; refusing them here makes them a usage error naming the option.
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return value


def quiet_native_logs() -> None:
    """Silences TensorFlow's, XLA's and MediaPipe's C++ start-up lines on stderr, including
    those no variable reaches (see :mod:`boneage.nativelogs`); a level the user set wins."""
    from boneage import nativelogs

    nativelogs.quiet()


def run_command(body: Callable[[], int], interrupted: str = "interrupted") -> int:
    """Runs a command's body under the shared error policy and returns its exit code.

    ``OSError`` and ``ValueError`` are what bad input raises: the message is the whole story,
    so it is printed as one line. Anything else is a fault; a user still gets one line, and
    ``BONEAGE_DEBUG=1`` shows the traceback for a bug report.
    """
    try:
        return int(body() or 0)
    except KeyboardInterrupt:
        print(f"\n{interrupted}", file=sys.stderr)
        return 130
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        if os.environ.get("BONEAGE_DEBUG"):
            raise
        print(f"error: {type(e).__name__}: {e} (set BONEAGE_DEBUG=1 for details)", file=sys.stderr)
        return 2


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
    quiet_native_logs()
    module = importlib.import_module(COMMANDS[args[0]][0])
    return int(module.main(args[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
