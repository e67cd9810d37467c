"""The one rollout harness: a fixed population, a policy, common random numbers, optional recording.

Every offline tool runs policies through :func:`rollout`: the benchmark, the calibration, fidelity, OPE,
the Minari export and ``recsim agent eval`` (through :func:`evaluate_policy`, the one evaluator).

A :class:`Simulator` is one :class:`~recsim_env.core.SimulationCore` of ``n_users`` rows with its spaces.
For a seed, the core is seeded and reset: row ``i`` is the ``i``-th user of that seed's evaluation
population. Every policy run with the same seed meets the same users, and the core draws the same random
numbers for each row at each step whatever the policy does (a fixed number of draws per step: choice,
behavior and leave uniforms for every row, then the candidates' noise). This is common random numbers:
the difference between two policies' results is the difference their actions made, not luck of the
draw, and episode ``i`` of two policies can be compared pairwise
(:func:`recsim_env.offline.report.paired_differences`).

Rows never reset: a finished row stays inactive until every row has finished, so the population is
fixed (the vector env's autoreset would draw new users at times that depend on the policy).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.factory import make_policy
from agents.policy import OnlinePolicy, Policy, act
from recsim_env.config import ChoiceConfig, EnvConfig
from recsim_env.core import SimulationCore
from recsim_env.factory import build_env_core, load_dataset, load_model
from recsim_env.offline.metrics import Episode
from recsim_env.offline.stats import Interval, bootstrap_mean_ci
from recsim_env.population import Population
from recsim_env.spaces import SpaceAdapter
from user_models.data.artifact import SequenceDataset
from user_models.protocol import UserModel

INFO_FIELDS = ("item", "behavior", "position", "end_prob", "leave_prob", "patience")
"""Scalar fields of the core's step record kept per step (and in exported infos)."""


@dataclass
class Simulator:
    """A loaded simulator for offline runs: the batched core (one row per evaluation user), its spaces.

    Attributes:
        core: the :class:`~recsim_env.core.SimulationCore`.
        adapter: its :class:`~recsim_env.spaces.SpaceAdapter` (the env's spaces and conversions).
        dataset: the dataset (log-derived baselines fit on its training split).
        config: the env settings it was built from.
    """

    core: SimulationCore
    adapter: SpaceAdapter
    dataset: SequenceDataset
    config: EnvConfig

    @property
    def model(self) -> UserModel:
        return self.core.model

    def oracle_scores(self, items: np.ndarray) -> np.ndarray:
        """The current users' own choice utilities (what the ``oracle`` baseline ranks by)."""
        return self.adapter.oracle_scores(items)


def build_simulator(
    model: str | os.PathLike[str] | UserModel,
    data: str | os.PathLike[str] | SequenceDataset,
    config: EnvConfig,
    n_users: int,
    population: Population | None = None,
    item_embeddings: torch.Tensor | None = None,
    mask_rule: ChoiceConfig | None = None,
) -> Simulator:
    """Load the dataset and user model once and build a core of ``n_users`` rows over ``config``.

    Args:
        model: anything :func:`recsim_env.factory.load_model` takes (``"world"`` included; pass the world's
            settings in ``config``, e.g. :func:`recsim_env.factory.world_config`).
        data: the dataset (or its directory).
        config: the env settings.
        n_users: rows of the core (the evaluation population's size).
        population: where users come from instead of ``config.population`` (e.g. held-out prefixes).
        item_embeddings: the item vectors the recommender side sees instead of the model's own (see
            :class:`~recsim_env.core.SimulationCore`).
        mask_rule: the repeat rule behind the action masks instead of the config's own (see
            :class:`~recsim_env.spaces.SpaceAdapter`).
    """
    dataset = load_dataset(data)
    user_model = load_model(model, dataset, config.device)
    core, adapter = build_env_core(user_model, dataset, config, n_users=n_users, population=population,
                                   item_embeddings=item_embeddings, mask_rule=mask_rule)
    return Simulator(core, adapter, dataset, config)


