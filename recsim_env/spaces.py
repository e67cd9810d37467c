"""Action and observation modes: Gymnasium spaces and their batched mapping onto the simulation core.

:class:`SpaceAdapter` is shared by every env view: it owns the *single-env* spaces, validates user
actions, maps a batch of actions to the ``[N, k]`` slate the core steps, builds the batched observation
and computes the action masks. The vector env batches the single spaces with Gymnasium's ``batch_space``.

Action modes:

- ``slate``: ``MultiDiscrete([n_items + 1] * k)``, catalogue item ids; 0 leaves a slot empty.
- ``candidates``: positions among the ``C`` candidates in the observation; ``Discrete(C)`` when ``k = 1``,
  else ``MultiDiscrete([C] * k)``.
- ``embedding``: ``Box(-1, 1, (d,))``, mapped to the ``k`` items with the largest dot product with the
  item embeddings.

Observation modes (``Dict``, integer ``Box``es so SB3 does not one-hot encode ids):

- ``history``: ``history_items`` and ``behaviors`` (``[H]`` int64, the user's most recent events,
  right-aligned, 0 = padding), ``mask`` (``[H]`` int8, 1 for real events) and, in the candidates mode,
  ``candidates`` (``[C]`` int64 item ids).
- ``state``: all of the above plus ``user_state`` (float32, privileged: see
  :meth:`SimulationCore.user_state_vector`). Opt-in: a real recommender never sees it.

No key may shadow a ``torch.nn.ModuleDict`` attribute (``items``, ``keys``, ``values``, ...): SB3's
``MultiInputPolicy`` builds one per observation key and fails on such names.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from recsim_env.config import ACTION_MODES, OBSERVATION_MODES, ChoiceConfig
from recsim_env.core import SimulationCore


class SpaceAdapter:
    """The spaces of one env over a core, and the batched conversions between them and the core.

    Args:
        core: The simulation core (any batch size).
        action_mode: ``slate``, ``candidates`` or ``embedding``.
        observation_mode: ``history`` or ``state``.
        strict: Raise ValueError on a slate that repeats an item (default: the repeat shows nothing).
        mask_rule: The repeat rule the action masks follow (its ``repeat`` and ``repeat_window``);
            default the core's own choice config. Ground-truth fidelity gives the world the simulator's,
            so that a policy is filtered alike in the world and in the simulator.
    """

    def __init__(self, core: SimulationCore, action_mode: str, observation_mode: str, strict: bool = False,
                 mask_rule: ChoiceConfig | None = None) -> None:
        if action_mode not in ACTION_MODES:
            raise ValueError(f"action_mode must be one of {ACTION_MODES}, got {action_mode!r}")
        if observation_mode not in OBSERVATION_MODES:
            raise ValueError(f"observation_mode must be one of {OBSERVATION_MODES}, got {observation_mode!r}")
        if (action_mode == "candidates") != (core.config.candidates is not None):
            raise ValueError("the core retrieves candidates exactly when action_mode is 'candidates'")
        self.core = core
        self.action_mode = action_mode
        self.observation_mode = observation_mode
        self.strict = strict
        self.mask_rule = core.config.choice if mask_rule is None else mask_rule
        self.action_space = self._action_space()
        self.observation_space = self._observation_space()

    # --- spaces -----------------------------------------------------------------------------------
    @property
    def n_candidates(self) -> int:
        return 0 if self.core.config.candidates is None else self.core.config.candidates.n_candidates

    def _action_space(self) -> spaces.Space[Any]:
        k = self.core.slate_size
        if self.action_mode == "slate":
            return spaces.MultiDiscrete(np.full(k, self.core.n_items + 1, dtype=np.int64))
        if self.action_mode == "candidates":
            if k == 1:
                return spaces.Discrete(self.n_candidates)
            return spaces.MultiDiscrete(np.full(k, self.n_candidates, dtype=np.int64))
        return spaces.Box(-1.0, 1.0, shape=(self.core.embedding_dim,), dtype=np.float32)

    def _observation_space(self) -> spaces.Dict:
        H, core = self.core.config.history_len, self.core
        entries: dict[str, spaces.Space[Any]] = {
            "history_items": spaces.Box(0, core.n_items, shape=(H,), dtype=np.int64),
            "behaviors": spaces.Box(0, core.n_behaviors, shape=(H,), dtype=np.int64),
            "mask": spaces.Box(0, 1, shape=(H,), dtype=np.int8),
        }
        if self.action_mode == "candidates":
            entries["candidates"] = spaces.Box(1, core.n_items, shape=(self.n_candidates,), dtype=np.int64)
        if self.observation_mode == "state":
            low, high = core.user_state_bounds()
            entries["user_state"] = spaces.Box(low.astype(np.float32), high.astype(np.float32),
                                               dtype=np.float32)
        return spaces.Dict(entries)

    # --- actions ----------------------------------------------------------------------------------
    def check_actions(self, actions: Any, batch: int) -> np.ndarray:
        """Validate a batch of ``batch`` actions from user code; return it as a numpy array.

        Raises:
            ValueError: wrong shape, wrong dtype, out of range or (embedding) not finite.
        """
        array = np.asarray(actions)
        shape = (batch, *self.action_space.shape) if self.action_space.shape else (batch,)
        if array.shape != shape:
            got, want = (array.shape[1:], shape[1:]) if batch == 1 and array.ndim else (array.shape, shape)
            raise ValueError(f"{self.action_mode} action has shape {got}, expected {want} "
                             f"({self.action_space})")
        if self.action_mode == "embedding":
            if array.dtype.kind not in "fiu":
                raise ValueError(f"embedding action has dtype {array.dtype}, expected a float array")
            if not np.isfinite(array).all() or (np.abs(array) > 1.0).any():
                raise ValueError("embedding action must be finite and within [-1, 1] "
                                 f"(got min {array.min():.3g}, max {array.max():.3g})")
            return array.astype(np.float32)
        if array.dtype.kind not in "iu":
            raise ValueError(f"{self.action_mode} action has dtype {array.dtype}, expected integers")
        high = self.core.n_items if self.action_mode == "slate" else self.n_candidates - 1
        if (array < 0).any() or (array > high).any():
            bad = array[(array < 0) | (array > high)].flat[0]
            raise ValueError(f"{self.action_mode} action value {bad} out of range [0, {high}]")
        return array.astype(np.int64)

    def check_tensor_actions(self, actions: torch.Tensor) -> None:
        """Validate a batch of actions given as a tensor (the torch fast path), without a host sync.

        The dtype is checked on the host (tensor metadata: free). The values are checked by one fused
        bounds check on the tensor's device: on the CPU it raises ValueError naming the first bad value;
        on an accelerator it is a :func:`torch._assert_async` (no host sync), which fails at a later
        kernel launch and leaves the CUDA context unusable, like any out-of-range index on the device
        would. The Gymnasium :meth:`check_actions` path always raises ValueError.

        Raises:
            ValueError: wrong dtype; (CPU) a value out of range or (embedding) not finite.
        """
        if self.action_mode == "embedding":
            if not actions.is_floating_point():
                raise ValueError(f"embedding action has dtype {actions.dtype}, expected a float tensor")
            ok = (actions.abs() <= 1.0).all()  # NaN compares False, so this also rejects NaN
            what = "embedding action must be finite and within [-1, 1]"
        else:
            if actions.is_floating_point() or actions.is_complex() or actions.dtype == torch.bool:
                raise ValueError(f"{self.action_mode} action has dtype {actions.dtype}, expected integers")
            high = self.core.n_items if self.action_mode == "slate" else self.n_candidates - 1
            bad = (actions < 0) | (actions > high)
            ok = ~bad.any()
            what = f"{self.action_mode} action value out of range [0, {high}]"
        if actions.device.type != "cpu":
            torch._assert_async(ok, f"step_tensors: {what}")
            return
        if not bool(ok):
            if self.action_mode == "embedding":
                low, top = float(actions.min()), float(actions.max())
                raise ValueError(f"{what} (got min {low:.3g}, max {top:.3g})")
            value = int(actions[bad].flatten()[0])
            raise ValueError(f"{self.action_mode} action value {value} out of range [0, {high}]")

    def to_slate(self, actions: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``[N, k]`` item ids for a batch of *valid* actions (numpy or tensor, on any device)."""
        core = self.core
        tensor = torch.as_tensor(actions, device=core.device)
        if self.action_mode == "slate":
            slate = tensor.long()
        elif self.action_mode == "candidates":
            assert core.candidates is not None
            positions = tensor.long().reshape(core.n_users, -1)
            slate = core.candidates.gather(1, positions)
        else:
            slate = core.nearest_items(tensor.float(), core.slate_size)
        if self.strict:
            deduped = core.dedupe(slate)
            if bool((deduped != slate).any()):
                row, slot = (deduped != slate).nonzero()[0].tolist()
                raise ValueError(f"slate shows item {int(slate[row, slot])} twice (slot {slot}); strict=True "
                                 "forbids repeated items (default: the repeated slot shows nothing)")
        return slate

    # --- observations -----------------------------------------------------------------------------
    def observe(self) -> dict[str, torch.Tensor]:
        """The batched observation as tensors on the core's device (the torch fast path)."""
        core = self.core
        obs = {
            "history_items": core.history_items,
            "behaviors": core.history_behaviors,
            "mask": core.history_mask.to(torch.int8),
        }
        if self.action_mode == "candidates":
            assert core.candidates is not None
            obs["candidates"] = core.candidates
        if self.observation_mode == "state":
            obs["user_state"] = core.user_state_vector()
        return obs

    def observe_numpy(self) -> dict[str, np.ndarray]:
        """:meth:`observe` copied to host numpy arrays of the spaces' dtypes."""
        spaces_ = self.observation_space.spaces
        return {key: value.detach().cpu().numpy().astype(spaces_[key].dtype, copy=False)
                for key, value in self.observe().items()}

    # --- masks ------------------------------------------------------------------------------------
    def action_masks(self) -> torch.Tensor:
        """``[N, sum(nvec)]`` bool masks in sb3-contrib's MaskablePPO layout (one block per slot).

        In the slate mode the empty slot (id 0) is masked; with the ``mask`` repeat policy of
        :attr:`mask_rule`, items among the user's last ``repeat_window`` consumptions are masked too
        (unless that would leave nothing).
        """
        core = self.core
        mask_repeats, window = self.mask_rule.repeat == "mask", self.mask_rule.repeat_window
        if self.action_mode == "slate":
            allowed = torch.ones(core.n_users, core.n_items + 1, dtype=torch.bool, device=core.device)
            allowed[:, 0] = False
            if mask_repeats:
                if window is None and core.consumed is not None:
                    allowed &= ~core.consumed
                else:
                    recent = core.history_items if window is None else core.history_items[:, -window:]
                    allowed.scatter_(1, recent, False)
                allowed[:, 0] = ~allowed[:, 1:].any(dim=1)
        elif self.action_mode == "candidates":
            assert core.candidates is not None
            allowed = torch.ones_like(core.candidates, dtype=torch.bool)
            if mask_repeats:
                allowed = ~core.repeated_within(core.candidates, window)
                allowed = allowed | ~allowed.any(dim=1, keepdim=True)
        else:
            raise ValueError("action masks exist only for the discrete action modes (slate, candidates)")
        if self.action_mode == "candidates" and core.slate_size == 1:
            return allowed
        return allowed.repeat(1, core.slate_size)

    # --- the oracle -------------------------------------------------------------------------------
    def oracle_scores(self, items: np.ndarray) -> np.ndarray:
        """``[N, m]`` each row's choice utility (:meth:`SimulationCore.choice_utilities`) of ``[N, m]``
        item ids: the utilities the simulated users choose by, repeat policy included; ``-inf`` for id 0
        (an empty slot). Privileged: this is the oracle's view, not a real recommender's."""
        core = self.core
        ids = torch.as_tensor(np.array(items, dtype=np.int64), device=core.device)
        if ids.dim() != 2 or ids.shape[0] != core.n_users:
            raise ValueError(f"oracle_scores takes [{core.n_users}, m] item ids, got shape "
                             f"{tuple(ids.shape)}")
        with torch.no_grad():
            utility = core.choice_utilities(ids.clamp(min=1)).float()
        return torch.where(ids > 0, utility, float("-inf")).cpu().numpy()
