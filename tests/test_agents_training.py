"""SB3 training on the simulator: an agent learns a trivially learnable user; save and load act alike.

The "identity" user (SB3's identity-env idea): six items, and only item 6 is ever worth choosing (the
user picks it with probability e^3 / (e^3 + 1) = 0.95 when shown, and likes it; the others are rarely
chosen and never liked). The reward counts likes; a session lasts at most 10 steps and ends with
probability 0.1 after each event (combined with the core's patience). Always showing item 6 earns
about 7.7 (measured: OracleGreedy does exactly that); a random slate of one earns about 1.3.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from agents.baselines import RandomPolicy
from agents.checkpoint import build_algorithm, load_agent, save_agent
from agents.config import load_train_config
from agents.envs import SimulatorSpec, action_layout, make_vec_env
from agents.evaluate import evaluate
from agents.train import FixedPopulation, train

pytest.importorskip("recsim_env.env", reason="needs the simulation core")
from recsim_env.testing import logged_dataset  # noqa: E402
from user_models.handwritten import HandwrittenConfig, HandwrittenUser  # noqa: E402

IDENTITY_ENV = {
    "slate_size": 1,
    "max_steps": 10,
    "reward": {"behavior_weights": [0.0, 1.0]},
    "choice": {"repeat": "allow"},
}


@pytest.fixture(scope="module")
def simulator() -> SimulatorSpec:
    torch.set_num_threads(1)
    user = HandwrittenUser(
        HandwrittenConfig(
            behaviors=("view", "like"),
            base_logits=(-2.0,) * 5 + (3.0,),
            genres=(0, 0, 0, 1, 1, 1),
            behavior_table=((1.0, 0.0),) * 5 + ((0.0, 1.0),),
            end_prob_after=(0.1, 0.1, 0.1),
        )
    )
    return SimulatorSpec(user, logged_dataset(user, n_users=10, n_sessions=1))


def _config(algo: str, action_mode: str, timesteps: int, env_extra: dict | None = None, **extra: object):
    overrides = {
        "n_timesteps": timesteps,
        "n_envs": 8,
        "eval_freq": 0,
        "checkpoint_freq": 0,
        "n_eval_episodes": 40,
        "env_kwargs": {**IDENTITY_ENV, "action_mode": action_mode, **(env_extra or {})},
        "features": {"item_dim": 8, "hidden_dim": 8},
        **extra,
    }
    return load_train_config(algo, overrides=overrides)


def test_ppo_learns_the_identity_user(simulator: SimulatorSpec, tmp_path: Path) -> None:
    config = _config("ppo", "slate", 1536, n_steps=16, batch_size=64, n_epochs=4, learning_rate=0.01)
    result = train(config, simulator, tmp_path, seed=0, progress_bar=False)
    venv = FixedPopulation(make_vec_env(simulator, "RecSim-v0", config.env_kwargs, 8, 1), 1)
    random = evaluate(RandomPolicy(action_layout(venv, "slate"), np.random.default_rng(0)), venv, 40)
    learned = result.final_eval.mean_return
    assert learned.mean > 4.5, (
        f"PPO return {learned} (always item 6: about 7.7; random {random.mean_return})"
    )
    assert learned.low > random.mean_return.high
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
    simulator: SimulatorSpec, tmp_path: Path, algo: str, mode: str, extra: dict
) -> None:
    env_extra = {"candidates": {"n_candidates": 4}} if mode == "candidates" else {}
    if extra.get("policy") == "SlateRankingPolicy":
        env_extra["slate_size"] = 2
    config = _config(algo, mode, 64, env_extra, **extra)
    venv = make_vec_env(simulator, "RecSim-v0", config.env_kwargs, config.n_envs, 0)
    model = build_algorithm(config, venv, seed=0, device="cpu")
    model.learn(config.n_timesteps)
    save_agent(model, config, tmp_path / "agent")
    loaded = load_agent(tmp_path / "agent", make_vec_env(simulator, "RecSim-v0", config.env_kwargs, 8, 5))
    assert evaluate(loaded, venv, 8).mean_return.n == 8  # the one evaluator takes every algorithm
    obs = venv.reset()
    for _ in range(3):
        expected, _ = model.predict(obs, deterministic=True)
        actual, _ = loaded.predict(obs, deterministic=True)
        np.testing.assert_array_equal(actual, expected)
        obs, *_ = venv.step(expected)


def test_oracle_and_bandit_act_through_the_batched_env(simulator: SimulatorSpec) -> None:
    """OracleGreedy reads the cores' utilities; LinUCB learns from the adapter's batched responses."""
    from agents.baselines import LinUCB, OracleGreedy
    from agents.envs import simulator_scorer

    venv = FixedPopulation(
        make_vec_env(simulator, "RecSim-v0", {**IDENTITY_ENV, "action_mode": "slate"}, 8, 2), 2
    )
    layout = action_layout(venv, "slate")
    oracle = evaluate(OracleGreedy(layout, np.random.default_rng(0), simulator_scorer(venv)), venv, 24)
    assert oracle.mean_return.mean > 4.5  # item 6 has the top logit: the oracle always shows it
    bandit = LinUCB(layout, np.random.default_rng(0), np.eye(7)[:, 1:], alpha=0.5)
    result = evaluate(bandit, venv, 48).mean_return
    assert result.mean > 4.5
    assert int(np.argmax(bandit.theta[:6])) == 5  # the item-quality block: item 6 (column 5) pays


def test_same_seed_same_agent(simulator: SimulatorSpec, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    config = _config("ppo", "slate", 64, n_steps=8, batch_size=32, n_epochs=2)
    for run, seed in (("a", 7), ("b", 7), ("c", 8)):
        train(config, simulator, tmp_path / run, seed=seed, progress_bar=False)
    first, second, other = (load_file(str(tmp_path / run / "final" / "policy.safetensors")) for run in "abc")
    assert first.keys() == second.keys()
    for name in first:
        torch.testing.assert_close(first[name], second[name], rtol=0, atol=0)
    assert any(not torch.equal(first[name], other[name]) for name in first)