def build_policy(name: str, sim: Simulator, seed: int, greedy_model: Path | None = None,
                 progress: bool = False) -> Policy:
    """The policy called ``name`` (a baseline, ``oracle``, or a saved agent directory) for ``sim``."""
    return make_policy(
        name,
        sim.adapter.observation_space,
        sim.adapter.action_space,
        sim.config.action_mode,
        seed,
        dataset=sim.dataset,
        scorer=sim,
        greedy_model=greedy_model,
        progress=progress,
        device=sim.config.device,
    )


class FunctionPolicy:
    """A policy from a function of the batched observation (logging policies, OPE's slot samplers)."""

    def __init__(self, choose: Callable[[Mapping[str, np.ndarray]], np.ndarray]) -> None:
        self.choose = choose

    def predict(
        self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = False
    ) -> tuple[np.ndarray, Any]:
        return self.choose(observation), state


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


@dataclass
class PolicyRun:
    """One policy's run on one seed's population: every step of every row, and what was recorded.

    Attributes:
        policy: the policy's report name.
        seed: the population seed.
        steps: per key, a ``[T, N, ...]`` array over the run's steps: ``active`` (the row was stepped),
            ``slate``, ``reward``, ``terminated``, ``truncated``, :data:`INFO_FIELDS` and, when
            observations are recorded, ``action``.
        initial_patience: ``[N]`` patience of each row's user at the reset.
        observations: when recorded, ``T + 1`` batched observations (the reset one first).
        frames: visualizer frames of the first rows (episode after episode).
    """

    policy: str
    seed: int
    steps: dict[str, np.ndarray]
    initial_patience: np.ndarray
    observations: list[dict[str, np.ndarray]] = field(default_factory=list)
    frames: list[Any] = field(default_factory=list)

    @property
    def n_users(self) -> int:
        return int(self.steps["active"].shape[1])

    @property
    def episodes(self) -> list[Episode]:
        """One :class:`~recsim_env.offline.metrics.Episode` per row, in row order (live steps only)."""
        return [self._episode(row) for row in range(self.n_users)]

    @property
    def truncated(self) -> np.ndarray:
        """``[N]`` bool: the row's episode was truncated at ``max_steps`` (the user did not leave)."""
        return np.asarray(self.steps["truncated"].any(axis=0), dtype=bool)

    def _episode(self, row: int) -> Episode:
        live = self.steps["active"][:, row]
        return Episode(
            slates=self.steps["slate"][live, row],
            chosen=self.steps["item"][live, row],
            behaviors=self.steps["behavior"][live, row],
            rewards=self.steps["reward"][live, row].astype(np.float64),
        )

    def transitions(self) -> list[Transitions]:
        """Every row's episode as Gymnasium saw it (needs ``record_observations``)."""
        if not self.observations:
            raise ValueError("this run recorded no observations (rollout(..., record_observations=True))")
        return [self._transitions(row) for row in range(self.n_users)]

    def _transitions(self, row: int) -> Transitions:
        # Rows never reset, so a finished row's observation stays its terminal one: the observation taken
        # before step t is the one after step t - 1, and the row's T + 1 observations are the first T + 1.
        stacked = self.steps
        steps = np.flatnonzero(stacked["active"][:, row])
        length = int(steps.size)
        reset_info: dict[str, float | int] = {
            "item": 0,
            "behavior": 0,
            "position": -1,
            "end_prob": 0.0,
            "leave_prob": 0.0,
            "patience": float(self.initial_patience[row]),
        }
        step_infos = [{name: stacked[name][t, row].item() for name in INFO_FIELDS} for t in steps]
        return Transitions(
            seed=self.seed,
            row=row,
            observations=[{k: v[row] for k, v in obs.items()} for obs in self.observations[: length + 1]],
            actions=[stacked["action"][t, row] for t in steps],
            rewards=stacked["reward"][steps, row].astype(np.float64),
            terminations=stacked["terminated"][steps, row].astype(bool),
            truncations=stacked["truncated"][steps, row].astype(bool),
            infos=[reset_info, *step_infos],
        )


