"""Off-policy estimates against the simulator's ground truth, on a hand-written user."""

import itertools

import numpy as np
import pytest
import torch

from recsim_env.config import CandidateConfig, EnvConfig
from recsim_env.offline.ope_simulator import OPEConfig, expected_additive_reward, ope_markdown, run_ope
from recsim_env.testing import logged_dataset
from user_models.handwritten import clickbait_user


def test_expected_additive_reward_matches_enumeration():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=(1, 2))  # [1, k=2, C=3]
    q = rng.normal(size=(1, 3))
    expected = 0.0
    for a, b in itertools.product(range(3), repeat=2):
        shown = {a, b}  # a repeat shows nothing
        expected += probs[0, 0, a] * probs[0, 1, b] * sum(q[0, c] for c in shown)
    assert expected_additive_reward(probs, q)[0] == pytest.approx(expected)


def test_unbiased_estimators_track_the_truth(tmp_path):
    torch.set_num_threads(1)
    user = clickbait_user()
    logged_dataset(user, n_users=12).save(tmp_path / "data")
    config = OPEConfig(targets=("uniform", "softpop", "popular"), n_logged=600, seeds=6, n_truth=6000)
    settings = EnvConfig(slate_size=2, candidates=CandidateConfig(n_candidates=6))
    rows = run_ope(user, tmp_path / "data", settings, config, progress=False)
    cell = {(r.target, r.estimator): r for r in rows}
    assert len(rows) == 3 * 6
    for target in ("uniform", "softpop", "popular"):
        truth = cell[(target, "ips")]
        assert truth.truth_low <= truth.truth <= truth.truth_high
        for estimator in ("ips", "snips", "dr"):  # unbiased (SNIPS: consistent) whatever the reward model
            r = cell[(target, estimator)]
            # Mean of 6 estimates: its standard error is about RMSE / sqrt(6); allow 4 of them + truth noise.
            assert abs(r.bias) < 4 * r.rmse / np.sqrt(6) + (r.truth_high - r.truth_low), r
    assert "| softpop |" in ope_markdown(rows, config)
