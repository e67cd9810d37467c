"""Minari round trip: benchmark episodes written as episode buffers, read back by ``minari.load_dataset``."""

import numpy as np
import pytest
import torch

pytest.importorskip("recsim_env.core", reason="needs the simulation core (branch core)")
pytest.importorskip("agents.policy", reason="needs the baselines (branch agents)")

from recsim_env.benchmark import EnvSettings, build_policy, build_simulator, run_episodes  # noqa: E402
from user_models.errors import InputError  # noqa: E402

minari = pytest.importorskip("minari", reason="needs the optional extra: pip install 'recsim-env[minari]'")
handwritten = pytest.importorskip("user_models.handwritten")
testing = pytest.importorskip("recsim_env.testing")


def test_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    from recsim_env.minari_export import write_minari_dataset

    torch.set_num_threads(1)
    user = handwritten.clickbait_user()
    testing.logged_dataset(user, n_users=8).save(tmp_path / "data")
    sim = build_simulator(user, tmp_path / "data", EnvSettings(slate_size=2, max_steps=8), n_users=5)
    policy = build_policy("random", sim, 0, None)
    run = run_episodes(sim.core, sim.adapter, policy, seed=2, record_transitions=True)
    episodes = run.transitions
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
