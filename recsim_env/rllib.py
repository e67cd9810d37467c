"""Ray RLlib (new API stack) over the batched core: each env runner steps many users in one core.

RLlib's ``SingleAgentEnvRunner`` builds one Gymnasium vector env per runner with ``gym.make_vec``; with
``gym_env_vectorize_mode=VECTOR_ENTRY_POINT`` the env creator returns that vector env itself, so a
runner's ``num_envs_per_env_runner`` users are the rows of one :class:`~recsim_env.vector.RecSimVectorEnv`
(one batched Transformer step for all of them), not one Python env, let alone one process, per user.

- :func:`register_rllib_env` registers :data:`RLLIB_ENV` with ``ray.tune.register_env``; its creator
  :func:`make_rllib_env` builds any registered recsim id (``env_config["env_id"]``, default
  ``recsim/RecSim-v0``) with the rest of ``env_config`` as its kwargs.
- :class:`NextStepVectorEnv` is the thin view RLlib needs: RLlib's runner follows Gymnasium's
  ``NEXT_STEP`` autoreset (the step that ends an episode returns its terminal observation; the next
  call returns the new episode's first observation and ignores the action), while the vector env
  autoresets in the same step. The view returns the terminal observation
  (:attr:`~recsim_env.vector.TensorStep.final_obs`) and, on the next call, steps the finished rows as
  inactive (``step_tensors(..., active=...)``: no event, reward 0), which hands over the new user the
  core already started.
- :func:`ppo_config` is a documented ``PPOConfig`` on that env (docs/scaling.md shows it pointed at a
  Ray cluster with ``ray.init(address=...)``).

Needs the ``rllib`` extra (``pip install 'recsim-env[rllib]'``); without it the functions that need
Ray raise an ImportError naming it. The RLModule sees the observation flattened (RLlib's
``FlattenObservations`` connector: item ids, behaviors and mask as numbers, so the default MLP is a
baseline, not a recommender architecture).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv

from recsim_env.vector import RecSimVectorEnv

if TYPE_CHECKING:  # pragma: no cover
    from ray.rllib.algorithms.ppo import PPOConfig

RLLIB_ENV = "recsim-vector"
"""The name :func:`register_rllib_env` registers with ``ray.tune.register_env``."""
DEFAULT_ENV_ID = "recsim/RecSim-v0"
DEFAULT_ENV_KWARGS: dict[str, Any] = {"action_mode": "candidates", "slate_size": 1}
"""Slates of one among the retrieved candidates: a ``Discrete(C)`` action, RLlib's plainest case."""


def _require_ray() -> None:
    try:
        import ray  # noqa: F401
        import ray.rllib  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"recsim_env.rllib needs Ray RLlib: pip install 'recsim-env[rllib]' ({exc})"
                          ) from exc


class NextStepVectorEnv(VectorEnv[dict[str, np.ndarray], np.ndarray, np.ndarray]):
    """A :class:`RecSimVectorEnv` with ``NEXT_STEP`` autoreset (what RLlib's env runners expect).

    After a row's episode ends (its terminal observation returned, ``terminated`` or ``truncated`` set),
    the next :meth:`step` returns that row's new user's first observation with reward 0 and both flags
    False, and ignores the row's action (the row is stepped inactive). Infos are empty dicts (RLlib
    keeps every info in its episodes; the batched response is in ``venv.core.last_record``).

    Args:
        venv: The vector env to view (its spaces and core are used as they are).
    """

    def __init__(self, venv: RecSimVectorEnv) -> None:
        self.venv = venv
        self.num_envs = venv.num_envs
        self.single_observation_space = venv.single_observation_space
        self.single_action_space = venv.single_action_space
        self.observation_space = venv.observation_space
        self.action_space = venv.action_space
        self.metadata = {**venv.metadata, "autoreset_mode": AutoresetMode.NEXT_STEP}
        self._resetting = torch.zeros(venv.num_envs, dtype=torch.bool, device=venv.device)

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start new users in every row (RLlib passes one seed per runner, or a list: its first)."""
        if isinstance(seed, list):
            seed = seed[0]
        obs, _ = self.venv.reset(seed=seed, options=options)
        self._resetting.zero_()
        return obs, {}

    def step(self, actions: Any) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray,
                                          dict[str, Any]]:
        venv = self.venv
        checked = venv.adapter.check_actions(actions, batch=venv.num_envs)
        out = venv.step_tensors(torch.from_numpy(checked).to(venv.device), validate=False,
                                active=~self._resetting)
        self._resetting = out.done
        # Inactive rows were not stepped: their final_obs is the new user's first observation.
        return (venv._to_numpy(out.final_obs), out.reward.double().cpu().numpy(),
                out.terminated.cpu().numpy().copy(), out.truncated.cpu().numpy().copy(), {})


    def close_extras(self, **kwargs: Any) -> None:
        self.venv.close()


def _flatten_observations(env: Any = None, spaces: Any = None, device: Any = None) -> Any:
    """The env-to-module connector: RLlib's ``FlattenObservations`` (the default MLP takes a vector)."""
    from ray.rllib.connectors.env_to_module import FlattenObservations

    return FlattenObservations()


