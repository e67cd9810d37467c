"""Calibrate simulated users to their logs and report simulated vs logged statistics, before and after.

For each ``--case NAME MODEL DATA`` (``MODEL`` a checkpoint directory, a hand-written user ``.json``, or
``world`` for the synthetic ground-truth world of a synthetic ``DATA``), runs
:func:`recsim_env.offline.calibrate.calibrate`, saves the calibration JSON under ``--out-dir`` and writes a
section of ``BENCHMARKS.md`` (between ``<!-- BEGIN calibration -->`` and ``<!-- END calibration -->``)
with the logged consumption rate and session length against the simulated ones, before and after.

The world is calibrated with the configuration of ``RecSim-World-v0`` (its own patience, no-choice
steps as world events). Example (after training the user models)::

    PYTHONPATH=. python scripts/calibrate_report.py \\
        --case ml-100k out/models/ml-100k out/data/ml-100k \\
        --case synthetic out/models/synthetic out/data/synthetic \\
        --case synthetic-world world out/data/synthetic
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

import torch
from benchmarks_md import write_section  # scripts/ is on sys.path when run as a script

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run without an installed package

from recsim_env.config import SimConfig  # noqa: E402
from recsim_env.factory import (  # noqa: E402
    WORLD_LEAVE,  # noqa: E402
    load_dataset,
    load_model,
)
from recsim_env.offline.calibrate import CalibrationSettings, LoggingPolicy, calibrate, format_report  # noqa: E402
from user_models.data.artifact import SequenceDataset  # noqa: E402
from user_models.protocol import UserModel  # noqa: E402

SECTION = "calibration"


@dataclass(frozen=True)
class Args:
    cases: list[list[str]]
    """``NAME MODEL DATA`` triples."""
    out_dir: Path
    """Where the calibration JSON files go."""
    benchmarks: Path
    """The Markdown file whose calibration section is (re)written."""
    slate_size: int
    n_users: int
    rounds: int
    logging_policy: str
    device: str
    seed: int


def parse_args(argv: list[str] | None = None) -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", nargs=3, action="append", required=True, metavar=("NAME", "MODEL", "DATA"),
                        help="a model (checkpoint dir, hand-written .json, or 'world') and its dataset")
    parser.add_argument("--out-dir", type=Path, default=Path("out/calibration"))
    parser.add_argument("--benchmarks", type=Path, default=Path("BENCHMARKS.md"))
    parser.add_argument("--slate-size", type=int, default=5)
    parser.add_argument("--n-users", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=24)
    parser.add_argument("--logging-policy", choices=("popular", "model"), default="popular")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    ns = parser.parse_args(argv)
    return Args(ns.case, ns.out_dir, ns.benchmarks, ns.slate_size, ns.n_users, ns.rounds, ns.logging_policy,
                ns.device, ns.seed)


def load(model: str, data: str, device: str) -> tuple[UserModel, SequenceDataset]:
    dataset = load_dataset(data)
    return load_model(model, dataset, device), dataset


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = CalibrationSettings(n_users=args.n_users, rounds=args.rounds,
                                   logging_policy=cast(LoggingPolicy, args.logging_policy), seed=args.seed)
    command = " ".join(sys.argv[1:] if argv is None else argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    parts = [
        "## Calibration: simulated vs logged sessions",
        "",
        "Simulated users under a logging-like policy (slates sampled by training popularity) against the",
        "training-split logs, before (temperature 1, no-choice logit 0, no end offset) and after",
        "`recsim env calibrate`. Sessions are measured as logs show them: sessions with at least one",
        "event; consumption rate = events per step between a session's first and last event, with steps",
        "reconstructed from within-session gaps (step = the median positive within-session gap).",
        "Caveat: the synthetic logs' gaps are dwell times that vary by behavior (20-120 s), so their",
        "reconstructed rate reflects dwell variation as well as skipped steps; MovieLens timestamps are",
        "rating-entry times. The world is calibrated with RecSim-World-v0's configuration (its own",
        "patience; no-choice steps are world events).",
        "",
        f"Command: `python scripts/calibrate_report.py {command}`",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, device {args.device}; n_users {args.n_users}, rounds {args.rounds}, "
        f"slate size {args.slate_size}. Timings are noisy (shared machine).",
        "",
    ]
    for name, model_path, data_path in args.cases:
        model, dataset = load(model_path, data_path, args.device)
        config = SimConfig(slate_size=args.slate_size)
        if model_path == "world":  # as in RecSim-World-v0: the world's own patience and no-choice events
            config = replace(config, leave=WORLD_LEAVE, no_choice_event=True)
        start = time.perf_counter()
        calibration = calibrate(model, dataset, config, settings)
        seconds = time.perf_counter() - start
        calibration.save(args.out_dir / f"{name}.json")
        table = format_report(calibration)
        print(f"### {name}\n\n{table}\n(calibrated in {seconds:.0f} s)\n")
        parts += [f"### {name} (model `{model_path}`)", "", table, f"Calibration took {seconds:.0f} s.", ""]
        (args.out_dir / f"{name}.report.json").write_text(json.dumps(calibration.report, indent=2) + "\n")
    write_section(args.benchmarks, SECTION, "\n".join(parts))
    print(f"wrote {args.benchmarks} section '{SECTION}' and {args.out_dir}/*.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
