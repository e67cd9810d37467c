"""``recsim data synth``: generate the built-in synthetic world's dataset (the default data).

The ``data`` group calls :func:`add_synth_parser` on its subparsers; :func:`cmd_synth` is the command.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from recsim_env.cli.data import add_output_arguments, check_output, save_and_report
from user_models.synthetic.config import SyntheticConfig


def add_synth_parser(data_subparsers: Any) -> argparse.ArgumentParser:
    """Add ``synth`` to the ``data`` group's subparsers (an ``argparse`` subparsers action)."""
    defaults = SyntheticConfig()
    parser: argparse.ArgumentParser = data_subparsers.add_parser(
        "synth",
        help="generate the synthetic world's dataset",
        description=(
            "Generate organic browsing logs of the built-in synthetic world (users whose interests drift "
            "with what they consume, a view/click/cart/buy funnel, sessions that end when patience runs "
            "out) and save them as a dataset directory. Deterministic by seed; the world can be rebuilt "
            "from the dataset as ground truth."
        ),
    )
    add_output_arguments(parser)
    parser.add_argument("--users", type=int, default=defaults.n_users, metavar="N",
                        help=f"number of users (default {defaults.n_users})")
    parser.add_argument("--items", type=int, default=defaults.n_items, metavar="M",
                        help=f"catalogue size (default {defaults.n_items})")
    parser.add_argument("--seed", type=int, default=defaults.seed, metavar="S",
                        help=f"seed of the world and its logs (default {defaults.seed})")
    parser.add_argument("--events-per-user", type=float, default=defaults.mean_events_per_user, metavar="E",
                        help=f"mean events per user (default {defaults.mean_events_per_user:g})")
    parser.set_defaults(func=cmd_synth)
    return parser


def cmd_synth(args: argparse.Namespace) -> int:
    """Generate, save atomically and print a summary; an existing ``--out`` without ``--overwrite``
    raises :class:`~user_models.errors.DatasetError` (exit code 2) before any work."""
    import time

    from user_models.synthetic import synthesize_dataset

    out: Path = args.out
    check_output(out, args.overwrite)
    config = SyntheticConfig(
        n_users=args.users, n_items=args.items, seed=args.seed, mean_events_per_user=args.events_per_user
    )
    start = time.perf_counter()
    ds = synthesize_dataset(config, progress=True)
    save_and_report(ds, out, args.overwrite)
    print(f"synthetic dataset written to {out} in {time.perf_counter() - start:.1f} s (seed {config.seed})")
    return 0
