"""The env over the learned user model itself (a tiny untrained Transformer): checkers, determinism."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import recsim_env  # noqa: F401  (registers the env ids)
from recsim_env.config import CandidateConfig, PopulationConfig, SimConfig
from recsim_env.factory import build_core
from recsim_env.testing import logged_dataset
from user_models.handwritten import clickbait_user
from user_models.transformer import TransformerConfig, UserTransformer


@pytest.fixture(scope="module")
def dataset():
    return logged_dataset(clickbait_user(10), n_users=20, seed=0)


@pytest.fixture(scope="module")
def model(dataset):
    torch.manual_seed(0)  # weights only; the simulation draws from its own generators
    config = TransformerConfig(dim=16, layers=1, heads=2, max_len=8, dropout=0.0)
    return UserTransformer(config, dataset.n_items, dataset.behaviors).eval()


# Every mode is checked with the hand-written user (test_env.py); here each action mode once, so that
# both observation modes are covered too, with the real model.
@pytest.mark.parametrize(("action_mode", "observation_mode"),
                         [("slate", "history"), ("candidates", "state"), ("embedding", "history")])
def test_checkers_pass_with_the_transformer(model, dataset, action_mode, observation_mode):
    env = gym.make("RecSim-v0", model=model, data=dataset, slate_size=3, action_mode=action_mode,
                   observation_mode=observation_mode, history_len=6,
                   candidates=CandidateConfig(n_candidates=8) if action_mode == "candidates" else None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
        sb3_check_env(env.unwrapped)


def test_row_resets_past_the_window_keep_other_rows(model, dataset):
    core = build_core(model, dataset, SimConfig(slate_size=3, population=PopulationConfig(max_prefix=12)),
                      n_users=4)
    core.manual_seed(0)
    core.reset()
    gen = torch.Generator().manual_seed(1)
    for _ in range(10):  # longer than the model's window of 8: its cache slides
        record = core.step(torch.randint(1, dataset.n_items + 1, (4, 3), generator=gen))
        assert torch.isfinite(record.choice_probs).all()
        torch.testing.assert_close(record.choice_probs.sum(1), torch.ones(4))
    rows = torch.tensor([True, False, True, False])
    logits = core.catalogue_logits()
    core.reset(rows)
    assert torch.equal(core.catalogue_logits()[~rows], logits[~rows])
    assert (core.steps[rows] == 0).all() and (core.steps[~rows] == 10).all()


def test_same_seed_same_trajectory_with_the_transformer(model, dataset):
    def rollout():
        env = gym.make("RecSim-v0", model=model, data=dataset, slate_size=3)
        env.action_space.seed(0)
        env.reset(seed=7)
        out = []
        for _ in range(12):
            _, reward, terminated, truncated, info = env.step(env.action_space.sample())
            out.append((info["item"], info["behavior"], reward))
            if terminated or truncated:
                env.reset()
        return np.array(out)

    np.testing.assert_array_equal(rollout(), rollout())
