"""``recsim data synth``: generate the built-in synthetic world's dataset (the default data).

The ``data`` group calls :func:`add_synth_parser` on its subparsers; :func:`cmd_synth` is the command.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

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
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="dataset directory to write")
    parser.add_argument("--users", type=int, default=defaults.n_users, metavar="N",
                        help=f"number of users (default {defaults.n_users})")
    parser.add_argument("--items", type=int, default=defaults.n_items, metavar="M",
                        help=f"catalogue size (default {defaults.n_items})")
    parser.add_argument("--seed", type=int, default=defaults.seed, metavar="S",
                        help=f"seed of the world and its logs (default {defaults.seed})")
    parser.add_argument("--events-per-user", type=float, default=defaults.mean_events_per_user, metavar="E",
                        help=f"mean events per user (default {defaults.mean_events_per_user:g})")
    parser.add_argument("--overwrite", action="store_true", help="replace DIR if it exists")
    parser.set_defaults(func=cmd_synth)
    return parser


def cmd_synth(args: argparse.Namespace) -> int:
    """Generate, save atomically and print a summary; an existing ``--out`` without ``--overwrite``
    raises :class:`~user_models.errors.DatasetError` (exit code 2) before any work."""
    import time

    import numpy as np

    from user_models.errors import DatasetError
    from user_models.synthetic import synthesize_dataset

    out: Path = args.out
    if out.exists() and not args.overwrite:
        raise DatasetError(f"{out}: output exists; pass --overwrite to replace it")
    config = SyntheticConfig(
        n_users=args.users, n_items=args.items, seed=args.seed, mean_events_per_user=args.events_per_user
    )
    start = time.perf_counter()
    ds = synthesize_dataset(config, progress=True)
    ds.save(out, overwrite=args.overwrite)
    seconds = time.perf_counter() - start
    meta = ds.meta
    counts = np.bincount(ds.interactions["behavior"].to_numpy(), minlength=len(meta.behaviors) + 1)[1:]
    shares = counts / meta.n_interactions
    mix = ", ".join(f"{name} {share:.1%}" for name, share in zip(meta.behaviors, shares, strict=True))
    print(f"synthetic dataset written to {out} in {seconds:.1f} s (seed {config.seed})")
    print(f"  users {meta.n_users:,}  items {meta.n_items:,}  events {meta.n_interactions:,}  "
          f"sessions {meta.n_sessions:,}  mean session length {meta.n_interactions / meta.n_sessions:.1f}")
    print(f"  behaviors: {mix}")
    return 0
