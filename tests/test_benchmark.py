"""The offline benchmark on a hand-written user: common random numbers, reports, trajectories."""

import json

import numpy as np
import pytest
import torch

pytest.importorskip("recsim_env.core", reason="needs the simulation core (branch core)")
pytest.importorskip("agents.policy", reason="needs the baselines (branch agents)")

from recsim_env.cli.settings import env_overrides, env_settings  # noqa: E402
from recsim_env.config import EnvConfig  # noqa: E402
from recsim_env.offline.benchmark import BenchmarkConfig, run_benchmark  # noqa: E402
from recsim_env.offline.rollout import build_policy, build_simulator, rollout  # noqa: E402
from user_models.errors import InputError  # noqa: E402

handwritten = pytest.importorskip("user_models.handwritten")
testing = pytest.importorskip("recsim_env.testing")

SETTINGS = EnvConfig(slate_size=2, max_steps=12)


@pytest.fixture(scope="module")
def simulator(tmp_path_factory):
    torch.set_num_threads(1)
    user = handwritten.clickbait_user()
    data = tmp_path_factory.mktemp("bench") / "data"
    testing.logged_dataset(user, n_users=12).save(data)
    return user, data, build_simulator(user, data, SETTINGS, n_users=16)


def flatten(run):
    return [np.concatenate([ep.slates.ravel(), ep.chosen, ep.behaviors, ep.rewards]) for ep in run.episodes]


def test_same_policy_twice_gives_identical_results(simulator):
    _, _, sim = simulator
    a = rollout(sim.core, sim.adapter, build_policy("random", sim, 3, None), seed=3)
    b = rollout(sim.core, sim.adapter, build_policy("random", sim, 3, None), seed=3)
    for x, y in zip(flatten(a), flatten(b), strict=True):
        np.testing.assert_array_equal(x, y)
    c = rollout(sim.core, sim.adapter, build_policy("random", sim, 3, None), seed=4)
    pairs = zip(flatten(a), flatten(c), strict=True)
    assert any(x.shape != y.shape or not np.array_equal(x, y) for x, y in pairs)


class SwitchAfter:
    """Acts like ``first`` for ``steps`` steps, then like ``then``: isolates the effect of actions."""

    def __init__(self, first, then, steps):
        self.first, self.then, self.steps, self.t = first, then, steps, 0

    def predict(self, obs, state=None, episode_start=None, deterministic=False, action_masks=None):
        policy = self.first if self.t < self.steps else self.then
        self.t += 1
        return policy.predict(obs, state, episode_start, deterministic, action_masks=action_masks)


def test_common_random_numbers_across_policies(simulator):
    # Two policies that act alike for 3 steps meet the same users and the same random draws, so their
    # episodes agree step for step until the actions differ; afterwards they diverge.
    _, _, sim = simulator
    base = rollout(sim.core, sim.adapter, build_policy("popular", sim, 0, None), seed=5)
    switch = SwitchAfter(build_policy("popular", sim, 0, None), build_policy("random", sim, 1, None), 3)
    other = rollout(sim.core, sim.adapter, switch, seed=5)
    diverged = False
    for x, y in zip(base.episodes, other.episodes, strict=True):
        t = min(3, x.length, y.length)
        np.testing.assert_array_equal(x.slates[:t], y.slates[:t])
        np.testing.assert_array_equal(x.chosen[:t], y.chosen[:t])
        np.testing.assert_array_equal(x.behaviors[:t], y.behaviors[:t])
        assert (x.length <= 3) == (y.length <= 3) and (x.length < 3 or y.length >= 3)
        diverged |= x.length != y.length or not np.array_equal(x.slates, y.slates)
    assert diverged


def test_benchmark_writes_reports_and_replayable_trajectories(simulator, tmp_path):
    from recsim_env.render.trajectory import read_trajectory

    user, data, _ = simulator
    config = BenchmarkConfig(
        policies=("random", "popular", "oracle"), episodes=10, seeds=2, n_resamples=100, save_trajectories=2
    )
    paths = run_benchmark(user, data, config, SETTINGS, tmp_path, progress=False)
    results = json.loads(paths["results.json"].read_text())
    metrics = {(m["policy"], m["metric"]) for m in results["metrics"]}
    for metric in (
        "return",
        "length",
        "consumption_rate",
        "rate_view",
        "rate_like",
        "intra_list_distance",
        "category_entropy",
        "novelty",
        "coverage",
        "exposure_gini",
    ):
        assert ("oracle", metric) in metrics
    ret = next(m for m in results["metrics"] if m["policy"] == "random" and m["metric"] == "return")
    assert ret["n_episodes"] == 20 and ret["low"] <= ret["estimate"] <= ret["high"]
    trajectory = read_trajectory(paths["trajectories/oracle"])
    assert trajectory.meta["policy"] == "oracle" and len(trajectory.episodes()) == 2
    assert (tmp_path / "metrics.png").stat().st_size > 0


