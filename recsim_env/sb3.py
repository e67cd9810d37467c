"""The SB3 adapter: Stable-Baselines3's ``VecEnv`` over the batched simulation core.

SB3 rejects Gymnasium ``VectorEnv``s, and wrapping N single envs in a ``DummyVecEnv`` would step users one
by one in Python. :class:`RecSimVecEnv` is instead a format conversion over a
:class:`~recsim_env.vector.RecSimVectorEnv` (one core, N rows): that env already autoresets in the same
step (``SAME_STEP``), which is SB3's contract, so the adapter only collapses ``terminated`` and
``truncated`` into SB3's ``done`` and builds the per-env ``info`` list that ``DummyVecEnv`` would:

- finished envs: ``terminal_observation`` (the observation before the reset) and ``TimeLimit.truncated``
  (``truncated and not terminated``), which SB3's on-policy algorithms use to bootstrap time-outs;
- envs still running: an empty dict (building N full response dicts per step would cost more than the
  step itself; :attr:`RecSimVecEnv.last_infos` has the batched response of the last step).

The rows are not separate Python envs, so the per-env introspection methods are defined over the batch:
``env_method("action_masks")`` returns one mask per env (what sb3-contrib's MaskablePPO asks for),
``env_method("render")`` renders each requested row, ``get_attr`` reads an attribute of the vector env
(``observation_space`` / ``action_space`` mean the single-env spaces, as in SB3), ``set_attr`` sets it
for all envs, and ``env_is_wrapped`` is False (there are no per-env Gymnasium wrappers).
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecMonitor
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from recsim_env.config import EnvConfig
from recsim_env.vector import RecSimVectorEnv
from user_models.data.artifact import SequenceDataset
from user_models.protocol import UserModel

_SINGLE_SPACES = {"observation_space": "single_observation_space", "action_space": "single_action_space"}
"""SB3 asks each env for its spaces; the vector env keeps the single-env spaces under these names."""


class RecSimVecEnv(VecEnv):
    """SB3 ``VecEnv`` whose ``num_envs`` envs are the rows of one :class:`RecSimVectorEnv`.

    Args:
        venv: The vector env to adapt (its core, spaces and render mode are used as they are).

    Example::

        venv = RecSimVecEnv(RecSimVectorEnv(16, model=model, data=dataset, action_mode="candidates"))
        model = MaskablePPO("MultiInputPolicy", VecMonitor(venv)).learn(10_000)
    """

    def __init__(self, venv: RecSimVectorEnv) -> None:
        self.venv = venv
        self.last_infos: dict[str, Any] = {}
        self._actions: np.ndarray | None = None
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self.metadata = {**venv.metadata, "render_modes": list(venv.metadata["render_modes"])}

    # --- stepping ---------------------------------------------------------------------------------
    def reset(self) -> VecEnvObs:
        """Start new users in every row; seeds from :meth:`seed` apply once, as in ``DummyVecEnv``.

        The rows share one generator, so the seed of env 0 seeds the batch (SB3's per-env seeds are
        ``seed + i``, so the batch's randomness is still a function of ``seed``). Options are not
        supported (a reset takes none).
        """
        if any(self._options):
            raise ValueError(f"RecSim envs take no reset options, got {self._options[0]}")
        obs, info = self.venv.reset(seed=self._seeds[0])
        self.reset_infos = [{key: value[i] for key, value in info.items()} for i in range(self.num_envs)]
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_async() must be called before step_wait()")
        actions, self._actions = self._actions, None
        obs, reward, terminated, truncated, infos = self.venv.step(actions)
        dones = terminated | truncated
        self.last_infos = infos
        env_infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if dones.any():
            final_obs = infos["final_obs"]
            for i in np.flatnonzero(dones):
                env_infos[i]["terminal_observation"] = final_obs[i]
                env_infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        return obs, reward.astype(np.float32), dones, env_infos

    def close(self) -> None:
        self.venv.close()

    def oracle_scores(self, items: np.ndarray) -> np.ndarray:
        """``[num_envs, m]`` each env's user's own choice utilities of ``[num_envs, m]`` item ids
        (privileged; what the ``oracle`` baseline ranks by)."""
        return self.venv.oracle_scores(items)

    # --- per-env introspection over the batch -----------------------------------------------------
    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self.venv, _SINGLE_SPACES.get(attr_name, attr_name))
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        if list(self._get_indices(indices)) != list(range(self.num_envs)):
            raise ValueError(f"set_attr({attr_name!r}) must target every env: the envs are rows of one "
                             "simulator and share its attributes")
        setattr(self.venv, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        rows = list(self._get_indices(indices))
        if method_name == "action_masks":
            masks = self.venv.action_masks(*method_args, **method_kwargs)
            return [masks[i] for i in rows]
        if method_name == "render":
            frames = []
            for i in rows:
                self.venv.render_row = i
                rendered = self.venv.render()
                frames.append(None if rendered is None else rendered[0])
            return frames
        raise AttributeError(f"env_method({method_name!r}) is not available: the envs are rows of one "
                             "RecSimVectorEnv; call its batched methods through .venv instead")

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]


def make_sb3_vec_env(
    model: str | os.PathLike[str] | UserModel,
    data: str | os.PathLike[str] | SequenceDataset,
    config: EnvConfig,
    n_envs: int,
    seed: int,
) -> VecMonitor:
    """An SB3 ``VecEnv`` of ``n_envs`` simulated users on one batched core, seeded with ``seed``.

    :class:`RecSimVecEnv` over a :class:`RecSimVectorEnv` of ``config``, in a ``VecMonitor`` that
    records episode returns (what SB3's logger and ``EvalCallback`` read).
    """
    venv = RecSimVecEnv(RecSimVectorEnv(n_envs, model, data, config))
    venv.seed(seed)
    return VecMonitor(venv)
