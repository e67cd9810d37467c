"""Env steps per second of RLlib PPO training (new API stack) with 1 and 2 env runners.

Three rows, measured in the same run:

- (a) ``in-process``: the env RLlib's runners step (:class:`~recsim_env.rllib.NextStepVectorEnv` over one
  core of ``--users`` users), stepped with random actions in this process: the ceiling a runner's
  env can give, with no policy, no episode bookkeeping, no learning;
- (b) RLlib PPO, 1 env runner of ``--users`` users;
- (c) RLlib PPO, 2 env runners of ``--users`` users each.

For (b) and (c) the rate is the env steps sampled over the wall time of ``--iterations`` training
iterations (sampling and learning alternate, as ``algo.train()`` does), after one warm-up iteration;
the split between sampling and learning comes from RLlib's own timers. The users are a freshly
initialised Transformer (``scripts/bench_env.py``'s: 2 layers, dim 64, window 50, 1,682 items,
end-logit offset -3.5 for sessions of a few dozen steps), saved to a temporary checkpoint the runners
load. The learner runs in the driver process (``num_learners=0``), on the CPU.

Writes the ``bench_rllib`` section of ``BENCHMARKS.md`` and prints it::

    flock /work/heavy.lock python scripts/bench_rllib.py      # about 4 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as bench_env.py: no spinning threads on 2 cores

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_env import random_logs  # noqa: E402  (scripts/ is on sys.path when run as a script)
from benchmarks_md import write_section  # noqa: E402

from recsim_env.rllib import make_rllib_env, ppo_config  # noqa: E402
from user_models.checkpoint import save_user_model  # noqa: E402
from user_models.transformer import TransformerConfig, UserTransformer  # noqa: E402


@dataclass(frozen=True)
class Args:
    users: int
    fragment: int
    iterations: int
    candidates: int
    epochs: int
    seconds: float
    benchmarks: Path
    write: bool


def parse_args(argv: list[str] | None = None) -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--users", type=int, default=256, help="users per env runner (one core each)")
    parser.add_argument("--fragment", type=int, default=32, help="rollout fragment length per user")
    parser.add_argument("--iterations", type=int, default=3, help="timed training iterations per row")
    parser.add_argument("--candidates", type=int, default=20, help="candidates per step (Discrete action)")
    parser.add_argument("--epochs", type=int, default=2, help="PPO epochs per train batch")
    parser.add_argument("--seconds", type=float, default=5.0, help="minimum timed seconds of row (a)")
    parser.add_argument("--benchmarks", type=Path, default=ROOT / "BENCHMARKS.md",
                        help="Markdown file whose bench_rllib section is rewritten")
    parser.add_argument("--no-write", dest="write", action="store_false", help="print only")
    return Args(**vars(parser.parse_args(argv)))


def save_users(root: Path) -> tuple[Path, Path]:
    """bench_env.py's fresh Transformer and random ml-100k-sized logs, saved where runners can load them."""
    dataset = random_logs(943, 1682, 70, seed=0)
    torch.manual_seed(0)
    model = UserTransformer(TransformerConfig(dim=64, layers=2, heads=2, max_len=50, dropout=0.0), 1682,
                            dataset.behaviors).eval()
    dataset.save(root / "data")
    save_user_model(model, root / "model", dataset)
    return root / "model", root / "data"


def env_kwargs(args: Args) -> dict[str, object]:
    return {"action_mode": "candidates", "slate_size": 1, "candidates": {"n_candidates": args.candidates},
            "leave": {"end_logit_offset": -3.5}}


def in_process(model: Path, data: Path, args: Args) -> float:
    """Row (a): env steps per second of the runner's env alone, random actions, one torch thread."""
    env = make_rllib_env({"model": str(model), "data": str(data), "num_envs": args.users, **env_kwargs(args)})
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(3):
        env.step(rng.integers(0, args.candidates, args.users))
    steps, start = 0, time.perf_counter()
    while steps < 3 or time.perf_counter() - start < args.seconds:
        env.step(rng.integers(0, args.candidates, args.users))
        steps += 1
    return steps * args.users / (time.perf_counter() - start)


