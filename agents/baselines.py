"""Classic recommendation policies, batched, behind SB3's ``predict`` (see :mod:`agents.policy`).

Every baseline scores the items behind each choice and lets :func:`~agents.policy.select_slate` build
the slate, so all of them respect action masks and never repeat an item within a slate.

- :class:`RandomPolicy`: a uniformly random valid slate.
- :class:`MostPopular`: the items consumed most often in the training logs.
- :class:`Greedy`: the top items of a supervised next-item recommender trained on the logs (no access
  to the simulator's model: what a production recommender would do).
- :class:`OracleGreedy`: the top items by the *simulator's own* user model. Not a realistic policy: a
  reference upper bound for myopic play, named so nobody mistakes it for one.
- :class:`EpsilonGreedy`: any scoring policy with per-slot uniform exploration.
- :class:`LinUCB`: a contextual linear bandit over log-derived item embeddings that learns online.
- :class:`MMR`: a maximal-marginal-relevance re-ranker trading a base policy's relevance for diversity.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np

from agents.obs import HistoryBatch, as_batch, history_batch
from agents.policy import ActionLayout, select_slate
from user_models.errors import InputError


class ScoringPolicy:
    """Base of the baselines: score the item behind every choice, then select a slate.

    Subclasses implement :meth:`score`; the base handles batching, masks, slate assembly and encoding.

    Args:
        layout: how the env's actions encode a slate.
        rng: the policy's only source of randomness (tie-breaking, exploration).
    """

    def __init__(self, layout: ActionLayout, rng: np.random.Generator) -> None:
        self.layout = layout
        self.rng = rng
        self.last_slate: np.ndarray | None = None
        """``[B, k]`` item ids of the last slate returned (for online learners and diagnostics)."""

    def score(self, obs: Mapping[str, np.ndarray], items: np.ndarray) -> np.ndarray:
        """``[B, M]`` scores (higher is better) of the ``[B, M]`` item ids (0 = no item)."""
        raise NotImplementedError

    def select(self, obs: Mapping[str, np.ndarray], items: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """``[B, k]`` chosen choice indices; by default the top-k valid scores."""
        return select_slate(self.score(obs, items), valid, self.layout.slate_size, self.rng)

    def predict(
        self,
        observation: Mapping[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        action_masks: np.ndarray | None = None,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """SB3's ``predict``: a batch (or a single) observation in, the env's actions out.

        ``deterministic`` is accepted for compatibility; baselines that explore (random, epsilon) keep
        exploring, because exploring is what they are.
        """
        obs, single = as_batch(observation)
        batch = obs[next(iter(obs))].shape[0]
        items = self.layout.choice_items(obs, batch)
        valid = self.layout.valid(items, action_masks)
        chosen = self.select(obs, items, valid)
        self.last_slate = np.take_along_axis(items, chosen, axis=1)
        actions = self.layout.encode(chosen)
        return (actions[0] if single else actions), state


class RandomPolicy(ScoringPolicy):
    """A uniformly random slate of distinct valid choices."""

    def score(self, obs: Mapping[str, np.ndarray], items: np.ndarray) -> np.ndarray:
        return self.rng.random(items.shape)


class MostPopular(ScoringPolicy):
    """The most consumed items of the training logs, the same for every user.

    Args:
        layout: how the env's actions encode a slate.
        rng: tie-breaking noise.
        popularity: ``[n_items + 1]`` event counts per item id
            (:func:`user_models.data.popularity.item_popularity`).
    """

    def __init__(self, layout: ActionLayout, rng: np.random.Generator, popularity: np.ndarray) -> None:
        super().__init__(layout, rng)
        self.popularity = np.asarray(popularity, dtype=np.float64)

    def score(self, obs: Mapping[str, np.ndarray], items: np.ndarray) -> np.ndarray:
        return self.popularity[items]


class NextItemScorer(Protocol):
    """A sequential recommender: scores every catalogue item as the user's next one."""

    def scores(self, history: HistoryBatch) -> np.ndarray:
        """``[B, n_items + 1]`` scores (column 0, padding, is ignored)."""
        ...


class Greedy(ScoringPolicy):
    """The top items of a next-item recommender trained on the logs (myopic, no oracle access).

    Args:
        layout: how the env's actions encode a slate.
        rng: tie-breaking noise.
        recommender: the supervised model, e.g. :class:`agents.greedy.GRURecommender`.
    """

    def __init__(self, layout: ActionLayout, rng: np.random.Generator, recommender: NextItemScorer) -> None:
        super().__init__(layout, rng)
        self.recommender = recommender

    def score(self, obs: Mapping[str, np.ndarray], items: np.ndarray) -> np.ndarray:
        return np.take_along_axis(self.recommender.scores(history_batch(obs)), items, axis=1)


