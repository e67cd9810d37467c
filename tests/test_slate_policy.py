"""The Plackett-Luce slate distribution (known answers) and the slate ranking policy under MaskablePPO."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.slate_policy import CandidateScorer, PlackettLuceDistribution
from tests.test_agents_training import _random_baseline, _train

SCORES = torch.tensor([[0.5, -1.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]])


def _distribution(scores: torch.Tensor = SCORES, k: int = 2) -> PlackettLuceDistribution:
    return PlackettLuceDistribution(n_candidates=scores.shape[1], slate_size=k).proba_distribution(scores)


def test_probabilities_of_all_ordered_slates_sum_to_one_and_match_the_formula() -> None:
    dist = _distribution()
    slates = torch.tensor(list(itertools.permutations(range(4), 2)))
    log_p = torch.stack([dist.log_prob(slate.expand(2, 2)) for slate in slates])  # [12 slates, 2 rows]
    torch.testing.assert_close(log_p.exp().sum(dim=0), torch.ones(2))
    s = SCORES[0].exp()
    expected = s[2] / s.sum() * s[0] / (s.sum() - s[2])  # slate (2, 0): best first, then item 0
    torch.testing.assert_close(dist.log_prob(torch.tensor([[2, 0], [2, 0]]))[0], expected.log())
    torch.testing.assert_close(log_p[:, 1].exp(), torch.full((12,), 1 / 12))  # equal scores: uniform


def test_samples_are_distinct_follow_the_probabilities_and_mode_is_the_top_k() -> None:
    torch.manual_seed(0)
    dist = _distribution(SCORES[:1].expand(20000, 4))
    samples = dist.sample()
    assert (samples[:, 0] != samples[:, 1]).all()
    first = torch.bincount(samples[:, 0], minlength=4).float() / len(samples)
    torch.testing.assert_close(first, SCORES[0].softmax(0), atol=0.015, rtol=0)
    frequency = (samples == torch.tensor([2, 0])).all(dim=1).float().mean()
    assert abs(frequency - dist.log_prob(torch.tensor([[2, 0]]))[0].exp()) < 0.015
    assert dist.mode()[0].tolist() == [2, 0]


def test_masks_in_maskable_ppo_layout_are_never_drawn_and_entropy_is_exact_for_one_slot() -> None:
    dist = _distribution()
    dist.apply_masking(np.array([[True, True, False, True] * 2, [False, True, True, True] * 2]))
    torch.manual_seed(0)
    for _ in range(50):
        slate = dist.sample()
        assert 2 not in slate[0].tolist() and 0 not in slate[1].tolist()
    assert dist.mode()[0].tolist() == [0, 3]
    dist.apply_masking(None)
    assert dist.mode()[0].tolist() == [2, 0]
    one = _distribution(k=1)
    torch.testing.assert_close(one.entropy(), torch.distributions.Categorical(logits=SCORES).entropy())


@pytest.mark.slow
def test_maskable_ppo_with_slate_policy_learns_the_identity_user(identity, identity_config, tmp_path: Path
                                                                 ) -> None:
    """Six candidates (the whole catalogue), slates of 2: the agent learns to always include item 6."""
    env = {"slate_size": 2, "candidates": {"n_candidates": 6}}
    config = identity_config("maskable_ppo", "candidates", 2048, env, policy="SlateRankingPolicy",
                             n_steps=16, batch_size=64, n_epochs=4, learning_rate=0.01)
    result = _train(identity, config, tmp_path)
    random = _random_baseline(identity, config, "candidates")
    learned = result.final_eval["return"]
    assert learned["mean"] > 4.5, f"return {learned} (item 6 always shown: ~7.7; random {random.mean_return})"
    assert learned["ci95_low"] > random.mean_return.high


def test_slate_policy_needs_maskable_ppo_in_the_candidates_mode() -> None:
    from agents.config import load_train_config
    from user_models.errors import InputError

    with pytest.raises(InputError, match="SlateRankingPolicy needs algo maskable_ppo"):
        load_train_config("ppo", overrides={"policy": "SlateRankingPolicy"})


class _Split:
    """Features laid out as [user (6) | 4 candidates x 3]: what CandidateScorer reads."""

    user_dim, item_dim, n_candidates = 6, 3, 4

    def split(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return features[:, :6], features[:, 6:].reshape(len(features), 4, 3)


def test_candidate_scorer_is_the_plain_network_of_its_documented_input() -> None:
    # the scorer computes its hidden layer by parts (and tanh as 2 sigmoid(2z) - 1) for speed; the
    # scores must be those of out(tanh(W [user, candidate, user_to_item(user) * candidate, position]))
    torch.manual_seed(0)
    scorer = CandidateScorer(_Split(), hidden=5, position_dim=2)
    features = torch.randn(7, 6 + 4 * 3)
    user, candidates = _Split().split(features)
    inputs = torch.cat([user.unsqueeze(1).expand(-1, 4, -1), candidates,
                        scorer.user_to_item(user).unsqueeze(1) * candidates,
                        scorer.position.unsqueeze(0).expand(7, -1, -1)], dim=2)
    expected = scorer.out(torch.tanh(scorer.hidden[0](inputs))).squeeze(2)
    assert scorer(features).shape == (7, 4)
    torch.testing.assert_close(scorer(features), expected, atol=1e-6, rtol=1e-5)
