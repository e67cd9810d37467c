"""``recsim agent``: train SB3 agents on the simulator and evaluate any policy.

```
recsim agent train --algo ppo|a2c|maskable_ppo|dqn|sac|td3|torch_ppo --model DIR --data DIR --out DIR
    [--overwrite] [--config YAML] [--hyperparams KEY=VALUE ...] [--env-id ID] [--timesteps N] [--num-envs N]
    [--init-item-embeddings] [--device cpu] [--seed S] [--max-minutes M] [--no-progress]
recsim agent eval --policy random|popular|greedy|oracle|epsilon|linucb|mmr|PATH --model DIR --data DIR
    [--episodes N] [--env-id ID] [--env-kwargs KEY=VALUE ...] [--seed S] [--json]
```
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from agents.config import ALGOS
from recsim_env.cli.settings import env_settings
from user_models.errors import InputError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("agent", help="train and evaluate recommendation agents")
    sub = parser.add_subparsers(dest="agent_command", required=True, metavar="COMMAND")

    train = sub.add_parser(
        "train",
        help="train an SB3 agent (or the on-device torch_ppo) on the simulator",
        description="Train an SB3 agent, or torch_ppo (PPO on the simulator's device, through its tensor "
        "path); writes the agent, checkpoints, TensorBoard logs and evaluations to --out.",
    )
    train.add_argument("--algo", required=True, choices=ALGOS,
                       help="the algorithm (torch_ppo: the fast path, candidates mode)")
    _simulator_args(train)
    train.add_argument("--out", required=True, help="output directory (created atomically: a temporary "
                       "sibling renamed into place when training ends)")
    train.add_argument("--overwrite", action="store_true",
                       help="replace --out if it is an agent run written by recsim (has final/agent.json); "
                       "any other existing path is refused")
    train.add_argument(
        "--config",
        default=None,
        help="hyperparameter YAML (default: the shipped agents/hyperparams/ALGO.yml)",
    )
    train.add_argument(
        "--hyperparams",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="override hyperparameters, values as YAML; dotted keys reach into mappings "
        "(e.g. learning_rate=1e-4 env_kwargs.slate_size=3)",
    )
    train.add_argument("--timesteps", type=int, default=None, help="total env steps (overrides n_timesteps)")
    train.add_argument(
        "--num-envs", type=int, default=None, help="parallel simulated users (overrides n_envs)"
    )
    train.add_argument(
        "--init-item-embeddings",
        action="store_true",
        help="initialise the agent's item embeddings from the training logs' co-occurrence "
        "(no simulator parameters, no held-out events; see agents/item_features.py)",
    )
    train.add_argument("--seed", type=int, default=0, help="seed of the agent and the training population")
    train.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="stop training after this many minutes (a time budget)",
    )
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.set_defaults(func=_train)

    ev = sub.add_parser(
        "eval",
        help="evaluate a baseline or a trained agent",
        description="Roll a policy out on a fixed population of simulated users (the benchmark's "
        "harness: same users and random streams for every policy of a seed); prints the mean return and "
        "session length with 95% bootstrap confidence intervals.",
    )
    ev.add_argument(
        "--policy",
        required=True,
        help="random, popular, greedy, oracle, epsilon, linucb, mmr, or a trained agent directory",
    )
    _simulator_args(ev)
    ev.add_argument("--episodes", type=int, default=100,
                    help="episodes to run: a fixed population of this many users, stepped together "
                    "(default 100)")
    ev.add_argument("--num-envs", type=int, default=None,
                    help="deprecated and ignored: the --episodes users are stepped as one batch")
    ev.add_argument(
        "--env-kwargs",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="env arguments for baselines, values as YAML (e.g. action_mode=slate slate_size=5); "
        "a trained agent uses the ones it was trained with",
    )
    ev.add_argument(
        "--greedy-model",
        default=None,
        help="directory of a saved Greedy recommender (trained from the logs and saved there if absent)",
    )
    ev.add_argument("--seed", type=int, default=0, help="seed of the evaluation population and the policy")
    ev.add_argument("--json", action="store_true", help="print the result as JSON")
    ev.set_defaults(func=_eval)


def _simulator_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="user-model checkpoint directory, or 'world' for a "
                        "synthetic dataset's ground truth")
    parser.add_argument("--data", required=True, help="dataset directory")
    parser.add_argument("--env-id", default="RecSim-v0", help="registered env id (default RecSim-v0)")
    parser.add_argument("--device", default="cpu",
                        help="torch device of the simulation and the agent (default cpu)")


def _train(args: argparse.Namespace) -> int:
    from agents.config import load_train_config, parse_overrides
    from recsim_env.offline.training import train_agent
    from user_models.outputs import AGENT, check_output, replace_output

    inputs = [None if args.model == "world" else args.model, args.data, args.config]
    check_output(args.out, AGENT, overwrite=args.overwrite, inputs=inputs)
    overrides = parse_overrides(args.hyperparams)
    if args.timesteps is not None:
        overrides["n_timesteps"] = args.timesteps
    if args.num_envs is not None:
        overrides["n_envs"] = args.num_envs
    if args.init_item_embeddings:
        overrides.setdefault("features", {})["init_item_embeddings"] = True
    config = load_train_config(args.algo, args.config, args.env_id, overrides)
    env_config = env_settings(args.model, config.env_id, config.env_kwargs, args.device,
                              f"{config.source}: env_kwargs")
    with replace_output(args.out, AGENT, overwrite=args.overwrite, inputs=inputs) as tmp:
        result = train_agent(
            config,
            args.model,
            args.data,
            env_config,
            tmp,
            seed=args.seed,
            progress=not args.no_progress,
            max_seconds=None if args.max_minutes is None else args.max_minutes * 60,
        )
    ret = result.final_eval["return"]
    print(
        f"trained {config.algo} for {result.timesteps} steps ({result.steps_per_second:.0f} steps/s); "
        f"final evaluation return {ret['mean']:.3f} [{ret['ci95_low']:.3f}, {ret['ci95_high']:.3f}] over "
        f"{ret['n']} episodes; agent in {Path(args.out) / 'final'}"
    )
    return 0


def _eval(args: argparse.Namespace) -> int:
    from agents.checkpoint import read_agent_metadata
    from agents.config import parse_overrides
    from agents.factory import BASELINES
    from recsim_env.offline.rollout import build_policy, build_simulator, evaluate_policy

    if args.episodes < 1:
        raise InputError(f"--episodes must be >= 1, got {args.episodes}")
    if args.num_envs is not None:
        print("recsim: --num-envs is deprecated and ignored (the --episodes users are one batch)",
              file=sys.stderr)
    env_id, env_kwargs = args.env_id, parse_overrides(args.env_kwargs, "--env-kwargs")
    if args.policy not in BASELINES:
        stored = read_agent_metadata(args.policy)["config"]
        env_id, env_kwargs = stored["env_id"], {**stored["env_kwargs"], **env_kwargs}
    env_config = env_settings(args.model, env_id, env_kwargs, args.device, "--env-kwargs")
    sim = build_simulator(args.model, args.data, env_config, args.episodes)
    policy = build_policy(args.policy, sim, args.seed, args.greedy_model, progress=not args.json)
    result = evaluate_policy(sim, policy, args.seed)
    if args.json:
        print(
            json.dumps(
                {
                    "policy": args.policy,
                    "env_id": env_id,
                    "env_kwargs": env_kwargs,
                    "seed": args.seed,
                    **result.to_json(),
                },
                indent=2,
            )
        )
    else:
        ret, length = result.mean_return, result.mean_length
        print(
            f"{args.policy}: return {ret.estimate:.3f} [{ret.low:.3f}, {ret.high:.3f}], "
            f"session length {length.estimate:.2f} [{length.low:.2f}, {length.high:.2f}] over "
            f"{result.returns.size} episodes"
        )
    return 0