class SimulatorScorer(Protocol):
    """The simulator's own view of its users (privileged): the env views' ``oracle_scores``."""

    def oracle_scores(self, items: np.ndarray) -> np.ndarray:
        """``[B, M]`` the current users' choice utilities of the ``[B, M]`` item ids (-inf for id 0)."""
        ...


class OracleGreedy(ScoringPolicy):
    """The top items by the simulator's own user model: maximises immediate choice probability.

    Under a multinomial-logit choice model the slate of the k highest utilities maximises the
    probability that the user picks something this step. It reads the simulator's hidden user state,
    so it is a reference upper bound for myopic policies, not a deployable recommender.

    Args:
        layout: how the env's actions encode a slate.
        rng: tie-breaking noise.
        simulator: the env's users' own choice utilities (an env, vector env or SB3 adapter of
            recsim-env: their ``oracle_scores``; rows in the batch's order).
    """

    def __init__(self, layout: ActionLayout, rng: np.random.Generator, simulator: SimulatorScorer) -> None:
        super().__init__(layout, rng)
        self.simulator = simulator

    def score(self, obs: Mapping[str, np.ndarray], items: np.ndarray) -> np.ndarray:
        return self.simulator.oracle_scores(items)


class EpsilonGreedy(ScoringPolicy):
    """A scoring policy that, per slot and with probability ``epsilon``, shows a random valid item.

    Args:
        base: the policy whose scores rank the slate.
        epsilon: exploration probability per slot, in [0, 1].
    """

    def __init__(self, base: ScoringPolicy, epsilon: float) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise InputError(f"epsilon {epsilon} must be in [0, 1]")
        super().__init__(base.layout, base.rng)
        self.base = base
        self.epsilon = epsilon

    def score(self, obs: Mapping[str, np.ndarray], items: np.ndarray) -> np.ndarray:
        return self.base.score(obs, items)

    def select(self, obs: Mapping[str, np.ndarray], items: np.ndarray, valid: np.ndarray) -> np.ndarray:
        return select_slate(self.score(obs, items), valid, self.layout.slate_size, self.rng, self.epsilon)


def _user_profiles(history: HistoryBatch, embeddings: np.ndarray) -> np.ndarray:
    """``[B, d]`` unit-length mean embedding of each user's history (zero for empty histories)."""
    vectors = embeddings[history.items]  # padding row of embeddings is zero
    profile = vectors.sum(axis=1)
    norm = np.linalg.norm(profile, axis=1, keepdims=True)
    return np.divide(profile, norm, out=np.zeros_like(profile), where=norm > 0)


class LinUCB(ScoringPolicy):
    """A contextual linear UCB bandit shared by all users, learning online from each step's reward.

    An item shown to a user has features ``x = [e_i, p_u * e_i]``: the item's log-derived embedding
    ``e_i`` and its element-wise product with the user's profile ``p_u`` (the mean embedding of their
    history), so one weight vector learns both item quality and user-item affinity. Score =
    ``theta . x + alpha * sqrt(x^T A^-1 x)``. Feedback (:meth:`observe`) treats every shown item as a
    pull: the step's reward for the chosen one, 0 for the others.

    Args:
        layout: how the env's actions encode a slate.
        rng: tie-breaking noise.
        embeddings: ``[n_items + 1, d]`` item vectors from the logs (row 0 zero).
        alpha: width of the confidence bonus.
        ridge: prior precision (``A`` starts at ``ridge * I``).
    """

    def __init__(
        self,
        layout: ActionLayout,
        rng: np.random.Generator,
        embeddings: np.ndarray,
        alpha: float = 1.0,
        ridge: float = 1.0,
    ) -> None:
        super().__init__(layout, rng)
        self.embeddings = np.asarray(embeddings, dtype=np.float64)
        dim = 2 * self.embeddings.shape[1]
        self.alpha = alpha
        self.precision = ridge * np.eye(dim)
        self.target = np.zeros(dim)
        self.theta = np.zeros(dim)
        self.covariance = np.linalg.inv(self.precision)
        self._last_features: np.ndarray | None = None

    def _features(self, obs: Mapping[str, np.ndarray], items: np.ndarray) -> np.ndarray:
        item_vectors = self.embeddings[items]  # [B, M, d]
        profiles = _user_profiles(history_batch(obs), self.embeddings)[:, None, :]
        return np.concatenate([item_vectors, profiles * item_vectors], axis=2)

    def score(self, obs: Mapping[str, np.ndarray], items: np.ndarray) -> np.ndarray:
        x = self._features(obs, items)
        mean = x @ self.theta
        width = np.sqrt(np.maximum(np.einsum("bmi,ij,bmj->bm", x, self.covariance, x), 0.0))
        return mean + self.alpha * width

    def select(self, obs: Mapping[str, np.ndarray], items: np.ndarray, valid: np.ndarray) -> np.ndarray:
        chosen = super().select(obs, items, valid)
        self._last_features = self._features(obs, np.take_along_axis(items, chosen, axis=1))
        return chosen

    def observe(self, rewards: np.ndarray, chosen: np.ndarray, dones: np.ndarray) -> None:
        """Update on the last slate: ``[B]`` rewards, ``[B]`` chosen slot (-1 for no choice)."""
        if self._last_features is None:
            raise RuntimeError("observe() called before predict()")
        x = self._last_features.reshape(-1, self._last_features.shape[-1])
        k = self._last_features.shape[1]
        slot_reward = np.where(
            np.arange(k)[None, :] == np.asarray(chosen)[:, None],
            np.asarray(rewards, dtype=np.float64)[:, None],
            0.0,
        ).reshape(-1)
        self.precision += x.T @ x
        self.target += x.T @ slot_reward
        self.covariance = np.linalg.inv(self.precision)
        self.theta = self.covariance @ self.target


