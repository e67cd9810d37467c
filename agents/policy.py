"""The one batched policy protocol, and the slate selection every scoring baseline shares.

A policy is anything with Stable-Baselines3's ``predict``: it maps a batch of observations to a batch of
actions. SB3 models (PPO, MaskablePPO, DQN, ...) satisfy it as they are, and so do the baselines in
:mod:`agents.baselines`, so one evaluator runs both (see :func:`act`, the name ``DESIGN.md`` uses).

Baselines are written once over *choices*: the things an action picks per slate slot. In ``slate`` mode a
choice is a catalogue item; in ``candidates`` mode it is a position among the candidates the env
retrieved this step. :class:`ActionLayout` maps choices to item ids (so a baseline scores items, whatever
the mode) and a chosen ``[B, k]`` index array back to the env's action format. :func:`select_slate` then
turns scores into ``k`` distinct, unmasked choices per row; it is the only place slates are assembled.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from agents.obs import CANDIDATES
from user_models.errors import InputError

ActionMode = Literal["slate", "candidates", "embedding"]
Observation = Mapping[str, np.ndarray]
"""A batched ``history`` observation: arrays with a leading batch dimension (see :mod:`agents.obs`)."""


@runtime_checkable
class Policy(Protocol):
    """Anything that maps a batch of observations to a batch of actions, SB3-style."""

    def predict(
        self,
        observation: Any,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]: ...


@runtime_checkable
class OnlinePolicy(Policy, Protocol):
    """A policy that learns while it acts (a bandit): the evaluator reports each step's outcome."""

    def observe(self, rewards: np.ndarray, chosen: np.ndarray, dones: np.ndarray) -> None:
        """Feedback for the last ``predict``: ``[B]`` rewards, ``[B]`` chosen slot (-1: none), dones."""
        ...


def act(
    policy: Policy,
    observation: Any,
    state: tuple[np.ndarray, ...] | None = None,
    episode_start: np.ndarray | None = None,
    deterministic: bool = False,
    action_masks: np.ndarray | None = None,
) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
    """Call ``policy.predict``, passing ``action_masks`` to the policies whose ``predict`` takes them.

    MaskablePPO and the baselines accept masks; plain SB3 models do not, and get none.
    """
    if action_masks is not None and "action_masks" in inspect.signature(policy.predict).parameters:
        return policy.predict(  # type: ignore[call-arg]
            observation, state, episode_start, deterministic, action_masks=action_masks
        )
    return policy.predict(observation, state, episode_start, deterministic)


