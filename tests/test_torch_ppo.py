"""The on-device PPO (``torch_ppo``): it learns the identity user, it is seeded, its agents load and act
everywhere the SB3 agents do (from spaces alone, the offline evaluator, ``recsim benchmark``, the CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from agents.baselines import RandomPolicy
from agents.checkpoint import build_torch_ppo, load_agent, save_agent
from agents.config import load_train_config
from agents.policy import ActionLayout, act
from agents.torch_ppo import TorchPPO, evaluate_on_device
from recsim_env.cli import main
from recsim_env.config import EnvConfig
from recsim_env.offline.benchmark import BenchmarkConfig, run_benchmark
from recsim_env.offline.rollout import build_simulator, evaluate_policy
from recsim_env.offline.training import train_agent
from recsim_env.vector import RecSimVectorEnv
from tests.conftest import Identity
from user_models.errors import InputError

CANDIDATES = {"candidates": {"n_candidates": 4}}
TINY = {"n_envs": 16, "n_steps": 4, "batch_size": 32, "n_epochs": 2}


def _config(identity_config, timesteps: int, **extra):
    return identity_config("torch_ppo", "candidates", timesteps, CANDIDATES, **{**TINY, **extra})


def _trained(identity: Identity, config, seed: int = 0) -> tuple[TorchPPO, RecSimVectorEnv]:
    env = RecSimVectorEnv(config.n_envs, identity.user, identity.dataset, identity.env_config(config))
    agent = build_torch_ppo(config, env.single_observation_space, env.single_action_space, seed, "cpu")
    return agent.learn(env, config.n_timesteps, seed), env


@pytest.mark.slow
def test_torch_ppo_learns_the_identity_user(identity: Identity, identity_config, tmp_path: Path) -> None:
    config = _config(identity_config, 8192, n_envs=64, n_steps=8, batch_size=128, n_epochs=4,
                     learning_rate=0.01, eval_freq=2048)
    result = train_agent(config, identity.user, identity.dataset, identity.env_config(config), tmp_path,
                         seed=0, progress=False)
    sim = build_simulator(identity.user, identity.dataset, identity.env_config(config), 40)
    layout = ActionLayout.from_space(sim.adapter.action_space, "candidates")
    random = evaluate_policy(sim, RandomPolicy(layout, np.random.default_rng(0)), seed=1)
    learned = result.final_eval["return"]
    assert learned["mean"] > 4.5, f"torch_ppo return {learned} (item 6 always: ~7.7; random {random})"
    assert learned["ci95_low"] > random.mean_return.high
    evaluations = np.load(tmp_path / "evaluations.npz")
    assert evaluations["results"].shape == (4, 40) and (tmp_path / "best" / "agent.json").is_file()


def test_saved_agent_acts_alike_and_goes_through_every_evaluator(identity: Identity, identity_config,
                                                                  tmp_path: Path) -> None:
    config = _config(identity_config, 128)
    agent, env = _trained(identity, config)
    assert agent.num_timesteps == 128
    save_agent(agent, config, tmp_path / "agent")
    loaded = load_agent(tmp_path / "agent", env.single_observation_space, env.single_action_space)
    assert isinstance(loaded, TorchPPO) and loaded.num_timesteps == 128
    obs, _ = env.reset(seed=3)
    for _ in range(4):
        masks = env.action_masks()
        expected, _ = act(agent, obs, deterministic=True, action_masks=masks)
        actual, _ = act(loaded, obs, deterministic=True, action_masks=masks)
        np.testing.assert_array_equal(actual, expected)
        assert actual.shape == (16,) and actual.dtype == np.int64  # Discrete(4): one position per row
        obs, *_ = env.step(actual)
    sim = build_simulator(identity.user, identity.dataset, identity.env_config(config), 8)
    assert evaluate_policy(sim, loaded, seed=0).returns.size == 8
    bench = BenchmarkConfig(policies=("random", str(tmp_path / "agent")), episodes=6, seeds=1,
                            n_resamples=50, save_trajectories=0)
    settings = EnvConfig.from_mapping(dict(config.env_kwargs))
    paths = run_benchmark(identity.user, identity.dataset, bench, settings, tmp_path / "bench",
                          progress=False)
    results = json.loads(paths["results.json"].read_text())
    assert any(m["policy"] == "agent" and m["metric"] == "return" for m in results["metrics"])


def test_the_deterministic_slate_is_the_top_k_and_masks_hold(identity: Identity, identity_config) -> None:
    config = identity_config("torch_ppo", "candidates", 64, {"slate_size": 2, **CANDIDATES}, **TINY)
    agent, env = _trained(identity, config)
    obs = env.reset_tensors(seed=0)
    masks = torch.ones(16, 8, dtype=torch.bool)
    masks[:, [1, 5]] = False  # candidate 1 masked in both slots' blocks
    features = agent.policy.encoder(obs)
    scores = agent.policy.scorer(features).masked_fill(~masks[:, :4], -1e8)
    actions, log_prob, _ = agent.act(obs, masks, deterministic=True)
    assert torch.equal(actions, scores.topk(2, dim=1).indices)
    sampled, _, _ = agent.act(obs, masks)
    assert (sampled != 1).all() and (sampled[:, 0] != sampled[:, 1]).all()  # distinct, never masked
    assert (log_prob <= 0).all()


def test_same_seed_same_agent(identity: Identity, identity_config) -> None:
    config = _config(identity_config, 64)
    first, second, other = (_trained(identity, config, seed)[0] for seed in (5, 5, 6))
    a, b, c = (agent.policy.state_dict() for agent in (first, second, other))
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert any(not torch.equal(a[name], c[name]) for name in a)


def test_on_device_evaluation_meets_a_fixed_population(identity: Identity, identity_config) -> None:
    config = _config(identity_config, 64)
    agent, env = _trained(identity, config)
    first, lengths = evaluate_on_device(agent, env, seed=11)
    second, _ = evaluate_on_device(agent, env, seed=11)
    np.testing.assert_array_equal(first, second)
    assert first.shape == (16,) and (lengths >= 1).all() and (lengths <= 10).all()  # max_steps 10


def test_torch_ppo_needs_the_candidates_mode_and_its_policy(identity_config) -> None:
    with pytest.raises(InputError, match="torch_ppo cannot act in action_mode 'slate'"):
        identity_config("torch_ppo", "slate", 64)
    with pytest.raises(InputError, match="goes with policy PooledSlatePolicy"):
        identity_config("torch_ppo", "candidates", 64, CANDIDATES, policy="MultiInputPolicy")
    with pytest.raises(InputError, match="TorchPPO takes no argument"):
        identity_config("torch_ppo", "candidates", 64, CANDIDATES, buffer_size=10)
    config = load_train_config("torch_ppo", env_id="RecSim-LongTerm-v0")
    assert config.policy == "PooledSlatePolicy" and config.action_mode == "candidates"


def test_cli_trains_and_evaluates_torch_ppo(cli_files: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "agent"
    common = ["--model", str(cli_files / "user.json"), "--data", str(cli_files / "data")]
    code = main(["agent", "train", "--algo", "torch_ppo", *common, "--out", str(out), "--timesteps", "64",
                 "--num-envs", "8", "--no-progress", "--hyperparams", "n_steps=4", "batch_size=16",
                 "eval_freq=32", "checkpoint_freq=32", "n_eval_episodes=4", "env_kwargs.max_steps=5",
                 "env_kwargs.candidates.n_candidates=5", "features.item_dim=8", "features.hidden_dim=8"])
    assert code == 0 and "trained torch_ppo for 64 steps" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_32", "step_64"]
    assert (out / "best" / "agent.json").is_file() and any((out / "tensorboard").rglob("events.out.*"))
    record = json.loads((out / "train.json").read_text())
    assert record["timesteps"] == 64 and record["final_eval"]["return"]["n"] == 4
    weights = load_file(str(out / "final" / "policy.safetensors"))
    assert "scorer.out.weight" in weights and "encoder.recency" in weights
    code = main(["agent", "eval", *common, "--policy", str(out), "--episodes", "6", "--num-envs", "3",
                 "--json"])
    assert code == 0 and json.loads(capsys.readouterr().out)["return"]["n"] == 6


def test_building_an_agent_leaves_the_global_generator_alone(identity: Identity, identity_config) -> None:
    config = _config(identity_config, 64)
    env = RecSimVectorEnv(config.n_envs, identity.user, identity.dataset, identity.env_config(config))
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_torch_ppo(config, env.single_observation_space, env.single_action_space, 0, "cpu")
    assert torch.equal(torch.rand(3), expected)


def test_pooled_history_is_the_weighted_sum_of_the_events_and_padding_learns_nothing() -> None:
    """The embedding-bag pooling equals the recency-weighted sum over the gathered ``[B, L, dim]``
    events (forward and backward), and the padding rows get no gradient."""
    import gymnasium as gym

    from agents.obs import BEHAVIORS, CANDIDATES, ITEMS, MASK
    from agents.torch_ppo import PooledHistoryEncoder

    n_items, length = 12, 6
    space = gym.spaces.Dict({ITEMS: gym.spaces.Box(0, n_items, (length,), np.int64),
                             BEHAVIORS: gym.spaces.Box(0, 3, (length,), np.int64),
                             MASK: gym.spaces.Box(0, 1, (length,), np.int8),
                             CANDIDATES: gym.spaces.Box(1, n_items, (4,), np.int64)})
    torch.manual_seed(0)
    encoder = PooledHistoryEncoder(space, item_dim=8, hidden_dim=16)
    with torch.no_grad():
        encoder.recency.normal_()
    gen = torch.Generator().manual_seed(1)
    mask = (torch.arange(length)[None] >= torch.tensor([[6], [3], [0], [1], [4]])).to(torch.int8)
    items = torch.randint(1, n_items + 1, (5, length), generator=gen) * mask
    items[1, 4] = 0  # a no-choice event inside the history
    behaviors = torch.randint(0, 4, (5, length), generator=gen) * mask
    obs = {ITEMS: items, BEHAVIORS: behaviors, MASK: mask, CANDIDATES: torch.randint(1, n_items + 1, (5, 4))}
    real = (mask > 0) & (items > 0)
    weights = torch.softmax(encoder.recency.masked_fill(~real, -1e9), dim=1) * real
    expected = torch.einsum("bl,bld->bd", weights, encoder.items(items) + encoder.behaviors(behaviors))
    pooled = encoder._pooled_events(items, behaviors, weights)
    torch.testing.assert_close(pooled, expected)
    leaves = [encoder.recency, encoder.items.weight, encoder.behaviors.weight]
    grads = torch.autograd.grad(pooled.square().sum(), leaves, retain_graph=True)  # the weights are shared
    reference = torch.autograd.grad(expected.square().sum(), leaves)
    for grad, ref in zip(grads, reference, strict=True):
        torch.testing.assert_close(grad, ref)
    encoder(obs).sum().backward()
    assert not encoder.items.weight.grad[0].any() and not encoder.behaviors.weight.grad[0].any()
