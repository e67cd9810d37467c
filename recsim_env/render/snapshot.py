"""Turn the simulation core's step record into :class:`SessionFrame` snapshots for the visualizer.

This is the only module of :mod:`recsim_env.render` that touches live simulation state; it copies what
the renderer needs into a frame and nothing else reads the core. Besides the step record it computes two
things a frame shows:

- **Top interests**: the user model's next-item distribution over the whole catalogue (a softmax of
  its item logits after the step), summed per category. An item with several categories (``a|b``)
  splits its probability evenly between them; items without one count as ``(unknown)``. This is the
  convention of :mod:`user_models.profile`, computed here from the live state of any user model.
- **Event weights for the chosen item** (the "attention view"): an *occlusion* attribution, not the
  Transformer's attention maps (the user protocol exposes none, and one layer's attention from the last
  position is the same for every candidate item, so it could not say why *this* item was chosen).
  For each shown history event the user is re-encoded from the recent window without that event; the
  event's weight is how much the chosen item's logit drops (``max(0, full - without)``), normalised to
  sum to 1. Positive weight means the event made the chosen item more attractive. It works for any
  :class:`~user_models.protocol.UserModel` in one batched ``encode`` of ``rows + 1`` histories. The
  re-encoding sees only the core's recent window (``history_len`` events, gaps unknown), so it
  approximates the live state, which may hold an older prefix too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from recsim_env.render.frame import HistoryEvent, Interest, ItemView, SessionFrame, SlateSlot
from user_models.data.artifact import SequenceDataset
from user_models.protocol import History, UserModel

if TYPE_CHECKING:
    from recsim_env.core import SimulationCore

ATTENTION_SOURCE = "occlusion"
UNKNOWN_CATEGORY = "(unknown)"
"""Caption of the frames' event weights; see the module docstring."""


@dataclass(frozen=True)
class ItemCatalogue:
    """Display metadata of the catalogue, indexed by item id (index 0 is padding).

    Attributes:
        titles: Title of each item, None when unknown.
        categories: Categories of each item (the dataset's ``a|b`` split), empty when unknown.
    """

    titles: tuple[str | None, ...]
    categories: tuple[tuple[str, ...], ...]

    @classmethod
    def from_dataset(cls, dataset: SequenceDataset) -> ItemCatalogue:
        """The titles and categories of ``dataset``'s ``items`` table."""
        n = dataset.n_items
        titles: list[str | None] = [None] * (n + 1)
        categories: list[tuple[str, ...]] = [()] * (n + 1)
        table = dataset.items
        for item, title, category in zip(table["item"].to_list(), table["title"].to_list(),
                                         table["category"].to_list(), strict=True):
            titles[item] = title or None
            categories[item] = tuple(c.strip() for c in (category or "").split("|") if c.strip())
        return cls(tuple(titles), tuple(categories))

    @property
    def n_items(self) -> int:
        return len(self.titles) - 1

    def view(self, item: int) -> ItemView:
        """How ``item`` is shown: id, title and first category."""
        if not 1 <= item <= self.n_items:
            return ItemView(item, "(empty slot)", None)
        cats = self.categories[item]
        return ItemView(item, self.titles[item], cats[0] if cats else None)

    def category_index(self) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray]:
        """Category names and the ``(item, category, share)`` triples that split items over categories.

        Items without a category belong to ``(unknown)``; a catalogue with no categories at all has none.
        """
        names = sorted({c for cats in self.categories for c in cats})
        if not names:
            return (), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        if any(not cats for cats in self.categories[1:]):
            names.append(UNKNOWN_CATEGORY)
        position = {name: i for i, name in enumerate(names)}
        items, cats, shares = [], [], []
        for item in range(1, len(self.categories)):
            item_cats = self.categories[item] or (UNKNOWN_CATEGORY,)
            for c in item_cats:
                items.append(item)
                cats.append(position[c])
                shares.append(1.0 / len(item_cats))
        return (tuple(names), np.asarray(items, dtype=np.int64), np.asarray(cats, dtype=np.int64),
                np.asarray(shares, dtype=np.float32))


