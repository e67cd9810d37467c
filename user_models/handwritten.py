"""A tiny hand-written user: the user protocol with probabilities you can compute on paper.

No training, no randomness. Each item has a fixed base logit, a genre and a fixed response distribution;
the only state is the user's last event:

- ``item_logits = base_logit[item] + genre_bonus * [genre(item) == genre(last item)]`` (no bonus for a
  user without history),
- ``behavior_probs = behavior_table[item]`` (independent of the history),
- ``end_prob = end_prob_after[last behavior]`` (index 0: no history yet).

Item embeddings are one-hot genres. A user is saved as a small JSON file (``{"handwritten": {...}}``,
see :meth:`HandwrittenUser.save`), which the env factory accepts wherever a checkpoint is expected. Tests
use it to check the simulation core against hand-computed
numbers, and the long-term configuration uses its "clickbait" catalogue (see :func:`clickbait_user`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from user_models.errors import InputError
from user_models.protocol import History


@dataclass(frozen=True)
class HandwrittenConfig:
    """The whole user, as plain numbers.

    Attributes:
        behaviors: Behavior names, lowest engagement first.
        base_logits: One logit per item ``1..n_items``.
        genres: One genre index (``0..n_genres-1``) per item.
        behavior_table: Per item, the probabilities of behavior ids ``1..n_behaviors`` (rows sum to 1).
        end_prob_after: P(session ends) after a last event with behavior id ``0..n_behaviors``
            (index 0: empty history).
        genre_bonus: Logit bonus for items of the last item's genre.
    """

    behaviors: tuple[str, ...]
    base_logits: tuple[float, ...]
    genres: tuple[int, ...]
    behavior_table: tuple[tuple[float, ...], ...]
    end_prob_after: tuple[float, ...]
    genre_bonus: float = 0.0

    def __post_init__(self) -> None:
        n, nb = len(self.base_logits), len(self.behaviors)
        if len(self.genres) != n or len(self.behavior_table) != n:
            raise InputError(f"handwritten user: base_logits ({n}), genres ({len(self.genres)}) and "
                             f"behavior_table ({len(self.behavior_table)}) need one entry per item")
        if any(len(row) != nb or abs(sum(row) - 1) > 1e-6 for row in self.behavior_table):
            raise InputError(f"handwritten user: each behavior_table row needs {nb} probabilities "
                             "summing to 1")
        if len(self.end_prob_after) != nb + 1:
            raise InputError(f"handwritten user: end_prob_after needs {nb + 1} entries, got "
                             f"{len(self.end_prob_after)}")


@dataclass
class HandwrittenState:
    """Per-row last item, last behavior and history length (mutable; updated in place)."""

    last_item: torch.Tensor
    last_behavior: torch.Tensor
    length: torch.Tensor

    @property
    def batch_size(self) -> int:
        return int(self.last_item.shape[0])


class HandwrittenUser:
    """:class:`~user_models.protocol.UserModel` over a :class:`HandwrittenConfig`."""

    def __init__(self, config: HandwrittenConfig, device: torch.device | str = "cpu") -> None:
        self.config = config
        self._device = torch.device(device)
        self._base = torch.tensor([0.0, *config.base_logits], device=self._device)
        self._genre = torch.tensor([-1, *config.genres], device=self._device)
        nb = len(config.behaviors)
        self._table = torch.tensor([[1.0 / nb] * nb, *config.behavior_table], device=self._device)
        self._end = torch.tensor(config.end_prob_after, device=self._device)
        n_genres = max(config.genres) + 1
        embeddings = torch.zeros(self.n_items + 1, n_genres, device=self._device)
        embeddings[torch.arange(1, self.n_items + 1), torch.tensor(config.genres)] = 1.0
        self._embeddings = embeddings

    @property
    def n_items(self) -> int:
        return len(self.config.base_logits)

    @property
    def behaviors(self) -> tuple[str, ...]:
        return self.config.behaviors

    @property
    def device(self) -> torch.device:
        return self._device

    def encode(self, history: History) -> HandwrittenState:
        last = (history.lengths - 1).clamp(min=0)[:, None]
        has = history.lengths > 0
        if history.items.shape[1] == 0:
            zeros = torch.zeros_like(history.lengths)
            return HandwrittenState(zeros, zeros.clone(), history.lengths.clone())
        item = torch.where(has, history.items.gather(1, last)[:, 0], 0)
        behavior = torch.where(has, history.behaviors.gather(1, last)[:, 0], 0)
        return HandwrittenState(item, behavior, history.lengths.clone())

    def step(self, state: HandwrittenState, items: torch.Tensor, behaviors: torch.Tensor,
             gaps: torch.Tensor, active: torch.Tensor) -> HandwrittenState:
        state.last_item = torch.where(active, items, state.last_item)
        state.last_behavior = torch.where(active, behaviors, state.last_behavior)
        state.length = state.length + active.long()
        return state

    def reset_rows(self, state: HandwrittenState, rows: torch.Tensor, history: History) -> HandwrittenState:
        fresh = self.encode(history)
        index = rows.nonzero()[:, 0]
        state.last_item[index] = fresh.last_item
        state.last_behavior[index] = fresh.last_behavior
        state.length[index] = fresh.length
        return state

    def item_logits(self, state: HandwrittenState, items: torch.Tensor) -> torch.Tensor:
        same = (self._genre[items] == self._genre[state.last_item][:, None]) & (state.length > 0)[:, None]
        return self._base[items] + self.config.genre_bonus * same.float()

    def behavior_probs(self, state: HandwrittenState, items: torch.Tensor) -> torch.Tensor:
        return self._table[items]

    def end_prob(self, state: HandwrittenState) -> torch.Tensor:
        return self._end[state.last_behavior]

    def item_embeddings(self) -> torch.Tensor:
        return self._embeddings

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the user as JSON (``{"handwritten": config}``)."""
        target = Path(path)
        target.write_text(json.dumps({"handwritten": asdict(self.config)}, indent=1) + "\n")
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: torch.device | str = "cpu") -> HandwrittenUser:
        """Read a user written by :meth:`save`."""
        source = Path(path)
        try:
            data = json.loads(source.read_text())["handwritten"]
            config = HandwrittenConfig(
                behaviors=tuple(data["behaviors"]), base_logits=tuple(data["base_logits"]),
                genres=tuple(data["genres"]), behavior_table=tuple(tuple(r) for r in data["behavior_table"]),
                end_prob_after=tuple(data["end_prob_after"]), genre_bonus=float(data["genre_bonus"]))
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(f"{source}: not a hand-written user file ({type(exc).__name__}: {exc})"
                             ) from None
        return cls(config, device)


def clickbait_user(n_each: int = 5, device: torch.device | str = "cpu") -> HandwrittenUser:
    """A catalogue where the most clickable items are the least satisfying.

    Items ``1..n_each`` (genre 0, "clickbait") have logit 2 and are liked 10% of the time; items
    ``n_each+1..2*n_each`` (genre 1, "quality") have logit 0 and are liked 80% of the time. Behaviors are
    ``("view", "like")``; a session ends with probability 0.05 after any event (0.02 with no history).
    With patience drained by views and refilled by likes, showing clickbait maximises the immediate
    choice probability but exhausts the user.
    """
    config = HandwrittenConfig(
        behaviors=("view", "like"),
        base_logits=(2.0,) * n_each + (0.0,) * n_each,
        genres=(0,) * n_each + (1,) * n_each,
        behavior_table=((0.9, 0.1),) * n_each + ((0.2, 0.8),) * n_each,
        end_prob_after=(0.02, 0.05, 0.05),
        genre_bonus=0.5,
    )
    return HandwrittenUser(config, device)
