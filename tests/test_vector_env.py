"""RecSimVectorEnv: make_vec, parity with the single env, SAME_STEP autoreset, torch path, rendering."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers.vector import RecordEpisodeStatistics

import recsim_env  # noqa: F401  (registers the env ids)
from recsim_env.config import CandidateConfig, LeaveConfig
from recsim_env.env import RecSimEnv
from recsim_env.vector import RESPONSE_KEYS, RecSimVectorEnv

NEVER_LEAVE = LeaveConfig(no_choice_drain=0.0, low_value_drain=0.0, end_logit_offset=-30.0)
"""Users who never leave on their own, so episodes end exactly at max_steps."""


def env_kwargs(action_mode="slate", **kwargs):
    kwargs = {"slate_size": 3, "history_len": 8, "action_mode": action_mode, **kwargs}
    if action_mode == "candidates":
        kwargs.setdefault("candidates", CandidateConfig(n_candidates=6))
    return kwargs


def test_make_vec_builds_one_native_vector_env(user, dataset):
    env = gym.make_vec("RecSim-v0", num_envs=3, vectorization_mode="vector_entry_point", model=user,
                       data=dataset, **env_kwargs())
    assert isinstance(env, RecSimVectorEnv)  # not a SyncVectorEnv, and no TimeLimit wrapper anywhere
    assert env.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP
    assert env.core.n_users == 3
    single = gym.make("RecSim-v0", model=user, data=dataset, **env_kwargs())
    assert env.single_action_space == single.action_space
    assert env.single_observation_space == single.observation_space
    assert env.action_space == gym.vector.utils.batch_space(single.action_space, 3)
    obs, info = env.reset(seed=0)
    assert obs in env.observation_space and info["patience"].shape == (3,)
    long_term = gym.make_vec("RecSim-LongTerm-v0", num_envs=2, vectorization_mode="vector_entry_point",
                             model=user, data=dataset, history_len=8)
    assert long_term.core.config.max_steps == 200  # the id's kwargs reach the vector entry point


@pytest.mark.parametrize("action_mode", ["slate", "candidates", "embedding"])
def test_batch_of_one_reproduces_the_single_env(user, dataset, action_mode):
    """Same seed, same actions: identical trajectories across several episodes and autoresets."""
    kwargs = env_kwargs(action_mode, max_steps=6)
    single = RecSimEnv(model=user, data=dataset, **kwargs)
    vector = RecSimVectorEnv(1, model=user, data=dataset, **kwargs)
    single.action_space.seed(3)
    s_obs, _ = single.reset(seed=11)
    v_obs, _ = vector.reset(seed=11)
    episodes = 0
    for _ in range(40):
        action = single.action_space.sample()
        s_obs, s_reward, s_term, s_trunc, s_info = single.step(action)
        v_obs, v_reward, v_term, v_trunc, v_info = vector.step(action[None])
        assert (v_reward[0], v_term[0], v_trunc[0]) == (s_reward, s_term, s_trunc)
        if s_term or s_trunc:
            episodes += 1
            response = v_info["final_info"]
            for key, value in v_info["final_obs"][0].items():
                np.testing.assert_array_equal(value, s_obs[key])
            s_obs, _ = single.reset()
        else:
            response = v_info
        for key in RESPONSE_KEYS:
            np.testing.assert_array_equal(response[key][0], s_info[key], err_msg=key)
        for key, value in v_obs.items():
            np.testing.assert_array_equal(value[0], s_obs[key], err_msg=key)
    assert episodes >= 4


def test_same_step_autoreset_resets_only_finished_rows(user, dataset):
    env = RecSimVectorEnv(6, model=user, data=dataset, **env_kwargs(max_steps=3, leave=NEVER_LEAVE))
    calls = []
    reset_rows = env.core.model.reset_rows

    def spy(state, rows, history):
        calls.append(rows.clone())
        return reset_rows(state, rows, history)

    env.core.model.reset_rows = spy  # type: ignore[method-assign]
    env.reset(seed=0)
    actions = np.ones((6, 3), dtype=np.int64)
    for t in range(1, 4):
        before = env.core.history_items.clone()
        obs, _, terminated, truncated, info = env.step(actions)
        assert not terminated.any()
        if t < 3:
            assert not truncated.any() and "final_obs" not in info and not calls
            continue
        # the step that reaches max_steps truncates every row and resets it in the same call
        assert truncated.all() and info["_final_obs"].all() and info["_final_info"].all()
        assert len(calls) == 1 and calls[0].all()
        assert (env.core.steps == 0).all()
        assert not info["_item"].any() and info["_history_length"].all()
        np.testing.assert_array_equal(obs["history_items"], env.core.history_items.numpy())
        assert not np.array_equal(obs["history_items"], before.numpy())
        final = np.stack([info["final_obs"][i]["history_items"] for i in range(6)])
        assert not np.array_equal(final, obs["history_items"])

    # rows out of step: only the rows that finish are re-encoded
    env.core.steps[:3] = 1
    calls.clear()
    for _ in range(2):
        _, _, _, truncated, info = env.step(actions)
    assert truncated.tolist() == [True, True, True, False, False, False]
    assert len(calls) == 1 and calls[0].tolist() == truncated.tolist()
    assert info["_item"].tolist() == [False] * 3 + [True] * 3
    _, _, _, truncated, _ = env.step(actions)
    assert truncated.tolist() == [False] * 3 + [True] * 3
    assert calls[-1].tolist() == truncated.tolist()


def test_record_episode_statistics_understands_same_step(user, dataset):
    env = RecordEpisodeStatistics(RecSimVectorEnv(4, model=user, data=dataset,
                                                  **env_kwargs(max_steps=5, leave=NEVER_LEAVE)))
    env.reset(seed=1)
    returns = np.zeros(4)
    for _ in range(5):
        _, reward, _, truncated, info = env.step(np.ones((4, 3), dtype=np.int64))
        returns += reward
    assert truncated.all()
    np.testing.assert_array_equal(info["episode"]["l"], 5)
    np.testing.assert_allclose(info["episode"]["r"], returns)


def test_torch_path_equals_numpy_path_and_stays_on_device(user, dataset):
    kwargs = env_kwargs("candidates", slate_size=2, max_steps=4)
    fast = RecSimVectorEnv(8, model=user, data=dataset, **kwargs)
    slow = RecSimVectorEnv(8, model=user, data=dataset, **kwargs)
    obs_t = fast.reset_tensors(seed=5)
    obs_n, _ = slow.reset(seed=5)
    generator = torch.Generator().manual_seed(0)
    for _ in range(10):
        actions = torch.randint(0, 6, (8, 2), generator=generator)
        out = fast.step_tensors(actions)
        obs_n, reward, terminated, truncated, _ = slow.step(actions.numpy())
        assert all(isinstance(v, torch.Tensor) and v.device == fast.device for v in out.obs.values())
        for key, value in out.obs.items():
            np.testing.assert_array_equal(value.numpy(), obs_n[key])
        np.testing.assert_array_equal(out.reward.numpy(), reward.astype(np.float32))
        np.testing.assert_array_equal(out.terminated.numpy(), terminated)
        np.testing.assert_array_equal(out.truncated.numpy(), truncated)
        kept = ~out.done
        for key in out.obs:
            assert torch.equal(out.final_obs[key][kept], out.obs[key][kept])
    assert obs_t["history_items"].shape == (8, 8)
    with pytest.raises(ValueError, match="shape"):
        fast.step_tensors(torch.zeros(8, 3, dtype=torch.long))


def test_numpy_api_validates_actions_and_returns_copies(user, dataset):
    env = RecSimVectorEnv(2, model=user, data=dataset, **env_kwargs())
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.ones((2, 3), dtype=np.int64))
    obs, _ = env.reset(seed=0)
    kept = obs["history_items"].copy()
    with pytest.raises(ValueError, match="out of range"):
        env.step(np.full((2, 3), 99, dtype=np.int64))
    with pytest.raises(ValueError, match="shape"):
        env.step(np.ones((3, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="seed"):
        env.reset(seed=[1, 2])  # type: ignore[arg-type]
    env.step(np.array([[1, 2, 3], [4, 5, 6]]))
    np.testing.assert_array_equal(obs["history_items"], kept)  # earlier observations never change
    masks = env.action_masks()
    assert masks.shape == (2, int(env.single_action_space.nvec.sum())) and masks.dtype == bool


def test_rows_behave_like_the_single_env(user, dataset):
    """With N > 1 each row is a single env: over the first 15 steps of 100 users, the per-step choice,
    reward and leave rates of the vector env's rows and of 100 single-env episodes agree (z < 4)."""
    kwargs = env_kwargs(max_steps=50)
    slate = np.array([1, 6, 7])  # one clickbait item, two quality items
    n_users, horizon = 100, 15

    single = RecSimEnv(model=user, data=dataset, **kwargs)
    single.reset(seed=0)
    s_stats = []
    for _ in range(n_users):
        for _ in range(horizon):
            _, reward, terminated, truncated, info = single.step(slate)
            s_stats.append((info["item"] > 0, reward, terminated))
            if terminated or truncated:
                break
        single.reset()

    vector = RecSimVectorEnv(n_users, model=user, data=dataset, **kwargs)
    vector.reset(seed=1)
    alive = np.ones(n_users, dtype=bool)  # rows still in their first episode
    v_stats = []
    for _ in range(horizon):
        _, reward, terminated, truncated, info = vector.step(np.tile(slate, (n_users, 1)))
        item = info["final_info"]["item"] if "final_info" in info else 0
        chosen = np.where(info["_item"], info["item"], item)
        v_stats += list(zip(chosen[alive] > 0, reward[alive], terminated[alive], strict=True))
        alive &= ~(terminated | truncated)
    s, v = np.asarray(s_stats, dtype=float), np.asarray(v_stats, dtype=float)
    assert len(s) > 500 and len(v) > 500
    for column, name in enumerate(("choice rate", "reward", "leave rate")):
        diff = s[:, column].mean() - v[:, column].mean()
        se = np.sqrt(s[:, column].var() / len(s) + v[:, column].var() / len(v))
        assert abs(diff) < 4 * se + 1e-9, (f"{name}: single {s[:, column].mean():.3f} vs vector "
                                           f"{v[:, column].mean():.3f}")


