"""Run any :class:`~agents.policy.Policy` on a vectorised env for a number of episodes, with CIs.

One evaluator for baselines and SB3 agents alike. It follows SB3's ``evaluate_policy`` episode
accounting (each env row contributes an equal share of episodes, so short episodes are not
over-represented) and adds what recommendation policies need: action masks for the policies that take
them, and per-step feedback for online learners (:class:`~agents.policy.OnlinePolicy`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from agents.policy import OnlinePolicy, Policy, act

CHOSEN_INFO_KEY = "position"
"""The info key holding the slate position the user chose (-1 when nothing was chosen)."""


def _chosen_positions(venv: Any, infos: list[dict[str, Any]]) -> np.ndarray:
    """``[N]`` the slot each user chose at the last step (-1: none).

    The batched SB3 adapter keeps the step's full response in ``last_infos`` (its per-env infos are
    empty for running envs); other VecEnvs carry it in each env's info.
    """
    batched = getattr(venv, "last_infos", None)
    if batched and CHOSEN_INFO_KEY in batched:
        return np.asarray(batched[CHOSEN_INFO_KEY], dtype=np.int64)
    return np.array([info.get(CHOSEN_INFO_KEY, -1) for info in infos], dtype=np.int64)


@dataclass(frozen=True)
class Estimate:
    """A sample mean with a two-sided 95% Student-t confidence interval."""

    mean: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: np.ndarray) -> Estimate:
        values = np.asarray(values, dtype=np.float64)
        n = len(values)
        mean = float(values.mean()) if n else math.nan
        if n < 2:
            return cls(mean, math.nan, math.nan, n)
        half = float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n))
        return cls(mean, mean - half, mean + half, n)

    def to_json(self) -> dict[str, float | int]:
        return {"mean": self.mean, "ci95_low": self.low, "ci95_high": self.high, "n": self.n}


@dataclass(frozen=True)
class EvalResult:
    """Per-episode returns and lengths of one evaluation."""

    returns: np.ndarray
    lengths: np.ndarray

    @property
    def mean_return(self) -> Estimate:
        return Estimate.of(self.returns)

    @property
    def mean_length(self) -> Estimate:
        return Estimate.of(self.lengths)

    def to_json(self) -> dict[str, Any]:
        return {"return": self.mean_return.to_json(), "length": self.mean_length.to_json()}


def evaluate(
    policy: Policy, venv: Any, n_episodes: int, deterministic: bool = True, use_masks: bool = True
) -> EvalResult:
    """Roll ``policy`` out on the SB3 ``VecEnv`` ``venv`` until ``n_episodes`` episodes finished.

    Args:
        policy: anything with ``predict`` (a baseline or an SB3 model).
        venv: an SB3 VecEnv over the simulator (reset here; seed it beforehand for a fixed population).
        n_episodes: episodes to collect, spread evenly over the env rows.
        deterministic: passed to ``predict`` (SB3 agents take their most likely action).
        use_masks: pass ``action_masks()`` to the policies that accept masks (discrete action modes;
            the embedding mode has no masks).
    """
    from gymnasium import spaces

    use_masks = use_masks and isinstance(venv.action_space, spaces.Discrete | spaces.MultiDiscrete)
    n_envs = venv.num_envs
    targets = np.array([(n_episodes + i) // n_envs for i in range(n_envs)], dtype=np.int64)
    counts = np.zeros(n_envs, dtype=np.int64)
    current_return = np.zeros(n_envs)
    current_length = np.zeros(n_envs, dtype=np.int64)
    returns: list[float] = []
    lengths: list[int] = []
    observation = venv.reset()
    state = None
    episode_start = np.ones(n_envs, dtype=bool)
    online = isinstance(policy, OnlinePolicy)
    while (counts < targets).any():
        masks = np.stack(venv.env_method("action_masks")) if use_masks else None
        actions, state = act(policy, observation, state, episode_start, deterministic, masks)
        observation, rewards, dones, infos = venv.step(actions)
        if online:
            policy.observe(rewards, _chosen_positions(venv, infos), dones)  # type: ignore[attr-defined]
        current_return += rewards
        current_length += 1
        for i in np.flatnonzero(dones):
            if counts[i] < targets[i]:
                returns.append(float(current_return[i]))
                lengths.append(int(current_length[i]))
                counts[i] += 1
            current_return[i] = 0.0
            current_length[i] = 0
        episode_start = dones.astype(bool)
    return EvalResult(np.array(returns), np.array(lengths))
