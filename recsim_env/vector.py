"""``RecSimVectorEnv``: N simulated users as one Gymnasium vector env, a thin view over the core.

The N users are the N rows of one :class:`~recsim_env.core.SimulationCore`; a step is one batched core
step (no Python loop over users), and the single-user :class:`~recsim_env.env.RecSimEnv` is the same
core with N = 1, so both views share every line of the dynamics.

Two APIs step the same users:

- the Gymnasium API (:meth:`RecSimVectorEnv.reset`, :meth:`RecSimVectorEnv.step`): numpy in, numpy out,
  actions validated; the only place where tensors are copied to the host;
- the torch fast path (:meth:`RecSimVectorEnv.reset_tensors`, :meth:`RecSimVectorEnv.step_tensors`):
  tensors in, tensors out, on the core's device, for trainers that keep the whole loop on the device.

Autoreset mode: ``SAME_STEP``. A row that terminates or truncates is reset inside the step that ended it;
the returned observation is the new user's first one and the terminal observation comes back beside it
(``info["final_obs"]``, or :attr:`TensorStep.final_obs`). We chose it over ``NEXT_STEP`` because

1. every call steps every row, so no row spends a step (and its action) on a reset: on-device trainers
   need no "this transition was a reset" mask and throughput counts only real user-steps;
2. it is exactly SB3's ``VecEnv`` contract (``done`` with the terminal observation in the info and the
   reset observation returned), so :mod:`recsim_env.sb3` is a format conversion, not a second state
   machine;
3. a reset is a Transformer prefill; doing it for the finished rows right away keeps the batch's rows
   busy on the next step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from recsim_env.config import WORLD_MODEL, EnvConfig
from recsim_env.core import StepRecord
from recsim_env.factory import build_env_core, cascade_dataset, load_dataset, world_config
from recsim_env.render.env_view import CoreRenderer
from recsim_env.render.frame import SessionFrame
from recsim_env.render.pygame_renderer import RENDER_FPS
from recsim_env.render_text import format_step
from user_models.data.artifact import SequenceDataset
from user_models.protocol import UserModel

PathLike = str | os.PathLike[str]

RESPONSE_KEYS: tuple[str, ...] = tuple(f.name for f in fields(StepRecord))
"""Keys of the per-row step response in ``info`` (the fields of :class:`StepRecord`, as in RecSimEnv)."""


@dataclass(frozen=True)
class TensorStep:
    """One batched step on the torch fast path; every tensor is ``[N, ...]`` on the core's device.

    Attributes:
        obs: The observation after the step; rows that finished already show their new user.
        reward: ``[N]`` float32 rewards of the step.
        terminated: ``[N]`` bool, the user left.
        truncated: ``[N]`` bool, the episode reached ``max_steps``.
        final_obs: The observation before finished rows were reset (meaningful where :attr:`done`; equal
            to :attr:`obs` elsewhere). This is the terminal observation to bootstrap from.
        response: The full step (chosen slot, item, behavior, probabilities, patience, ...).
    """

    obs: dict[str, torch.Tensor]
    reward: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    final_obs: dict[str, torch.Tensor]
    response: StepRecord

    @property
    def done(self) -> torch.Tensor:
        """``[N]`` bool: the row's episode ended this step (and the row was reset)."""
        return self.terminated | self.truncated