class InterestSummary:
    """Top categories of a next-item distribution (see the module docstring).

    Args:
        catalogue: Item categories.
        top: How many categories to report.
    """

    def __init__(self, catalogue: ItemCatalogue, top: int = 5) -> None:
        names, items, cats, shares = catalogue.category_index()
        self.names = names
        self.top = top
        self._items = torch.as_tensor(items)
        self._cats = torch.as_tensor(cats)
        self._shares = torch.as_tensor(shares)

    def __call__(self, logits: torch.Tensor) -> tuple[Interest, ...]:
        """The top categories of ``softmax(logits)``, where ``logits`` is ``[n_items]`` for items 1..n."""
        if not self.names:
            return ()
        probs = torch.softmax(logits.detach().float().cpu(), dim=0)
        full = torch.cat([torch.zeros(1), probs])  # index by item id
        mass = torch.zeros(len(self.names)).index_add_(0, self._cats, full[self._items] * self._shares)
        values, index = mass.topk(min(self.top, len(self.names)))
        return tuple(Interest(self.names[int(i)], float(v)) for v, i in zip(values, index, strict=True))


def occlusion_weights(model: UserModel, items: np.ndarray, behaviors: np.ndarray, chosen_item: int,
                      n_targets: int) -> np.ndarray:
    """How much each of the last ``n_targets`` events raised the chosen item's logit (sums to 1 or 0).

    Args:
        model: The user model.
        items: The user's recent item ids before the step, oldest first.
        behaviors: Their behavior ids.
        chosen_item: The item the user chose.
        n_targets: How many of the most recent events to weigh.

    Returns:
        ``[min(n_targets, len(items))]`` non-negative weights, oldest first; all zero when no event
        raised the logit.
    """
    length = len(items)
    n = min(n_targets, length)
    if n == 0:
        return np.zeros(0)
    rows = n + 1
    batch_items = np.zeros((rows, length), dtype=np.int64)
    batch_behaviors = np.zeros((rows, length), dtype=np.int64)
    batch_items[0], batch_behaviors[0] = items, behaviors
    for j in range(n):
        drop = length - n + j
        keep = np.arange(length) != drop
        batch_items[j + 1, : length - 1] = items[keep]
        batch_behaviors[j + 1, : length - 1] = behaviors[keep]
    lengths = torch.tensor([length] + [length - 1] * n)
    history = History(torch.as_tensor(batch_items), torch.as_tensor(batch_behaviors),
                      torch.full((rows, length), -1.0), lengths).to(model.device)
    with torch.no_grad():
        state = model.encode(history)
        target = torch.full((rows, 1), chosen_item, dtype=torch.long, device=model.device)
        logits = model.item_logits(state, target)[:, 0].float().cpu()
    gain = (logits[0] - logits[1:]).clamp(min=0.0).numpy()
    total = float(gain.sum())
    return gain / total if total > 0 else np.zeros(n)


