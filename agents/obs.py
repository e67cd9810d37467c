"""The ``history`` observation as policies read it: key names and a batched, oldest-first view.

The env (``recsim_env``) defines the observation; this module is the single place the agents name its
keys, so a change there is a change here only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

ITEMS = "history_items"
"""``[L]`` int item ids of the user's recent events (0 = padding)."""
BEHAVIORS = "behaviors"
"""``[L]`` int behavior ids of those events (0 = padding / no response)."""
MASK = "mask"
"""``[L]`` 1 where the history slot holds a real event."""
CANDIDATES = "candidates"
"""``[C]`` int item ids the env retrieved this step (``candidates`` action mode; 0 = empty slot)."""


def as_batch(observation: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], bool]:
    """The observation with a leading batch dimension, and whether one was added (a single obs)."""
    obs = {key: np.asarray(value) for key, value in observation.items()}
    single = obs[ITEMS].ndim == 1
    if single:
        obs = {key: value[None] for key, value in obs.items()}
    return obs, single


@dataclass(frozen=True)
class HistoryBatch:
    """Recent events of a batch of users, oldest first and right-padded (real events at the front).

    Attributes:
        items: ``[B, L]`` int64 item ids, 0 after each row's length.
        behaviors: ``[B, L]`` int64 behavior ids, 0 after each row's length.
        lengths: ``[B]`` int64 real events per row.
    """

    items: np.ndarray
    behaviors: np.ndarray
    lengths: np.ndarray


def history_batch(obs: Mapping[str, np.ndarray]) -> HistoryBatch:
    """Compact each row's real events to the front, keeping their order, whatever side the env pads."""
    items = np.asarray(obs[ITEMS], dtype=np.int64)
    behaviors = np.asarray(obs[BEHAVIORS], dtype=np.int64)
    real = np.asarray(obs[MASK]).astype(bool) & (items > 0)
    order = np.argsort(~real, axis=1, kind="stable")
    items = np.where(np.take_along_axis(real, order, 1), np.take_along_axis(items, order, 1), 0)
    behaviors = np.where(np.take_along_axis(real, order, 1), np.take_along_axis(behaviors, order, 1), 0)
    return HistoryBatch(items, behaviors, real.sum(axis=1).astype(np.int64))
