"""Time the synthetic world's log generation and print the default dataset's statistics.

Target (issue 2): the default world (~5k users x 2k items x ~100 events/user) generates in under 30 s on
2 CPU cores. The baseline, measured in the same run, is the same generator run one user at a time
(``n_users=1``, ``--baseline-users`` of them), i.e. what a per-user Python loop over the same protocol
methods costs; the table reports events per second for both and their ratio.

    python scripts/bench_synth.py [--threads 2] [--device cpu] [--no-write]

Writes its section of ``BENCHMARKS.md`` between ``<!-- BEGIN synth -->`` and ``<!-- END synth -->``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from user_models.synthetic import SyntheticConfig, generate_logs, synthesize_dataset

SECTION = "synth"
BENCHMARKS = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--device", default="cpu", help="torch device to generate on (default cpu)")
    parser.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    parser.add_argument("--baseline-users", type=int, default=20, help="users in the one-at-a-time baseline")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = SyntheticConfig(seed=args.seed)

    start = time.perf_counter()
    ds = synthesize_dataset(config, device=args.device, progress=True)
    seconds = time.perf_counter() - start
    events = ds.meta.n_interactions

    start = time.perf_counter()
    baseline_events = sum(
        len(generate_logs(replace(config, n_users=1, seed=args.seed + u), device=args.device))
        for u in range(args.baseline_users)
    )
    baseline_seconds = time.perf_counter() - start

    rate, baseline_rate = events / seconds, baseline_events / baseline_seconds
    behavior_counts = np.bincount(ds.interactions["behavior"].to_numpy(), minlength=5)[1:]
    mix = ", ".join(f"{b} {n / events:.1%}" for b, n in zip(ds.behaviors, behavior_counts, strict=True))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    machine = (f"{platform.machine()} {os.cpu_count()} cores ({args.threads} torch threads, "
               f"load average {load}), torch {torch.__version__}, device {args.device}")
    rows = [
        ("default world, batched (synthesize_dataset)", f"{seconds:.1f}", f"{rate:,.0f}",
         f"{rate / baseline_rate:.0f}x"),
        (f"baseline: one user at a time ({args.baseline_users} users)", f"{baseline_seconds:.1f}",
         f"{baseline_rate:,.0f}", "1x"),
    ]
    table = ["| run | seconds | events/s | speed-up |", "|---|---:|---:|---:|"]
    table += [f"| {' | '.join(r)} |" for r in rows]
    sessions = ds.meta.n_sessions
    stats = (f"users {ds.n_users:,}, items {ds.n_items:,}, events {events:,}, sessions {sessions:,}, "
             f"mean session length {events / sessions:.2f}, mean events/user {events / ds.n_users:.1f}; "
             f"behaviors: {mix}")
    target = "met" if seconds < 30 else "MISSED"
    body = "\n".join([
        "## Synthetic world: log generation (`scripts/bench_synth.py`)",
        "",
        f"Target: default world in under 30 s on 2 cores: **{target}** ({seconds:.1f} s).",
        f"Machine: {machine}.",
        "",
        *table,
        "",
        f"Default dataset (seed {args.seed}): {stats}.",
    ])
    print(body)
    if not args.no_write:
        write_section(BENCHMARKS, SECTION, body)
        print(f"\nwrote section {SECTION!r} of {BENCHMARKS}")


def write_section(path: Path, name: str, body: str) -> None:
    """Replace (or append) the text between ``<!-- BEGIN name -->`` and ``<!-- END name -->``."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{body}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    main()
