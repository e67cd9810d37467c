"""The TorchRL view: a ``torchrl.envs.EnvBase`` over the vector env's torch fast path (extra ``[torchrl]``).

:class:`RecSimTorchRLEnv` is a format conversion over one :class:`~recsim_env.vector.RecSimVectorEnv`
(one core, N rows), as :mod:`recsim_env.sb3` is for SB3: TensorDicts in and out with ``batch_size
[N]`` on the core's device, built from :meth:`~recsim_env.vector.RecSimVectorEnv.step_tensors` (nothing
is copied to the host), and specs converted from the Gymnasium spaces (:func:`spec_from_space`).

Autoreset, TorchRL's way for batched envs. The vector env resets finished rows inside the step that
ended them (``SAME_STEP``). TorchRL expects instead that a step returns the terminal observation under
``"next"`` with ``done`` set, and that the caller then resets the finished rows with a ``"_reset"`` mask
(what ``env.rollout(..., break_when_any_done=False)``, ``step_and_maybe_reset`` and the collectors do).
So :meth:`_step` returns :attr:`~recsim_env.vector.TensorStep.final_obs` and keeps the new users' first
observations; :meth:`_reset` with a partial ``"_reset"`` mask hands those over, without stepping the
core again (the new users were already drawn, from the same generator, in the step). A partial reset
of a row that did not finish is refused: the rows are one simulator, and a running user is not cut
short outside a step. Without a mask (or with every row in it) the reset is a full one.

Seeding: :meth:`set_seed` (TorchRL's) seeds the next full reset as ``reset(seed=...)`` does the vector
env, so the same seed gives the same trajectories (tested).

Example::

    env = RecSimTorchRLEnv(RecSimVectorEnv(256, model="models/synth", data="data/synth",
                                           action_mode="candidates", device="cuda"))
    collector = SyncDataCollector(env, policy, frames_per_batch=256 * 32, total_frames=1_000_000)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from recsim_env.vector import RecSimVectorEnv

try:
    from tensordict import TensorDict, TensorDictBase
    from torchrl.data import Bounded, Categorical, Composite, MultiCategorical, TensorSpec, Unbounded
    from torchrl.envs import EnvBase
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "recsim_env.torchrl_env needs TorchRL: pip install 'recsim-env[torchrl]' "
        f"(torchrl and tensordict; {exc})"
    ) from exc


def spec_from_space(space: spaces.Space[Any], batch: int, device: torch.device) -> TensorSpec:
    """The TorchRL spec of ``batch`` stacked values of the Gymnasium ``space`` (shape ``[batch, ...]``).

    ``Box`` becomes ``Bounded`` (its dtype and bounds), ``Discrete`` a ``Categorical``,
    ``MultiDiscrete`` a ``MultiCategorical``, ``Dict`` a ``Composite`` of its entries.
    """
    if isinstance(space, spaces.Dict):
        return Composite({key: spec_from_space(sub, batch, device) for key, sub in space.spaces.items()},
                         shape=(batch,), device=device)
    if isinstance(space, spaces.Discrete):
        if int(space.start) != 0:
            raise ValueError(f"Discrete spaces must start at 0, got {space}")
        return Categorical(int(space.n), shape=(batch,), device=device, dtype=torch.int64)
    if isinstance(space, spaces.MultiDiscrete):
        return MultiCategorical(torch.as_tensor(space.nvec, dtype=torch.int64), shape=(batch, *space.shape),
                                device=device, dtype=torch.int64)
    if isinstance(space, spaces.Box):
        dtype = torch.from_numpy(np.zeros(0, dtype=space.dtype)).dtype
        low = torch.as_tensor(space.low).to(dtype).expand(batch, *space.shape)
        high = torch.as_tensor(space.high).to(dtype).expand(batch, *space.shape)
        return Bounded(low, high, shape=(batch, *space.shape), device=device, dtype=dtype)
    raise TypeError(f"no TorchRL spec for Gymnasium space {space!r}")


class RecSimTorchRLEnv(EnvBase):
    """TorchRL ``EnvBase`` whose batch of ``N`` envs is the ``N`` rows of one :class:`RecSimVectorEnv`.

    Keys: the observation entries of the vector env's single observation space at the root,
    ``"action"`` (its single action space, batched), ``"reward"`` ``[N, 1]`` float32 and ``"done"``,
    ``"terminated"``, ``"truncated"`` ``[N, 1]`` bool (``terminated``: the user left; ``truncated``:
    ``max_steps``). ``batch_size`` is ``[N]``; ``device`` is the core's.

    Args:
        venv: The vector env to view (its core, spaces and device are used as they are).
        validate: check every action batch on the device before stepping (default True; see
            :meth:`RecSimVectorEnv.step_tensors`). ``False`` is the fast path for policies whose actions
            are valid by construction.
    """

    def __init__(self, venv: RecSimVectorEnv, validate: bool = True) -> None:
        super().__init__(device=venv.device, batch_size=torch.Size([venv.num_envs]))
        self.venv = venv
        self.validate = validate
        n, device = venv.num_envs, venv.device
        self.observation_spec = spec_from_space(venv.single_observation_space, n, device)
        self.action_spec = spec_from_space(venv.single_action_space, n, device)
        self.reward_spec = Unbounded(shape=(n, 1), device=device, dtype=torch.float32)
        flag = Categorical(2, shape=(n, 1), device=device, dtype=torch.bool)
        self.done_spec = Composite(done=flag.clone(), terminated=flag.clone(), truncated=flag.clone(),
                                   shape=(n,), device=device)
        self._seed: int | None = None
        self._next_obs: dict[str, torch.Tensor] | None = None
        self._finished: torch.Tensor | None = None

    def _flags(self, terminated: torch.Tensor, truncated: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"done": (terminated | truncated)[:, None], "terminated": terminated[:, None],
                "truncated": truncated[:, None]}

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs: Any) -> TensorDictBase:
        mask = None if tensordict is None else tensordict.get("_reset", None)
        rows = None if mask is None else mask.reshape(self.venv.num_envs)
        finished = self._finished
        if rows is not None and finished is not None and self._next_obs is not None and bool(
                (rows <= finished).all()):
            obs = self._next_obs  # the users the core started in the step that ended these rows
        elif rows is None or bool(rows.all()):
            obs = self.venv.reset_tensors(self._seed)
            self._seed = None
        else:
            raise ValueError("RecSimTorchRLEnv resets a row only after it finished (the simulator "
                             "starts the next user in the step that ended one) or all rows at once")
        self._finished = torch.zeros(self.venv.num_envs, dtype=torch.bool, device=self.device)
        self._next_obs = obs
        return TensorDict({**obs, **self._flags(self._finished, self._finished)},
                          batch_size=self.batch_size, device=self.device)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        out = self.venv.step_tensors(tensordict.get("action"), validate=self.validate)
        self._next_obs, self._finished = out.obs, out.done
        return TensorDict({**out.final_obs, "reward": out.reward[:, None],
                           **self._flags(out.terminated, out.truncated)},
                          batch_size=self.batch_size, device=self.device)

    def _set_seed(self, seed: int | None) -> None:
        """Seed the next full reset (the rows share the vector env's one generator)."""
        self._seed = None if seed is None else int(seed)

    def close(self, *, raise_if_closed: bool = True) -> None:
        self.venv.close()
        super().close(raise_if_closed=raise_if_closed)
