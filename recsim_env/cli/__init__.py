"""The ``recsim`` command line: one subcommand group per module in this package.

Each group module defines ``register(subparsers)``, adding its parser and setting ``func`` on each leaf
command. Groups import their heavy dependencies inside the command functions, so ``recsim --help`` stays
fast. Every ``--device`` is checked before the command runs (:func:`recsim_env.cli.settings.check_device`).
Any :class:`~user_models.errors.InputError` becomes a one-line message and exit code 2. Every parser
of the tree formats its help with :class:`DefaultsHelpFormatter`, so every ``--help`` states each
option's default.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from user_models.errors import InputError

GROUPS = ("demo", "data", "user_model", "env", "agent", "visualize", "offline")
"""Module names under ``recsim_env.cli``, in the order ``--help`` lists them."""


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """argparse's help, plus `` (default: X)`` after every option whose help does not state its default.

    Like :class:`argparse.ArgumentDefaultsHelpFormatter`, but a help text that already says its default
    in words (``"(default: the shipped YAML)"``) is left alone, a ``None`` default (nothing) adds
    nothing, and a sequence is written as the comma list the option takes (``none`` when empty).
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (text == argparse.SUPPRESS or default is None or default is argparse.SUPPRESS
                or "default" in text.lower() or not (action.option_strings or action.nargs)):
            return action.help
        if isinstance(default, list | tuple):
            shown = ",".join(map(str, default)) or "none"
        else:
            shown = str(default)
        return f"{text} (default: {shown.replace('%', '%%')})".lstrip()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recsim",
        description="Reinforcement-learning recommendation simulator with a learned Transformer user model.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in GROUPS:
        importlib.import_module(f"recsim_env.cli.{name}").register(sub)
    for each in _parsers(parser):
        each.formatter_class = DefaultsHelpFormatter
    return parser


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """``parser`` and every parser below it (its subcommands', recursively)."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases share a parser
                found.extend(_parsers(child))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``recsim`` console script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        if isinstance(getattr(args, "device", None), str):  # every command's --device, checked first
            from recsim_env.cli.settings import check_device

            check_device(args.device)
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"recsim: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("recsim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
