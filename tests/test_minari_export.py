"""Minari round trip: rollouts written with episode buffers read back by ``minari.load_dataset``."""

import numpy as np
import pytest

from recsim_env.rollout import episode_seeds, rollouts
from tests.toy_env import RandomSlatePolicy, ToySlateEnv
from user_models.errors import InputError

minari = pytest.importorskip(
    "minari", reason="Minari export needs the optional extra: pip install 'recsim-env[minari]'"
)


def test_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    from recsim_env.minari_export import write_minari_dataset

    env = ToySlateEnv()
    episodes = list(rollouts(env, RandomSlatePolicy(0), episode_seeds(3, 5)))
    write_minari_dataset(
        episodes,
        "recsim/toy-random-v0",
        env.observation_space,
        env.action_space,
        algorithm_name="random",
        description="toy",
    )
    data = minari.load_dataset("recsim/toy-random-v0")
    assert data.total_episodes == 5
    assert data.total_steps == sum(ep.length for ep in episodes)
    assert "Info keys not stored" in data.storage.metadata["description"]
    for ep, back in zip(episodes, data.iterate_episodes(), strict=True):
        np.testing.assert_array_equal(
            back.observations["items"], np.stack([o["items"] for o in ep.observations])
        )
        np.testing.assert_array_equal(back.actions, np.stack(ep.actions))
        np.testing.assert_allclose(back.rewards, ep.rewards)
        np.testing.assert_array_equal(back.terminations, ep.terminations)
        np.testing.assert_array_equal(back.truncations, ep.truncations)
        np.testing.assert_allclose(back.infos["patience"], [i["patience"] for i in ep.infos])
        assert "item" not in back.infos  # absent from the reset info, so not stored per observation

    with pytest.raises(InputError, match="already exists"):
        write_minari_dataset(
            episodes,
            "recsim/toy-random-v0",
            env.observation_space,
            env.action_space,
            algorithm_name="random",
            description="toy",
        )
    write_minari_dataset(
        episodes[:2],
        "recsim/toy-random-v0",
        env.observation_space,
        env.action_space,
        algorithm_name="random",
        description="toy",
        overwrite=True,
    )
    assert minari.load_dataset("recsim/toy-random-v0").total_episodes == 2
    with pytest.raises(InputError, match="not a Minari id"):
        write_minari_dataset(
            episodes,
            "bad id!",
            env.observation_space,
            env.action_space,
            algorithm_name="random",
            description="toy",
        )


def test_same_seeds_same_rollouts():
    env = ToySlateEnv()
    a = list(rollouts(env, RandomSlatePolicy(1), episode_seeds(0, 4)))
    b = list(rollouts(env, RandomSlatePolicy(1), episode_seeds(0, 4)))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.rewards, y.rewards)
        np.testing.assert_array_equal(np.stack(x.actions), np.stack(y.actions))
