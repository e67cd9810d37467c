"""``recsim demo``: the main job end to end, from logs to a report.

```
recsim demo [--dataset synthetic|ml-100k] [--data-dir PATH] [--out DIR] [--overwrite] [--quick] [--seed S]
            [--device D]
```

Prepares the data, trains and calibrates the user model, evaluates it against next-item baselines,
trains MaskablePPO briefly, benchmarks it against the classic recommenders, checks the simulator's
fidelity and records one session; everything lands in ``--out`` with ``report.md`` on top. The stages
are :data:`recsim_env.demo.STAGES`, run by :func:`recsim_env.demo.run_demo`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from user_models.outputs import OutputKind

DEMO_RUN = OutputKind("demo run", marker="summary.json", markers=("data/meta.json",))
"""``recsim demo --out``: a finished run (``summary.json``) or one stopped after its data stage."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the main job end to end: data -> user model -> calibration -> agent -> benchmark -> report",
        description="Prepare data, train the Transformer user model, calibrate it, compare it with Pop, "
        "Markov and GRU4Rec, train MaskablePPO on the simulator, benchmark it against Random, "
        "MostPopular, Greedy and the Oracle, check fidelity, and record one session as a GIF. Writes "
        "OUT/report.md (tables, PNG plots, the GIF). Budgets on 2 CPU cores: the default synthetic run "
        "within 15 minutes, --quick within 3 (more on a machine busy with other jobs).",
    )
    parser.add_argument(
        "--dataset",
        choices=("synthetic", "ml-100k"),
        default="synthetic",
        help="synthetic: the built-in world, with ground truth (default); "
        "ml-100k: MovieLens-100k from --data-dir",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        metavar="PATH",
        help="with --dataset ml-100k: the local copy (RecBole atomic files or the original u.data/u.item)",
    )
    parser.add_argument("--out", type=Path, default=Path("out/demo"), metavar="DIR",
                        help="output directory (default out/demo); checked before any stage runs")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the files of a previous demo run in --out (recognised by its "
                        "summary.json or data/meta.json); any other existing path is refused")
    parser.add_argument("--quick", action="store_true",
                        help="a smaller world, fewer epochs, steps and users (about 3 minutes on 2 cores)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every stage (default 0)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (stage lines remain)")
    parser.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    # Imported here, as every group does (see recsim_env.cli): the demo's stages import torch, SB3 and
    # the whole library, which ``recsim --help`` should not wait for.
    from recsim_env.demo import DEFAULT, QUICK, DemoConfig, run_demo
    from user_models.outputs import check_output

    # The stages write into --out as they go (the report links their files by relative path), so the
    # output is checked here, before any work, rather than swapped in at the end.
    check_output(args.out, DEMO_RUN, overwrite=args.overwrite, inputs=[args.data_dir])
    config = DemoConfig(
        out=args.out,
        dataset=args.dataset,
        data_dir=args.data_dir,
        sizes=QUICK if args.quick else DEFAULT,
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress,
    )
    run_demo(config)  # prints the stage times and where the report is
    return 0
