"""Minari round trip: benchmark episodes written as episode buffers, read back by ``minari.load_dataset``."""

import numpy as np
import pytest
import torch

pytest.importorskip("recsim_env.core", reason="needs the simulation core (branch core)")
pytest.importorskip("agents.policy", reason="needs the baselines (branch agents)")

from recsim_env.config import EnvConfig  # noqa: E402
from recsim_env.offline.rollout import build_policy, build_simulator, rollout  # noqa: E402
from user_models.errors import InputError  # noqa: E402

minari = pytest.importorskip("minari", reason="needs the optional extra: pip install 'recsim-env[minari]'")
handwritten = pytest.importorskip("user_models.handwritten")
testing = pytest.importorskip("recsim_env.testing")


def test_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    from recsim_env.offline.minari_export import write_minari_dataset

    torch.set_num_threads(1)
    user = handwritten.clickbait_user()
    testing.logged_dataset(user, n_users=8).save(tmp_path / "data")
    sim = build_simulator(user, tmp_path / "data", EnvConfig(slate_size=2, max_steps=8), n_users=5)
    policy = build_policy("random", sim, 0, None)
    run = rollout(sim.core, sim.adapter, policy, seed=2, record_observations=True)
    episodes = run.transitions()
    obs_space, act_space = sim.adapter.observation_space, sim.adapter.action_space
    write_minari_dataset(episodes, "recsim/test-random-v0", obs_space, act_space, algorithm_name="random",
                         description="test")
    data = minari.load_dataset("recsim/test-random-v0")
    assert data.total_episodes == 5
    assert data.total_steps == sum(ep.length for ep in episodes) == sum(ep.length for ep in run.episodes)
    for ep, summary, back in zip(episodes, run.episodes, data.iterate_episodes(), strict=True):
        for key in obs_space.spaces:
            np.testing.assert_array_equal(back.observations[key], np.stack([o[key] for o in ep.observations]))
            assert all(obs_space[key].contains(o[key]) for o in ep.observations)
        np.testing.assert_array_equal(back.actions, np.stack(ep.actions))
        np.testing.assert_allclose(back.rewards, summary.rewards)
        np.testing.assert_array_equal(back.infos["item"][1:], summary.chosen)
        assert back.terminations[-1] or back.truncations[-1]
        assert not (back.terminations[:-1] | back.truncations[:-1]).any()
        # The last observation holds the last step's choice at the end of the history.
        if summary.chosen[-1]:
            assert back.observations["history_items"][-1][-1] == summary.chosen[-1]

    with pytest.raises(InputError, match="already exists"):
        write_minari_dataset(episodes, "recsim/test-random-v0", obs_space, act_space, algorithm_name="random",
                             description="test")
    write_minari_dataset(episodes[:2], "recsim/test-random-v0", obs_space, act_space, algorithm_name="random",
                         description="test", overwrite=True)
    assert minari.load_dataset("recsim/test-random-v0").total_episodes == 2
    with pytest.raises(InputError, match="not a Minari id"):
        write_minari_dataset(episodes, "bad id!", obs_space, act_space, algorithm_name="random",
                             description="test")


def test_env_spec_with_nested_settings_is_stored_and_recovers_the_env(tmp_path, monkeypatch):
    """Frozen config sections travel as plain mappings, so Minari stores the spec (as JSON) and
    ``recover_environment`` rebuilds the env with the same settings."""
    from recsim_env.config import WORLD_MODEL, LeaveConfig, RewardConfig
    from recsim_env.factory import world_config
    from recsim_env.offline.minari_export import export_minari
    from user_models.synthetic import synthesize_dataset
    from user_models.synthetic.config import SyntheticConfig

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    torch.set_num_threads(1)
    data = tmp_path / "world"
    synthesize_dataset(SyntheticConfig(n_users=40, n_items=30, n_categories=4, seed=0)).save(data)
    reward = RewardConfig(behavior_weights=(0.0, 0.0, 0.5, 1.0))
    settings = world_config(slate_size=2, max_steps=8, reward=reward, leave=LeaveConfig(no_choice_drain=0.3))
    export_minari(WORLD_MODEL, str(data), "random", 3, "recsim/test-spec-v0", settings)
    dataset = minari.load_dataset("recsim/test-spec-v0")
    assert dataset.spec.env_spec.id == "RecSim-World-v0"
    env = dataset.recover_environment()
    config = env.unwrapped.config  # the env's settings, as given (the core resolves data-driven ones)
    assert config.reward == settings.reward and config.leave == settings.leave and config.max_steps == 8
    assert env.observation_space == dataset.observation_space
