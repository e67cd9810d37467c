"""An SB3 features extractor for the ``history`` observation: item embeddings and a GRU over the history.

SB3 turns a ``Dict`` observation into float tensors; this extractor casts the id fields back to integers,
embeds them (item and behavior embeddings, summed), runs a GRU over each user's real events in order
and, when the observation carries candidates, appends each candidate's embedding and its dot product
with the user vector, so a policy head can rank candidates by affinity. Other ``Box`` fields (if any)
are flattened and appended unchanged.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from agents.obs import BEHAVIORS, CANDIDATES, ITEMS, MASK


def item_embedding(n_items: int, item_dim: int, item_init: np.ndarray | None = None) -> nn.Embedding:
    """The item table of a history encoder (row 0 is padding), optionally started from ``item_init``
    (e.g. the user model's item embeddings), whose shape must be ``(n_items + 1, item_dim)``."""
    items = nn.Embedding(n_items + 1, item_dim, padding_idx=0)
    if item_init is not None:
        if item_init.shape != (n_items + 1, item_dim):
            raise ValueError(f"item_init has shape {item_init.shape}, expected {(n_items + 1, item_dim)}")
        with torch.no_grad():
            items.weight.copy_(torch.as_tensor(item_init, dtype=torch.float32))
    return items

class HistoryExtractor(BaseFeaturesExtractor):
    """Encode a batch of ``history`` observations into one feature vector per user.

    Args:
        observation_space: the env's ``Dict`` observation space (needs ``items``, ``behaviors``,
            ``mask``; ``candidates`` optional).
        item_dim: item and behavior embedding size.
        hidden_dim: GRU state size (the user vector).
        item_init: optional ``[n_items + 1, item_dim]`` initial item embeddings (e.g. from the logs via
            :func:`agents.item_features.log_item_embeddings`); they stay trainable.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Dict,
        item_dim: int = 32,
        hidden_dim: int = 64,
        item_init: np.ndarray | None = None,
    ) -> None:
        spaces: dict[str, gym.spaces.Box] = dict(observation_space.spaces)  # type: ignore[arg-type]
        n_items = int(np.max(spaces[ITEMS].high))
        n_behaviors = int(np.max(spaces[BEHAVIORS].high))
        n_candidates = int(np.prod(spaces[CANDIDATES].shape)) if CANDIDATES in spaces else 0
        self._extra_keys = tuple(k for k in spaces if k not in (ITEMS, BEHAVIORS, MASK, CANDIDATES))
        extra_dim = sum(int(np.prod(spaces[k].shape)) for k in self._extra_keys)
        super().__init__(observation_space, hidden_dim + n_candidates * (item_dim + 1) + extra_dim)
        self.items = item_embedding(n_items, item_dim, item_init)
        self.behaviors = nn.Embedding(n_behaviors + 1, item_dim, padding_idx=0)
        self.gru = nn.GRU(item_dim, hidden_dim, batch_first=True)
        self.query = nn.Linear(hidden_dim, item_dim)
        self.user_dim = hidden_dim
        self.item_dim = item_dim
        self.n_candidates = n_candidates

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        items = observations[ITEMS].long()
        behaviors = observations[BEHAVIORS].long()
        real = (observations[MASK] > 0.5) & (items > 0)
        # Real events to the front in their order (whatever side the env pads), for packing.
        order = torch.sort((~real).to(torch.int8), dim=1, stable=True).indices
        real = torch.gather(real, 1, order)
        items = torch.gather(items, 1, order) * real
        behaviors = torch.gather(behaviors, 1, order) * real
        lengths = real.sum(dim=1)
        x = self.items(items) + self.behaviors(behaviors)
        packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        _, last = self.gru(packed)
        user = last[0] * (lengths > 0).unsqueeze(1)  # an empty history encodes to zero
        parts = [user]
        if self.n_candidates:
            candidates = self.items(observations[CANDIDATES].long().reshape(len(user), -1))
            affinity = torch.einsum("bcd,bd->bc", candidates, self.query(user))
            parts += [candidates.flatten(1), affinity]
        parts += [observations[k].float().flatten(1) for k in self._extra_keys]
        return torch.cat(parts, dim=1)

    def split(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The user vectors ``[B, hidden_dim]`` and candidate embeddings ``[B, C, item_dim]``."""
        user = features[:, : self.user_dim]
        end = self.user_dim + self.n_candidates * self.item_dim
        return user, features[:, self.user_dim : end].reshape(len(features), self.n_candidates, self.item_dim)
