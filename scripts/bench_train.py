"""Training speed and result: SB3 MaskablePPO against the on-device ``torch_ppo``, side by side (issue 17).

Both agents train in one run, one after the other, on the same env (``RecSim-LongTerm-v0`` over the
synthetic ground-truth world, candidates mode, the shipped hyperparameters of each), with the same
wall-clock budget (``--minutes``, default 3 each; their periodic evaluations count in it). Then each
one's best checkpoint (chosen by its own evaluations on a population apart from the test one, as
``scripts/train_agents.py`` does) and Random meet the same fixed test population (seed ``EVAL_SEED``)
through the one offline evaluator, with 95% Student-t CIs.

The table reports env steps per second of training (steps / wall time, evaluations included), the ratio
to SB3 measured in the same run, and, as the bound the agent cannot beat, the env alone at the same N
(the torch fast path with valid random slates). Writes the ``bench_train`` section of ``BENCHMARKS.md``.

    python scripts/bench_train.py                 # 2 x 3 min of training + evaluation (~8 min)
    python scripts/bench_train.py --quick         # smoke run: small world, 15 s each, no BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

# Idle OpenMP threads sleep instead of spinning (see scripts/bench_env.py): on a shared machine spinning
# threads steal each other's cores. Must be set before torch starts its thread pool.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks_md import write_section  # noqa: E402  (scripts/ is on sys.path when run as a script)
from train_agents import EVAL_SEED, _machine  # noqa: E402

from agents.config import TORCH_PPO, load_train_config, parse_overrides  # noqa: E402
from agents.train import FINAL  # noqa: E402
from recsim_env.cli import main as recsim  # noqa: E402
from recsim_env.cli.settings import env_settings  # noqa: E402
from recsim_env.factory import load_dataset, load_model  # noqa: E402
from recsim_env.offline.rollout import build_policy, build_simulator, evaluate_policy  # noqa: E402
from recsim_env.offline.training import train_agent  # noqa: E402
from recsim_env.vector import RecSimVectorEnv  # noqa: E402

SECTION = "bench_train"
ENV_ID = "RecSim-LongTerm-v0"
SB3 = "maskable_ppo"
TARGET_STEPS = 10_000
TARGET_RATIO = 20.0


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def env_alone(model: Any, dataset: Any, env_config: Any, n: int, steps: int, seed: int) -> float:
    """Env steps/s of the torch fast path at ``n`` rows with valid random slates (what bounds training)."""
    env = RecSimVectorEnv(n, model, dataset, env_config)
    env.reset_tensors(seed=seed)
    space = env.single_action_space
    discrete = hasattr(space, "n")
    n_choices = int(space.n if discrete else space.nvec[0])  # type: ignore[attr-defined]
    k = 1 if discrete else len(space.nvec)  # type: ignore[attr-defined]
    gen = torch.Generator(device=env.device).manual_seed(seed)
    slates = [torch.rand(n, n_choices, generator=gen, device=env.device).topk(k, dim=1).indices
              for _ in range(4)]
    slates = [slate[:, 0] if discrete else slate for slate in slates]
    env.step_tensors(slates[0], validate=False)  # warm-up
    _sync(env_config.device)
    start = time.perf_counter()
    for t in range(steps):
        env.step_tensors(slates[t % 4], validate=False)
    _sync(env_config.device)
    return n * steps / (time.perf_counter() - start)


def rollout_alone(agent_dir: Path, model: Any, dataset: Any, env_config: Any, n: int, steps: int,
                  seed: int) -> float:
    """Env steps/s of torch_ppo's rollout without its updates: the trained policy's slates and values
    (the terminal-state value included) with the env steps, at ``n`` rows."""
    from agents.checkpoint import load_agent

    env = RecSimVectorEnv(n, model, dataset, env_config)
    agent = load_agent(agent_dir, env.single_observation_space, env.single_action_space,
                       device=env_config.device)
    obs = env.reset_tensors(seed=seed)
    start = 0.0
    for t in range(steps + 1):
        if t == 1:
            _sync(env_config.device)
            start = time.perf_counter()  # after one warm-up step
        action, _, _ = agent.act(obs, env.action_masks_tensor())
        step = env.step_tensors(agent.env_actions(action), validate=False)
        agent._truncated_value(step)  # the rollout's time-limit bootstrap, as TorchPPO.learn computes it
        obs = step.obs
    _sync(env_config.device)
    return n * steps / (time.perf_counter() - start)


def _met(ok: bool) -> str:
    return "met" if ok else "missed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "out" / "bench_train"), help="working directory")
    parser.add_argument("--minutes", type=float, default=3.0, help="training wall-clock budget per agent")
    parser.add_argument("--episodes", type=int, default=500, help="test episodes per policy")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (both agents)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--synth-args", default="--users 2000 --items 1000 --seed 0",
                        help="`recsim data synth` arguments of the world (scripts/train_agents.sh's)")
    parser.add_argument("--sb3-hyperparams", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--torch-hyperparams", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--algos", nargs="+", default=[SB3, TORCH_PPO], choices=(SB3, TORCH_PPO),
                        help="agents to train (default both; on a GPU, scripts/bench_gpu.sh runs torch_ppo)")
    parser.add_argument("--timesteps", type=int, default=10**10,
                        help="env-step cap per agent (default: none, the time budget binds)")
    parser.add_argument("--device", default="cpu", help="torch device of the env and the agents")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: a 200-user world, 15 s per agent, 50 episodes, no BENCHMARKS.md")
    parser.add_argument("--bench", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.minutes, args.episodes = 0.25, 50
        args.synth_args = "--users 200 --items 100 --seed 0"
        args.out = str(Path(args.out) / "quick")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    data = out / "data"
    if not data.is_dir():
        assert recsim(["data", "synth", "--out", str(data), *shlex.split(args.synth_args)]) == 0
    dataset = load_dataset(data)
    model = load_model("world", dataset, args.device)

    configs, runs = {}, {}
    for algo in args.algos:
        extra = args.sb3_hyperparams if algo == SB3 else args.torch_hyperparams
        overrides = {"n_timesteps": args.timesteps, **parse_overrides(extra)}
        configs[algo] = load_train_config(algo, env_id=ENV_ID, overrides=overrides)
    env_configs = [env_settings("world", ENV_ID, c.env_kwargs, args.device) for c in configs.values()]
    if any(c != env_configs[0] for c in env_configs):
        raise SystemExit(f"the agents' env settings differ: {env_configs}")
    env_config = env_configs[0]
    for algo, config in configs.items():
        print(f"[bench_train] training {algo} ({config.n_envs} users) for {args.minutes} min", flush=True)
        result = train_agent(config, model, dataset, env_config, out / algo, seed=args.seed,
                             progress=not args.no_progress, max_seconds=args.minutes * 60)
        record = json.loads((out / algo / "train.json").read_text())
        steps = max(16, 4096 // config.n_envs + 1)
        alone = env_alone(model, dataset, env_config, config.n_envs, steps, args.seed)
        runs[algo] = {"steps": result.timesteps, "seconds": record["seconds"], "n_envs": config.n_envs,
                      "steps_per_second": result.steps_per_second, "env_alone": alone}
        if algo == TORCH_PPO:
            runs[algo]["rollout_alone"] = rollout_alone(out / algo / FINAL, model, dataset, env_config,
                                                        config.n_envs, steps, args.seed)
        print(f"[bench_train] {algo}: {result.timesteps} steps, {result.steps_per_second:,.0f} steps/s "
              f"(env alone at N = {config.n_envs}: {alone:,.0f} steps/s)", flush=True)

    sim = build_simulator(model, dataset, env_config, args.episodes)
    evaluations = {}
    for label in (*configs, "random"):
        best = out / label / "best"
        name = "random" if label == "random" else str(best if best.is_dir() else out / label / FINAL)
        evaluations[label] = evaluate_policy(sim, build_policy(name, sim, args.seed), EVAL_SEED)
        ret = evaluations[label].mean_return
        print(f"[bench_train] {label:>12}: test return {ret.estimate:.3f} [{ret.low:.3f}, {ret.high:.3f}]")

    device = "" if args.device == "cpu" else f" --device {args.device}"
    shown = f"python scripts/bench_train.py --minutes {args.minutes:g}{device}" + (
        f" --algos {' '.join(args.algos)}" if tuple(args.algos) != (SB3, TORCH_PPO) else "") + (
        f" --timesteps {args.timesteps}" if args.timesteps < 10**10 else "")
    lines = [
        "## Training at the simulator's speed: SB3 MaskablePPO vs the on-device torch_ppo"
        + ("" if args.device == "cpu" else f" ({args.device})"),
        "",
        f"Command: `{shown}`. Env: {ENV_ID} over the synthetic ground-truth world (`recsim data synth "
        f"{args.synth_args}`, `--model world`), candidates mode, each agent's shipped hyperparameters"
        f"{' and ' + ' '.join(args.torch_hyperparams) if args.torch_hyperparams else ''}; "
        f"{args.minutes:g} min of training each"
        f"{f' (or {args.timesteps:,} steps)' if args.timesteps < 10**10 else ''}, one after the other, "
        f"evaluations included; {args.threads} torch threads, OMP_WAIT_POLICY="
        f"{os.environ['OMP_WAIT_POLICY']}; {_machine()}"
        f"{', ' + torch.cuda.get_device_name(args.device) if args.device.startswith('cuda') else ''}. "
        f"Test: each agent's best checkpoint (its own evaluations, population seed {args.seed} + 10,000) "
        f"and Random on the same {args.episodes} users (population seed {EVAL_SEED}), return with a 95% "
        "Student-t CI.",
        "",
        "| agent | users N | env steps trained | training env steps/s | x SB3 | env alone at N, steps/s "
        "| test return (95% CI) | session length |",
        "|---|---|---|---|---|---|---|---|",
    ]
    sb3 = runs.get(SB3)
    for label in evaluations:
        ev, run_ = evaluations[label], runs.get(label)
        ret = ev.mean_return
        cells = (["", "", "", "", ""] if run_ is None else
                 [str(run_["n_envs"]), f"{run_['steps']:,}", f"{run_['steps_per_second']:,.0f}",
                  f"{run_['steps_per_second'] / sb3['steps_per_second']:.1f}" if sb3 else "",
                  f"{run_['env_alone']:,.0f}"])
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {ret.estimate:.3f} [{ret.low:.3f}, "
                     f"{ret.high:.3f}] | {ev.mean_length.estimate:.2f} |")
    lines.append("")
    fast = runs.get(TORCH_PPO)
    if fast is not None and sb3 is not None:
        ratio = fast["steps_per_second"] / sb3["steps_per_second"]
        ours, theirs = evaluations[TORCH_PPO].mean_return, evaluations[SB3].mean_return
        verdict = ("met: CI entirely above" if ours.low > theirs.high else
                   "met: mean at least as high, CIs overlap" if ours.estimate >= theirs.estimate else
                   "missed: CI entirely below" if ours.high < theirs.low else
                   "missed: mean lower, CIs overlap")
        lines.append(
            f"Targets (2 CPU cores): >= {TARGET_STEPS:,} env steps/s of training: "
            f"{fast['steps_per_second']:,.0f} ({_met(fast['steps_per_second'] >= TARGET_STEPS)}); "
            f">= {TARGET_RATIO:.0f}x SB3: {ratio:.1f}x ({_met(ratio >= TARGET_RATIO)}); test return >= "
            f"SB3's after the same wall time: {ours.estimate:.3f} vs {theirs.estimate:.3f} ({verdict}).")
    elif fast is not None and args.device.startswith("cuda"):
        rate = fast["steps_per_second"]
        lines.append(f"Target (one H200): >= 1,000,000 env steps/s of training: {rate:,.0f} "
                     f"({_met(rate >= 1_000_000)}).")
    if fast is not None:
        lines.append(
            f"- Where torch_ppo's time goes (measured at its N = {fast['n_envs']}): the env alone "
            f"{1e6 / fast['env_alone']:.1f} us per env step ({fast['env_alone']:,.0f} steps/s), the "
            f"rollout's policy (slates, values) {1e6 / fast['rollout_alone'] - 1e6 / fast['env_alone']:.1f} "
            f"us, the PPO epochs and evaluations "
            f"{1e6 / fast['steps_per_second'] - 1e6 / fast['rollout_alone']:.1f} us: training runs at "
            f"{fast['steps_per_second'] / fast['env_alone']:.0%} of the env's own speed.")
    if sb3 is not None:
        lines.append(f"- SB3 trains at {sb3['steps_per_second'] / sb3['env_alone']:.1%} of the env's own "
                     f"speed at its N = {sb3['n_envs']} ({sb3['env_alone']:,.0f} steps/s).")
    text = "\n".join(lines)
    print(text)
    (out / "bench_train.json").write_text(json.dumps(
        {"runs": runs, "test": {k: v.to_json() for k, v in evaluations.items()}}, indent=2) + "\n")
    if not args.quick:
        write_section(Path(args.bench), SECTION if args.device == "cpu" else f"{SECTION}_cuda", text)


if __name__ == "__main__":
    main()
