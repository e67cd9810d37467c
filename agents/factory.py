"""Build a policy by name (``random``, ``popular``, ...) or from a saved agent directory.

The names are the ones ``recsim agent eval --policy`` and the offline benchmark accept. Every baseline
draws its randomness from a generator seeded by ``seed``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agents.baselines import MMR, EpsilonGreedy, Greedy, LinUCB, MostPopular, OracleGreedy, RandomPolicy
from agents.envs import SimulatorSpec, action_layout, simulator_scorer
from agents.item_features import item_popularity, log_item_embeddings
from agents.policy import Policy
from user_models.errors import InputError

BASELINES = ("random", "popular", "greedy", "oracle", "epsilon", "linucb", "mmr")
"""Baseline names; anything else is read as a saved agent directory."""

EMBEDDING_DIM = 32
"""Size of the log-derived item embeddings the bandit and MMR use."""
EPSILON = 0.1
"""Exploration rate of the ``epsilon`` baseline (epsilon-greedy over ``greedy``)."""
MMR_LAMBDA = 0.7
"""Relevance weight of the ``mmr`` baseline (MMR over ``greedy``)."""


def make_policy(
    name: str,
    venv: Any,
    spec: SimulatorSpec,
    action_mode: str,
    seed: int,
    greedy_model: str | Path | None = None,
    progress: bool = True,
) -> Policy:
    """The policy called ``name`` for the envs of ``venv`` (an SB3 VecEnv built from ``spec``).

    Args:
        name: a baseline name (:data:`BASELINES`) or a saved agent directory.
        venv: the VecEnv the policy will act in (its action space fixes the slate layout).
        spec: the simulator behind ``venv`` (the dataset for log-derived baselines, the model for the oracle).
        action_mode: the env's action mode.
        seed: seeds the policy's generator (and the Greedy recommender's training).
        greedy_model: directory of the Greedy recommender (:mod:`agents.greedy`): loaded when it exists,
            else trained from the logs and saved there; None: trained and not saved.
        progress: show progress bars while fitting log-based models.
    """
    if name not in BASELINES:
        path = Path(name)
        if not path.exists():
            raise InputError(
                f"--policy {name!r}: neither a baseline ({', '.join(BASELINES)}) nor a directory"
            )
        from agents.checkpoint import load_agent

        return load_agent(path, venv)
    layout = action_layout(venv, action_mode)
    rng = np.random.default_rng(seed)
    if name == "random":
        return RandomPolicy(layout, rng)
    if name == "oracle":
        return OracleGreedy(layout, rng, simulator_scorer(venv))
    dataset = spec.dataset
    if name == "popular":
        return MostPopular(layout, rng, item_popularity(dataset))
    if name == "linucb":
        return LinUCB(layout, rng, log_item_embeddings(dataset, EMBEDDING_DIM, seed))
    greedy = Greedy(layout, rng, _recommender(dataset, greedy_model, seed, progress))
    if name == "greedy":
        return greedy
    if name == "epsilon":
        return EpsilonGreedy(greedy, EPSILON)
    return MMR(greedy, log_item_embeddings(dataset, EMBEDDING_DIM, seed), MMR_LAMBDA)


def _recommender(dataset: Any, path: str | Path | None, seed: int, progress: bool) -> Any:
    from agents.greedy import load_log_recommender, save_log_recommender, train_log_recommender

    if path is not None and Path(path).exists():
        return load_log_recommender(path, dataset)
    recommender = train_log_recommender(dataset, seed, progress=progress)
    if path is not None:
        save_log_recommender(recommender, path, dataset)
    return recommender