def make_rllib_env(config: Mapping[str, Any]) -> NextStepVectorEnv:
    """The env creator :func:`register_rllib_env` registers: one vector env of ``config["num_envs"]``.

    ``config`` is RLlib's ``env_config`` (an ``EnvContext``): ``env_id`` (default
    :data:`DEFAULT_ENV_ID`), ``num_envs`` (set by RLlib's runner to ``num_envs_per_env_runner``) and the
    id's kwargs (``model``, ``data`` and any :class:`~recsim_env.config.EnvConfig` field).
    """
    import recsim_env  # noqa: F401  (registers the ids in a fresh Ray worker)

    settings = dict(config)
    env_id = settings.pop("env_id", DEFAULT_ENV_ID)
    num_envs = int(settings.pop("num_envs", 1))
    envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **settings)
    venv = envs.unwrapped
    if not isinstance(venv, RecSimVectorEnv):
        raise ValueError(f"env_id {env_id!r} is not a recsim id (its vector env is {type(venv).__name__})")
    return NextStepVectorEnv(venv)


def register_rllib_env(name: str = RLLIB_ENV) -> str:
    """Register :func:`make_rllib_env` with ``ray.tune.register_env`` under ``name``; returns ``name``."""
    _require_ray()
    from ray.tune.registry import register_env

    register_env(name, make_rllib_env)
    return name


def ppo_config(
    model: str | os.PathLike[str],
    data: str | os.PathLike[str],
    env_id: str = DEFAULT_ENV_ID,
    env_kwargs: Mapping[str, Any] | None = None,
    num_env_runners: int = 2,
    num_envs_per_env_runner: int = 64,
    rollout_fragment_length: int = 32,
    num_epochs: int = 4,
    minibatch_size: int = 512,
    lr: float = 3e-4,
    hidden: tuple[int, ...] = (64, 64),
    seed: int = 0,
) -> PPOConfig:
    """A ``PPOConfig`` (new API stack) that trains on ``env_id`` with many users per env runner.

    Every training iteration collects ``max(1, num_env_runners) * num_envs_per_env_runner *
    rollout_fragment_length`` env steps (the train batch) and takes ``num_epochs`` passes over it in
    minibatches. ``config.build_algo()`` then ``algo.train()`` trains; ``ray.init(address=...)`` first
    runs it on an existing cluster (docs/scaling.md).

    Args:
        model: user-model checkpoint directory (or ``world`` for a synthetic dataset's ground truth);
            made absolute, since Ray workers may start in another directory.
        data: dataset directory (made absolute).
        env_id: a registered recsim id (default ``recsim/RecSim-v0``).
        env_kwargs: the id's settings (default :data:`DEFAULT_ENV_KWARGS`: ``Discrete`` candidates).
        num_env_runners: env runner processes (0: sample in the driver process).
        num_envs_per_env_runner: users stepped together in each runner's one core.
        rollout_fragment_length: steps each runner collects per user before sending.
        num_epochs: PPO passes over each train batch.
        minibatch_size: PPO minibatch size.
        lr: learning rate.
        hidden: hidden layer sizes of the default MLP policy and value networks.
        seed: seed of RLlib (modules, env runners: runner ``i`` resets its env with a seed derived
            from it).
    """
    _require_ray()
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    def absolute(path: str | os.PathLike[str]) -> str:
        return str(path) if str(path) == "world" else str(Path(path).resolve())

    env_config = {"env_id": env_id, "model": absolute(model), "data": absolute(data),
                  **(DEFAULT_ENV_KWARGS if env_kwargs is None else env_kwargs)}
    batch = max(1, num_env_runners) * num_envs_per_env_runner * rollout_fragment_length
    return (
        PPOConfig()
        .environment(register_rllib_env(), env_config=env_config)
        .env_runners(
            num_env_runners=num_env_runners,
            num_envs_per_env_runner=num_envs_per_env_runner,
            gym_env_vectorize_mode=gym.VectorizeMode.VECTOR_ENTRY_POINT,
            rollout_fragment_length=rollout_fragment_length,
            env_to_module_connector=_flatten_observations,
        )
        .training(lr=lr, train_batch_size_per_learner=batch, minibatch_size=min(minibatch_size, batch),
                  num_epochs=num_epochs)
        .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=list(hidden)))
        .debugging(seed=seed)
    )