@torch.no_grad()
def rollout(
    core: SimulationCore,
    adapter: SpaceAdapter,
    policy: Policy,
    seed: int,
    *,
    max_steps: int | None = None,
    on_step: Callable[[int], None] | None = None,
    frame_rows: int = 0,
    frame_builder: Any = None,
    policy_name: str = "",
    record_observations: bool = False,
) -> PolicyRun:
    """Run ``policy`` on every row of ``sim`` from a reset with ``seed`` until all rows have finished.

    Args:
        core: the simulation core; its rows are the evaluation population.
        adapter: the spaces the policy acts in (the env's :class:`~recsim_env.spaces.SpaceAdapter`).
        policy: anything with SB3's ``predict`` (batched observations in, actions out). Policies that
            learn online (:class:`agents.policy.OnlinePolicy`) act on, and get the feedback of, the live
            rows only.
        seed: seeds the core (population and random streams).
        max_steps: stop after this many steps even if rows are still active (e.g. 1 for first-slate
            OPE); None: until every row has finished.
        on_step: called with the number of active rows after each step (progress bars).
        frame_rows: the first ``frame_rows`` rows are also recorded as visualizer frames.
        frame_builder: a :class:`recsim_env.render.snapshot.FrameBuilder` over the core (when frames).
        policy_name: stored in the run and its frames.
        record_observations: also keep every step's observations and actions
            (:meth:`PolicyRun.transitions`).
    """
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
    while bool(active.any()) and (max_steps is None or len(steps) < max_steps):
        obs = adapter.observe_numpy()
        if record_observations:
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
            **{name: getattr(record, name).cpu().numpy() for name in INFO_FIELDS},
        }
        if record_observations:
            step["action"] = actions
        steps.append(step)
        if isinstance(policy, OnlinePolicy):
            policy.observe(step["reward"][live], step["position"][live], done.cpu().numpy()[live])
        record_frames(rows[step["active"][rows]], after_step=True)
        active = active & ~done
        if on_step is not None:
            on_step(int(active.sum()))
    if record_observations:
        observations.append(adapter.observe_numpy())
    stacked = {key: np.stack([s[key] for s in steps]) for key in steps[0]}
    return PolicyRun(policy_name, seed, stacked, initial_patience, observations, frames)


@dataclass(frozen=True)
class Evaluation:
    """A policy's episodes on one fixed population: returns and lengths with 95% bootstrap intervals."""

    returns: np.ndarray
    lengths: np.ndarray
    mean_return: Interval
    mean_length: Interval

    def to_json(self) -> dict[str, Any]:
        def interval(ci: Interval) -> dict[str, float | int]:
            n = int(self.returns.size)
            return {"mean": ci.estimate, "ci95_low": ci.low, "ci95_high": ci.high, "n": n}

        return {"return": interval(self.mean_return), "length": interval(self.mean_length)}


def evaluate_policy(sim: Simulator, policy: Policy, seed: int, n_resamples: int = 2000) -> Evaluation:
    """The one evaluator: ``policy`` on ``sim``'s population of ``seed`` (one episode per row), with
    95% bootstrap intervals (:func:`recsim_env.offline.stats.bootstrap_mean_ci`, the one interval method)."""
    run = rollout(sim.core, sim.adapter, policy, seed)
    episodes = run.episodes
    returns = np.array([ep.rewards.sum() for ep in episodes], dtype=np.float64)
    lengths = np.array([ep.length for ep in episodes], dtype=np.float64)
    rng = np.random.default_rng(seed)
    return Evaluation(
        returns,
        lengths,
        bootstrap_mean_ci(returns, rng, n_resamples=n_resamples),
        bootstrap_mean_ci(lengths, rng, n_resamples=n_resamples),
    )
