"""RLlib: the NEXT_STEP view its env runners need, and PPO training on a local Ray (slow)."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from recsim_env.config import CandidateConfig
from recsim_env.rllib import NextStepVectorEnv, make_rllib_env, ppo_config
from recsim_env.vector import RecSimVectorEnv

ENV_KWARGS = {"action_mode": "candidates", "slate_size": 1, "max_steps": 8, "candidates": {"n_candidates": 6}}


def test_next_step_view_returns_terminal_obs_then_hands_over_the_new_user(user, dataset):
    venv = RecSimVectorEnv(6, model=user, data=dataset, action_mode="candidates", slate_size=1,
                           max_steps=3, history_len=4, candidates=CandidateConfig(n_candidates=4))
    env = NextStepVectorEnv(venv)
    assert env.metadata["autoreset_mode"].value == "NextStep"
    obs, info = env.reset(seed=1)
    assert info == {} and obs["history_items"].shape == (6, 4)
    resetting = np.zeros(6, dtype=bool)
    new_users = None
    handed_over = terminal_differs = 0
    for t in range(15):
        before = venv.core.history_lengths.clone()
        obs, reward, terminated, truncated, info = env.step(np.full(6, t % 4))
        if resetting.any():  # rows that finished last call: the new user, not stepped, no reward
            assert new_users is not None
            for key in obs:
                np.testing.assert_array_equal(obs[key][resetting], new_users[key][resetting])
            assert (reward[resetting] == 0).all() and not (terminated | truncated)[resetting].any()
            assert (venv.core.history_lengths[resetting] == before[resetting]).all()
            handed_over += int(resetting.sum())
        done = terminated | truncated
        record = venv.core.last_record
        assert record is not None
        if done.any():  # the terminal observation: the finished user's own last history
            last = record.history_items[done][:, -4:].cpu().numpy()
            np.testing.assert_array_equal(obs["history_items"][done], last)
        new_users = venv._to_numpy(venv.adapter.observe())
        terminal_differs += int((obs["history_items"][done] != new_users["history_items"][done]).any(1).sum())
        resetting = done
    assert terminal_differs > 0  # the terminal observations were not the next users' first ones
    assert handed_over >= 6  # every row finished at least once (max_steps=3) and was handed over


def test_creator_builds_any_registered_id_as_one_core(cli_files):
    env = make_rllib_env({"env_id": "recsim/RecSim-v0", "num_envs": 5, "model": str(cli_files / "user.json"),
                          "data": str(cli_files / "data"), **ENV_KWARGS})
    assert isinstance(env, NextStepVectorEnv) and env.num_envs == 5
    assert env.venv.core.n_users == 5  # five users, one batched core
    assert env.single_action_space.n == 6


def test_missing_extra_names_it(monkeypatch, cli_files):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"recsim-env\[rllib\]"):
        ppo_config(cli_files / "user.json", cli_files / "data")


@pytest.mark.slow
def test_ppo_trains_with_two_env_runners_on_a_local_ray(cli_files):
    ray = pytest.importorskip("ray", reason="RLlib training needs the [rllib] extra")
    pytest.importorskip("ray.rllib", reason="RLlib training needs the [rllib] extra")
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    try:
        config = ppo_config(cli_files / "user.json", cli_files / "data", env_kwargs=ENV_KWARGS,
                            num_env_runners=2, num_envs_per_env_runner=8, rollout_fragment_length=16,
                            num_epochs=2, minibatch_size=64, hidden=(16,))
        algo = config.build_algo()
        try:
            results = [algo.train() for _ in range(3)]
        finally:
            algo.stop()
    finally:
        ray.shutdown()
    for result in results:
        assert math.isfinite(result["learners"]["default_policy"]["total_loss"])
        assert result["env_runners"]["num_env_steps_sampled"] >= 2 * 8 * 16 * 0.9
    returns = results[-1]["env_runners"]["episode_return_mean"]
    assert math.isfinite(returns) and returns >= 0  # rewards are non-negative behavior weights
    assert results[-1]["env_runners"]["num_episodes_lifetime"] > 16  # episodes of 8 steps did end
