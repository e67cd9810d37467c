"""Saving and loading trained agents as data: safetensors weights plus JSON metadata, never pickle.

SB3's own ``model.save`` zips a cloudpickled copy of the spaces and schedules; loading it executes
pickle. An agent directory here holds

- ``policy.safetensors``: the SB3 policy's parameters (its ``state_dict``);
- ``agent.json``: format version, the :class:`~agents.config.TrainConfig` that built it, the env's
  observation and action spaces (for a clear error when the agent meets another env), the steps trained.

Loading rebuilds the algorithm from the config on the given env and loads the weights into its policy,
so the loaded agent acts exactly like the saved one. Optimizer state and replay buffers are not saved:
a loaded agent is for acting and evaluation, not for resuming training bit for bit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
from safetensors.torch import load_model, save_model
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.config import SLATE_POLICY, TORCH_PPO, FeaturesConfig, TrainConfig, algo_class
from user_models.data.artifact import atomic_directory
from user_models.errors import CheckpointError
from user_models.outputs import AGENT

FORMAT_VERSION = 1
WEIGHTS = "policy.safetensors"
METADATA = "agent.json"


def policy_kwargs(config: TrainConfig, item_init: Any = None) -> dict[str, Any]:
    """SB3 ``policy_kwargs``: the YAML's plus the history features extractor (dict observations)."""
    from agents.features import HistoryExtractor

    kwargs = dict(config.algo_kwargs.get("policy_kwargs") or {})
    if config.policy in ("MultiInputPolicy", SLATE_POLICY):
        kwargs["features_extractor_class"] = HistoryExtractor
        kwargs["features_extractor_kwargs"] = {
            "item_dim": config.features.item_dim,
            "hidden_dim": config.features.hidden_dim,
            "item_init": item_init,
        }
    return kwargs


def build_torch_ppo(config: TrainConfig, observation_space: Any, action_space: Any, seed: int, device: str,
                    item_init: Any = None) -> Any:
    """The :class:`~agents.torch_ppo.TorchPPO` of ``config`` for these (single-env) spaces."""
    from agents.torch_ppo import TorchPPO

    return TorchPPO(observation_space, action_space, item_dim=config.features.item_dim,
                    hidden_dim=config.features.hidden_dim, item_init=item_init, seed=seed, device=device,
                    **config.algo_kwargs)


def build_algorithm(
    config: TrainConfig,
    env: Any,
    seed: int,
    device: str,
    item_init: Any = None,
    tensorboard_log: str | None = None,
) -> Any:
    """Construct the SB3 algorithm of ``config`` to train on ``env`` (the VecEnv its caller built)."""
    if config.algo == TORCH_PPO:
        raise ValueError(f"{TORCH_PPO} trains on a tensor vector env: use agents.train.train_on_device")
    kwargs = {k: v for k, v in config.algo_kwargs.items() if k != "policy_kwargs"}
    return algo_class(config.algo)(
        _policy_class(config),
        env,
        policy_kwargs=policy_kwargs(config, item_init),
        seed=seed,
        device=device,
        tensorboard_log=tensorboard_log,
        verbose=0,
        **kwargs,
    )


class SpacesOnly(gym.Env[Any, Any]):
    """An env that only declares an observation and an action space (it is never stepped).

    SB3 builds an algorithm from an env; to build a saved agent from spaces alone, this stands in for
    one, so loading an agent needs no simulator.
    """

    def __init__(self, observation_space: gym.Space[Any], action_space: gym.Space[Any]) -> None:
        self.observation_space = observation_space
        self.action_space = action_space

    def step(self, action: Any) -> Any:
        raise RuntimeError("SpacesOnly only declares spaces; act in a real env")

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        raise RuntimeError("SpacesOnly only declares spaces; act in a real env")


def inference_algorithm(config: TrainConfig, observation_space: Any, action_space: Any, device: str) -> Any:
    """The SB3 algorithm of ``config`` built from spaces alone, to act (not to train).

    Buffers are sized for one env that is never stepped: replay buffers hold one transition and PPO's
    minibatch spans its (unused) rollout buffer. ``torch_ppo`` builds its own agent (no SB3 class).
    """
    if config.algo == TORCH_PPO:
        return build_torch_ppo(config, observation_space, action_space, 0, device)
    kwargs = {k: v for k, v in config.algo_kwargs.items() if k != "policy_kwargs"}
    if "buffer_size" in kwargs:
        kwargs["buffer_size"] = 1
    if "batch_size" in kwargs and "n_steps" in kwargs:
        kwargs["batch_size"] = int(kwargs["n_steps"])
    return algo_class(config.algo)(
        _policy_class(config),
        DummyVecEnv([lambda: SpacesOnly(observation_space, action_space)]),
        policy_kwargs=policy_kwargs(config),
        seed=0,
        device=device,
        verbose=0,
        **kwargs,
    )


