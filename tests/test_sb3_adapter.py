"""RecSimVecEnv: SB3's VecEnv contract, and PPO / A2C / MaskablePPO training through SB3's wrappers."""

import numpy as np
import pytest
import torch
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.callbacks import MaskableEvalCallback
from sb3_contrib.common.maskable.utils import get_action_masks
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

import recsim_env  # noqa: F401  (registers the env ids)
from recsim_env.config import CandidateConfig, ChoiceConfig, LeaveConfig
from recsim_env.sb3 import RecSimVecEnv
from recsim_env.testing import logged_dataset
from recsim_env.vector import RecSimVectorEnv
from user_models.handwritten import clickbait_user

NEVER_LEAVE = LeaveConfig(no_choice_drain=0.0, low_value_drain=0.0, end_logit_offset=-30.0)
TINY = {"net_arch": [16]}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny networks: extra threads only add synchronisation on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def user():
    return clickbait_user(4)


@pytest.fixture(scope="module")
def dataset(user):
    return logged_dataset(user, n_users=20, seed=0)


def make(user, dataset, n=4, **kwargs):
    kwargs = {"slate_size": 1, "history_len": 4, "max_steps": 10, "action_mode": "candidates",
              "candidates": CandidateConfig(n_candidates=4), **kwargs}
    return RecSimVecEnv(RecSimVectorEnv(n, model=user, data=dataset, **kwargs))


def test_done_envs_carry_terminal_observation_and_time_limit_flag(user, dataset):
    venv = make(user, dataset, n=3, max_steps=2, leave=NEVER_LEAVE)
    venv.seed(7)
    obs = venv.reset()
    assert set(obs) == set(venv.observation_space.spaces) and obs["history_items"].shape == (3, 4)
    actions = np.zeros(3, dtype=np.int64)
    obs, reward, dones, infos = venv.step(actions)
    assert reward.dtype == np.float32 and not dones.any() and infos == [{}, {}, {}]
    obs, reward, dones, infos = venv.step(actions)
    assert dones.all()
    last_step = venv.last_infos["final_info"]["history_items"]  # the history the last step left behind
    for i, info in enumerate(infos):
        assert info["TimeLimit.truncated"] is True
        np.testing.assert_array_equal(info["terminal_observation"]["history_items"], last_step[i])
        assert info["terminal_observation"] in venv.observation_space
    np.testing.assert_array_equal(obs["history_items"], venv.venv.core.history_items.numpy())

    # every user who consumes leaves at once (the learned end applied after events only)
    left = make(user, dataset, n=64, leave=LeaveConfig(end_hazard="after_event", end_logit_offset=30.0))
    left.reset()
    _, _, dones, infos = left.step(np.zeros(64, dtype=np.int64))
    chose = left.last_infos["final_info"]["item"] > 0
    assert (dones == chose).all() and chose.any()
    assert not any(info["TimeLimit.truncated"] for info in infos if info)


def test_seed_makes_resets_reproducible(user, dataset):
    def first_obs(seed):
        venv = make(user, dataset)
        venv.seed(seed)
        return venv.reset()["history_items"]

    np.testing.assert_array_equal(first_obs(3), first_obs(3))
    assert not np.array_equal(first_obs(3), first_obs(4))


def test_per_env_introspection(user, dataset):
    venv = make(user, dataset, n=3, choice=ChoiceConfig(repeat="mask"), render_mode="ansi")
    venv.reset()
    masks = venv.env_method("action_masks")
    assert len(masks) == 3 and all(m.shape == (4,) and m.dtype == bool for m in masks)
    np.testing.assert_array_equal(get_action_masks(venv), venv.venv.action_masks())
    assert venv.env_method("action_masks", indices=[2])[0].tolist() == masks[2].tolist()
    assert venv.get_attr("observation_space") == [venv.observation_space] * 3
    assert venv.get_attr("render_mode", indices=0) == ["ansi"]
    assert venv.has_attr("action_masks") and not venv.has_attr("no_such_attribute")
    assert venv.env_is_wrapped(Monitor) == [False] * 3
    frames = venv.env_method("render", indices=[0, 2])
    assert len(frames) == 2 and all(f.startswith("new user") for f in frames)
    venv.set_attr("render_row", 1)
    assert venv.venv.render_row == 1
    with pytest.raises(ValueError, match="every env"):
        venv.set_attr("render_row", 0, indices=[1])
    with pytest.raises(AttributeError, match="batched"):
        venv.env_method("reset")


@pytest.mark.slow
def test_ppo_a2c_and_maskable_ppo_train_through_sb3_wrappers(user, dataset, tmp_path):
    """A few thousand steps each, through VecMonitor / VecNormalize / eval callbacks, then save/load."""
    torch.manual_seed(0)
    venv = VecNormalize(VecMonitor(make(user, dataset, n=8)))
    eval_env = VecNormalize(VecMonitor(make(user, dataset, n=2)), training=False)
    callback = EvalCallback(eval_env, eval_freq=128, n_eval_episodes=2, warn=False, verbose=0)
    ppo = PPO("MultiInputPolicy", venv, n_steps=64, batch_size=256, n_epochs=1, policy_kwargs=TINY, seed=0)
    ppo.learn(2048, callback=callback)
    assert ppo.num_timesteps >= 2048 and np.isfinite(callback.last_mean_reward)
    assert len(venv.venv.episode_returns) > 0

    a2c = A2C("MultiInputPolicy", VecMonitor(make(user, dataset, n=8)), n_steps=8, policy_kwargs=TINY, seed=0)
    a2c.learn(512)
    assert a2c.num_timesteps >= 512

    masked_env = VecMonitor(make(user, dataset, n=8, choice=ChoiceConfig(repeat="mask")))
    mask_eval = MaskableEvalCallback(VecMonitor(make(user, dataset, n=2, choice=ChoiceConfig(repeat="mask"))),
                                     eval_freq=128, n_eval_episodes=2, warn=False, verbose=0)
    maskable = MaskablePPO("MultiInputPolicy", masked_env, n_steps=64, batch_size=256, n_epochs=1,
                           policy_kwargs=TINY, seed=0)
    maskable.learn(2048, callback=mask_eval)
    assert maskable.num_timesteps >= 2048 and np.isfinite(mask_eval.last_mean_reward)

    maskable.save(tmp_path / "maskable")
    loaded = MaskablePPO.load(tmp_path / "maskable", env=masked_env)
    obs = masked_env.reset()
    masks = get_action_masks(masked_env)
    actions, _ = loaded.predict(obs, action_masks=masks, deterministic=True)
    expected, _ = maskable.predict(obs, action_masks=masks, deterministic=True)
    np.testing.assert_array_equal(actions, expected)
    assert masks[np.arange(8), actions].all()  # masked actions are never chosen

    ppo.save(tmp_path / "ppo")
    venv.training = False
    reloaded = PPO.load(tmp_path / "ppo", env=venv)
    mean, _ = evaluate_policy(reloaded, venv, n_eval_episodes=4, warn=False)
    assert np.isfinite(mean)