class FrameBuilder:
    """Builds frames of one row of a :class:`~recsim_env.core.SimulationCore` after reset or a step.

    Args:
        core: The simulation core (read, never changed).
        catalogue: Titles and categories for display.
        history_rows: How many recent events a frame holds (and gets event weights for).
        top_interests: How many interest categories a frame holds.
        attention: Compute the occlusion event weights (one extra batched ``encode`` per frame).
        autoreset: The env resets finished rows inside ``step`` (the vector env's ``SAME_STEP`` mode), so
            after a row's last step the live state is already the next user's: that frame then shows no
            interests rather than the wrong user's.
    """

    def __init__(self, core: SimulationCore, catalogue: ItemCatalogue, history_rows: int = 10,
                 top_interests: int = 5, attention: bool = True, autoreset: bool = False) -> None:
        self.core = core
        self.catalogue = catalogue
        self.history_rows = history_rows
        self.attention = attention
        self.autoreset = autoreset
        self._interests = InterestSummary(catalogue, top_interests)

    def frame(self, row: int, *, policy: str = "", user_id: int = 0, episode: int = 0,
              after_step: bool = True) -> SessionFrame:
        """The frame of ``row`` now: after its last step, or (``after_step=False``) just after reset."""
        return self.frames([row], policy=policy, user_ids=[user_id], episodes=[episode],
                           after_step=after_step)[0]

    def frames(self, rows: Sequence[int], *, policy: str = "", user_ids: Sequence[int],
               episodes: Sequence[int], after_step: bool = True) -> list[SessionFrame]:
        """The frames of several rows at once: the catalogue logits (all rows) are computed once."""
        logits = self.core.catalogue_logits()
        return [self._frame(row, logits[row], policy, user_id, episode, after_step)
                for row, user_id, episode in zip(rows, user_ids, episodes, strict=True)]

    def _frame(self, row: int, logits: torch.Tensor, policy: str, user_id: int, episode: int,
               after_step: bool) -> SessionFrame:
        core = self.core
        behaviors = tuple(core.behavior_names)
        record = core.last_record if after_step else None
        snap = None if record is None else record.row(row)
        replaced = snap is not None and self.autoreset and (snap.terminated or snap.truncated)
        interests = () if replaced else self._interests(logits)
        if snap is None:
            items, behavior_ids = _visible(core.history_items[row], core.history_behaviors[row])
            return SessionFrame(
                step=0, user_id=user_id, policy=policy, behaviors=behaviors,
                history=self._history(items, behavior_ids, behaviors), slate=(), no_choice_prob=1.0,
                chosen_slot=None, behavior=None, reward=0.0, cumulative_reward=0.0,
                patience=float(core.patience[row]), leave_prob=0.0, interests=interests, episode=episode,
            )
        items, behavior_ids = _visible(snap.history_items, snap.history_behaviors)
        chose = snap.position >= 0
        if chose:  # the buffer already holds the chosen event; the frame shows what came before it
            items, behavior_ids = items[:-1], behavior_ids[:-1]
        history = self._history(items, behavior_ids, behaviors)
        weights = None
        if chose and self.attention and len(history):
            weights = tuple(float(w) for w in occlusion_weights(
                core.model, items, behavior_ids, int(snap.item), len(history)))
        probs = np.asarray(snap.choice_probs, dtype=np.float64)
        slate = tuple(
            SlateSlot(self.catalogue.view(int(item)), float(p), wasted=int(item) == 0)
            for item, p in zip(snap.slate, probs[:-1], strict=True)
        )
        return SessionFrame(
            step=int(snap.step), user_id=user_id, policy=policy, behaviors=behaviors, history=history,
            slate=slate, no_choice_prob=float(probs[-1]), chosen_slot=int(snap.position) if chose else None,
            behavior=behaviors[int(snap.behavior) - 1] if chose else None, reward=float(snap.reward),
            cumulative_reward=float(snap.episode_return), patience=float(snap.patience),
            leave_prob=float(snap.leave_prob), interests=interests, attention=weights,
            attention_source=ATTENTION_SOURCE if weights is not None else "", episode=episode,
            terminated=bool(snap.terminated), truncated=bool(snap.truncated),
        )

    def _history(self, items: np.ndarray, behavior_ids: np.ndarray, behaviors: tuple[str, ...]
                 ) -> tuple[HistoryEvent, ...]:
        keep = slice(max(len(items) - self.history_rows, 0), None)
        return tuple(HistoryEvent(self.catalogue.view(int(i)), behaviors[int(b) - 1])
                     for i, b in zip(items[keep], behavior_ids[keep], strict=True))


def _visible(items: torch.Tensor | np.ndarray, behaviors: torch.Tensor | np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """The real events of a right-aligned history buffer (0 = padding), oldest first, as numpy."""
    items_np = np.asarray(items.cpu() if isinstance(items, torch.Tensor) else items, dtype=np.int64)
    behaviors_np = np.asarray(behaviors.cpu() if isinstance(behaviors, torch.Tensor) else behaviors,
                              dtype=np.int64)
    real = items_np > 0
    if (behaviors_np[real] < 1).any():
        raise ValueError("a history event without a behavior (id 0); the core records consumptions only")
    return items_np[real], behaviors_np[real]