@dataclass(frozen=True)
class ActionLayout:
    """How an env's action encodes a slate, so baselines can work in any discrete action mode.

    Attributes:
        mode: ``slate`` (each slot holds a catalogue item) or ``candidates`` (each slot holds a position
            among ``obs["candidates"]``). ``embedding`` mode has no discrete choices; baselines refuse it.
        slate_size: ``k``, the number of slots.
        n_choices: choices per slot: the size of each ``MultiDiscrete`` dimension (or of ``Discrete``).
            In ``slate`` mode the choice *is* the item id (``n_items + 1`` choices; 0 = an empty slot,
            never picked while a real item is available).
        discrete: the action space is ``Discrete`` (``k = 1`` in candidates mode): actions are ``[B]``.
    """

    mode: ActionMode
    slate_size: int
    n_choices: int
    discrete: bool = False

    def __post_init__(self) -> None:
        if self.mode == "embedding":
            raise InputError(
                "baseline policies need a discrete action mode (slate or candidates), not embedding"
            )
        if self.slate_size < 1 or self.slate_size > self.n_choices:
            raise InputError(f"slate size {self.slate_size} must be in [1, {self.n_choices}] (the choices)")
        if self.discrete and self.slate_size != 1:
            raise InputError("a Discrete action space holds one choice; slate size must be 1")

    @classmethod
    def from_space(cls, action_space: Any, mode: str) -> ActionLayout:
        """The layout of an env's (single) action space in action mode ``mode``."""
        from gymnasium import spaces

        if isinstance(action_space, spaces.Discrete):
            return cls(mode, 1, int(action_space.n), discrete=True)  # type: ignore[arg-type]
        if isinstance(action_space, spaces.MultiDiscrete):
            nvec = np.asarray(action_space.nvec).ravel()  # slate mode: choice = item id, 0 an empty slot
            return cls(mode, len(nvec), int(nvec[0]))  # type: ignore[arg-type]
        return cls(mode, 1, 1)  # type: ignore[arg-type]  # embedding mode: __post_init__ raises

    def choice_items(self, obs: Observation, batch_size: int) -> np.ndarray:
        """``[B, n_choices]`` item id behind each choice (0 where a candidate slot is empty)."""
        if self.mode == "candidates":
            return np.asarray(obs[CANDIDATES], dtype=np.int64).reshape(batch_size, self.n_choices)
        ids = np.arange(self.n_choices, dtype=np.int64)
        return np.broadcast_to(ids, (batch_size, self.n_choices))

    def valid(self, items: np.ndarray, action_masks: np.ndarray | None) -> np.ndarray:
        """``[B, n_choices]`` bool: choices that name a real item and that every slot's mask allows."""
        ok = items > 0
        if action_masks is not None:
            masks = np.asarray(action_masks, dtype=bool).reshape(items.shape[0], -1)
            if masks.shape[1] != self.slate_size * self.n_choices and masks.shape[1] != self.n_choices:
                raise ValueError(
                    f"action mask has {masks.shape[1]} entries per row; expected {self.n_choices} "
                    f"or {self.slate_size} x {self.n_choices}"
                )
            ok = ok & masks.reshape(items.shape[0], -1, self.n_choices).all(axis=1)
        return ok

    def encode(self, chosen: np.ndarray) -> np.ndarray:
        """The env action for ``[B, k]`` chosen choice indices."""
        chosen = chosen.astype(np.int64, copy=False)
        return chosen[:, 0] if self.discrete else chosen


def select_slate(
    scores: np.ndarray,
    valid: np.ndarray,
    slate_size: int,
    rng: np.random.Generator,
    epsilon: float = 0.0,
) -> np.ndarray:
    """Pick ``slate_size`` distinct valid choices per row, best score first.

    Each slot takes the highest-scoring valid choice not yet in the slate; with probability ``epsilon``
    (per row and slot) it takes a uniformly random one instead. Ties break uniformly at random, so
    equal scores do not favour low ids. Rows with fewer valid choices than slots are completed with
    invalid-but-distinct choices (the env shows nothing there), so the slate is always well formed.

    Args:
        scores: ``[B, M]`` float scores, higher is better (``-inf`` allowed).
        valid: ``[B, M]`` bool, which choices may be picked.
        slate_size: ``k``.
        rng: source of tie-breaking and exploration noise.
        epsilon: per-slot probability of a uniformly random valid choice.

    Returns:
        ``[B, k]`` int64 choice indices, distinct within each row.
    """
    batch, n_choices = scores.shape
    # Tie-breaking noise far below any real score gap; invalid choices sink to the bottom.
    noise = rng.random((batch, n_choices)) * 1e-9
    work = np.where(valid, np.nan_to_num(scores.astype(np.float64), neginf=-1e300) + noise, -np.inf)
    rows = np.arange(batch)
    chosen = np.empty((batch, slate_size), dtype=np.int64)
    available = valid.copy()
    taken = np.zeros_like(valid)
    for slot in range(slate_size):  # a loop over the k slots, never over users
        best = np.argmax(work, axis=1)
        if epsilon > 0.0:
            explore = rng.random(batch) < epsilon
            random_pick = _uniform_choice(available, rng)
            best = np.where(explore & available.any(axis=1), random_pick, best)
        # Rows that ran out of valid choices take any choice not yet in their slate.
        exhausted = ~available.any(axis=1)
        if exhausted.any():
            best[exhausted] = np.argmax(~taken[exhausted], axis=1)
        chosen[:, slot] = best
        work[rows, best] = -np.inf
        available[rows, best] = False
        taken[rows, best] = True
    return chosen


def _uniform_choice(available: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``[B]`` a uniformly random available index per row (argmax of masked uniform noise)."""
    return np.argmax(np.where(available, rng.random(available.shape), -1.0), axis=1)
