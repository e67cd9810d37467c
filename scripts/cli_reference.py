"""Regenerate the ``--help`` blocks of ``docs/cli.md`` from the parser itself.

Each ``## `recsim ...` `` heading of the reference is followed by a ```` ```text ```` block holding that
command's ``--help`` at 110 columns (as ``COLUMNS=110 recsim COMMAND --help`` prints it). This script
rewrites every such block from :func:`recsim_env.cli.build_parser`; ``--check`` only reports the
headings whose block is out of date (exit 1), which is what ``tests/test_cli_help.py`` runs.

    python scripts/cli_reference.py            # rewrite docs/cli.md in place
    python scripts/cli_reference.py --check    # exit 1 and name the stale commands
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
COLUMNS = "110"
_BLOCK = re.compile(r"^## `(recsim[^`]*)`\n((?:(?!^## |```).)*)```text\n(.*?)```\n", flags=re.M | re.S)
"""A command's section: its heading, the prose before its help block (kept as written), the block."""


def command_help(command: str) -> str:
    """The ``--help`` text of ``command`` (``"recsim agent eval"``) at :data:`COLUMNS` columns."""
    from recsim_env.cli import build_parser

    os.environ["COLUMNS"] = COLUMNS  # argparse reads the width from the environment when formatting
    parser = build_parser()
    for word in command.split()[1:]:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[word]
    return parser.format_help()


def regenerate(text: str) -> tuple[str, list[str]]:
    """``text`` with every help block replaced by the current help, and the commands that changed."""
    stale: list[str] = []

    def replace(match: re.Match[str]) -> str:
        command, prose, old = match.group(1), match.group(2), match.group(3)
        new = command_help(command)
        if new != old:
            stale.append(command)
        return f"## `{command}`\n{prose}```text\n{new}```\n"

    return _BLOCK.sub(replace, text), stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale blocks; write nothing")
    args = parser.parse_args(argv)
    new, stale = regenerate(REFERENCE.read_text(encoding="utf-8"))
    if args.check:
        if stale:
            print(f"{REFERENCE}: stale --help of {', '.join(stale)} (run python scripts/cli_reference.py)")
            return 1
        return 0
    REFERENCE.write_text(new, encoding="utf-8")
    print(f"{REFERENCE}: {len(stale)} block(s) updated" + (f" ({', '.join(stale)})" if stale else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
