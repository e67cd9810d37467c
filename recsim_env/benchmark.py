"""The offline policy benchmark: policies x seeds x a fixed evaluation population, common random numbers.

For each seed, one :class:`~recsim_env.core.SimulationCore` of ``episodes`` rows is seeded and reset:
row ``i`` is the ``i``-th user of that seed's evaluation population. Every policy is run on a fresh reset
of the same core with the same seed, so it meets the same users, and the core draws the same random
numbers for each row at each step whatever the policy does (a fixed number of draws per step: choice,
behavior and leave uniforms for every row, then the candidates' noise). This is common random numbers:
the difference between two policies' results is the difference their actions made, not luck of the
draw, and episode ``i`` of two policies can be compared pairwise
(:func:`recsim_env.report.paired_differences`).

Rows never reset: a finished row stays inactive until every row has finished, so the population is
fixed (the vector env's autoreset would draw new users at times that depend on the policy).

Policies are anything with SB3's ``predict``, built by name through :func:`agents.factory.make_policy`
(``random``, ``popular``, ``greedy``, ...), ``oracle`` (the simulator's own user model, privileged), or a
saved agent directory; all go through one loop.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from recsim_env.config import (
    SECTIONS,
    CandidateConfig,
    ChoiceConfig,
    LeaveConfig,
    PopulationConfig,
    RewardConfig,
    section_config,
)
from recsim_env.metrics import Catalogue, Episode, categories_multi_hot
from user_models.errors import InputError


@dataclass(frozen=True)
class EnvSettings:
    """The simulator's settings for a benchmark: the keyword arguments of ``RecSimEnv`` (same names).

    Read from ``--env-config YAML``: top-level keys are the fields below; ``reward``, ``population``,
    ``choice``, ``leave`` and ``candidates`` are mappings of the fields of the frozen configs in
    :mod:`recsim_env.config` (converted by :func:`recsim_env.config.section_config`).
    Unknown keys are an error (a typo must not silently fall back to a default). A field left at None
    takes the env's default; for ``--model world`` those are the ``RecSim-World-v0`` defaults (the
    world's own patience instead of the core's, no-choice steps as world events).
    """

    slate_size: int = 5
    action_mode: str = "slate"
    observation_mode: str = "history"
    max_steps: int = 100
    history_len: int = 50
    reward: RewardConfig | None = None
    population: PopulationConfig | None = None
    choice: ChoiceConfig | None = None
    leave: LeaveConfig | None = None
    candidates: CandidateConfig | None = None
    calibration: str | None = None
    """A calibration JSON (``recsim env calibrate``); overrides the calibrated choice/leave fields."""
    no_choice_event: bool | None = None
    """No-choice steps become model events (behavior 0); None: the env's default."""
    strict: bool = False

    @classmethod
    def load(cls, env_id: str = "RecSim-v0", path: str | os.PathLike[str] | None = None) -> EnvSettings:
        """The registered kwargs of ``env_id`` (e.g. ``RecSim-LongTerm-v0``), overridden by a YAML file."""
        import gymnasium as gym

        import recsim_env  # noqa: F401  (registers the ids)

        try:
            spec = gym.spec(env_id)
        except gym.error.Error as exc:
            raise InputError(f"--env-id {env_id!r}: {exc}") from None
        if spec.entry_point != "recsim_env.env:RecSimEnv":
            raise InputError(
                f"--env-id {env_id!r} is not a learned-simulator id (use --model world for the "
                "ground-truth world)"
            )
        base = {k: v for k, v in spec.kwargs.items() if k not in ("model", "data", "device")}
        overrides = {} if path is None else cls._yaml_mapping(Path(path))
        return cls.from_mapping({**base, **overrides}, f"{env_id} + {path}" if path else env_id)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> EnvSettings:
        """Parse an env-config YAML file; errors name the file and the offending key."""
        source = Path(path)
        return cls.from_mapping(cls._yaml_mapping(source), str(source))

    @staticmethod
    def _yaml_mapping(source: Path) -> dict[str, Any]:
        try:
            data = yaml.safe_load(source.read_text()) or {}
        except FileNotFoundError:
            raise InputError(f"{source}: env config file not found") from None
        except yaml.YAMLError as exc:
            raise InputError(f"{source}: invalid YAML ({exc})".replace("\n", " ")) from None
        if not isinstance(data, dict):
            raise InputError(f"{source}: an env config must be a mapping of settings")
        return data

    @classmethod
    def from_mapping(cls, data: dict[str, Any], source: str = "env config") -> EnvSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"{source}: unknown setting(s) {unknown} (known: {', '.join(sorted(known))})")
        try:
            return cls(**{k: section_config(k, v) if k in SECTIONS else v for k, v in data.items()})
        except (TypeError, InputError) as exc:
            raise InputError(f"{source}: {exc}") from None

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``RecSimEnv`` / :func:`recsim_env.factory.build_env_core`."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if out["no_choice_event"] is None:
            del out["no_choice_event"]
        return out

    def for_world(self) -> EnvSettings:
        """These settings with ``RecSim-World-v0``'s defaults filled in where left unset."""
        from recsim_env.env import WORLD_LEAVE

        no_choice_event = True if self.no_choice_event is None else self.no_choice_event
        return replace(self, leave=self.leave or WORLD_LEAVE, no_choice_event=no_choice_event)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


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
        device: torch device of the simulation.
    """

    policies: tuple[str, ...]
    episodes: int = 200
    seeds: int = 3
    base_seed: int = 0
    save_trajectories: int = 3
    n_resamples: int = 2000
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not self.policies:
            raise InputError("--policies: give at least one policy")
        if len(set(self.policies)) != len(self.policies):
            raise InputError(f"--policies: repeated policy in {','.join(self.policies)}")
        if self.episodes < 1 or self.seeds < 1:
            raise InputError(f"--episodes and --seeds must be >= 1, got {self.episodes} and {self.seeds}")
        if self.save_trajectories < 0:
            raise InputError(f"--save-trajectories must be >= 0, got {self.save_trajectories}")


@dataclass
class PolicyRun:
    """One policy's episodes on one seed's population, plus what was recorded for replay or export.

    Attributes:
        policy: the policy's report name.
        seed: the population seed.
        episodes: one :class:`Episode` per row, in row order.
        frames: visualizer frames of the first rows (episode after episode).
        transitions: per row, the Gymnasium view of the episode (observations, actions, ...), when
            recorded (Minari export).
    """

    policy: str
    seed: int
    episodes: list[Episode]
    frames: list[Any] = field(default_factory=list)
    transitions: list[Transitions] = field(default_factory=list)


@dataclass(frozen=True)
class Transitions:
    """One episode as Gymnasium saw it, step-aligned (what offline-RL datasets store).

    Attributes:
        seed: the population seed; with ``row`` it identifies the user.
        row: the row of the core (the user's index in the population).
        observations: ``T + 1`` observations (the reset one first, the terminal one last).
        actions: ``T`` actions.
        rewards: ``[T]`` rewards.
        terminations: ``[T]`` bool.
        truncations: ``[T]`` bool.
        infos: ``T + 1`` info dicts of numeric scalars (entry 0 is the reset: no item, no behavior).
    """

    seed: int
    row: int
    observations: list[dict[str, np.ndarray]]
    actions: list[np.ndarray]
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    infos: list[dict[str, float | int]]

    @property
    def length(self) -> int:
        return int(self.rewards.shape[0])


_INFO_FIELDS = ("item", "behavior", "position", "end_prob", "leave_prob", "patience")
"""Scalar fields of the core's step record kept in exported infos."""


def catalogue_of(core: Any, dataset: Any) -> Catalogue:
    """Item embeddings (the simulator's), categories and training popularity for the metrics."""
    from recsim_env.population import item_popularity

    categories, _ = categories_multi_hot(dataset.items.sort("item")["category"].to_list())
    return Catalogue(
        embeddings=core.model.item_embeddings().detach().float().cpu().numpy(),
        categories=categories,
        popularity=np.asarray(item_popularity(dataset), dtype=np.float64),
        n_behaviors=core.n_behaviors,
    )


def run_episodes(
    core: Any,
    adapter: Any,
    policy: Any,
    seed: int,
    *,
    on_step: Callable[[int], None] | None = None,
    frame_rows: int = 0,
    frame_builder: Any = None,
    policy_name: str = "",
    record_transitions: bool = False,
) -> PolicyRun:
    """Run ``policy`` on every row of ``core`` from a reset with ``seed`` until all rows have finished.

    Args:
        core: a :class:`~recsim_env.core.SimulationCore`; its rows are the evaluation population.
        adapter: the :class:`~recsim_env.spaces.SpaceAdapter` of the env the policy was built for.
        policy: anything with SB3's ``predict`` (batched observations in, actions out). Policies that
            learn online (:class:`agents.policy.OnlinePolicy`) act on, and get the feedback of, the live
            rows only.
        seed: seeds the core (population and random streams).
        on_step: called with the number of active rows after each step (progress bars).
        frame_rows: the first ``frame_rows`` rows are also recorded as visualizer frames.
        frame_builder: a :class:`recsim_env.render.snapshot.FrameBuilder` over ``core`` (when frames).
        policy_name: stored in the frames.
        record_transitions: also keep every row's observations and actions (:class:`Transitions`).
    """
    from agents.policy import OnlinePolicy, act

    n = core.n_users
    core.manual_seed(seed)
    core.reset()
    discrete = adapter.action_mode != "embedding"
    online = isinstance(policy, OnlinePolicy)
    active = torch.ones(n, dtype=torch.bool, device=core.device)
    start = np.ones(n, dtype=bool)
    state = None
    steps: list[dict[str, np.ndarray]] = []
    observations: list[dict[str, np.ndarray]] = []
    frames: list[Any] = []
    rows = np.arange(min(frame_rows, n) if frame_builder is not None else 0)

    def record_frames(recorded: np.ndarray, after_step: bool) -> None:
        """Frames of ``recorded`` rows, built in one batch (one catalogue-logits pass per step)."""
        if len(recorded):
            ids = recorded.tolist()
            frames.extend(frame_builder.frames(ids, policy=policy_name, user_ids=ids, episodes=ids,
                                               after_step=after_step))

    record_frames(rows, after_step=False)
    initial_patience = core.patience.cpu().numpy().copy()
    while bool(active.any()):
        obs = adapter.observe_numpy()
        if record_transitions:
            observations.append(obs)
        masks = adapter.action_masks().cpu().numpy() if discrete else None
        if online:
            # A policy that learns online must see only live users: a finished row's stale
            # observation and empty feedback would be training data that no real user produced.
            live = np.flatnonzero(active.cpu().numpy())
            chosen, state = act(
                policy,
                {k: v[live] for k, v in obs.items()},
                state,
                start[live],
                deterministic=True,
                action_masks=None if masks is None else masks[live],
            )
            actions = np.zeros((n, *np.shape(chosen)[1:]), dtype=np.asarray(chosen).dtype)
            actions[live] = chosen
        else:
            actions, state = act(policy, obs, state, start, deterministic=True, action_masks=masks)
        start = np.zeros(n, dtype=bool)
        actions = adapter.check_actions(actions, n)
        record = core.step(adapter.to_slate(actions), active)
        done = record.terminated | record.truncated
        step = {
            "active": active.cpu().numpy(),
            "slate": record.slate.cpu().numpy(),
            "reward": record.reward.float().cpu().numpy(),
            "terminated": record.terminated.cpu().numpy(),
            "truncated": record.truncated.cpu().numpy(),
            **{name: getattr(record, name).cpu().numpy() for name in _INFO_FIELDS},
        }
        if record_transitions:
            step["action"] = actions
        steps.append(step)
        if online:
            policy.observe(step["reward"][live], step["position"][live], done.cpu().numpy()[live])
        record_frames(rows[step["active"][rows]], after_step=True)
        active = active & ~done
        if on_step is not None:
            on_step(int(active.sum()))
    stacked = {key: np.stack([s[key] for s in steps]) for key in steps[0]}
    run = PolicyRun(policy_name, seed, [_episode(stacked, r) for r in range(n)], frames)
    if record_transitions:
        observations.append(adapter.observe_numpy())
        run.transitions.extend(
            _transitions(stacked, observations, initial_patience, seed, r) for r in range(n)
        )
    return run


def _episode(stacked: dict[str, np.ndarray], row: int) -> Episode:
    live = stacked["active"][:, row]
    return Episode(
        slates=stacked["slate"][live, row],
        chosen=stacked["item"][live, row],
        behaviors=stacked["behavior"][live, row],
        rewards=stacked["reward"][live, row].astype(np.float64),
    )


def _transitions(
    stacked: dict[str, np.ndarray],
    observations: list[dict[str, np.ndarray]],
    initial_patience: np.ndarray,
    seed: int,
    row: int,
) -> Transitions:
    # Rows never reset, so a finished row's observation stays its terminal one: the observation taken
    # before step t is the one after step t - 1, and the row's T + 1 observations are the first T + 1.
    steps = np.flatnonzero(stacked["active"][:, row])
    length = int(steps.size)
    reset_info: dict[str, float | int] = {
        "item": 0,
        "behavior": 0,
        "position": -1,
        "end_prob": 0.0,
        "leave_prob": 0.0,
        "patience": float(initial_patience[row]),
    }
    step_infos = [{name: stacked[name][t, row].item() for name in _INFO_FIELDS} for t in steps]
    return Transitions(
        seed=seed,
        row=row,
        observations=[{k: v[row] for k, v in obs.items()} for obs in observations[: length + 1]],
        actions=[stacked["action"][t, row] for t in steps],
        rewards=stacked["reward"][steps, row].astype(np.float64),
        terminations=stacked["terminated"][steps, row].astype(bool),
        truncations=stacked["truncated"][steps, row].astype(bool),
        infos=[reset_info, *step_infos],
    )


WORLD_MODEL = "world"
"""``--model world``: the synthetic dataset's ground-truth world instead of a learned user model."""


def load_user_model(model: Any, dataset: Any, device: str) -> Any:
    """A user model: ``model`` itself, ``"world"`` (the synthetic ground truth), or a checkpoint dir."""
    if isinstance(model, str | os.PathLike) and str(model) == WORLD_MODEL:
        from user_models.synthetic import SyntheticWorld

        return SyntheticWorld.from_dataset(dataset, torch.device(device))
    from recsim_env.factory import load_model

    return load_model(model, torch.device(device), dataset)


class CoreScorer:
    """The simulator's own item logits for the core's current users (the oracle's privileged view)."""

    def __init__(self, core: Any) -> None:
        self.core = core

    def item_logits(self, items: np.ndarray) -> np.ndarray:
        tensor = torch.as_tensor(np.asarray(items, dtype=np.int64), device=self.core.device)
        with torch.no_grad():
            return self.core.model.item_logits(self.core.user_state, tensor).float().cpu().numpy()


@dataclass
class Simulator:
    """A loaded simulator for benchmarking: the batched core, its spaces, and what policies are built on.

    Attributes:
        core: the :class:`~recsim_env.core.SimulationCore`, one row per evaluation user.
        adapter: its :class:`~recsim_env.spaces.SpaceAdapter`.
        venv: a one-env SB3 ``VecEnv`` with the same spaces (policies and saved agents are built on it).
        spec: the :class:`agents.envs.SimulatorSpec` (log-derived baselines read the dataset from it).
        dataset: the dataset.
        settings: the env settings.
    """

    core: Any
    adapter: Any
    venv: Any
    spec: Any
    dataset: Any
    settings: EnvSettings


def build_simulator(
    model: Any, data: str | os.PathLike[str], settings: EnvSettings, n_users: int, device: str = "cpu"
) -> Simulator:
    """Load the dataset and user model once and build the batched core plus a matching one-env VecEnv."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    from agents.envs import SimulatorSpec
    from recsim_env.env import RecSimEnv
    from recsim_env.factory import build_env_core, load_dataset

    dataset = load_dataset(data)
    user_model = load_user_model(model, dataset, device)
    if isinstance(model, str | os.PathLike) and str(model) == WORLD_MODEL:
        settings = settings.for_world()
    kwargs = settings.kwargs()
    core, adapter = build_env_core(user_model, dataset, n_users=n_users, device=device, **kwargs)
    venv = DummyVecEnv([lambda: RecSimEnv(model=user_model, data=dataset, device=device, **kwargs)])
    spec = SimulatorSpec(model=user_model, data=Path(data), device=device)
    return Simulator(core, adapter, venv, spec, dataset, settings)


def build_policy(name: str, sim: Simulator, seed: int, greedy_model: Path | None) -> Any:
    """The policy called ``name`` (a baseline, ``oracle``, or a saved agent directory) for ``sim``."""
    from agents.baselines import OracleGreedy
    from agents.envs import action_layout
    from agents.factory import make_policy

    mode = sim.settings.action_mode
    if name == "oracle":
        return OracleGreedy(action_layout(sim.venv, mode), np.random.default_rng(seed), CoreScorer(sim.core))
    return make_policy(name, sim.venv, sim.spec, mode, seed, greedy_model=greedy_model, progress=False)


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
    from tqdm.auto import tqdm

    labels = [policy_label(p) for p in config.policies]
    if len(set(labels)) != len(labels):
        raise InputError(f"--policies: two policies would share a report name ({', '.join(labels)})")
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
                run_episodes(
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
    settings: EnvSettings,
    out_dir: Path,
    *,
    progress: bool = True,
) -> dict[str, Path]:
    """Run every policy on every seed's population and write the reports; returns the files written.

    The Greedy baseline's recommender is trained from the logs once (seeded by ``base_seed``) and saved
    under ``out_dir`` so every seed's Greedy policy uses the same one.
    """
    from recsim_env.render.snapshot import FrameBuilder, ItemCatalogue
    from recsim_env.render.trajectory import write_trajectory
    from recsim_env.report import paired_differences, summarize, write_reports

    out_dir.mkdir(parents=True, exist_ok=True)
    sim = build_simulator(model, data, settings, config.episodes, config.device)
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
    catalogue = catalogue_of(sim.core, sim.dataset)
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
        "device": config.device,
        "env": settings.to_json(),
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
