"""Offline evaluation commands: ``recsim benchmark``, ``ope``, ``fidelity`` and ``export-minari``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from recsim_env.cli.settings import env_overrides, env_settings
from recsim_env.config import EnvConfig
from user_models.errors import InputError
from user_models.outputs import OutputKind

if TYPE_CHECKING:
    from recsim_env.offline.benchmark import BenchmarkConfig


def _add_simulator_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        required=True,
        help="user-model checkpoint directory, or 'world' for a synthetic dataset's ground truth",
    )
    p.add_argument("--data", required=True, help="the dataset directory the model was trained on")
    p.add_argument(
        "--env-id",
        default="RecSim-v0",
        help="registered settings to start from, e.g. RecSim-LongTerm-v0 (default RecSim-v0)",
    )
    p.add_argument(
        "--env-config",
        type=Path,
        default=None,
        help="YAML of RecSimEnv settings over --env-id's (slate_size, max_steps, reward: {...}, "
        "calibration: FILE, ...); a section given here replaces the id's section",
    )
    p.add_argument("--device", default="cpu", help="torch device of the simulation (default: cpu)")


def _settings(args: argparse.Namespace, world: bool | None = None, calibration: bool = True) -> EnvConfig:
    """The command's env settings (``--env-id`` + ``--env-config`` + ``--device``)."""
    overrides = env_overrides(args.env_config)
    if not calibration:
        overrides.pop("calibration", None)
    source = f"{args.env_id} + {args.env_config}" if args.env_config else args.env_id
    return env_settings(args.model, args.env_id, overrides, args.device, source, world=world)


FIDELITY_REPORT = OutputKind("fidelity report", marker="fidelity.json")
"""``recsim fidelity --out``: recognised by its ``fidelity.json``."""
OPE_REPORT = OutputKind("OPE report", marker="ope.json")
OPE_TARGETS = ("uniform", "softpop", "popular", "oracle")
"""``recsim ope``'s default targets (against the simulator's ground truth)."""
"""``recsim ope --out``: recognised by its ``ope.json``."""


def _add_output_args(p: argparse.ArgumentParser, what: str, marker: str) -> None:
    p.add_argument("--out", required=True, type=Path, help=f"output directory ({what}; written to a "
                   "temporary sibling and renamed into place)")
    p.add_argument("--overwrite", action="store_true", help=f"replace --out if it is a report of this "
                   f"command written by recsim (has its {marker}); any other existing path is refused")


def _inputs(args: argparse.Namespace, *paths: Path | str | None) -> list[Path | str | None]:
    """The command's input paths (none may be inside --out): model, data, env configs, agent dirs."""
    from agents.factory import BASELINES

    agents = [name for name in (*getattr(args, "policies", ()), getattr(args, "policy", None))
              if name is not None and name not in BASELINES]
    model = None if args.model == "world" else args.model
    return [model, args.data, args.env_config, *paths, *agents]


def _require(values: tuple[str, ...], flag: str) -> tuple[str, ...]:
    if not values:
        raise InputError(f"{flag}: give at least one comma-separated name (got an empty list)")
    return values


