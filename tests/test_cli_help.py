"""What every user sees first: each command's ``--help``.

Every verb of ``boneage`` (``cli.COMMANDS``) shows ``usage: boneage VERB`` however it is
started, gives every option a help text, and shows a default only once and only when there is
one. Building the parsers loads no deep-learning stack, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from boneage import cli

# The lead moves these two onto cli.command_parser in the same change, and then removes this.
PENDING: set[str] = set()


def parser_of(verb: str) -> argparse.ArgumentParser:
    module_name = cli.COMMANDS[verb][0]
    module = importlib.import_module(module_name)
    build = getattr(module, "build_parser", None)
    if build is None:  # a package whose command line lives in its cli module (serve)
        build = importlib.import_module(f"{module_name}.cli").build_parser
    parser: argparse.ArgumentParser = build()
    return parser


@pytest.mark.parametrize("verb", sorted(cli.COMMANDS))
def test_help_reads_well(verb: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if verb in PENDING:
        pytest.skip("parser polished by the lead in the same change")
    monkeypatch.setenv("COLUMNS", "1000")  # one line per option, so each is checked alone
    parser = parser_of(verb)
    text = parser.format_help()
    assert text.startswith(f"usage: boneage {verb}"), text.splitlines()[0]
    assert "(default: None)" not in text
    doubled = [line for line in text.splitlines() if line.count("(default") > 1]
    assert not doubled, doubled
    for action in parser._actions:
        assert action.help and action.help is not argparse.SUPPRESS and action.help.strip(), (
            f"{verb}: {action.option_strings or action.dest} has no help text"
        )


def test_every_verb_has_a_module_with_main() -> None:
    for verb, (module_name, summary) in cli.COMMANDS.items():
        assert summary, verb
        assert callable(importlib.import_module(module_name).main), verb
    assert "shipping" in cli.COMMANDS


def test_formatter_shows_a_default_once_and_only_when_there_is_one() -> None:
    p = cli.command_parser("demo", "a demo")
    p.add_argument("--none", help="no default")
    p.add_argument("--said", default="x", help="a file (default: the shipped one)")
    p.add_argument("--flag", action="store_true", help="a flag")
    p.add_argument("--empty", nargs="*", default=[], help="a list")
    p.add_argument("--pair", type=int, nargs=2, default=(8, 8), help="a pair")
    p.add_argument("--pct", default="50%", help="a share")
    lines = {line.split()[0]: line for line in p.format_help().splitlines() if "--" in line}
    assert lines["--none"].endswith("no default")
    assert lines["--said"].endswith("a file (default: the shipped one)")
    assert lines["--flag"].endswith("a flag")
    assert lines["--empty"].endswith("a list")
    assert lines["--pair"].endswith("a pair (default: 8 8)")
    assert lines["--pct"].endswith("a share (default: 50%)")
    assert p.format_usage().startswith("usage: boneage demo")


def test_help_loads_no_deep_learning_stack() -> None:
    verbs = sorted(set(cli.COMMANDS) - PENDING)
    code = (
        "import sys\n"
        "from test_cli_help import parser_of\n"
        f"for verb in {verbs!r}:\n"
        "    parser_of(verb).format_help()\n"
        "loaded = [m for m in ('tensorflow', 'keras', 'jax', 'mediapipe') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
