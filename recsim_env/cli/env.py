"""``recsim env``: check the environment in every mode, and calibrate the simulated users to the logs."""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from typing import Any


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("env", help="check and calibrate the Gymnasium environment")
    sub = parser.add_subparsers(dest="env_command", required=True, metavar="COMMAND")

    check = sub.add_parser("check", help="run both env checkers and a random rollout in every mode")
    _common(check)
    check.add_argument("--episodes", type=int, default=3, help="random-rollout episodes per mode")
    check.add_argument("--max-steps", type=int, default=100, help="truncation of a rollout episode")
    check.add_argument("--calibration", help="calibration JSON from `recsim env calibrate`")
    check.add_argument("--json", action="store_true", help="print the results as JSON")
    check.set_defaults(func=cmd_check)

    calibrate = sub.add_parser("calibrate", help="fit choice temperature, no-choice logit and session ends "
                                                 "to the logs; write the calibration JSON and a report")
    _common(calibrate)
    calibrate.add_argument("--out", required=True, help="calibration JSON to write")
    calibrate.add_argument("--report", help="also write the Markdown before/after report here")
    calibrate.add_argument("--n-users", type=int, default=512, help="simulated users per round")
    calibrate.add_argument("--rounds", type=int, default=24, help="simulation rounds")
    calibrate.add_argument("--examples", type=int, default=2048, help="events for temperature scaling")
    calibrate.add_argument("--logging-policy", choices=("popular", "model"), default="model",
                           help="slates of the logging-like policy: model (sampled from the user model's "
                                "next-item distribution, a stand-in for the recommender that wrote the logs; "
                                "default) or popular (by training popularity)")
    calibrate.add_argument("--consumption-rate", type=float,
                           help="target events per step (default: reconstructed from the log's timestamps)")
    calibrate.add_argument("--no-session-wear", action="store_true",
                           help="do not fit the session wear (how each response moves leaving; see "
                                "docs/concepts.md): on impression steps (a choice learned from impressions) "
                                "fit only the end-logit offset and the idle hazard; on consumption logs "
                                "match them to the logged sessions by simulation instead of the likelihood "
                                "of the steps the time gaps give; default: fit the wear (patience off)")
    calibrate.add_argument("--no-item-wear", action="store_true",
                           help="fit the session wear by response only, without the consumed item's part "
                                "(wear_item_weights); default: fit both")
    calibrate.add_argument("--json", action="store_true", help="print the report as JSON")
    calibrate.set_defaults(func=cmd_calibrate)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="user-model checkpoint directory (or hand-written "
                                                       "user .json)")
    parser.add_argument("--data", required=True, help="dataset directory the model was trained on")
    parser.add_argument("--slate-size", type=int, default=5, help="items per slate")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--seed", type=int, default=0, help="seed")


def cmd_check(args: argparse.Namespace) -> int:
    import gymnasium as gym
    import numpy as np
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    import recsim_env  # noqa: F401  (registers the env ids)
    from recsim_env.config import ACTION_MODES, OBSERVATION_MODES
    from recsim_env.factory import load_dataset, load_model

    dataset = load_dataset(args.data)
    model = load_model(args.model, dataset, args.device)
    results: list[dict[str, Any]] = []
    for action_mode in ACTION_MODES:
        for observation_mode in OBSERVATION_MODES:
            env = gym.make("RecSim-v0", model=model, data=dataset, slate_size=args.slate_size,
                           action_mode=action_mode, observation_mode=observation_mode,
                           max_steps=args.max_steps, calibration=args.calibration, device=args.device)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                check_env(env.unwrapped)
                sb3_check_env(env.unwrapped)
            env.action_space.seed(args.seed)
            lengths, returns, choices, terminated = [], [], 0, 0
            start = time.perf_counter()
            for episode in range(args.episodes):
                env.reset(seed=args.seed + episode)
                total, steps, done = 0.0, 0, False
                while not done:
                    _, reward, term, trunc, info = env.step(env.action_space.sample())
                    total, steps = total + float(reward), steps + 1
                    choices += int(info["position"] >= 0)
                    done = term or trunc
                    terminated += int(term)
                lengths.append(steps)
                returns.append(total)
            elapsed = time.perf_counter() - start
            results.append({
                "action_mode": action_mode, "observation_mode": observation_mode,
                "action_space": str(env.action_space), "checkers": "passed",
                "checker_warnings": sorted({str(w.message).splitlines()[0][:120] for w in caught}),
                "episodes": args.episodes, "mean_length": float(np.mean(lengths)),
                "mean_return": float(np.mean(returns)), "choice_rate": choices / max(sum(lengths), 1),
                "left": terminated, "truncated": args.episodes - terminated,
                "steps_per_s": sum(lengths) / elapsed,
            })
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()
        return 0
    print(f"model {args.model}  data {args.data}  ({dataset.n_items} items, behaviors "
          f"{', '.join(dataset.behaviors)})")
    print(f"{'action':<11}{'observation':<12}{'checkers':<10}{'episodes':>9}{'length':>8}{'return':>9}"
          f"{'choice':>8}{'left':>6}{'steps/s':>9}")
    for r in results:
        print(f"{r['action_mode']:<11}{r['observation_mode']:<12}{r['checkers']:<10}{r['episodes']:>9}"
              f"{r['mean_length']:>8.1f}{r['mean_return']:>9.3f}{r['choice_rate']:>8.3f}{r['left']:>6}"
              f"{r['steps_per_s']:>9.0f}")
        for warning in r["checker_warnings"]:
            print(f"    checker warning: {warning}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from recsim_env.config import SimConfig
    from recsim_env.factory import load_dataset, load_model
    from recsim_env.offline.calibrate import CalibrationSettings, calibrate, format_report

    dataset = load_dataset(args.data)
    model = load_model(args.model, dataset, args.device)
    settings = CalibrationSettings(n_users=args.n_users, n_examples=args.examples, rounds=args.rounds,
                                   logging_policy=args.logging_policy,
                                   target_consumption_rate=args.consumption_rate, seed=args.seed,
                                   session_wear=not args.no_session_wear, item_wear=not args.no_item_wear)
    calibration = calibrate(model, dataset, SimConfig(slate_size=args.slate_size), settings)
    calibration.save(args.out)
    text = format_report(calibration)
    if args.report:
        from pathlib import Path

        Path(args.report).write_text(text)
    if args.json:
        json.dump(calibration.report, sys.stdout, indent=2)
        print()
    else:
        print(text, end="")
        print(f"wrote {args.out}")
    return 0
