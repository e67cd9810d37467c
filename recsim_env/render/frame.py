"""A snapshot of one simulated step, the only thing the renderer draws from.

A :class:`SessionFrame` holds everything the visualizer shows about one step of one user: what the user
had done before (recent history), what was recommended (the slate with the model's choice
probabilities), what the user did (chosen slot and behavior, or no choice), what it earned (step and
cumulative reward), how close the user is to leaving (patience, leave probability), what the user is
into (top interest categories) and which past events weighed most for the chosen item (attention).

Frames are plain frozen data with no tensors, so they can be saved (see
:mod:`recsim_env.render.trajectory`) and replayed without a model, and so the renderer can never read
live environment state (gymnax's rule: draw a state snapshot, never the env).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from user_models.errors import InputError


class FrameError(InputError):
    """A frame dictionary that does not describe a valid :class:`SessionFrame`."""


@dataclass(frozen=True)
class ItemView:
    """How an item is shown: its id, its title when the dataset has one and its first category."""

    item: int
    title: str | None = None
    category: str | None = None

    @property
    def label(self) -> str:
        """The title when known, else ``"item <id>"``."""
        return self.title if self.title else f"item {self.item}"


@dataclass(frozen=True)
class HistoryEvent:
    """One past event of the user: the item and the behavior it got (a name from the vocabulary)."""

    item: ItemView
    behavior: str


@dataclass(frozen=True)
class SlateSlot:
    """One recommended item and the probability that the user chooses it in this step."""

    item: ItemView
    choice_prob: float
    wasted: bool = False
    """True when the slot showed nothing (a duplicate item in the slate, or a masked repeat)."""


@dataclass(frozen=True)
class Interest:
    """A category and the probability mass the user's next-item distribution puts on it."""

    category: str
    prob: float


