"""One rollout loop for every consumer: the benchmark, the Minari export and off-policy logging.

A policy is anything with SB3's ``predict(observation, state, episode_start, deterministic)`` (SB3
models and the baselines in :mod:`agents` alike), so baselines and trained agents go through one path.
Episodes are seeded one by one (``env.reset(seed=...)``): with the same seeds, every policy meets the same
users and the same random streams of the simulator (common random numbers).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import gymnasium as gym
import numpy as np


class Policy(Protocol):
    """SB3's prediction interface; ``state`` is a recurrent state (None for feed-forward policies)."""

    def predict(
        self,
        observation: Any,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[Any, Any]: ...


@dataclass(frozen=True)
class RolledEpisode:
    """Everything one episode produced, step-aligned.

    Attributes:
        seed: the ``reset`` seed that reproduces the episode.
        observations: ``T + 1`` observations (the reset one first, the final one last).
        actions: ``T`` actions.
        rewards: ``[T]`` float rewards.
        terminations: ``[T]`` bool.
        truncations: ``[T]`` bool.
        infos: ``T + 1`` info dicts (the reset info first).
    """

    seed: int
    observations: list[Any]
    actions: list[Any]
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    infos: list[dict[str, Any]]

    @property
    def length(self) -> int:
        return int(self.rewards.shape[0])


def rollout(
    env: gym.Env,
    policy: Policy,
    seed: int,
    *,
    deterministic: bool = True,
    max_steps: int = 10_000,
) -> RolledEpisode:
    """Run one episode of ``policy`` in ``env`` from ``env.reset(seed=seed)``.

    Args:
        env: a Gymnasium env (one user).
        policy: anything with SB3's ``predict``.
        seed: the reset seed (the episode's user and random streams).
        deterministic: passed to ``predict``; stochastic baselines draw from their own generator.
        max_steps: a safety net for envs without truncation; exceeding it raises RuntimeError.
    """
    obs, info = env.reset(seed=seed)
    observations, infos = [obs], [info]
    actions: list[Any] = []
    rewards: list[float] = []
    terms: list[bool] = []
    truncs: list[bool] = []
    state = None
    start = True
    while True:
        action, state = policy.predict(
            obs, state=state, episode_start=np.array([start]), deterministic=deterministic
        )
        start = False
        obs, reward, terminated, truncated, info = env.step(action)
        actions.append(action)
        observations.append(obs)
        infos.append(info)
        rewards.append(float(reward))
        terms.append(bool(terminated))
        truncs.append(bool(truncated))
        if terminated or truncated:
            break
        if len(rewards) >= max_steps:
            raise RuntimeError(f"episode with seed {seed} ran past {max_steps} steps without ending")
    return RolledEpisode(
        seed=seed,
        observations=observations,
        actions=actions,
        rewards=np.asarray(rewards, dtype=np.float64),
        terminations=np.asarray(terms, dtype=bool),
        truncations=np.asarray(truncs, dtype=bool),
        infos=infos,
    )


def episode_seeds(base_seed: int, n_episodes: int) -> list[int]:
    """Reset seeds of the fixed evaluation population drawn from ``base_seed``.

    Derived with ``np.random.SeedSequence`` so populations of different base seeds do not overlap in
    practice and episode ``i`` of a population is the same whichever policy runs it.
    """
    states = np.random.SeedSequence(base_seed).generate_state(n_episodes, dtype=np.uint32)
    return [int(s) for s in states]


def rollouts(
    env: gym.Env, policy: Policy, seeds: list[int], *, deterministic: bool = True
) -> Iterator[RolledEpisode]:
    """:func:`rollout` for each seed in order."""
    for seed in seeds:
        yield rollout(env, policy, seed, deterministic=deterministic)
