"""RecSimEnv: both env checkers in every mode, determinism, invalid actions, masks, properties, long term."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import recsim_env  # noqa: F401  (registers the env ids)
from recsim_env.config import CandidateConfig, ChoiceConfig, PopulationConfig, RewardConfig
from recsim_env.testing import logged_dataset
from user_models.handwritten import clickbait_user

MODES = [(a, o, k) for a in ("slate", "candidates", "embedding") for o in ("history", "state")
         for k in ((1, 3) if a == "candidates" else (3,))]


def make(user, dataset, env_id="RecSim-v0", **kwargs):
    kwargs.setdefault("slate_size", 3)
    kwargs.setdefault("history_len", 8)
    if kwargs.get("action_mode") == "candidates":
        kwargs.setdefault("candidates", CandidateConfig(n_candidates=6))
    return gym.make(env_id, model=user, data=dataset, **kwargs)


@pytest.mark.parametrize(("action_mode", "observation_mode", "k"), MODES)
def test_gymnasium_and_sb3_checkers_pass(user, dataset, action_mode, observation_mode, k):
    env = make(user, dataset, action_mode=action_mode, observation_mode=observation_mode, slate_size=k,
               render_mode="ansi")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any checker warning fails the test
        check_env(env.unwrapped)
        sb3_check_env(env.unwrapped)
    if action_mode == "candidates" and k == 1:
        assert env.action_space == gym.spaces.Discrete(6)


@pytest.mark.parametrize(("action_mode", "observation_mode", "k"), MODES)
def test_same_seed_same_trajectory(user, dataset, action_mode, observation_mode, k):
    def rollout(seed):
        env = make(user, dataset, action_mode=action_mode, observation_mode=observation_mode, slate_size=k)
        env.action_space.seed(seed)
        obs, _ = env.reset(seed=seed)
        trace = [obs["history_items"].copy()]
        for _ in range(30):
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            trace += [obs["history_items"].copy(), np.array([reward, info["item"], info["behavior"]])]
            if terminated or truncated:
                obs, _ = env.reset()
                trace.append(obs["history_items"].copy())
        return np.concatenate(trace)

    np.testing.assert_array_equal(rollout(3), rollout(3))
    assert not np.array_equal(rollout(3), rollout(4))


def test_invalid_actions_raise_clear_errors(user, dataset):
    env = make(user, dataset)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(2,\), expected \(3,\)"):
        env.step(np.array([1, 2]))
    with pytest.raises(ValueError, match="dtype float64, expected integers"):
        env.step(np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match=r"value 21 out of range \[0, 20\]"):
        env.step(np.array([1, 21, 3]))
    cand = make(user, dataset, action_mode="candidates", slate_size=1)
    cand.reset(seed=0)
    with pytest.raises(ValueError, match=r"value 6 out of range \[0, 5\]"):
        cand.step(6)
    emb = make(user, dataset, action_mode="embedding")
    emb.reset(seed=0)
    with pytest.raises(ValueError, match="within"):
        emb.step(np.array([2.0, 0.0], dtype=np.float32))


def test_repeated_items_show_nothing_or_raise_when_strict(user, dataset):
    env = make(user, dataset)
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([4, 4, 12]))
    assert info["slate"].tolist() == [4, 0, 12] and info["choice_probs"][1] == 0.0
    strict = make(user, dataset, strict=True)
    strict.reset(seed=0)
    with pytest.raises(ValueError, match="item 4 twice"):
        strict.step(np.array([4, 4, 12]))


def test_action_masks(user, dataset):
    # Prefixes no longer than the history window, so the visible history is everything the user consumed.
    env = make(user, dataset, choice=ChoiceConfig(repeat="mask"), population={"max_prefix": 8})
    obs, _ = env.reset(seed=0)
    mask = env.unwrapped.action_masks()
    assert mask.shape == (3 * 21,) and mask.dtype == bool
    block = mask[:21]
    assert not block[0]
    seen = set(obs["history_items"][obs["mask"] == 1].tolist())
    assert {i for i in range(1, 21) if not block[i]} == seen
    cand = make(user, dataset, action_mode="candidates", slate_size=1)
    cand.reset(seed=0)
    assert cand.unwrapped.action_masks().shape == (6,)
    emb = make(user, dataset, action_mode="embedding")
    emb.reset(seed=0)
    with pytest.raises(ValueError, match="discrete action modes"):
        emb.unwrapped.action_masks()


def test_render_ansi_and_info(user, dataset):
    env = make(user, dataset, render_mode="ansi")
    env.reset(seed=1)
    assert "new user" in env.render()
    _, _, _, _, info = env.step(np.array([1, 11, 12]))
    text = env.render()
    assert "no choice" in text and "item     11" in text
    assert {"position", "item", "behavior", "choice_probs", "leave_prob", "patience"} <= info.keys()


def test_config_sections_accept_plain_mappings_and_name_bad_fields(user, dataset):
    env = make(user, dataset, reward={"no_choice_penalty": 0.5}, choice={"repeat": "mask"},
               action_mode="candidates", candidates={"n_candidates": 6})
    config = env.unwrapped.core.config
    assert config.reward == RewardConfig(no_choice_penalty=0.5)
    assert config.choice == ChoiceConfig(repeat="mask")
    assert config.candidates == CandidateConfig(n_candidates=6)
    from user_models.errors import InputError

    with pytest.raises(InputError, match="env argument 'reward'.*no_choice_penalty"):
        make(user, dataset, reward={"no_choice_penalty": -1.0})
    with pytest.raises(InputError, match="env argument 'leave'.*colour"):
        make(user, dataset, leave={"colour": 1})


def test_registered_ids():
    for env_id in ("RecSim-v0", "RecSim-LongTerm-v0", "RecSim-World-v0"):
        assert env_id in gym.registry


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), mode=st.sampled_from(["slate", "candidates", "embedding"]),
       no_choice=st.floats(-3, 3), diversity=st.floats(0, 1), penalty=st.floats(0, 1),
       repeat=st.sampled_from(["allow", "penalise", "mask"]), generated=st.booleans())
def test_random_valid_actions_keep_invariants(user, dataset, seed, mode, no_choice, diversity, penalty,
                                              repeat, generated):
    max_steps = 25
    env = make(user, dataset, action_mode=mode, max_steps=max_steps,
               choice=ChoiceConfig(no_choice_logit=no_choice, repeat=repeat),
               reward=RewardConfig(diversity_weight=diversity, no_choice_penalty=penalty),
               population=PopulationConfig(kind="generated" if generated else "dataset", max_prefix=6))
    low, high = env.unwrapped.reward_range
    env.action_space.seed(seed)
    env.reset(seed=seed)
    for _ in range(max_steps):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        assert np.isfinite(reward) and low - 1e-6 <= reward <= high + 1e-6
        probs = info["choice_probs"]
        assert np.isfinite(probs).all() and abs(probs.sum() - 1) < 1e-5 and (probs >= 0).all()
        assert 0.0 <= info["leave_prob"] <= 1.0 and 0.0 <= info["patience"] <= 1.0
        if terminated or truncated:
            break
    assert terminated or truncated  # within max_steps


@pytest.mark.slow
def test_long_term_myopic_policy_is_not_optimal():
    """In RecSim-LongTerm-v0 with the clickbait user, engagement beats clicks (95% CIs apart).

    The myopic policy shows the k items of highest choice utility (the clickbait: most likely to be
    chosen now); the engagement policy shows the k unseen items of highest expected reward per
    consumption. Views drain the impatient users' patience, likes refill it.
    """
    user = clickbait_user(50)
    env = gym.make("RecSim-LongTerm-v0", model=user, data=logged_dataset(user, n_users=30, seed=0),
                   slate_size=3)
    core = env.unwrapped.core
    weights = torch.tensor(core.config.reward.weights(core.n_behaviors))

    def myopic():
        return core.choice_utilities(core.catalogue()).topk(3).indices[0].numpy() + 1

    def engagement():
        items = core.catalogue()
        value = (user.behavior_probs(core.user_state, items) * weights).sum(-1) - 10.0 * core.repeated(items)
        return value.topk(3).indices[0].numpy() + 1

    def returns(policy, episodes=60):
        out = []
        for episode in range(episodes):
            env.reset(seed=episode)
            total, done = 0.0, False
            while not done:
                _, reward, terminated, truncated, _ = env.step(policy())
                total += reward
                done = terminated or truncated
            out.append(total)
        values = np.array(out)
        half = 1.96 * values.std(ddof=1) / np.sqrt(len(values))
        return values.mean() - half, values.mean() + half

    myopic_ci, engagement_ci = returns(myopic), returns(engagement)
    assert engagement_ci[0] > myopic_ci[1], (myopic_ci, engagement_ci)


def test_namespaced_ids_and_the_module_form(user, dataset, tmp_path):
    """Ids live under the ``recsim`` namespace (plain ids stay as aliases); Gymnasium's module form
    imports the package by itself."""
    import subprocess
    import sys

    gym.register_envs(recsim_env)
    for env_id in ("RecSim-v0", "RecSim-LongTerm-v0", "RecSim-World-v0", "RecSim-CascadeWorld-v0"):
        assert gym.spec(f"recsim/{env_id}").entry_point == gym.spec(env_id).entry_point
    env = gym.make("recsim/RecSim-v0", model=user, data=dataset, slate_size=3)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    user.save(tmp_path / "user.json")
    dataset.save(tmp_path / "data")
    code = ("import gymnasium as gym, sys; "  # no import of recsim_env: the module form imports it
            "env = gym.make('recsim_env:recsim/RecSim-LongTerm-v0', model=sys.argv[1], data=sys.argv[2]); "
            "print(env.unwrapped.config.max_steps)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "user.json"), str(tmp_path / "data")],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "200"
