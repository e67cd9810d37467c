"""Time the synthetic world's log generation and print the default dataset's statistics.

Target (issue 2): the default world (~5k users x 2k items x ~100 events/user) generates in under 30 s on
2 CPU cores. The baseline, measured in the same run, is the same generator run one user at a time
(``n_users=1``, ``--baseline-users`` of them), i.e. what a per-user Python loop over the same protocol
methods costs; the table reports events per second for both and their ratio.

It also reports how predictable the default world is: next-item HR@10 over the full catalogue on the
leave-last-out test events, ranking by the world's own logits after replaying each history (the ceiling
a learned user model can approach) and by training-split popularity (the floor).

    python scripts/bench_synth.py [--threads 2] [--device cpu] [--no-write]

Writes its section of ``BENCHMARKS.md`` between ``<!-- BEGIN synth -->`` and ``<!-- END synth -->``.

OpenMP's default of spinning idle worker threads makes every torch op slow on a machine with more busy
processes than cores (measured ~8x slower here with 2 threads); unless ``OMP_WAIT_POLICY`` is already
set, this script sets it to ``PASSIVE`` before importing torch, and the table records the setting.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from benchmarks_md import write_section  # scripts/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as `python scripts/bench_synth.py` without an installed package

from user_models.data.artifact import SequenceDataset  # noqa: E402
from user_models.protocol import History  # noqa: E402
from user_models.synthetic import (  # noqa: E402
    SyntheticConfig,
    SyntheticWorld,
    generate_logs,
    synthesize_dataset,
)

SECTION = "synth"
BENCHMARKS = ROOT / "BENCHMARKS.md"


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
    world_hit, popularity_hit = next_item_hit_rates(ds, SyntheticWorld.from_dataset(ds, args.device))
    behavior_counts = np.bincount(ds.interactions["behavior"].to_numpy(), minlength=5)[1:]
    mix = ", ".join(f"{b} {n / events:.1%}" for b, n in zip(ds.behaviors, behavior_counts, strict=True))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    machine = (f"{platform.machine()} {os.cpu_count()} cores ({args.threads} torch threads, "
               f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, load average {load}), "
               f"torch {torch.__version__}, device {args.device}")
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
        "",
        f"Next-item HR@10 (full catalogue, leave-last-out test events): the world's own logits "
        f"{world_hit:.3f} (a perfect model of the world, up to the unknown initial interest), training "
        f"popularity {popularity_hit:.3f}.",
    ])
    print(body)
    if not args.no_write:
        write_section(BENCHMARKS, SECTION, body)
        print(f"\nwrote section {SECTION!r} of {BENCHMARKS}")


def next_item_hit_rates(ds: SequenceDataset, world: SyntheticWorld, k: int = 10) -> tuple[float, float]:
    """HR@k of the world's logits (after replaying each test history) and of training popularity."""
    test = ds.leave_last_out("test")
    seqs = test.history
    assert seqs.timestamps is not None
    lengths = seqs.lengths
    rows = np.repeat(np.arange(len(lengths)), lengths)
    cols = np.arange(len(seqs.items)) - np.repeat(seqs.offsets[:-1], lengths)
    shape = (len(lengths), int(lengths.max()))
    items, behaviors = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    gaps = np.full(shape, -1.0, np.float32)
    items[rows, cols], behaviors[rows, cols] = seqs.items, seqs.behaviors
    gaps[rows, cols] = np.where(cols > 0, np.diff(seqs.timestamps, prepend=0), -1.0)
    history = History(*(torch.from_numpy(x) for x in (items, behaviors, gaps, lengths)))
    world_scores = world.all_item_logits(world.encode(history.to(world.device)))[:, 1:].cpu()
    popularity = torch.from_numpy(np.bincount(ds.train_sequences().items, minlength=ds.n_items + 1)[1:])
    target = torch.from_numpy(test.target_items.astype(np.int64))[:, None] - 1

    def hit_rate(scores: torch.Tensor) -> float:
        scores = scores.float().expand(len(target), -1)
        return float(((scores > scores.gather(1, target)).sum(1) < k).float().mean())

    return hit_rate(world_scores), hit_rate(popularity[None])


if __name__ == "__main__":
    main()