@dataclass(frozen=True)
class SessionFrame:
    """One step of one simulated user, as the visualizer shows it.

    Attributes:
        step: Steps taken in the episode, this one included (0: the user has just arrived and has seen
            no slate yet; ``slate`` is then empty and ``no_choice_prob`` 1).
        user_id: Identifier of the simulated user (e.g. the dataset user the population sampled).
        policy: Name of the policy that chose the slate.
        behaviors: The behavior vocabulary, lowest engagement first (icons rank behaviors by it).
        history: The user's recent events before this step, oldest first.
        slate: The recommended items in slot order with the model's choice probabilities.
        no_choice_prob: Probability of choosing nothing; with the slots' probabilities it sums to 1.
        chosen_slot: Index into ``slate`` of the chosen item, or None when the user chose nothing.
        behavior: The chosen item's behavior name, or None when the user chose nothing.
        reward: This step's reward.
        cumulative_reward: Return so far, this step included.
        patience: The user's patience after this step, in ``[0, 1]``.
        leave_prob: Probability that the user leaves after this step, in ``[0, 1]``.
        interests: Top interest categories, most likely first.
        attention: Weight of each ``history`` event for the chosen item (same length as ``history``,
            non-negative; the renderer scales by the largest), or None when unavailable or when nothing
            was chosen.
        attention_source: What ``attention`` measures (e.g. "transformer attention" or
            "embedding similarity"), shown as the attention view's caption.
        episode: Episode index (distinguishes users in a trajectory file).
        terminated: The user left after this step.
        truncated: The episode hit its step limit after this step.
    """

    step: int
    user_id: int
    policy: str
    behaviors: tuple[str, ...]
    history: tuple[HistoryEvent, ...]
    slate: tuple[SlateSlot, ...]
    no_choice_prob: float
    chosen_slot: int | None
    behavior: str | None
    reward: float
    cumulative_reward: float
    patience: float
    leave_prob: float
    interests: tuple[Interest, ...] = ()
    attention: tuple[float, ...] | None = None
    attention_source: str = ""
    episode: int = 0
    terminated: bool = False
    truncated: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    """Free-form JSON-safe additions (ignored by the renderer); kept on a round trip."""

    def __post_init__(self) -> None:
        _check(self)

    @property
    def chosen(self) -> SlateSlot | None:
        """The chosen slot, or None when the user chose nothing."""
        return None if self.chosen_slot is None else self.slate[self.chosen_slot]

    @property
    def behavior_level(self) -> int:
        """The chosen behavior's rank (1 = lowest engagement), 0 for no choice."""
        return 0 if self.behavior is None else self.behaviors.index(self.behavior) + 1

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dictionary; :meth:`from_dict` inverts it exactly."""
        return {
            "step": self.step,
            "user_id": self.user_id,
            "policy": self.policy,
            "behaviors": list(self.behaviors),
            "history": [{**_item_dict(e.item), "behavior": e.behavior} for e in self.history],
            "slate": [
                {**_item_dict(s.item), "choice_prob": s.choice_prob, "wasted": s.wasted} for s in self.slate
            ],
            "no_choice_prob": self.no_choice_prob,
            "chosen_slot": self.chosen_slot,
            "behavior": self.behavior,
            "reward": self.reward,
            "cumulative_reward": self.cumulative_reward,
            "patience": self.patience,
            "leave_prob": self.leave_prob,
            "interests": [{"category": i.category, "prob": i.prob} for i in self.interests],
            "attention": None if self.attention is None else list(self.attention),
            "attention_source": self.attention_source,
            "episode": self.episode,
            "terminated": self.terminated,
            "truncated": self.truncated,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SessionFrame:
        """Rebuild a frame from :meth:`to_dict` output; raises :class:`FrameError` naming the bad key."""
        if not isinstance(data, dict):
            raise FrameError(f"a frame must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FrameError(f"unknown frame key(s) {unknown}")
        try:
            attention = data.get("attention")
            return cls(
                step=int(data["step"]),
                user_id=int(data["user_id"]),
                policy=str(data["policy"]),
                behaviors=tuple(str(b) for b in data["behaviors"]),
                history=tuple(
                    HistoryEvent(_item_from(e), str(e["behavior"])) for e in data["history"]
                ),
                slate=tuple(
                    SlateSlot(_item_from(s), float(s["choice_prob"]), bool(s.get("wasted", False)))
                    for s in data["slate"]
                ),
                no_choice_prob=float(data["no_choice_prob"]),
                chosen_slot=None if data["chosen_slot"] is None else int(data["chosen_slot"]),
                behavior=None if data["behavior"] is None else str(data["behavior"]),
                reward=float(data["reward"]),
                cumulative_reward=float(data["cumulative_reward"]),
                patience=float(data["patience"]),
                leave_prob=float(data["leave_prob"]),
                interests=tuple(
                    Interest(str(i["category"]), float(i["prob"])) for i in data.get("interests", ())
                ),
                attention=None if attention is None else tuple(float(a) for a in attention),
                attention_source=str(data.get("attention_source", "")),
                episode=int(data.get("episode", 0)),
                terminated=bool(data.get("terminated", False)),
                truncated=bool(data.get("truncated", False)),
                extra=dict(data.get("extra", {})),
            )
        except FrameError:
            raise
        except KeyError as exc:
            raise FrameError(f"missing frame key {exc.args[0]!r}") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise FrameError(f"malformed frame value ({exc})") from None


def _item_dict(item: ItemView) -> dict[str, Any]:
    return {"item": item.item, "title": item.title, "category": item.category}


def _item_from(data: dict[str, Any]) -> ItemView:
    title, category = data.get("title"), data.get("category")
    return ItemView(
        int(data["item"]), None if title is None else str(title), None if category is None else str(category)
    )


_PROB_TOLERANCE = 1e-3


def _check(frame: SessionFrame) -> None:
    """Reject frames the renderer could only draw wrongly (probabilities off, indices out of range)."""

    def prob(name: str, value: float) -> None:
        if not (math.isfinite(value) and -_PROB_TOLERANCE <= value <= 1 + _PROB_TOLERANCE):
            raise FrameError(f"{name}={value!r} is not a probability in [0, 1]")

    for i, slot in enumerate(frame.slate):
        prob(f"slate[{i}].choice_prob", slot.choice_prob)
    prob("no_choice_prob", frame.no_choice_prob)
    prob("patience", frame.patience)
    prob("leave_prob", frame.leave_prob)
    total = frame.no_choice_prob + sum(s.choice_prob for s in frame.slate)
    if abs(total - 1.0) > _PROB_TOLERANCE:
        raise FrameError(f"slate and no-choice probabilities sum to {total:.6f}, expected 1")
    if frame.chosen_slot is not None and not 0 <= frame.chosen_slot < len(frame.slate):
        raise FrameError(f"chosen_slot={frame.chosen_slot} outside a slate of {len(frame.slate)} items")
    if (frame.chosen_slot is None) != (frame.behavior is None):
        raise FrameError("chosen_slot and behavior must both be set (a choice) or both be None (no choice)")
    known = set(frame.behaviors)
    for name in [e.behavior for e in frame.history] + ([frame.behavior] if frame.behavior else []):
        if name not in known:
            raise FrameError(f"behavior {name!r} is not in the vocabulary {list(frame.behaviors)}")
    if frame.attention is not None:
        if len(frame.attention) != len(frame.history):
            raise FrameError(
                f"attention has {len(frame.attention)} weights for {len(frame.history)} history events"
            )
        if any(not math.isfinite(a) or a < 0 for a in frame.attention):
            raise FrameError("attention weights must be finite and non-negative")
    for interest in frame.interests:
        prob(f"interest {interest.category!r}", interest.prob)
    for name in ("reward", "cumulative_reward"):
        if not math.isfinite(getattr(frame, name)):
            raise FrameError(f"{name} is not finite")