def _policies(text: str) -> tuple[str, ...]:
    """Comma-separated names; an empty list is reported by the command, naming the flag."""
    return tuple(p.strip() for p in text.split(",") if p.strip())


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "benchmark",
        help="compare policies offline with common random numbers; metrics with 95%% CIs",
        description="Run policies x seeds x a fixed evaluation population of simulated users (every policy "
        "meets the same users and random streams) and write results.csv/json/md, PNG plots, "
        "per-episode metrics and replayable trajectories to --out.",
    )
    _add_simulator_args(p)
    p.add_argument(
        "--policies",
        required=True,
        type=_policies,
        help="comma-separated: random, popular, greedy, oracle, epsilon, linucb, mmr or agent dirs",
    )
    p.add_argument("--episodes", type=int, default=200, help="users per seed (default 200)")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (default 3)")
    p.add_argument("--base-seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument(
        "--save-trajectories",
        type=int,
        default=3,
        help="episodes per policy saved for `recsim visualize --replay` (default 3)",
    )
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    _add_output_args(p, "results.csv/json/md, plots, episodes, trajectories", "results.json")
    p.set_defaults(func=_benchmark)

    p = sub.add_parser(
        "export-minari",
        help="write a policy's simulated sessions as a Minari dataset",
        description="Run --policy on --episodes simulated users and write them as the Minari dataset "
        "--dataset-id under $MINARI_DATASETS_PATH (needs the 'minari' extra).",
    )
    _add_simulator_args(p)
    p.add_argument("--policy", required=True, help="a baseline name or a saved agent directory")
    p.add_argument("--episodes", type=int, default=100, help="episodes to write (default 100)")
    p.add_argument("--dataset-id", required=True, help="Minari id, e.g. recsim/ml100k-random-v0")
    p.add_argument("--seed", type=int, default=0, help="population seed (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset of that id")
    p.set_defaults(func=_export_minari)

    p = sub.add_parser(
        "ope",
        help="off-policy estimators (IPS, SNIPS, DM, DR, IIPS, PI) vs the simulator's ground truth",
        description="Log first slates under a stochastic popularity policy with propensities, estimate "
        "each target's first-step value from the log, and compare with the value measured by running "
        "the target in the simulator: bias and RMSE over seeds. Runs in the candidates action mode.",
    )
    _add_simulator_args(p)
    p.add_argument(
        "--targets",
        type=_policies,
        default=OPE_TARGETS,
        help="comma-separated: uniform, softpop, or deterministic baselines (default "
        "uniform,softpop,popular,oracle); with --from-impressions: uniform, model (default both)",
    )
    p.add_argument("--from-impressions", action="store_true",
                   help="estimate from the dataset's logged impressions instead (needs their logging "
                   "propensities), side by side with the simulator's estimate on the same contexts; targets "
                   "uniform and model (the user model's softmax at --target-temperature)")
    p.add_argument("--target-temperature", type=float, default=1.0,
                   help="temperature of the 'model' target with --from-impressions")
    p.add_argument("--logged", type=int, default=2000, help="logged users per seed (default 2000)")
    p.add_argument("--seeds", type=int, default=10, help="independent logs (default 10)")
    p.add_argument(
        "--truth-users", type=int, default=20000, help="users measuring each truth (default 20000)"
    )
    _add_output_args(p, "ope.md, ope.json", "ope.json")
    p.set_defaults(func=_ope)

    p = sub.add_parser(
        "fidelity",
        help="simulator fidelity: vs held-out real sessions, and vs the synthetic ground-truth world",
        description="Data fidelity: simulate held-out users from the prefix before their last session "
        "under a logging-like policy and compare with the real last sessions (category and popularity "
        "Jensen-Shannon, session-length KS, behavior mix, repeat rate, each with a real-vs-real noise "
        "floor). Ground-truth fidelity (synthetic datasets): run --policies in the world and in the learned "
        "simulator; returns, relative errors, session-length KS, random-slate pick rate, Kendall's tau "
        "(targets: tau >= 0.9, every error <= 25%, median <= 10%, pick rate within 20%). Held-out policy "
        "(--heldout-logs): predict the logged statistics of another policy's logs.",
    )
    _add_simulator_args(p)
    p.add_argument(
        "--policies",
        type=_policies,
        default=("random", "popular", "greedy", "oracle", "epsilon", "mmr"),
        help="policies for the ground-truth comparison (default random,popular,greedy,oracle,epsilon,mmr)",
    )
    p.add_argument(
        "--episodes", type=int, default=200, help="users per seed in the ground-truth runs (default 200)"
    )
    p.add_argument("--seeds", type=int, default=2, help="seeds of the ground-truth runs (default 2)")
    p.add_argument("--users", type=int, default=500, help="held-out users for data fidelity (default 500)")
    p.add_argument(
        "--world-env-config",
        type=Path,
        default=None,
        help="env settings of the world (default: --env-config without its calibration)",
    )
    p.add_argument(
        "--ground-truth",
        choices=("auto", "yes", "no"),
        default="auto",
        help="run the ground-truth comparison (auto: when --data is a synthetic dataset)",
    )
    p.add_argument(
        "--heldout-logs",
        type=Path,
        default=None,
        metavar="B_DIR",
        help="a dataset of logs of another policy on the same catalogue (e.g. after a ranking change): "
        "the simulator, calibrated on --data's logs, predicts their session length, consumption rate, "
        "behavior mix and return (default: not run)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    _add_output_args(p, "fidelity.md, fidelity.json, ground-truth runs", "fidelity.json")
    p.set_defaults(func=_fidelity)


def _benchmark(args: argparse.Namespace) -> int:
    from recsim_env.offline.benchmark import BenchmarkConfig, run_benchmark
    from user_models.outputs import REPORT, check_output, replace_output

    inputs = _inputs(args)
    check_output(args.out, REPORT, overwrite=args.overwrite, inputs=inputs)
    config = BenchmarkConfig(
        policies=_require(args.policies, "--policies"),
        episodes=args.episodes,
        seeds=args.seeds,
        base_seed=args.base_seed,
        save_trajectories=args.save_trajectories,
        n_resamples=args.resamples,
    )
    settings = _settings(args)
    with replace_output(args.out, REPORT, overwrite=args.overwrite, inputs=inputs) as tmp:
        paths = run_benchmark(args.model, args.data, config, settings, tmp)
    print((args.out / "results.md").read_text())
    print(f"wrote {len(paths)} files to {args.out}")
    return 0


def _export_minari(args: argparse.Namespace) -> int:
    from recsim_env.offline.minari_export import export_minari

    if args.episodes < 1:
        raise InputError(f"--episodes must be >= 1, got {args.episodes}")
    root = os.environ.get("MINARI_DATASETS_PATH")
    if root is not None:  # Minari 0.5.4 doubles a relative root when it writes episodes
        os.environ["MINARI_DATASETS_PATH"] = str(Path(root).resolve())
    dataset = export_minari(
        args.model,
        args.data,
        args.policy,
        args.episodes,
        args.dataset_id,
        _settings(args),
        seed=args.seed,
        overwrite=args.overwrite,
    )
    print(
        f"wrote Minari dataset {args.dataset_id!r}: {dataset.total_episodes} episodes, "
        f"{dataset.total_steps} steps; read it with minari.load_dataset({args.dataset_id!r})"
    )
    return 0


def _ope(args: argparse.Namespace) -> int:
    import json

    from recsim_env.offline.ope_simulator import (
        OPEConfig,
        candidate_settings,
        ope_json,
        ope_markdown,
        run_ope,
    )
    from user_models.outputs import check_output, replace_output

    inputs = _inputs(args)
    check_output(args.out, OPE_REPORT, overwrite=args.overwrite, inputs=inputs)
    if args.from_impressions:
        return _ope_impressions(args, inputs)
    config = OPEConfig(targets=_require(args.targets, "--targets"), n_logged=args.logged, seeds=args.seeds,
                       n_truth=args.truth_users)
    settings = _settings(args)
    rows = run_ope(args.model, args.data, settings, config)
    markdown = ope_markdown(rows, config)
    with replace_output(args.out, OPE_REPORT, overwrite=args.overwrite, inputs=inputs) as tmp:
        (tmp / "ope.md").write_text(markdown)
        (tmp / "ope.json").write_text(
            json.dumps(ope_json(rows, config, candidate_settings(settings)), indent=2) + "\n")
    print(markdown)
    return 0


def _ope_impressions(args: argparse.Namespace, inputs: list[Path | str | None]) -> int:
    """``recsim ope --from-impressions``: the logged impressions' IPS/SNIPS/DM/DR next to the simulator."""
    import json
    from dataclasses import asdict

    from recsim_env.factory import load_dataset, load_model, resolve_from_data
    from recsim_env.offline.ope_impressions import IMPRESSION_TARGETS, impression_ope, ope_markdown
    from recsim_env.population import median_session_gap
    from user_models.outputs import replace_output

    targets = IMPRESSION_TARGETS if args.targets == OPE_TARGETS else _require(args.targets, "--targets")
    settings = _settings(args)
    dataset = load_dataset(args.data)
    table = dataset.impressions
    if table is None:
        raise InputError(f"dataset {dataset.meta.name!r} has no impression log for --from-impressions")
    sim = settings.sim_config()
    calibration = settings.loaded_calibration()
    if calibration is not None:
        sim = calibration.apply(sim)
    sim = resolve_from_data(sim, dataset, median_session_gap(dataset))
    model = load_model(args.model, dataset, settings.device)
    rows = impression_ope(model, dataset, table, targets, sim.choice, sim.reward, args.target_temperature)
    markdown = ope_markdown(rows)
    with replace_output(args.out, OPE_REPORT, overwrite=args.overwrite, inputs=inputs) as tmp:
        (tmp / "ope.md").write_text(markdown + "\n")
        (tmp / "ope.json").write_text(json.dumps({"from_impressions": True,
                                                  "rows": [asdict(r) for r in rows]}, indent=2) + "\n")
    print(markdown)
    return 0


def _fidelity(args: argparse.Namespace) -> int:
    from recsim_env.offline.benchmark import BenchmarkConfig
    from user_models.data.artifact import SequenceDataset
    from user_models.outputs import check_output, replace_output

    inputs = _inputs(args, args.world_env_config, args.heldout_logs)
    check_output(args.out, FIDELITY_REPORT, overwrite=args.overwrite, inputs=inputs)
    policies = _require(args.policies, "--policies")
    settings = _settings(args)
    if args.world_env_config is not None:
        world_overrides = env_overrides(args.world_env_config)
        world_settings = env_settings("world", "RecSim-v0", world_overrides, args.device,
                                      str(args.world_env_config))
    else:
        world_settings = _settings(args, world=True, calibration=False)
    extra = SequenceDataset.load(args.data, verify=False).meta.extra
    synthetic = "synthetic_config" in extra or "cascade_config" in extra  # a world wrote it
    if args.ground_truth == "yes" and not synthetic:
        raise InputError(
            f"--ground-truth yes: {args.data} is not a synthetic dataset (no world to compare with)"
        )
    ground_truth = args.ground_truth == "yes" or (args.ground_truth == "auto" and synthetic)
    config = BenchmarkConfig(
        policies=policies,
        episodes=args.episodes,
        seeds=args.seeds,
        base_seed=args.seed,
        save_trajectories=0,
    ) if ground_truth else None
    with replace_output(args.out, FIDELITY_REPORT, overwrite=args.overwrite, inputs=inputs) as tmp:
        _fidelity_into(tmp, args, settings, world_settings, config)
    print((args.out / "fidelity.md").read_text())
    return 0


def _fidelity_into(out: Path, args: argparse.Namespace, settings: EnvConfig, world_settings: EnvConfig,
                   config: BenchmarkConfig | None) -> None:
    """The fidelity checks, written into ``out`` (the temporary directory of :func:`replace_output`)."""
    import dataclasses
    import json

    from recsim_env.offline.fidelity import (
        data_fidelity,
        fidelity_markdown,
        ground_truth_fidelity,
        heldout_policy_fidelity,
    )

    data_result = data_fidelity(args.model, args.data, settings, n_users=args.users, seed=args.seed)
    truth_result = None
    if config is not None:
        truth_result = ground_truth_fidelity(args.model, args.data, config, settings, world_settings, out)
    heldout = None
    if args.heldout_logs is not None:
        heldout = heldout_policy_fidelity(args.model, args.data, args.heldout_logs, settings,
                                          n_users=args.users, seed=args.seed)
    context = {"model": args.model, "data": args.data, "seed": args.seed}
    markdown = fidelity_markdown(data_result, truth_result, context, heldout)
    report = {
        "context": context,
        "env": settings.to_mapping(),
        "world_env": world_settings.to_mapping(),
        "data_fidelity": dataclasses.asdict(data_result),
        "ground_truth_fidelity": None if truth_result is None else truth_result.to_json(),
        "heldout_policy_fidelity": None if heldout is None else heldout.to_json(),
    }
    (out / "fidelity.md").write_text(markdown)
    (out / "fidelity.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