class RecSimVectorEnv(VectorEnv[dict[str, np.ndarray], np.ndarray, np.ndarray]):
    """Recommend slates to ``num_envs`` simulated users at once.

    ## Spaces, rewards, episode end
    Each row is one :class:`~recsim_env.env.RecSimEnv` (see its env card): ``single_action_space`` and
    ``single_observation_space`` are that env's spaces, ``action_space`` and ``observation_space`` their
    batches. The env truncates itself at ``max_steps`` (a native vector env gets no TimeLimit wrapper).

    ## Autoreset
    ``metadata["autoreset_mode"] = AutoresetMode.SAME_STEP`` (see the module docstring for why). Only
    the rows that finished are reset (a reset is a Transformer prefill). For those rows the returned
    ``info`` follows :class:`gymnasium.vector.SyncVectorEnv` in the same mode: ``final_obs`` (an object
    array, the terminal observation dict of row ``i`` at index ``i``) and ``final_info`` (the response of
    the last step) with their ``_final_obs`` / ``_final_info`` masks, and the reset info at the top level.

    ## Info
    The top-level ``info`` holds, per key of :class:`~recsim_env.core.StepRecord` (``slate``,
    ``choice_probs``, ``position``, ``item``, ``behavior``, ...), an ``[N, ...]`` array with a ``_key``
    mask of the rows whose top-level info is the step response (rows that did not finish); finished rows
    carry the reset info (``patience`` and ``history_length`` of the new user) instead. ``reset`` returns
    ``patience`` and ``history_length`` for every row.

    ## Arguments
    - ``num_envs``: N, the number of users stepped together.
    - ``model``, ``data``, ``config`` and every other keyword argument: as for
      :class:`~recsim_env.env.RecSimEnv` (the fields of :class:`~recsim_env.config.EnvConfig`).
    - ``render_mode``: None, ``"ansi"``, ``"rgb_array"`` or ``"human"`` (as for RecSimEnv; the pygame
      modes need the ``viz`` extra, and ``human`` draws on every :meth:`reset` and :meth:`step`);
      :meth:`render` draws row :attr:`render_row` and returns a tuple of one frame.
    - ``render_row``: which row :meth:`render` draws (default 0; may be changed at any time).

    ## Version history
    - v0: initial version.
    """

    metadata = {"render_modes": ["ansi", "human", "rgb_array"], "render_fps": RENDER_FPS,
                "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        num_envs: int,
        model: PathLike | UserModel,
        data: PathLike | SequenceDataset,
        config: EnvConfig | None = None,
        render_mode: str | None = None,
        render_row: int = 0,
        **settings: Any,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got "
                             f"{render_mode!r}")
        self.config = EnvConfig.from_mapping(settings, "RecSimVectorEnv", base=config or EnvConfig())
        dataset = load_dataset(data)
        self.core, self.adapter = build_env_core(model, dataset, self.config, n_users=num_envs)
        self.num_envs = num_envs
        self.device = self.core.device
        self.single_action_space = self.adapter.action_space
        self.single_observation_space = self.adapter.observation_space
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.render_mode = render_mode
        self.render_row = render_row
        self._view = CoreRenderer(self.core, dataset, None if render_mode == "ansi" else render_mode,
                                  fps=self.metadata["render_fps"], autoreset=True)
        # Simulated users are numbered in arrival order (on the device: the fast path never syncs).
        # A step's frame shows the users who took it, even in rows that were reset right after.
        self._users = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self._step_users = self._users
        self._next_user = torch.zeros((), dtype=torch.long, device=self.device)
        self._stepped = False
        self._seeded = False
        self._started = False

    # --- torch fast path --------------------------------------------------------------------------
    def reset_tensors(self, seed: int | None = None) -> dict[str, torch.Tensor]:
        """Start new users in every row; return the observation as tensors on the device.

        ``seed`` (or, the first time, fresh entropy) re-seeds the core's generator exactly as
        :meth:`RecSimEnv.reset` does, so a batch of one reproduces the single env.
        """
        super().reset(seed=seed)
        if seed is not None or not self._seeded:
            self.core.manual_seed(int(self.np_random.integers(0, 2**63 - 1)))
            self._seeded = True
        self.core.reset()
        self._started = True
        self._users = self._next_user + torch.arange(self.num_envs, device=self.device)
        self._next_user = self._next_user + self.num_envs
        self._stepped = False
        return self.adapter.observe()

    def step_tensors(self, actions: torch.Tensor, validate: bool = True, active: torch.Tensor | None = None
                     ) -> TensorStep:
        """Step every row with a batch of actions given as a tensor; nothing leaves the device.

        Args:
            actions: ``[N, ...]`` actions of :attr:`single_action_space` on any device.
            active: ``[N]`` bool, the rows to step (default: all). An inactive row is left as it is (no
                event, reward 0, not done) and its action is ignored; this is how a ``NEXT_STEP`` view
                (:mod:`recsim_env.rllib`) spends the call after a row finished on handing over the new
                user instead of stepping it.
            validate: check the actions first (default). The shape and dtype are checked on the host
                (tensor metadata); the values by one fused bounds check on the device, which adds no
                host sync: on the CPU a bad value (item -7 or 10000, a float action, a NaN embedding)
                raises ValueError; on an accelerator it is a ``torch._assert_async`` device assert (it
                fails at a later kernel launch and leaves the CUDA context unusable). ``validate=False``
                is the fast path for trainers whose actions are valid by construction (sampled from
                the action space or an argmax over it): only the shape is checked, and an invalid
                value gives undefined results (an out-of-range id may raise an ``IndexError`` or show
                a wrong item). :meth:`step` always validates on the host.

        Raises:
            ValueError: wrong shape or dtype; a bad value (CPU, ``validate=True``).
        """
        if not self._started:
            raise RuntimeError("call reset() or reset_tensors() before stepping")
        expected = self.action_space.shape
        if tuple(actions.shape) != expected:
            raise ValueError(f"actions have shape {tuple(actions.shape)}, expected {expected} "
                             f"({self.single_action_space} x {self.num_envs})")
        if validate:
            self.adapter.check_tensor_actions(actions)
        record = self.core.step(self.adapter.to_slate(actions),
                                None if active is None else active.to(self.device, torch.bool))
        final_obs = self.adapter.observe()
        done = record.terminated | record.truncated
        self.core.reset(done)
        self._step_users = self._users
        self._users = torch.where(done, self._next_user + done.long().cumsum(0) - 1, self._users)
        self._next_user = self._next_user + done.long().sum()
        self._stepped = True
        return TensorStep(self.adapter.observe(), record.reward, record.terminated, record.truncated,
                          final_obs, record)

    def action_masks_tensor(self) -> torch.Tensor:
        """``[N, mask_len]`` bool valid-action masks on the device (discrete action modes)."""
        return self.adapter.action_masks()

    # --- Gymnasium API ----------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start new users in every row (see :meth:`reset_tensors` for seeding)."""
        if seed is not None and not isinstance(seed, int | np.integer):
            raise ValueError(f"seed must be an int or None (the rows share one generator), got {seed!r}")
        obs = self.reset_tensors(None if seed is None else int(seed))
        info = {"patience": self.core.patience.cpu().numpy().copy(),
                "history_length": self.core.history_lengths.cpu().numpy().copy()}
        if self.render_mode == "human":
            self.render()
        return self._to_numpy(obs), info

    def step(
        self, actions: Any
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Validate ``actions`` (``[N, ...]`` of :attr:`single_action_space`) and step every row."""
        if not self._started:
            raise RuntimeError("call reset() before step()")
        checked = self.adapter.check_actions(actions, batch=self.num_envs)
        out = self.step_tensors(torch.from_numpy(checked).to(self.device), validate=False)
        terminated = out.terminated.cpu().numpy().copy()
        truncated = out.truncated.cpu().numpy().copy()
        reward = out.reward.double().cpu().numpy()
        infos = self._step_infos(out, terminated | truncated)
        if self.render_mode == "human":
            self.render()
        return self._to_numpy(out.obs), reward, terminated, truncated, infos

    def action_masks(self) -> np.ndarray:
        """``[N, mask_len]`` valid-action masks for sb3-contrib's MaskablePPO (discrete action modes)."""
        return self.action_masks_tensor().cpu().numpy().copy()

    def oracle_scores(self, items: np.ndarray) -> np.ndarray:
        """``[N, m]`` the current users' own choice utilities of ``[N, m]`` item ids (privileged; see
        :meth:`recsim_env.spaces.SpaceAdapter.oracle_scores`)."""
        return self.adapter.oracle_scores(items)

    # Gymnasium < 1.3 (what Ray pins) types the frame as a bare TypeVar, which no concrete type overrides.
    def render(self) -> tuple[str | np.ndarray, ...] | None:  # type: ignore[override,unused-ignore]
        """Row :attr:`render_row`'s last step (a tuple of one frame: text or ``H x W x 3`` uint8).

        None without a render mode, and in ``human`` mode (the frame is shown in the window).
        """
        if self.render_mode is None:
            return None
        if not 0 <= self.render_row < self.num_envs:
            raise ValueError(f"render_row {self.render_row} out of range [0, {self.num_envs})")
        if self.render_mode != "ansi":
            image = self._view.render(self.session_frame(self.render_row))
            return None if image is None else (image,)
        record = self.core.last_record
        if record is None or not self._stepped:
            return (f"new user, history of {int(self.core.history_lengths[self.render_row])} events\n",)
        return (format_step(record.row(self.render_row), self.core.behavior_names),)

    def session_frame(self, row: int, policy: str = "") -> SessionFrame:
        """Row ``row``'s last step (or its new user, right after :meth:`reset`) as a SessionFrame.

        A row that finished in the last step shows that step of the user who left, though the row
        already holds the next user (``SAME_STEP`` autoreset). ``user_id`` and ``episode`` are the
        user's arrival number in this env.
        """
        if not self._started:
            raise RuntimeError("call reset() before session_frame()")
        user = int((self._step_users if self._stepped else self._users)[row])
        return self._view.frame(row, after_step=self._stepped, user_id=user, episode=user, policy=policy)

    def close_extras(self, **kwargs: Any) -> None:
        # Gymnasium's __del__ closes an env whose __init__ raised (bad settings) before the view existed.
        view = self.__dict__.get("_view")
        if view is not None:
            view.close()

    # --- numpy conversion -------------------------------------------------------------------------
    def _to_numpy(self, obs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """Host copies (never views of device buffers) in the dtypes of the observation space."""
        space = self.single_observation_space
        assert isinstance(space, spaces.Dict)
        return {key: np.array(value.detach().cpu().numpy(), dtype=space[key].dtype)
                for key, value in obs.items()}

    def _step_infos(self, out: TensorStep, done: np.ndarray) -> dict[str, Any]:
        """The Gymnasium ``SAME_STEP`` info of a step (see the class docstring)."""
        response = {key: np.array(getattr(out.response, key).detach().cpu().numpy()) for key in RESPONSE_KEYS}
        running = ~done
        infos: dict[str, Any] = {}
        for key, value in response.items():
            infos[key] = value
            infos[f"_{key}"] = running
        if done.any():
            rows = np.flatnonzero(done)
            final_obs = self._to_numpy(out.final_obs)
            array = np.full(self.num_envs, None, dtype=object)
            for i in rows:
                array[i] = {key: value[i] for key, value in final_obs.items()}
            infos["final_obs"], infos["_final_obs"] = array, done
            final_info: dict[str, Any] = {}
            for key, value in response.items():
                final_info[key] = np.where(done.reshape(-1, *[1] * (value.ndim - 1)), value,
                                           np.zeros_like(value))
                final_info[f"_{key}"] = done
            infos["final_info"], infos["_final_info"] = final_info, done
            patience = self.core.patience.cpu().numpy()
            infos["patience"] = np.where(done, patience, response["patience"])
            infos["_patience"] = np.ones_like(done)
            lengths = self.core.history_lengths.cpu().numpy()
            infos["history_length"] = np.where(done, lengths, 0)
            infos["_history_length"] = done
        return infos


def make_world_vector_env(num_envs: int, data: PathLike | SequenceDataset, config: EnvConfig | None = None,
                          render_mode: str | None = None, render_row: int = 0, **settings: Any
                          ) -> RecSimVectorEnv:
    """``RecSim-World-v0`` as a vector env: the synthetic ground-truth world that generated ``data``."""
    return RecSimVectorEnv(num_envs, WORLD_MODEL, data, world_config(config, **settings),
                           render_mode=render_mode, render_row=render_row)


def make_cascade_world_vector_env(num_envs: int, data: PathLike | SequenceDataset,
                                  config: EnvConfig | None = None, render_mode: str | None = None,
                                  render_row: int = 0, **settings: Any) -> RecSimVectorEnv:
    """``RecSim-CascadeWorld-v0`` as a vector env (see :func:`recsim_env.env.make_cascade_world_env`)."""
    return RecSimVectorEnv(num_envs, WORLD_MODEL, cascade_dataset(data), world_config(config, **settings),
                           render_mode=render_mode, render_row=render_row)
