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


def test_world_vector_env_reproduces_the_single_world_env(world_data):
    vector = gym.make_vec("RecSim-World-v0", num_envs=1, vectorization_mode="vector_entry_point",
                          data=world_data, slate_size=3, max_steps=8)
    single = gym.make("RecSim-World-v0", data=world_data, slate_size=3, max_steps=8)
    single.action_space.seed(1)
    s_obs, _ = single.reset(seed=5)
    v_obs, _ = vector.reset(seed=5)
    for _ in range(20):
        action = single.action_space.sample()
        s_obs, s_reward, s_term, s_trunc, _ = single.step(action)
        v_obs, v_reward, v_term, v_trunc, _ = vector.step(action[None])
        assert (v_reward[0], v_term[0], v_trunc[0]) == (s_reward, s_term, s_trunc)
        if s_term or s_trunc:
            s_obs, _ = single.reset()
        for key, value in v_obs.items():
            np.testing.assert_array_equal(value[0], s_obs[key])


def test_the_world_can_show_the_recommender_the_learned_item_vectors(world_data):
    """Candidates and embedding features come from the item vectors the core is given (the learned
    simulator's, in ground-truth fidelity), not from the world's hidden ones."""
    import torch

    from recsim_env.config import CandidateConfig, SimConfig
    from recsim_env.factory import WORLD_MODEL, build_core
    from user_models.errors import InputError

    config = SimConfig(slate_size=3, candidates=CandidateConfig(n_candidates=6, nearest=1.0, popular=0.0))
    own = build_core(WORLD_MODEL, world_data, config, n_users=8)
    shown = torch.randn(world_data.n_items + 1, 5, generator=torch.Generator().manual_seed(0))
    given = build_core(WORLD_MODEL, world_data, config, n_users=8, item_embeddings=shown)
    for core in (own, given):
        core.manual_seed(0)
        core.reset()
    assert given.embedding_dim == 5 and own.embedding_dim != 5
    assert not torch.equal(own.candidates, given.candidates)  # nearest by other vectors
    assert torch.equal(given.user_state.interest, own.user_state.interest)  # the same users
    with pytest.raises(InputError, match="item_embeddings has 4 rows"):
        build_core(WORLD_MODEL, world_data, config, n_users=8, item_embeddings=shown[:4])