def _policy_class(config: TrainConfig) -> Any:
    if config.policy == SLATE_POLICY:
        from agents.slate_policy import SlateRankingPolicy

        return SlateRankingPolicy
    return config.policy


def save_agent(
    model: Any,
    config: TrainConfig,
    path: str | os.PathLike[str],
    extra: dict[str, Any] | None = None,
    overwrite: bool = True,
) -> Path:
    """Write an agent directory atomically; ``extra`` is stored under ``"extra"`` in ``agent.json``."""
    meta = {
        "format_version": FORMAT_VERSION,
        "config": config.to_json(),
        "observation_space": repr(model.observation_space),
        "action_space": repr(model.action_space),
        "num_timesteps": int(model.num_timesteps),
        "extra": extra or {},
    }
    root = Path(path)
    with atomic_directory(root, overwrite=overwrite, kind=AGENT) as tmp:
        save_model(model.policy, str(tmp / WEIGHTS))
        (tmp / METADATA).write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return root


def agent_directory(path: str | os.PathLike[str]) -> Path:
    """``path`` itself, or its ``final/`` agent when ``path`` is a training run's output directory."""
    root = Path(path)
    if not (root / METADATA).is_file() and (root / "final" / METADATA).is_file():
        return root / "final"
    return root


def read_agent_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``agent.json`` of an agent directory (or a run's ``final/``), with its format version checked."""
    root = agent_directory(path)
    file = root / METADATA
    if not file.is_file() or not (root / WEIGHTS).is_file():
        raise CheckpointError(f"{root}: not an agent directory (needs {METADATA} and {WEIGHTS})")
    try:
        meta = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{file}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{file}: agent format version {meta.get('format_version')!r}, "
            f"this recsim-env reads {FORMAT_VERSION}"
        )
    return meta


def config_from_json(data: dict[str, Any]) -> TrainConfig:
    """The :class:`TrainConfig` stored in ``agent.json``."""
    return TrainConfig(
        algo=data["algo"],
        env_id=data["env_id"],
        n_timesteps=int(data["n_timesteps"]),
        n_envs=int(data["n_envs"]),
        policy=data["policy"],
        env_kwargs=dict(data["env_kwargs"]),
        features=FeaturesConfig(**data["features"]),
        eval_freq=int(data["eval_freq"]),
        n_eval_episodes=int(data["n_eval_episodes"]),
        checkpoint_freq=int(data["checkpoint_freq"]),
        algo_kwargs=dict(data["algo_kwargs"]),
        source=data.get("source", ""),
    )


def check_agent_spaces(path: str | os.PathLike[str], observation_space: Any, action_space: Any) -> None:
    """Raise CheckpointError unless the saved agent was trained on these spaces, naming both and the
    env settings it was trained with (so a mismatch is found before anything runs)."""
    meta = read_agent_metadata(path)
    if repr(observation_space) != meta["observation_space"] or repr(action_space) != meta["action_space"]:
        settings = meta["config"].get("env_kwargs", {})
        raise CheckpointError(
            f"{path}: the agent was trained on observation {meta['observation_space']} and action "
            f"{meta['action_space']} (env {meta['config'].get('env_id')} with {settings}); this env has "
            f"{observation_space!r} and {action_space!r}: give the env the agent's settings"
        )


def load_agent(
    path: str | os.PathLike[str], observation_space: Any, action_space: Any, device: str = "cpu"
) -> Any:
    """Rebuild the saved agent for an env with these spaces and load its weights (no env needed)."""
    check_agent_spaces(path, observation_space, action_space)
    meta = read_agent_metadata(path)
    config = config_from_json(meta["config"])
    model = inference_algorithm(config, observation_space, action_space, device)
    missing, unexpected = load_model(
        model.policy, str(agent_directory(path) / WEIGHTS), strict=False, device=device
    )
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not fit the policy (missing {missing}, unexpected {unexpected})"
        )
    model.num_timesteps = int(meta["num_timesteps"])
    return model