class MMR(ScoringPolicy):
    """Maximal marginal relevance: re-rank a base policy's scores for a more diverse slate.

    Slot by slot, pick the choice maximising ``lam * relevance - (1 - lam) * max_sim``, where relevance
    is the base score min-max scaled to [0, 1] within the row and ``max_sim`` is the highest cosine
    similarity to an item already in the slate. ``lam = 1`` is the base policy; lower is more diverse.

    Args:
        base: the policy whose scores are the relevance.
        embeddings: ``[n_items + 1, d]`` unit item vectors (row 0 zero), e.g. from the logs.
        lam: relevance weight in [0, 1].
    """

    def __init__(self, base: ScoringPolicy, embeddings: np.ndarray, lam: float = 0.7) -> None:
        if not 0.0 <= lam <= 1.0:
            raise InputError(f"MMR lambda {lam} must be in [0, 1]")
        super().__init__(base.layout, base.rng)
        self.base = base
        self.embeddings = np.asarray(embeddings, dtype=np.float64)
        self.lam = lam

    def score(self, obs: Mapping[str, np.ndarray], items: np.ndarray) -> np.ndarray:
        return self.base.score(obs, items)

    def select(self, obs: Mapping[str, np.ndarray], items: np.ndarray, valid: np.ndarray) -> np.ndarray:
        relevance = _minmax(self.score(obs, items), valid)
        vectors = self.embeddings[items]  # [B, M, d]
        max_sim = np.full(items.shape, -1.0)
        chosen = np.empty((items.shape[0], self.layout.slate_size), dtype=np.int64)
        taken = np.zeros(items.shape, dtype=bool)
        for slot in range(self.layout.slate_size):  # a loop over the k slots, never over users
            diversity_penalty = np.maximum(max_sim, 0.0) if slot else 0.0
            mmr = self.lam * relevance - (1.0 - self.lam) * diversity_penalty
            pick = select_slate(np.where(taken, -np.inf, mmr), valid & ~taken, 1, self.rng)[:, 0]
            pick = np.where((valid & ~taken).any(axis=1), pick, np.argmax(~taken, axis=1))
            chosen[:, slot] = pick
            taken[np.arange(items.shape[0]), pick] = True
            picked = np.take_along_axis(vectors, pick[:, None, None], axis=1)  # [B, 1, d]
            max_sim = np.maximum(max_sim, np.einsum("bmd,bd->bm", vectors, picked[:, 0]))
        return chosen


def _minmax(scores: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Scores scaled to [0, 1] per row over the valid choices (constant rows become 1)."""
    finite = valid & np.isfinite(scores)
    lo = np.where(finite, scores, np.inf).min(axis=1, keepdims=True)
    hi = np.where(finite, scores, -np.inf).max(axis=1, keepdims=True)
    span = np.where(hi > lo, hi - lo, 1.0)
    scaled = np.where(finite, (scores - np.where(np.isfinite(lo), lo, 0.0)) / span, 0.0)
    return np.where(hi > lo, scaled, np.where(finite, 1.0, 0.0))