@dataclass(frozen=True)
class Training:
    """One RLlib row: rates over the timed iterations; shares from RLlib's (smoothed) timers."""

    steps_per_second: float
    sample_share: float
    """Sampling (all runners in parallel) over the whole iteration."""
    learn_share: float
    """The PPO update in the driver over the whole iteration."""
    env_share: float
    """A runner's ``env.step`` calls over its sampling time (the rest: RLlib's per-user episode
    bookkeeping, connectors and policy inference)."""
    steps_per_iteration: float
    seconds_per_iteration: float


def rllib_training(model: Path, data: Path, args: Args, runners: int) -> Training:
    """Rows (b), (c): a local Ray with ``runners`` env runners; PPO iterations timed after a warm-up."""
    import ray

    ray.init(num_cpus=runners + 1, include_dashboard=False, log_to_driver=False)
    try:
        config = ppo_config(model, data, env_kwargs=env_kwargs(args), num_env_runners=runners,
                            num_envs_per_env_runner=args.users, rollout_fragment_length=args.fragment,
                            num_epochs=args.epochs)
        algo = config.build_algo()
        try:
            algo.train()  # warm-up: actors started, modules built
            steps, start = 0.0, time.perf_counter()
            for _ in tqdm(range(args.iterations), desc=f"{runners} runner(s)", leave=False):
                result = algo.train()
                steps += result["env_runners"]["num_env_steps_sampled"]
            wall = time.perf_counter() - start
        finally:
            algo.stop()
    finally:
        ray.shutdown()
    timers, runner = result["timers"], result["env_runners"]
    iteration = timers["training_iteration"]
    return Training(steps / wall, timers["env_runner_sampling_timer"] / iteration,
                    timers["learner_update_timer"] / iteration,
                    runner["env_step_timer"] * args.fragment / runner["sample"],
                    steps / args.iterations, wall / args.iterations)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        model, data = save_users(Path(tmp))
        base = in_process(model, data, args)
        runs = {runners: rllib_training(model, data, args, runners) for runners in (1, 2)}
    rows = [("(a) in-process env, random actions", f"{args.users}", f"{base:,.0f}", "1.00", *[""] * 5)]
    for runners, run in runs.items():
        rows.append((f"({'b' if runners == 1 else 'c'}) RLlib PPO, {runners} env runner(s)",
                     f"{runners} x {args.users}", f"{run.steps_per_second:,.0f}",
                     f"{run.steps_per_second / base:.2f}", f"{run.steps_per_iteration:,.0f}",
                     f"{run.seconds_per_iteration:.1f}", f"{100 * run.sample_share:.0f}%",
                     f"{100 * run.learn_share:.0f}%", f"{100 * run.env_share:.0f}%"))
    command = "python scripts/bench_rllib.py " + " ".join(argv if argv is not None else sys.argv[1:])
    header = ("what", "users", "env steps/s", "x (a)", "steps/iteration", "s/iteration", "sampling",
              "PPO update", "env.step in sampling")
    speedup = runs[2].steps_per_second / runs[1].steps_per_second
    lines = [
        f"RLlib PPO training throughput (Ray {_ray_version()}, new API stack; fresh Transformer, 2 layers, "
        f"dim 64, 1,682 items, {args.candidates} candidates, Discrete action; MLP 64x64 on flattened "
        f"observations, {args.epochs} PPO epochs, fragment {args.fragment}; learner in the driver). "
        f"Machine: {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs (load average "
        f"{os.getloadavg()[0]:.1f} at the end), torch {torch.__version__}. Command: `{command.strip()}`.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
        f"2 env runners against 1: {speedup:.2f}x the env steps per second. \"sampling\" and \"PPO "
        "update\" are the shares of a training iteration (RLlib's timers, smoothed over iterations); "
        "\"env.step in sampling\" is the share of a runner's sampling time spent inside the env's "
        "batched step (the rest is RLlib's per-user episode bookkeeping in Python, connectors and policy "
        "inference). Row (a) is the env with nothing around it.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section(args.benchmarks, "bench_rllib", text)
    return 0


def _ray_version() -> str:
    import ray

    return str(ray.__version__)


if __name__ == "__main__":
    sys.exit(main())
