"""Build a policy by name (``random``, ``popular``, ...) or from a saved agent directory.

The names are the ones ``recsim agent eval --policy`` and the offline benchmark accept. Every baseline
draws its randomness from a generator seeded by ``seed``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agents.baselines import (
    MMR,
    EpsilonGreedy,
    Greedy,
    LinUCB,
    MostPopular,
    OracleGreedy,
    RandomPolicy,
    SimulatorScorer,
)
from agents.checkpoint import load_agent
from agents.item_features import log_item_embeddings
from agents.policy import ActionLayout, Policy
from user_models.data.artifact import SequenceDataset
from user_models.data.popularity import item_popularity
from user_models.errors import InputError

BASELINES = ("random", "popular", "greedy", "oracle", "epsilon", "linucb", "mmr")
"""Baseline names; anything else is read as a saved agent directory."""

EMBEDDING_DIM = 32
"""Size of the log-derived item embeddings the bandit and MMR use."""
EPSILON = 0.1
"""Exploration rate of the ``epsilon`` baseline (epsilon-greedy over ``greedy``)."""
MMR_LAMBDA = 0.7
"""Relevance weight of the ``mmr`` baseline (MMR over ``greedy``)."""
LOG_BASELINES = ("popular", "greedy", "epsilon", "linucb", "mmr")
"""Baselines fitted on the dataset's training logs."""


def check_policy_name(name: str) -> None:
    """Raise InputError unless ``name`` is a baseline or an existing (agent) directory."""
    if name not in BASELINES and not Path(name).exists():
        raise InputError(f"--policy {name!r}: neither a baseline ({', '.join(BASELINES)}) nor a directory")


def make_policy(
    name: str,
    observation_space: Any,
    action_space: Any,
    action_mode: str,
    seed: int,
    *,
    dataset: SequenceDataset | None = None,
    scorer: SimulatorScorer | None = None,
    greedy_model: str | Path | None = None,
    progress: bool = True,
    device: str = "cpu",
) -> Policy:
    """The policy called ``name`` for an env with the given (single-env) spaces.

    Built from spaces plus what the policy needs passed in, the way SB3 takes ``policy_kwargs``: no env
    is needed to build one.

    Args:
        name: a baseline name (:data:`BASELINES`) or a saved agent directory.
        observation_space: the env's observation space (saved agents are checked against it).
        action_space: the env's action space (it fixes the slate layout).
        action_mode: the env's action mode.
        seed: seeds the policy's generator (and the Greedy recommender's training).
        dataset: the logs the log-derived baselines (:data:`LOG_BASELINES`) are fitted on.
        scorer: the simulator's privileged choice utilities (``oracle_scores``), for ``oracle``.
        greedy_model: directory of the Greedy recommender (:mod:`agents.greedy`): loaded when it exists,
            else trained from the logs and saved there; None: trained and not saved.
        progress: show progress bars while fitting log-based models.
        device: torch device of a saved agent's networks.
    """
    check_policy_name(name)
    if name not in BASELINES:
        return load_agent(name, observation_space, action_space, device=device)
    layout = ActionLayout.from_space(action_space, action_mode)
    rng = np.random.default_rng(seed)
    if name == "random":
        return RandomPolicy(layout, rng)
    if name == "oracle":
        if scorer is None:
            raise InputError("policy 'oracle' needs the simulator's scorer (an env's oracle_scores)")
        return OracleGreedy(layout, rng, scorer)
    if dataset is None:
        raise InputError(f"policy {name!r} is fitted on logs: pass the dataset")
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


def _recommender(dataset: SequenceDataset, path: str | Path | None, seed: int, progress: bool) -> Any:
    from agents.greedy import load_log_recommender, save_log_recommender, train_log_recommender

    if path is not None and Path(path).exists():
        return load_log_recommender(path, dataset)
    recommender = train_log_recommender(dataset, seed, progress=progress)
    if path is not None:
        save_log_recommender(recommender, path, dataset)
    return recommender
