"""Hand-built session frames for the visualizer tests (no model needed)."""

from __future__ import annotations

from recsim_env.render.frame import HistoryEvent, Interest, ItemView, SessionFrame, SlateSlot

BEHAVIORS = ("dislike", "neutral", "like", "love")
GENRES = ("Drama", "Comedy", "Action", "Thriller", "Romance", "Sci-Fi", "Animation")


def item(i: int) -> ItemView:
    return ItemView(i, f"Movie number {i} ({1970 + i % 30})", GENRES[i % len(GENRES)])


def make_frame(step: int = 0, slate: tuple[int, ...] = (11, 12, 13, 14, 15), chosen: int | None = 1,
               history_len: int = 12, attention: bool = True) -> SessionFrame:
    """A valid frame whose content depends on ``step`` and ``slate`` (so consecutive frames differ)."""
    k = len(slate)
    weights = [float(s + 1) for s in range(k)]
    no_choice = 0.2
    probs = [(1 - no_choice) * w / sum(weights) for w in weights]
    history = tuple(
        HistoryEvent(item(100 + step + j), BEHAVIORS[(j + step) % len(BEHAVIORS)]) for j in range(history_len)
    )
    att = None
    if attention and chosen is not None and history_len:
        raw = [1.0 + ((j * 7 + step) % 5) for j in range(history_len)]
        att = tuple(a / sum(raw) for a in raw)
    return SessionFrame(
        step=step,
        user_id=42,
        policy="random",
        behaviors=BEHAVIORS,
        history=history,
        slate=tuple(SlateSlot(item(i), p) for i, p in zip(slate, probs, strict=True)),
        no_choice_prob=no_choice,
        chosen_slot=chosen,
        behavior=None if chosen is None else BEHAVIORS[(step + 2) % len(BEHAVIORS)],
        reward=0.0 if chosen is None else 1.0,
        cumulative_reward=float(step),
        patience=max(0.0, 1.0 - 0.1 * step),
        leave_prob=min(1.0, 0.05 * (step + 1)),
        interests=(Interest("Drama", 0.4), Interest("Comedy", 0.25), Interest("Action", 0.15)),
        attention=att,
        attention_source="embedding similarity" if att is not None else "",
    )
