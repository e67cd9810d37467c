"""Funnel collapsing: one interaction per funnel, not one per funnel stage.

Multi-behavior logs in the wild (RetailRocket, Taobao UserBehavior, most shop logs) write one row per
funnel stage: a view, then a cart, then a buy of the same item, seconds apart. Kept as separate events,
a sequence model learns "re-consume the item you just saw" and a simulator replays it. For an **ordered**
behavior vocabulary (events named lowest engagement first) a run of consecutive events on the same item
by the same user, each within ``window_seconds`` of the previous one, is one interaction: it keeps the
first row (so its timestamp and file position) and takes the run's deepest behavior (the largest id).

"Consecutive" is in the user's time order: another item in between ends the run (view A, view B, buy A
stays three interactions). The window is measured between neighbouring rows, like the session gap, so
with the default (the session gap) a funnel never spans two sessions. Ratings and single-behavior logs
are not funnels and are left alone; so are logs without timestamps (no window can be checked).

The work is a few vectorized passes (shifted comparisons, a cumulative max per run); no Python loop over
rows.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from user_models.data.artifact import CleaningStep

STEP_NAME = "funnel collapse"


def collapse_funnel(frame: pl.DataFrame, window_seconds: float) -> tuple[pl.DataFrame, int]:
    """Merge funnel runs of ``frame`` into one row each.

    Args:
        frame: events with ``user``, ``item``, ``behavior`` (ids, higher = deeper) and ``timestamp``
            (seconds), sorted by user, then time (then file order); other columns are kept from each
            run's first row.
        window_seconds: the largest gap between neighbouring rows of one run (inclusive).

    Returns:
        The collapsed frame (order kept) and the number of runs of two or more rows that were merged.
    """
    if frame.height == 0:
        return frame, 0
    user = frame["user"].to_numpy()
    item = frame["item"].to_numpy()
    ts = frame["timestamp"].to_numpy()
    starts = np.ones(frame.height, dtype=bool)
    starts[1:] = (user[1:] != user[:-1]) | (item[1:] != item[:-1]) | ((ts[1:] - ts[:-1]) > window_seconds)
    first = np.flatnonzero(starts)
    deepest = np.maximum.reduceat(frame["behavior"].to_numpy(), first)
    merged = int(np.count_nonzero(np.diff(np.append(first, frame.height)) > 1))
    out = frame.filter(pl.Series(starts)).with_columns(
        pl.Series("behavior", deepest).cast(frame.schema["behavior"])
    )
    return out, merged


def funnel_cleaning_step(
    frame: pl.DataFrame,
    enabled: bool,
    window_seconds: float,
    behavior_source: str,
    behaviors: tuple[str, ...],
    window_note: str = "",
) -> tuple[pl.DataFrame, CleaningStep]:
    """The ingestion step: collapse funnels when the log is an ordered event log, else pass through.

    Args:
        frame: events after sorting and exact-duplicate removal (see :func:`collapse_funnel`).
        enabled: False under ``--no-collapse-funnel``.
        window_seconds: the funnel window.
        behavior_source: ``events``, ``ratings`` or ``none``; only ``events`` are funnels.
        behaviors: the vocabulary, lowest engagement first (one behavior is not a funnel).
        window_note: how the window was chosen, for the report (e.g. "the session gap").

    Returns:
        The frame and the :class:`CleaningStep` that records it (rows before and after, and why).
    """
    before = frame.height
    if not enabled:
        return frame, CleaningStep(STEP_NAME, before, before, "skipped: --no-collapse-funnel")
    if behavior_source != "events" or len(behaviors) < 2:
        kind = "ratings" if behavior_source == "ratings" else "a single behavior"
        return frame, CleaningStep(STEP_NAME, before, before, f"skipped: {kind}, not an ordered funnel")
    if "timestamp" not in frame.columns:
        return frame, CleaningStep(STEP_NAME, before, before, "skipped: no timestamps")
    out, merged = collapse_funnel(frame, window_seconds)
    note = f" ({window_note})" if window_note else ""
    detail = (f"window {window_seconds:g} s{note}; {merged} runs of 2+ rows on one item became one "
              f"interaction each, with the deepest of {'<'.join(behaviors)}")
    return out, CleaningStep(STEP_NAME, before, out.height, detail)
