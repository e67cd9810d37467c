"""Benchmark: the Transformer user model against Pop, Markov and GRU4Rec on ml-100k and the synthetic world.

Protocol (the same for every model, one harness): leave-last-out, the test split, full ranking over the
whole catalogue, seen items NOT masked (the headline; the masked variant is printed too). Every model is
trained on the same training events and early-stopped on the validation split. Prints a table and writes
one ``BENCHMARKS.md`` section per dataset (``user_model:ml-100k``, ``user_model:synthetic``; a run
replaces only the sections of the datasets it ran): model, NDCG@10, HR@10, MRR, train time, parameters,
with the command and the machine.

    python scripts/bench_user_model.py                   # both datasets, 2 threads
    python scripts/bench_user_model.py --skip-synthetic  # ml-100k only

ml-100k is read from ``$RECSIM_ML100K`` (default ``../shared/data/ml-100k`` relative to the repository)
and prepared with ``recsim data prepare --dataset ml-100k``; it is never written into the repository.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks_md import write_section  # noqa: E402  (scripts/ is on sys.path when run as a script)

from recsim_env.cli import main as recsim  # noqa: E402
from user_models.baselines import GRUConfig, baseline_reports  # noqa: E402
from user_models.data.artifact import SequenceDataset  # noqa: E402
from user_models.evaluate import TransformerScorer, eval_examples, format_table, ranking_report  # noqa: E402
from user_models.train import TrainConfig, train_user_model  # noqa: E402
from user_models.transformer import TransformerConfig  # noqa: E402

SECTION = "user_model"


@dataclass(frozen=True)
class Case:
    """One dataset with the configurations it is benchmarked with."""

    name: str
    dataset: SequenceDataset
    model: TransformerConfig
    train: TrainConfig
    gru: GRUConfig


def prepare_ml100k(raw: Path, work: Path) -> SequenceDataset:
    out = work / "ml-100k"
    if not (out / "meta.json").is_file():
        code = recsim(["data", "prepare", "--dataset", "ml-100k", "--data-dir", str(raw), "--out", str(out),
                       "--overwrite", "--no-progress"])
        if code:
            raise SystemExit(f"recsim data prepare failed with exit code {code}")
    return SequenceDataset.load(out)


def prepare_synthetic(work: Path, users: int, events: float, seed: int) -> SequenceDataset:
    from user_models.synthetic import SyntheticConfig, synthesize_dataset

    out = work / f"synthetic-u{users}-e{events:g}-s{seed}"
    if not (out / "meta.json").is_file():
        config = SyntheticConfig(n_users=users, mean_events_per_user=events, seed=seed)
        synthesize_dataset(config, progress=True).save(out, overwrite=True)
    return SequenceDataset.load(out)


def run_case(case: Case, work: Path) -> list[dict[str, Any]]:
    """Train and evaluate the Transformer and the baselines on ``case``; one row per model."""
    test = eval_examples(case.dataset, "test")
    started, cpu_started = time.perf_counter(), time.process_time()
    model, fit = train_user_model(case.dataset, work / f"model-{case.name}", case.model, case.train)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    rows = [{**ranking_report(TransformerScorer(model), test), "train_seconds": seconds,
             "train_cpu_seconds": cpu,
             "parameters": model.n_parameters(), "best_epoch": fit.best_epoch, "epochs_run": fit.epochs_run}]
    cpu_started = time.process_time()
    baselines = baseline_reports(case.dataset, "test", case.gru, case.train)
    baselines[-1]["train_cpu_seconds"] = time.process_time() - cpu_started  # the GRU; Pop/Markov: counting
    return rows + baselines


def markdown(rows: list[dict[str, Any]], command: str, threads: int, case: Case) -> str:
    """The BENCHMARKS.md section of one dataset (without its markers)."""
    lines = [
        f"## User model on {case.name}: Transformer vs Pop, Markov, GRU4Rec",
        "",
        "Leave-last-out **test** split, full ranking over the whole catalogue, **seen items not masked** "
        "(headline; `seen masked` = history items removed except the target). Train time = the whole "
        "training including per-epoch validation (early stopping on valid NDCG@10); CPU = the process's "
        "CPU seconds for it (on a shared, overloaded machine wall time overstates the cost).",
        "",
        f"Command: `{command}`  ",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, "
        f"torch {torch.__version__}, {threads} threads, Python {platform.python_version()}; "
        f"load average {os.getloadavg()[0]:.1f} at the end; "
        f"run at {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "| dataset | model | NDCG@10 | HR@10 | MRR | NDCG@10 (seen masked) | train wall (s) | train CPU (s) "
        "| parameters |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {case.name} | {r['model']} | {r['ndcg@10']:.4f} | {r['hr@10']:.4f} | "
                     f"{r['mrr']:.4f} | {r['seen_masked']['ndcg@10']:.4f} | {r['train_seconds']:.1f} | "
                     f"{r.get('train_cpu_seconds', 0.0):.1f} | {r['parameters']:,} |")
    lines.append("")
    lines.append(f"Dataset: {case.dataset.n_users} users, {case.dataset.n_items} items, "
                 f"{case.dataset.meta.n_interactions} events. Transformer `{asdict(case.model)}`, training "
                 f"lr {case.train.lr}, batch {case.train.batch_size}, at most {case.train.epochs} epochs, "
                 f"patience {case.train.patience}; GRU4Rec `{asdict(case.gru)}` with the same training loop.")
    return "\n".join(lines)


def main() -> None:
    default_raw = Path(os.environ.get("RECSIM_ML100K", ROOT / ".." / "shared" / "data" / "ml-100k"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ml100k", type=Path, default=default_raw,
                        help="raw ml-100k in RecBole atomic files "
                        "(default: $RECSIM_ML100K, else ../shared/data/ml-100k)")
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "bench_user_model",
                        help="prepared datasets and checkpoints, not committed "
                        "(default: the repository's out/bench_user_model)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the synthetic data and of training (default: %(default)s)")
    parser.add_argument("--skip-ml100k", action="store_true", help="do not benchmark on ml-100k")
    parser.add_argument("--skip-synthetic", action="store_true",
                        help="do not benchmark on the synthetic world's logs")
    parser.add_argument("--synthetic-users", type=int, default=2000,
                        help="users in the synthetic logs (default: %(default)s)")
    parser.add_argument("--synthetic-events", type=float, default=50.0,
                        help="mean events per synthetic user (default: %(default)s)")
    parser.add_argument("--benchmarks", type=Path, default=ROOT / "BENCHMARKS.md",
                        help="Markdown file whose user_model:<dataset> sections are rewritten "
                        "(default: the repository's BENCHMARKS.md)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    cases = []
    if not args.skip_ml100k:
        if not (args.ml100k / "ml-100k.inter").is_file():
            raise SystemExit(f"{args.ml100k}: no ml-100k.inter; set RECSIM_ML100K or pass --skip-ml100k")
        ml100k = prepare_ml100k(args.ml100k, args.work)
        cases.append(Case("ml-100k", ml100k, TransformerConfig(), TrainConfig(seed=args.seed), GRUConfig()))
    if not args.skip_synthetic:
        synthetic = prepare_synthetic(args.work, args.synthetic_users, args.synthetic_events, args.seed)
        cases.append(Case("synthetic", synthetic, TransformerConfig(), TrainConfig(seed=args.seed),
                          GRUConfig()))
    command = "python " + " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    for case in cases:
        rows = run_case(case, args.work)
        print(f"\n== {case.name}")
        print(format_table(rows))
        print(format_table(rows, masked=True))
        print("train seconds: " + ", ".join(f"{r['model']} {r['train_seconds']:.1f}" for r in rows))
        write_section(args.benchmarks, f"{SECTION}:{case.name}", markdown(rows, command, args.threads, case))
        print(f"wrote the {SECTION}:{case.name} section of {args.benchmarks}")


if __name__ == "__main__":
    main()
