"""The offline policy benchmark: policies x seeds x a fixed evaluation population, common random numbers.

For each seed, every policy runs through the rollout harness (:func:`recsim_env.offline.rollout.rollout`)
on the same core, reset with the same seed: every policy meets the same users and random streams, so
differences are the policies' (see that module). Policies are anything with SB3's ``predict``, built by
name through :func:`agents.factory.make_policy` (``random``, ``popular``, ``greedy``, ``oracle``, ...) or
from a saved agent directory; all go through one loop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from agents.checkpoint import check_agent_spaces
from agents.factory import BASELINES, check_policy_name
from recsim_env.config import EnvConfig
from recsim_env.offline.metrics import Catalogue, categories_multi_hot
from recsim_env.offline.report import paired_differences, summarize, write_reports
from recsim_env.offline.rollout import PolicyRun, Simulator, build_policy, build_simulator, rollout
from recsim_env.render.snapshot import FrameBuilder, ItemCatalogue
from recsim_env.render.trajectory import write_trajectory
from user_models.data.popularity import item_popularity
from user_models.errors import InputError


@dataclass(frozen=True)
class BenchmarkConfig:
    """What a benchmark run does.

    Attributes:
        policies: policy names (``random``, ``popular``, ``greedy``, ``oracle``, other baselines of
            :mod:`agents.factory`) or saved agent directories.
        episodes: users per seed (the size of each seed's fixed evaluation population).
        seeds: number of seeds; seed ``s`` seeds the simulator's population and random streams and the
            policies' own generators.
        base_seed: seeds are ``base_seed, base_seed + 1, ...``.
        save_trajectories: episodes per policy (of the first seed) saved as replayable trajectories.
        n_resamples: bootstrap resamples per interval.
    """

    policies: tuple[str, ...]
    episodes: int = 200
    seeds: int = 3
    base_seed: int = 0
    save_trajectories: int = 3
    n_resamples: int = 2000

    def __post_init__(self) -> None:
        if not self.policies or any(not p.strip() for p in self.policies):
            raise InputError(f"--policies: give one or more comma-separated policy names, got "
                             f"{','.join(self.policies)!r}")
        for name in self.policies:
            check_policy_name(name)
        if len(set(self.policies)) != len(self.policies):
            raise InputError(f"--policies: repeated policy in {','.join(self.policies)}")
        if self.episodes < 1 or self.seeds < 1:
            raise InputError(f"--episodes and --seeds must be >= 1, got {self.episodes} and {self.seeds}")
        if self.save_trajectories < 0:
            raise InputError(f"--save-trajectories must be >= 0, got {self.save_trajectories}")


def catalogue_of(sim: Simulator) -> Catalogue:
    """Item embeddings (the simulator's), categories and training popularity for the metrics."""
    dataset = sim.dataset
    categories, _ = categories_multi_hot(dataset.items.sort("item")["category"].to_list())
    return Catalogue(
        embeddings=sim.model.item_embeddings().detach().float().cpu().numpy(),
        categories=categories,
        popularity=item_popularity(dataset).astype(np.float64),
        n_behaviors=sim.core.n_behaviors,
    )


def policy_label(name: str) -> str:
    """How a policy is named in reports: baselines by name, saved agents by their directory name."""
    path = Path(name)
    return path.name if len(path.parts) > 1 or path.exists() else name


def collect_runs(
    sim: Simulator,
    config: BenchmarkConfig,
    *,
    greedy_model: Path | None = None,
    frame_builder: Any = None,
    progress: bool = True,
    desc: str = "benchmark",
) -> dict[str, list[PolicyRun]]:
    """Every policy of ``config`` on every seed's population of ``sim``, keyed by report name.

    Args:
        sim: the simulator (its core has one row per evaluation user).
        config: policies, seeds and how many trajectories to keep.
        greedy_model: where the Greedy baseline's recommender is saved after its first training, so
            every seed (and every simulator sharing the path) uses the same one.
        frame_builder: records the first ``config.save_trajectories`` episodes of the first seed.
        progress: show a progress bar.
        desc: the progress bar's label.
    """
    labels = [policy_label(p) for p in config.policies]
    if len(set(labels)) != len(labels):
        raise InputError(f"--policies: two policies would share a report name ({', '.join(labels)})")
    for name in config.policies:  # a saved agent must fit this env before any policy runs
        if name not in BASELINES:
            check_agent_spaces(name, sim.adapter.observation_space, sim.adapter.action_space)
    runs: dict[str, list[PolicyRun]] = {label: [] for label in labels}
    seeds = [config.base_seed + s for s in range(config.seeds)]
    bar = tqdm(total=len(seeds) * len(labels), desc=desc, unit="run", disable=not progress)
    for seed in seeds:
        for name, label in zip(config.policies, labels, strict=True):
            bar.set_postfix_str(f"{label} seed {seed}")
            policy = build_policy(name, sim, seed, greedy_model)
            save = config.save_trajectories if seed == seeds[0] and frame_builder is not None else 0

            def live(active: int, label: str = label, seed: int = seed) -> None:
                bar.set_postfix_str(f"{label} seed {seed}: {active} users active", refresh=False)

            runs[label].append(
                rollout(
                    sim.core,
                    sim.adapter,
                    policy,
                    seed,
                    on_step=live,
                    frame_rows=save,
                    frame_builder=frame_builder if save else None,
                    policy_name=label,
                )
            )
            bar.update(1)
    bar.close()
    return runs


def run_benchmark(
    model: Any,
    data: str | os.PathLike[str],
    config: BenchmarkConfig,
    env_config: EnvConfig,
    out_dir: Path,
    *,
    progress: bool = True,
) -> dict[str, Path]:
    """Run every policy on every seed's population and write the reports; returns the files written.

    ``model`` is anything :func:`recsim_env.factory.load_model` takes (``"world"`` with the world's
    settings in ``env_config``). The Greedy baseline's recommender is trained from the logs once
    (seeded by ``base_seed``) and saved under ``out_dir`` so every seed's Greedy policy uses the same one.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    sim = build_simulator(model, data, env_config, config.episodes)
    frame_builder = None
    if config.save_trajectories:
        frame_builder = FrameBuilder(sim.core, ItemCatalogue.from_dataset(sim.dataset))
    runs = collect_runs(
        sim,
        config,
        greedy_model=out_dir / "greedy_recommender",
        frame_builder=frame_builder,
        progress=progress,
    )
    labels = list(runs)
    seeds = [run.seed for run in runs[labels[0]]]
    catalogue = catalogue_of(sim)
    episodes = {label: [ep for run in runs[label] for ep in run.episodes] for label in labels}
    keys = {
        label: [(run.seed, i) for run in runs[label] for i in range(len(run.episodes))] for label in labels
    }
    rng = np.random.default_rng(config.base_seed)
    populations = {label: np.array([seed for seed, _ in keys[label]]) for label in labels}
    summaries, tables = summarize(
        episodes, populations, catalogue, tuple(sim.core.behavior_names), rng, n_resamples=config.n_resamples
    )
    differences = paired_differences(tables, labels[0], rng, n_resamples=config.n_resamples)
    run_config = {
        "model": str(model),
        "data": str(data),
        "policies": labels,
        "episodes": config.episodes,
        "seeds": seeds,
        "device": env_config.device,
        "env": env_config.to_mapping(),
        "n_resamples": config.n_resamples,
        "reference_policy": labels[0],
    }
    paths = write_reports(out_dir, summaries, differences, tables, keys, run_config)
    for label in labels:
        frames = sorted((f for run in runs[label] for f in run.frames), key=lambda f: f.episode)
        if frames:
            meta = {"policy": label, "model": str(model), "data": str(data), "seed": seeds[0]}
            paths[f"trajectories/{label}"] = write_trajectory(
                out_dir / "trajectories" / f"{label}.jsonl", frames, meta
            )
    return paths