def test_render_draws_the_chosen_row(user, dataset):
    env = RecSimVectorEnv(3, model=user, data=dataset, render_mode="ansi", render_row=2, **env_kwargs())
    env.reset(seed=0)
    (frame,) = env.render()
    assert frame.startswith("new user")
    env.step(np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]]))
    (frame,) = env.render()
    assert "item      7" in frame and "item      1" not in frame
    env.render_row = 0
    assert "item      1" in env.render()[0]
    assert RecSimVectorEnv(1, model=user, data=dataset, **env_kwargs()).render() is None
    with pytest.raises(ValueError, match="render_mode"):
        RecSimVectorEnv(1, model=user, data=dataset, render_mode="rgb", **env_kwargs())


def test_prefix_table_resets_equal_prefills(dataset):
    """Large cores start users by copying prefix encodings; the states equal a prefill's."""
    from recsim_env.config import PopulationConfig
    from user_models.transformer import TransformerConfig, UserTransformer

    torch.manual_seed(0)
    model = UserTransformer(TransformerConfig(dim=16, layers=1, heads=2, max_len=8, dropout=0.0),
                            dataset.n_items, dataset.behaviors).eval()
    kwargs = env_kwargs(population=PopulationConfig(min_prefix=1, max_prefix=8))
    copied = RecSimVectorEnv(64, model=model, data=dataset, **kwargs)
    encoded = RecSimVectorEnv(64, model=model, data=dataset, **kwargs)
    encoded.core._table_checked = True  # never build the table: prefill every new user
    for env in (copied, encoded):
        env.reset(seed=4)
        env.core.reset(torch.arange(64) % 3 == 0)  # a partial reset as well
    assert copied.core._table is not None and encoded.core._table is None
    copy, prefill = copied.core.user_state, encoded.core.user_state
    for name in ("keys", "values", "hidden"):
        torch.testing.assert_close(getattr(copy, name), getattr(prefill, name))
    for name in ("items", "behaviors", "gap_buckets", "lengths"):
        assert torch.equal(getattr(copy, name), getattr(prefill, name))
    assert torch.equal(copied.core.history_items, encoded.core.history_items)
