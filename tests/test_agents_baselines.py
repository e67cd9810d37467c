"""Baseline policies over plain arrays: slate invariants (property-based) and each policy's own logic."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.baselines import MMR, EpsilonGreedy, Greedy, LinUCB, MostPopular, OracleGreedy, RandomPolicy
from agents.greedy import load_log_recommender, save_log_recommender, train_log_recommender
from agents.item_features import cooccurrence_embeddings
from agents.obs import BEHAVIORS, CANDIDATES, ITEMS, MASK, history_batch
from agents.policy import ActionLayout, act, select_slate
from user_models.data.artifact import DatasetMeta, SequenceDataset
from user_models.data.popularity import item_popularity
from user_models.errors import InputError
from user_models.train import TrainConfig

N_ITEMS = 12
HISTORY = 6


def _obs(rng: np.random.Generator, batch: int, n_candidates: int = 0) -> dict[str, np.ndarray]:
    lengths = rng.integers(0, HISTORY + 1, batch)
    mask = (np.arange(HISTORY)[None, :] >= HISTORY - lengths[:, None]).astype(np.int8)  # right-aligned
    obs = {
        ITEMS: np.where(mask, rng.integers(1, N_ITEMS + 1, (batch, HISTORY)), 0),
        BEHAVIORS: np.where(mask, rng.integers(1, 4, (batch, HISTORY)), 0),
        MASK: mask,
    }
    if n_candidates:
        obs[CANDIDATES] = rng.integers(1, N_ITEMS + 1, (batch, n_candidates))
    return obs


class _FixedScorer:
    """A next-item scorer / simulator stand-in with fixed per-item scores."""

    def __init__(self, scores: np.ndarray) -> None:
        self.values = scores

    def scores(self, history: object) -> np.ndarray:
        return np.broadcast_to(self.values, (len(history.items), len(self.values)))  # type: ignore[attr-defined]

    def oracle_scores(self, items: np.ndarray) -> np.ndarray:
        """As the env views' ``oracle_scores``: the item's score, -inf for id 0 (an empty slot)."""
        return np.where(items > 0, self.values[items], -np.inf)


def _all_policies(layout: ActionLayout, seed: int) -> list:
    rng = np.random.default_rng(seed)
    scores = np.random.default_rng(seed + 1).normal(size=N_ITEMS + 1)
    embeddings = np.random.default_rng(seed + 2).normal(size=(N_ITEMS + 1, 4))
    embeddings[0] = 0
    greedy = Greedy(layout, rng, _FixedScorer(scores))
    return [
        RandomPolicy(layout, rng),
        MostPopular(layout, rng, np.arange(N_ITEMS + 1)),
        greedy,
        OracleGreedy(layout, rng, _FixedScorer(scores)),
        EpsilonGreedy(greedy, 0.3),
        LinUCB(layout, rng, embeddings),
        MMR(greedy, embeddings, 0.5),
    ]


@settings(max_examples=25, deadline=None)
@given(
    mode=st.sampled_from(["slate", "candidates"]),
    k=st.integers(1, 4),
    batch=st.integers(1, 5),
    masked=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_every_baseline_emits_valid_distinct_masked_slates(
    mode: str, k: int, batch: int, masked: bool, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    n_candidates = 8
    n_choices = N_ITEMS + 1 if mode == "slate" else n_candidates
    discrete = mode == "candidates" and k == 1
    layout = ActionLayout(mode, k, n_choices, discrete=discrete)  # type: ignore[arg-type]
    obs = _obs(rng, batch, n_candidates if mode == "candidates" else 0)
    allowed = rng.random((batch, n_choices)) < 0.6 if masked else np.ones((batch, n_choices), dtype=bool)
    allowed[:, 0 if mode == "slate" else n_choices - 1] &= mode != "slate"  # slate: id 0 is never allowed
    allowed[np.arange(batch), rng.integers(1, n_choices, batch)] = True  # at least one real choice
    masks = np.tile(allowed, (1, k)) if not discrete else allowed
    for policy in _all_policies(layout, seed):
        actions, state = act(policy, obs, action_masks=masks)
        assert state is None
        chosen = actions[:, None] if discrete else actions
        assert chosen.shape == (batch, k) and chosen.dtype == np.int64
        assert ((chosen >= 0) & (chosen < n_choices)).all()
        for row in range(batch):
            assert len(set(chosen[row].tolist())) == k, f"{type(policy).__name__} repeated a choice"
            n_ok = int(allowed[row].sum())
            ok = allowed[row, chosen[row]]
            # Masked choices appear only once every allowed choice is in the slate.
            assert ok.sum() == min(k, n_ok), f"{type(policy).__name__} used a masked choice: {chosen[row]}"


def test_single_observation_gives_single_action() -> None:
    layout = ActionLayout("slate", 3, N_ITEMS + 1)
    obs = {key: value[0] for key, value in _obs(np.random.default_rng(0), 1).items()}
    action, _ = RandomPolicy(layout, np.random.default_rng(0)).predict(obs)
    assert action.shape == (3,)


def test_select_slate_ranks_by_score_and_breaks_ties_at_random() -> None:
    scores = np.array([[0.0, 3.0, 1.0, 2.0]])
    valid = np.array([[True, True, True, False]])
    assert select_slate(scores, valid, 2, np.random.default_rng(0)).tolist() == [[1, 2]]
    firsts = {
        int(select_slate(np.zeros((1, 4)), np.ones((1, 4), bool), 1, np.random.default_rng(s))[0, 0])
        for s in range(40)
    }
    assert firsts == {0, 1, 2, 3}


def test_most_popular_shows_the_most_consumed_items() -> None:
    layout = ActionLayout("slate", 2, N_ITEMS + 1)
    popularity = np.zeros(N_ITEMS + 1)
    popularity[[7, 3]] = [50, 20]
    actions, _ = MostPopular(layout, np.random.default_rng(0), popularity).predict(
        _obs(np.random.default_rng(0), 4)
    )
    assert actions.tolist() == [[7, 3]] * 4


def test_candidates_mode_maps_positions_to_candidate_items() -> None:
    layout = ActionLayout("candidates", 1, 4, discrete=True)
    obs = _obs(np.random.default_rng(0), 2, 4)
    obs[CANDIDATES] = np.array([[2, 9, 4, 5], [9, 1, 2, 3]])
    popularity = np.zeros(N_ITEMS + 1)
    popularity[9] = 1
    actions, _ = MostPopular(layout, np.random.default_rng(0), popularity).predict(obs)
    assert actions.tolist() == [1, 0]


def test_epsilon_greedy_interpolates_between_base_and_random() -> None:
    layout = ActionLayout("slate", 1, N_ITEMS + 1)
    popular = MostPopular(layout, np.random.default_rng(0), np.arange(N_ITEMS + 1))
    obs = _obs(np.random.default_rng(0), 200)
    assert (EpsilonGreedy(popular, 0.0).predict(obs)[0] == N_ITEMS).all()
    explored = EpsilonGreedy(popular, 1.0).predict(obs)[0]
    assert len(set(explored[:, 0].tolist())) > N_ITEMS // 2
    with pytest.raises(InputError):
        EpsilonGreedy(popular, 1.5)


def test_mmr_trades_relevance_for_diversity() -> None:
    layout = ActionLayout("slate", 2, 4)
    embeddings = np.array([[0, 0], [1, 0], [1, 0], [0, 1]], dtype=float)  # items 1 and 2 are twins
    base = MostPopular(layout, np.random.default_rng(0), np.array([0, 3, 2, 1]))
    obs = _obs(np.random.default_rng(0), 1)
    assert base.predict(obs)[0].tolist() == [[1, 2]]
    assert MMR(base, embeddings, lam=1.0).predict(obs)[0].tolist() == [[1, 2]]
    assert MMR(base, embeddings, lam=0.5).predict(obs)[0].tolist() == [[1, 3]]


def test_linucb_learns_which_item_pays() -> None:
    layout = ActionLayout("slate", 2, N_ITEMS + 1)
    policy = LinUCB(layout, np.random.default_rng(0), np.eye(N_ITEMS + 1)[:, 1:], alpha=0.5)
    rng = np.random.default_rng(1)
    for _ in range(60):
        policy.predict(_obs(rng, 8))
        slate = policy.last_slate
        assert slate is not None
        chosen = np.where((slate == 5).any(axis=1), np.argmax(slate == 5, axis=1), -1)
        policy.observe((chosen >= 0).astype(float), chosen, np.zeros(8, dtype=bool))
    policy.predict(_obs(rng, 8))
    assert policy.last_slate is not None and (policy.last_slate[:, 0] == 5).all()


def test_oracle_greedy_shows_the_simulators_top_items() -> None:
    layout = ActionLayout("slate", 3, N_ITEMS + 1)
    logits = np.linspace(0, 1, N_ITEMS + 1)
    actions, _ = OracleGreedy(layout, np.random.default_rng(0), _FixedScorer(logits)).predict(
        _obs(np.random.default_rng(0), 2)
    )
    assert actions.tolist() == [[12, 11, 10]] * 2


def _cycle_dataset(n_users: int = 24, length: int = 30, n_items: int = 6) -> SequenceDataset:
    """Every user walks the catalogue in a cycle 1 -> 2 -> ... -> n_items -> 1, from a random start."""
    rng = np.random.default_rng(0)
    starts = rng.integers(0, n_items, n_users)
    items = (starts[:, None] + np.arange(length)[None, :]) % n_items + 1
    frame = pl.DataFrame(
        {
            "user": np.repeat(np.arange(n_users), length),
            "item": items.ravel(),
            "behavior": np.ones(n_users * length, dtype=np.int8),
            "timestamp": np.tile(np.arange(length), n_users),
            "session": np.zeros(n_users * length, dtype=np.int32),
            "position": np.tile(np.arange(length), n_users),
        }
    )
    item_table = pl.DataFrame(
        {
            "item": np.arange(1, n_items + 1),
            "raw_id": [str(i) for i in range(n_items)],
            "title": None,
            "category": None,
            "price": None,
        }
    )
    users = pl.DataFrame({"user": np.arange(n_users), "user_key": [str(u) for u in range(n_users)]})
    meta = DatasetMeta(
        name="cycle",
        behaviors=("view",),
        n_users=0,
        n_items=0,
        n_interactions=0,
        n_sessions=0,
        has_timestamps=True,
        behavior_source="none",
        session_gap_seconds=1800,
    )
    return SequenceDataset.from_frames(frame, item_table, users, meta)


@pytest.mark.slow
def test_greedy_recommender_learns_the_logs_and_round_trips(tmp_path) -> None:
    torch.set_num_threads(1)
    dataset = _cycle_dataset()
    config = TrainConfig(epochs=40, batch_size=8, lr=1e-2, warmup_steps=1, weight_decay=0.0, progress=False)
    recommender = train_log_recommender(dataset, seed=0, train_config=config)
    layout = ActionLayout("slate", 1, 7)
    obs = {
        ITEMS: np.array([[0, 0, 1, 2, 3], [0, 5, 6, 1, 2]]),
        BEHAVIORS: np.ones((2, 5), dtype=np.int64),
        MASK: np.array([[0, 0, 1, 1, 1], [0, 1, 1, 1, 1]]),
    }
    greedy = Greedy(layout, np.random.default_rng(0), recommender)
    assert greedy.predict(obs)[0].tolist() == [[4], [3]]
    loaded = load_log_recommender(save_log_recommender(recommender, tmp_path / "gru", dataset), dataset)
    np.testing.assert_array_equal(loaded.scores(history_batch(obs)), recommender.scores(history_batch(obs)))


def test_log_features_come_from_the_training_split() -> None:
    dataset = _cycle_dataset()
    counts = item_popularity(dataset)
    assert counts[0] == 0 and counts.sum() == dataset.n_users * (30 - 2)
    vectors = cooccurrence_embeddings(dataset.train_sequences(), dataset.n_items, dim=3, seed=0)
    assert vectors.shape == (7, 3) and not vectors[0].any()
    np.testing.assert_allclose(np.linalg.norm(vectors[1:], axis=1), 1.0, rtol=1e-5)
    again = cooccurrence_embeddings(dataset.train_sequences(), dataset.n_items, dim=3, seed=0)
    np.testing.assert_array_equal(vectors, again)


def test_history_batch_compacts_either_padding_side() -> None:
    left = {
        ITEMS: np.array([[0, 0, 4, 5]]),
        BEHAVIORS: np.array([[0, 0, 1, 2]]),
        MASK: np.array([[0, 0, 1, 1]]),
    }
    right = {
        ITEMS: np.array([[4, 5, 0, 0]]),
        BEHAVIORS: np.array([[1, 2, 0, 0]]),
        MASK: np.array([[1, 1, 0, 0]]),
    }
    for obs in (left, right):
        h = history_batch(obs)
        assert h.items.tolist() == [[4, 5, 0, 0]] and h.behaviors.tolist() == [[1, 2, 0, 0]]
        assert h.lengths.tolist() == [2]
