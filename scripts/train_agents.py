"""Train an RL agent on the simulator and compare it with the classic baselines on long-horizon return.

Two subcommands, run by ``scripts/train_agents.sh``:

``run``: train ``--algo`` (default MaskablePPO) on ``--env-id`` (default ``RecSim-LongTerm-v0``) within a
wall-clock budget, then evaluate the agent (``--agent best``: the checkpoint that scored best in the
training run's own periodic evaluations, on a population disjoint from the test one), Random,
MostPopular, Greedy (GRU4Rec trained on the logs) and OracleGreedy (the simulator's own model, a myopic
upper reference) on the *same* fixed evaluation population (a seed the training never used), in the same
action mode, and write ``results.json``.

``report``: gather ``results.json`` files into a table in ``BENCHMARKS.md`` (between the
``<!-- BEGIN train_agents -->`` / ``<!-- END train_agents -->`` markers), with 95% Student-t confidence
intervals and whether the agent's interval lies entirely above each baseline's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks_md import write_section  # noqa: E402  (scripts/ is on sys.path when run as a script)

from agents.config import load_train_config, parse_overrides  # noqa: E402
from agents.train import FINAL  # noqa: E402
from recsim_env.cli.settings import env_settings  # noqa: E402
from recsim_env.factory import load_dataset, load_model  # noqa: E402
from recsim_env.offline.rollout import build_policy, build_simulator, evaluate_policy  # noqa: E402
from recsim_env.offline.training import train_agent  # noqa: E402

BASELINES = ("random", "popular", "greedy", "oracle")
EVAL_SEED = 123_457
"""The evaluation population's seed (training uses --seed and seed + 10000 for its own evaluations)."""
SECTION = "train_agents"


