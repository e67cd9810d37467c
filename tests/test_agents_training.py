"""SB3 training on the simulator: an agent learns a trivially learnable user; save and load act alike.

The "identity" user (``tests/conftest.py``): only item 6 is ever worth choosing. Always showing it earns
about 7.7 (measured: OracleGreedy does exactly that); a random slate of one earns about 1.3.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from agents.baselines import RandomPolicy
from agents.checkpoint import build_algorithm, load_agent, save_agent
from agents.policy import ActionLayout
from recsim_env.offline.rollout import build_simulator, evaluate_policy
from recsim_env.offline.training import train_agent
from recsim_env.sb3 import make_sb3_vec_env
from tests.conftest import IDENTITY_ENV, Identity


def _train(identity: Identity, config, out: Path, seed: int = 0):
    return train_agent(config, identity.user, identity.dataset, identity.env_config(config), out, seed=seed,
                       progress=False)


def _random_baseline(identity: Identity, config, mode: str, episodes: int = 40):
    sim = build_simulator(identity.user, identity.dataset, identity.env_config(config), episodes)
    layout = ActionLayout.from_space(sim.adapter.action_space, mode)
    return evaluate_policy(sim, RandomPolicy(layout, np.random.default_rng(0)), seed=1)


@pytest.mark.slow
def test_ppo_learns_the_identity_user(identity: Identity, identity_config, tmp_path: Path) -> None:
    config = identity_config("ppo", "slate", 1536, n_steps=16, batch_size=64, n_epochs=4, learning_rate=0.01)
    result = _train(identity, config, tmp_path)
    random = _random_baseline(identity, config, "slate")
    learned = result.final_eval["return"]
    assert learned["mean"] > 4.5, (
        f"PPO return {learned} (always item 6: about 7.7; random {random.mean_return})"
    )
    assert learned["ci95_low"] > random.mean_return.high
    assert (tmp_path / "final" / "policy.safetensors").is_file() and (tmp_path / "train.json").is_file()


ALGO_CASES = [
    ("a2c", "slate", {"n_steps": 4}),
    ("maskable_ppo", "candidates", {"n_steps": 8, "batch_size": 32}),
    ("maskable_ppo", "candidates", {"n_steps": 8, "batch_size": 32, "policy": "SlateRankingPolicy"}),
    ("dqn", "candidates", {"learning_starts": 16, "buffer_size": 256}),
    ("sac", "embedding", {"learning_starts": 16, "buffer_size": 256, "batch_size": 16}),
    ("td3", "embedding", {"learning_starts": 16, "buffer_size": 256, "batch_size": 16}),
]


ALGO_IDS = [algo + ("_slate_policy" if "policy" in extra else "") for algo, _, extra in ALGO_CASES]


@pytest.mark.parametrize(("algo", "mode", "extra"), ALGO_CASES, ids=ALGO_IDS)
def test_every_algorithm_trains_saves_and_loads_to_identical_actions(
    identity: Identity, identity_config, tmp_path: Path, algo: str, mode: str, extra: dict
) -> None:
    env_extra = {"candidates": {"n_candidates": 4}} if mode == "candidates" else {}
    if extra.get("policy") == "SlateRankingPolicy":
        env_extra["slate_size"] = 2
    config = identity_config(algo, mode, 64, env_extra, **extra)
    env_config = identity.env_config(config)
    venv = make_sb3_vec_env(identity.user, identity.dataset, env_config, config.n_envs, 0)
    model = build_algorithm(config, venv, seed=0, device="cpu")
    model.learn(config.n_timesteps)
    save_agent(model, config, tmp_path / "agent")
    loaded = load_agent(tmp_path / "agent", venv.observation_space, venv.action_space)  # from spaces alone
    sim = build_simulator(identity.user, identity.dataset, env_config, 8)
    assert evaluate_policy(sim, loaded, seed=0).returns.size == 8  # the one evaluator takes every algorithm
    obs = venv.reset()
    for _ in range(3):
        expected, _ = model.predict(obs, deterministic=True)
        actual, _ = loaded.predict(obs, deterministic=True)
        np.testing.assert_array_equal(actual, expected)
        obs, *_ = venv.step(expected)


def test_oracle_and_bandit_act_through_the_batched_core(identity: Identity) -> None:
    """OracleGreedy reads the core's utilities; LinUCB learns from the batched responses."""
    from agents.baselines import LinUCB, OracleGreedy
    from recsim_env.config import EnvConfig

    config = EnvConfig.from_mapping({**IDENTITY_ENV, "action_mode": "slate"})
    oracle_sim = build_simulator(identity.user, identity.dataset, config, 24)
    layout = ActionLayout.from_space(oracle_sim.adapter.action_space, "slate")
    oracle = evaluate_policy(oracle_sim, OracleGreedy(layout, np.random.default_rng(0), oracle_sim), seed=2)
    assert oracle.mean_return.estimate > 4.5  # item 6 has the top logit: the oracle always shows it
    bandit = LinUCB(layout, np.random.default_rng(0), np.eye(7)[:, 1:], alpha=0.5)
    result = evaluate_policy(build_simulator(identity.user, identity.dataset, config, 48), bandit, seed=2)
    assert result.mean_return.estimate > 4.5
    assert int(np.argmax(bandit.theta[:6])) == 5  # the item-quality block: item 6 (column 5) pays


@pytest.mark.slow
def test_same_seed_same_agent(identity: Identity, identity_config, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    config = identity_config("ppo", "slate", 64, n_steps=8, batch_size=32, n_epochs=2)
    for run, seed in (("a", 7), ("b", 7), ("c", 8)):
        _train(identity, config, tmp_path / run, seed=seed)
    first, second, other = (load_file(str(tmp_path / run / "final" / "policy.safetensors")) for run in "abc")
    assert first.keys() == second.keys()
    for name in first:
        torch.testing.assert_close(first[name], second[name], rtol=0, atol=0)
    assert any(not torch.equal(first[name], other[name]) for name in first)
