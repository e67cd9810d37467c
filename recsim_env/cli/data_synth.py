"""``recsim data synth``: generate a synthetic world's dataset (the default data).

Two worlds: ``organic`` (the default; :mod:`user_models.synthetic.world`, organic browsing, stored
directly as a dataset) and ``cascade`` (:mod:`user_models.synthetic.cascade`, a structurally different
world shown slates by a logging policy; its raw shop-style logs are written to ``DIR/raw`` and ingested
by the ordinary ``recsim data prepare`` pipeline). ``--impressions`` adds the impression table to
either (see docs/data_formats.md, "Synthetic impression logs"). The ``data`` group calls
:func:`add_synth_parser` on its subparsers; :func:`cmd_synth` is the command.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from recsim_env.cli.dataset_output import add_output_arguments, check_output, save_and_report
from user_models.errors import InputError
from user_models.synthetic.config import SyntheticConfig

WORLDS = ("organic", "cascade")


def add_synth_parser(data_subparsers: Any) -> argparse.ArgumentParser:
    """Add ``synth`` to the ``data`` group's subparsers (an ``argparse`` subparsers action)."""
    defaults = SyntheticConfig()
    parser: argparse.ArgumentParser = data_subparsers.add_parser(
        "synth",
        help="generate a synthetic world's dataset",
        description=(
            "Generate logs of a built-in synthetic world and save them as a dataset directory. "
            "--world organic (default): organic browsing of users whose interests drift with what they "
            "consume, a view/click/cart/buy funnel, sessions that end when patience runs out. "
            "--world cascade: users scan slates shown by a logging policy top-down and stop at the first "
            "item they like enough; bait items; sessions end as satisfaction falls; the raw logs (one row "
            "per funnel stage, and the shown slates) are kept in DIR/raw and ingested like any shop log. "
            "Deterministic by seed; the world can be rebuilt from the dataset as ground truth."
        ),
    )
    add_output_arguments(parser)
    parser.add_argument("--world", choices=WORLDS, default="organic",
                        help="which world writes the logs (default organic)")
    parser.add_argument("--logging-policy", choices=("A", "B"), metavar="A|B",
                        help="cascade world only: the recommender that showed the slates: A, a click-"
                             "through ranker (default), or B, a conversion ranker with 30%% random slots. "
                             "The organic world's logs are organic browsing, with no slates to log")
    parser.add_argument("--users", type=int, default=defaults.n_users, metavar="N",
                        help=f"number of users (default {defaults.n_users})")
    parser.add_argument("--items", type=int, default=defaults.n_items, metavar="M",
                        help=f"catalogue size (default {defaults.n_items})")
    parser.add_argument("--seed", type=int, default=defaults.seed, metavar="S",
                        help=f"seed of the world and its logs (default {defaults.seed})")
    parser.add_argument("--events-per-user", type=float, metavar="E",
                        help=f"organic world only: mean events per user (default "
                             f"{defaults.mean_events_per_user:g})")
    parser.add_argument("--impressions", action="store_true",
                        help="also write the impression table (what was shown, what was chosen, including "
                             "nothing): cascade: its logged slates (DIR/raw/impressions.parquet, ingested), "
                             "with the slate's probability under policy A as propensity (null under B); "
                             "organic: one more session per user of slates from a popularity logging "
                             "policy, answered by the world, the choices appended to the events. Off: the "
                             "logs are exactly those written without the flag")
    parser.set_defaults(func=cmd_synth)
    return parser


def cmd_synth(args: argparse.Namespace) -> int:
    """Generate, save atomically and print a summary; an existing ``--out`` without ``--overwrite``
    raises :class:`~user_models.errors.DatasetError` (exit code 2) before any work."""
    import time

    out: Path = args.out
    check_output(out, args.overwrite)
    start = time.perf_counter()
    if args.world == "cascade":
        if args.events_per_user is not None:
            raise InputError("--events-per-user is for the organic world; cascade sessions end when "
                             "users leave")
        _synth_cascade(args)
    else:
        if args.logging_policy is not None:
            raise InputError("--logging-policy is for --world cascade: the organic world's logs are "
                             "organic browsing, no recommender showed them slates")
        from user_models.synthetic import synthesize_dataset, synthesize_impression_dataset

        events = args.events_per_user if args.events_per_user is not None else (
            SyntheticConfig.mean_events_per_user)
        config = SyntheticConfig(n_users=args.users, n_items=args.items, seed=args.seed,
                                 mean_events_per_user=events)
        synthesize = synthesize_impression_dataset if args.impressions else synthesize_dataset
        save_and_report(synthesize(config, progress=True), out, args.overwrite)
    name = "synthetic" if args.world == "organic" else "cascade"
    print(f"{name} dataset written to {out} in {time.perf_counter() - start:.1f} s (seed {args.seed})")
    return 0


def _synth_cascade(args: argparse.Namespace) -> None:
    """Raw logs into a temporary sibling, ingest, save the dataset, then move the raw logs to DIR/raw."""
    import shutil
    import tempfile
    from dataclasses import replace

    from user_models.synthetic import CascadeConfig, synthesize_cascade_dataset

    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    config = CascadeConfig(n_users=args.users, n_items=args.items, seed=args.seed)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.raw-", dir=out.parent) as tmp:
        raw = Path(tmp) / "raw"
        ds = synthesize_cascade_dataset(config, raw, args.logging_policy or "A", progress=True,
                                        impressions=args.impressions)
        # The sources point where the raw files will live, relative to the dataset directory.
        sources = tuple({**s, "path": f"raw/{Path(s['path']).name}"} for s in ds.meta.sources)
        ds.meta = replace(ds.meta, sources=sources)
        save_and_report(ds, out, args.overwrite)
        shutil.move(str(raw), str(out / "raw"))