def run(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    overrides = parse_overrides(args.hyperparams)
    overrides["n_timesteps"] = args.timesteps
    if args.num_envs is not None:
        overrides["n_envs"] = args.num_envs
    config = load_train_config(args.algo, env_id=args.env_id, overrides=overrides)
    env_config = env_settings(args.model, config.env_id, config.env_kwargs, "cpu")
    dataset = load_dataset(args.data)
    model = load_model(args.model, dataset, env_config.device)
    out = Path(args.out)
    print(
        f"[{args.name}] training {config.algo} on {config.env_id} for up to {config.n_timesteps} steps "
        f"or {args.max_minutes} min ({torch.get_num_threads()} torch threads)",
        flush=True,
    )
    result = train_agent(
        config,
        model,
        dataset,
        env_config,
        out,
        seed=args.seed,
        progress=not args.no_progress,
        max_seconds=args.max_minutes * 60,
    )
    record = json.loads((out / "train.json").read_text())

    sim = build_simulator(model, dataset, env_config, args.episodes)
    agent = out / args.agent if (out / args.agent).is_dir() else out / FINAL
    rows: list[dict[str, Any]] = []
    for name in (str(agent), *BASELINES):
        start = time.perf_counter()
        greedy = Path(args.greedy_model) if args.greedy_model else out / "greedy"
        policy = build_policy(name, sim, args.seed, greedy, progress=not args.no_progress)
        evaluation = evaluate_policy(sim, policy, EVAL_SEED)
        label = f"{config.algo} (agent, {agent.name})" if name == str(agent) else name
        rows.append({"policy": label, **evaluation.to_json(), "seconds": time.perf_counter() - start})
        ret = evaluation.mean_return
        print(
            f"[{args.name}] {label:>22}: return {ret.estimate:.3f} [{ret.low:.3f}, {ret.high:.3f}] "
            f"length {evaluation.mean_length.estimate:.2f}",
            flush=True,
        )
    results = {
        "name": args.name,
        "env_id": config.env_id,
        "env_kwargs": dict(config.env_kwargs),
        "algo": config.algo,
        "policy_class": config.policy,
        "agent": agent.name,
        "train_steps": record["timesteps"],
        "train_seconds": record["seconds"],
        "train_steps_per_second": result.steps_per_second,
        "max_minutes": args.max_minutes,
        "episodes": args.episodes,
        "eval_seed": EVAL_SEED,
        "seed": args.seed,
        "torch_threads": torch.get_num_threads(),
        "machine": _machine(),
        "rows": rows,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")


def report(args: argparse.Namespace) -> None:
    runs = [json.loads(Path(p).read_text()) for p in args.results]
    lines = [
        "## RL agent vs baselines: long-horizon return",
        "",
        f"Command: `{args.shown_command}`. Return = undiscounted reward per session (behavior weights "
        "b / n_behaviors), mean over the evaluation episodes with a 95% Student-t CI; every policy meets the "
        "same fixed evaluation population (seed "
        f"{runs[0]['eval_seed'] if runs else EVAL_SEED}) in the same action mode. "
        "\"Agent above\": the agent's CI lies entirely above the policy's. OracleGreedy reads the "
        "simulator's own model (a myopic reference, not a competitor).",
        "",
        "| data | env | policy | return (95% CI) | session length | episodes | agent above |",
        "|---|---|---|---|---|---|---|",
    ]
    for run_ in runs:
        agent = run_["rows"][0]["return"]
        for row in run_["rows"]:
            ret, length = row["return"], row["length"]
            above = (
                "" if row is run_["rows"][0] else ("yes" if agent["ci95_low"] > ret["ci95_high"] else "no")
            )
            lines.append(
                f"| {run_['name']} | {run_['env_id']} | {row['policy']} | {ret['mean']:.3f} "
                f"[{ret['ci95_low']:.3f}, {ret['ci95_high']:.3f}] | {length['mean']:.2f} | {ret['n']} "
                f"| {above} |"
            )
    lines.append("")
    for run_ in runs:
        lines.append(
            f"- {run_['name']}: {run_['algo']} ({run_.get('policy_class', 'MultiInputPolicy')}, "
            f"{run_.get('agent', FINAL)} agent) trained {run_['train_steps']} steps in "
            f"{run_['train_seconds'] / 60:.1f} min ({run_['train_steps_per_second']:.0f} steps/s, budget "
            f"{run_['max_minutes']} min, {run_['torch_threads']} torch threads) on {run_['machine']}; "
            f"env kwargs {json.dumps(run_['env_kwargs'])}."
        )
    lines += [f"- {note}" for note in args.note]
    write_section(Path(args.bench), SECTION, "\n".join(lines))
    print("\n".join(lines))
    runs_root = Path(args.results[0]).resolve().parent.parent.parent
    plot = Path(args.plot) if args.plot else runs_root / "train_agents.png"
    plot_runs(runs, [Path(p).parent for p in args.results], plot)
    print(f"plot: {plot}")


def plot_runs(runs: list[dict[str, Any]], run_dirs: list[Path], path: Path) -> None:
    """One row per run: returns with 95% CIs per policy, and the agent's evaluation return over training."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(len(runs), 2, figsize=(11, 3.2 * len(runs)), squeeze=False)
    for (bars, curve), run_, run_dir in zip(axes, runs, run_dirs, strict=True):
        names = [row["policy"] for row in run_["rows"]]
        means = np.array([row["return"]["mean"] for row in run_["rows"]])
        low = means - np.array([row["return"]["ci95_low"] for row in run_["rows"]])
        high = np.array([row["return"]["ci95_high"] for row in run_["rows"]]) - means
        bars.barh(names, means, xerr=[low, high], color=["tab:red"] + ["tab:gray"] * (len(names) - 1))
        bars.invert_yaxis()
        bars.set_xlabel("return per session (95% CI)")
        bars.set_title(f"{run_['name']}\n{run_['env_id']}, {run_['rows'][0]['return']['n']} test episodes",
                       fontsize=9)
        evaluations = run_dir / "evaluations.npz"
        if evaluations.exists():
            record = np.load(evaluations)
            curve.plot(record["timesteps"], record["results"].mean(axis=1), color="tab:red", label="agent")
            for row in run_["rows"][1:]:
                curve.axhline(row["return"]["mean"], ls="--", lw=0.8, color="gray")
                curve.annotate(row["policy"], (record["timesteps"][-1], row["return"]["mean"]), fontsize=7)
            curve.set_xlabel("training steps")
            curve.set_ylabel("evaluation return")
            title = "agent during training (own evaluation population);\ndashed: baselines, test population"
            curve.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train an agent and evaluate it against the baselines")
    r.add_argument("--name", required=True, help="label of this run in the table (e.g. synthetic, ml-100k)")
    r.add_argument("--model", required=True, help="user-model checkpoint directory")
    r.add_argument("--data", required=True, help="dataset directory")
    r.add_argument("--out", required=True, help="output directory")
    r.add_argument("--env-id", default="RecSim-LongTerm-v0")
    r.add_argument("--algo", default="maskable_ppo")
    r.add_argument(
        "--timesteps", type=int, default=2_000_000, help="step cap (the time budget usually binds)"
    )
    r.add_argument("--max-minutes", type=float, default=30.0, help="training wall-clock budget")
    r.add_argument("--num-envs", type=int, default=None)
    r.add_argument("--episodes", type=int, default=500, help="evaluation episodes per policy")
    r.add_argument("--hyperparams", nargs="*", default=[], metavar="KEY=VALUE")
    r.add_argument("--greedy-model", default=None, help="Greedy recommender directory (default OUT/greedy)")
    r.add_argument(
        "--agent",
        choices=("best", "final"),
        default="best",
        help="which agent to evaluate: the best of the training run's own evaluations (on a population "
        "disjoint from the test population; RL Zoo's practice) or the last one",
    )
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--no-progress", action="store_true")
    r.set_defaults(func=run)
    p = sub.add_parser("report", help="write the results table into BENCHMARKS.md")
    p.add_argument("results", nargs="+", help="results.json files of `run`")
    p.add_argument("--bench", default=str(ROOT / "BENCHMARKS.md"))
    p.add_argument(
        "--shown-command", default="bash scripts/train_agents.sh", help="the command shown in the table"
    )
    p.add_argument("--plot", default=None, help="PNG to write (default: train_agents.png next to the runs)")
    p.add_argument("--note", action="append", default=[], help="a line to add under the table (repeatable)")
    p.set_defaults(func=report)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
