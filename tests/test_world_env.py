"""RecSim-World-v0: the synthetic ground-truth world as the users, through the same core and env."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import recsim_env  # noqa: F401  (registers the env ids)

synthetic = pytest.importorskip("user_models.synthetic", reason="the synthetic world has not landed yet")


@pytest.fixture(scope="module")
def world_data():
    config = synthetic.SyntheticConfig(n_users=60, n_items=120, n_categories=6, dim=8,
                                       mean_events_per_user=25, min_events_per_user=5,
                                       max_events_per_user=80, seed=3)
    return synthetic.synthesize_dataset(config)


def test_world_env_passes_checkers_and_ends(world_data):
    env = gym.make("RecSim-World-v0", data=world_data, slate_size=3, max_steps=60)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
        sb3_check_env(env.unwrapped)
    env.action_space.seed(0)
    lengths = []
    for episode in range(5):
        env.reset(seed=episode)
        steps, done = 0, False
        while not done:
            _, reward, terminated, truncated, info = env.step(env.action_space.sample())
            assert np.isfinite(reward) and abs(info["choice_probs"].sum() - 1) < 1e-5
            steps, done = steps + 1, terminated or truncated
        lengths.append(steps)
    assert all(1 <= n <= 60 for n in lengths)


def test_world_users_spend_their_own_patience(world_data):
    """No-choice steps are world events: with nothing shown, the world's end probability rises."""
    env = gym.make("RecSim-World-v0", data=world_data, slate_size=3)
    env.reset(seed=0)
    ends = []
    for _ in range(3):
        _, _, terminated, _, info = env.step(np.zeros(3, dtype=np.int64))
        ends.append(info["end_prob"])
        if terminated:
            break
    assert info["patience"] == 1.0  # the core's own patience is off in the world env
    assert len(ends) == 1 or ends[-1] > ends[0]