def test_env_settings_from_yaml(tmp_path):
    path = tmp_path / "env.yaml"
    path.write_text("slate_size: 3\nreward:\n  behavior_weights: [0.2, 1.0]\n  no_choice_penalty: 0.1\n")
    settings = EnvConfig.from_mapping(env_overrides(path), str(path))
    assert settings.slate_size == 3 and settings.reward.behavior_weights == (0.2, 1.0)
    path.write_text("slate_sise: 3\n")
    with pytest.raises(InputError, match="unknown setting.*slate_sise"):
        EnvConfig.from_mapping(env_overrides(path), str(path))
    path.write_text("reward:\n  weight: 1\n")
    with pytest.raises(InputError, match="reward.*weight"):
        EnvConfig.from_mapping(env_overrides(path), str(path))
    with pytest.raises(InputError, match="repeated policy"):
        BenchmarkConfig(policies=("random", "random"))


def test_env_config_is_every_env_argument():
    # RecSimEnv and the vector env take an EnvConfig plus keyword overrides of its fields: one class
    # declares every setting, and each field can be given as a keyword argument.
    import dataclasses
    import inspect

    from recsim_env.env import RecSimEnv
    from recsim_env.vector import RecSimVectorEnv

    for view in (RecSimEnv, RecSimVectorEnv):
        params = inspect.signature(view.__init__).parameters
        assert "config" in params and any(p.kind is p.VAR_KEYWORD for p in params.values())
    defaults = {f.name: getattr(EnvConfig(), f.name) for f in dataclasses.fields(EnvConfig)}
    assert EnvConfig.from_mapping(defaults) == EnvConfig()


def test_online_policies_learn_from_live_users_only(simulator):
    _, _, sim = simulator

    class Recorder:
        """An online policy that records the batch sizes it acts on and learns from."""

        def __init__(self, base):
            self.base, self.acted, self.fed = base, [], []

        def predict(self, obs, state=None, episode_start=None, deterministic=False, action_masks=None):
            self.acted.append(len(obs["mask"]))
            return self.base.predict(obs, state, episode_start, deterministic, action_masks=action_masks)

        def observe(self, rewards, chosen, dones):
            self.fed.append(len(rewards))

    recorder = Recorder(build_policy("random", sim, 0, None))
    run = rollout(sim.core, sim.adapter, recorder, seed=6)
    lengths = np.array([ep.length for ep in run.episodes])
    live = [int((lengths > t).sum()) for t in range(lengths.max())]
    assert recorder.acted == live and recorder.fed == live


def test_saved_agent_is_benchmarked_like_a_baseline(simulator, tmp_path):
    from agents.checkpoint import build_algorithm, save_agent
    from agents.config import load_train_config
    from recsim_env.registration import env_config_for
    from recsim_env.sb3 import make_sb3_vec_env

    user, data, _ = simulator
    overrides = {
        "n_timesteps": 16,
        "n_envs": 2,
        "n_steps": 8,
        "batch_size": 16,
        "eval_freq": 0,
        "checkpoint_freq": 0,
        "env_kwargs": {"slate_size": 2, "max_steps": 12, "action_mode": "slate"},
        "features": {"item_dim": 8, "hidden_dim": 8},
    }
    config = load_train_config("ppo", overrides=overrides)
    env = make_sb3_vec_env(user, data, env_config_for(config.env_id, config.env_kwargs), 2, 0)
    model = build_algorithm(config, env, seed=0, device="cpu")
    model.learn(16)
    save_agent(model, config, tmp_path / "ppo_agent")
    bench = BenchmarkConfig(
        policies=("random", str(tmp_path / "ppo_agent")),
        episodes=6,
        seeds=1,
        n_resamples=50,
        save_trajectories=0,
    )
    paths = run_benchmark(user, data, bench, SETTINGS, tmp_path / "out", progress=False)
    results = json.loads(paths["results.json"].read_text())
    assert results["config"]["policies"] == ["random", "ppo_agent"]
    # An agent of other spaces is refused, naming them, before any policy runs.
    from recsim_env.config import CandidateConfig
    from user_models.errors import CheckpointError

    candidates = EnvConfig(slate_size=2, max_steps=12, action_mode="candidates",
                           candidates=CandidateConfig(n_candidates=4))
    with pytest.raises(CheckpointError, match="trained on observation .* give the env the agent's settings"):
        run_benchmark(user, data, bench, candidates, tmp_path / "refused", progress=False)
    assert not (tmp_path / "refused" / "results.json").exists()
    assert any(m["policy"] == "ppo_agent" and m["metric"] == "return" for m in results["metrics"])


def test_env_settings_start_from_a_registered_id(tmp_path):
    from recsim_env.registration import LONG_TERM_KWARGS

    long_term = env_settings("model", "RecSim-LongTerm-v0", {}, "cpu")
    assert long_term.leave == LONG_TERM_KWARGS["leave"]
    assert long_term.max_steps == LONG_TERM_KWARGS["max_steps"]
    path = tmp_path / "env.yaml"
    path.write_text("max_steps: 7\n")
    overridden = env_settings("model", "RecSim-LongTerm-v0", env_overrides(path), "cpu")
    assert overridden.max_steps == 7 and overridden.leave == long_term.leave
    with pytest.raises(InputError, match="ground-truth world: use --model world"):
        env_settings("model", "RecSim-World-v0", {}, "cpu")
    with pytest.raises(InputError, match="NoSuchEnv-v0"):
        env_settings("model", "NoSuchEnv-v0", {}, "cpu")
