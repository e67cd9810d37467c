"""Turning packed :class:`~user_models.data.artifact.Sequences` into model inputs.

Two shapes of input exist: a :class:`~user_models.protocol.History` batch (each row a user's most recent
events, right padded, for inference and evaluation) and :class:`TrainingWindows` (fixed-length chunks of
the training events with the next event as target at every position). Both are built with numpy index
arithmetic, never a Python loop over users.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from user_models.data.artifact import Sequences
from user_models.protocol import History


def event_gaps(seqs: Sequences) -> np.ndarray:
    """Seconds since each event's predecessor of the same user, ``-1`` (unknown) for first events.

    Without timestamps every gap is unknown.
    """
    n = len(seqs.items)
    if seqs.timestamps is None:
        return np.full(n, -1.0, dtype=np.float32)
    gaps = np.empty(n, dtype=np.float64)
    gaps[0:1] = -1.0
    gaps[1:] = np.diff(seqs.timestamps).astype(np.float64)
    firsts = seqs.offsets[:-1][seqs.lengths > 0]
    gaps[firsts] = -1.0
    return np.maximum(gaps, -1.0).astype(np.float32)  # out-of-order clocks count as unknown


def session_end_flags(seqs: Sequences, sessions: np.ndarray) -> np.ndarray:
    """``[n_events]`` bool: the event is the last of its session (a user's last event always is)."""
    n = len(seqs.items)
    ends = np.ones(n, dtype=bool)
    if n > 1:
        ends[:-1] = sessions[1:] != sessions[:-1]
    lasts = seqs.offsets[1:][seqs.lengths > 0] - 1
    ends[lasts] = True
    return ends


def _window_index(offsets: np.ndarray, lengths: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """``[n, width]`` flat event indices ``offsets + starts + j``; -1 where ``j >= lengths``."""
    j = np.arange(width)[None, :]
    idx = offsets[:, None] + starts[:, None] + j
    return np.where(j < lengths[:, None], idx, -1)


def history_from_sequences(seqs: Sequences, max_len: int | None = None) -> History:
    """Each user's last ``max_len`` events (all when None) as a right-padded :class:`History`.

    The first kept event carries its real gap to the dropped event before it, as the model saw it in
    training.
    """
    lengths = seqs.lengths
    width = int(lengths.max(initial=0)) if max_len is None else max_len
    kept = np.minimum(lengths, width)
    idx = _window_index(seqs.offsets[:-1], kept, lengths - kept, max(width, 1))
    return _gather_history(seqs, event_gaps(seqs), idx, kept)


def _gather_history(seqs: Sequences, gaps: np.ndarray, idx: np.ndarray, lengths: np.ndarray) -> History:
    pad = idx < 0
    safe = np.where(pad, 0, idx)
    items = np.where(pad, 0, seqs.items[safe] if len(seqs.items) else 0).astype(np.int64)
    behaviors = np.where(pad, 0, seqs.behaviors[safe] if len(seqs.items) else 0).astype(np.int64)
    gap = np.where(pad, -1.0, gaps[safe] if len(seqs.items) else -1.0).astype(np.float32)
    return History(
        torch.from_numpy(items), torch.from_numpy(behaviors), torch.from_numpy(gap),
        torch.from_numpy(lengths.astype(np.int64)),
    )


@dataclass(frozen=True)
class TrainingWindows:
    """Chunks of training events: inputs at positions ``0..L-1``, the next event as target at each.

    A user's training events are cut from the most recent backwards into chunks of ``max_len + 1``
    events that overlap by one (the last input of one chunk is followed by the first of the next), so
    every training event after a user's first is a target exactly once.

    Attributes:
        history: ``[N, L]`` input events (right padded) with ``lengths`` = inputs per window.
        target_items, target_behaviors: ``[N, L]`` the next event's item and behavior (0 = no target).
        session_end: ``[N, L]`` float, 1 where the input event was the last of its session.
    """

    history: History
    target_items: torch.Tensor
    target_behaviors: torch.Tensor
    session_end: torch.Tensor

    def __len__(self) -> int:
        return self.history.batch_size

    def select(self, rows: torch.Tensor) -> TrainingWindows:
        h = self.history
        return TrainingWindows(
            History(h.items[rows], h.behaviors[rows], h.gaps[rows], h.lengths[rows]),
            self.target_items[rows], self.target_behaviors[rows], self.session_end[rows],
        )

    def to(self, device: torch.device | str) -> TrainingWindows:
        return TrainingWindows(
            self.history.to(device), self.target_items.to(device), self.target_behaviors.to(device),
            self.session_end.to(device),
        )


def training_windows(seqs: Sequences, session_end: np.ndarray, max_len: int) -> TrainingWindows:
    """Cut ``seqs`` (the training events) into :class:`TrainingWindows` of ``max_len`` inputs.

    ``session_end`` holds the per-event flags of :func:`session_end_flags`, aligned with ``seqs``.
    """
    lengths = seqs.lengths
    n_chunks = np.maximum(np.ceil((lengths - 1) / max_len), 0).astype(np.int64)
    owner = np.repeat(np.arange(len(lengths)), n_chunks)
    # chunk c (0 = most recent) of a user covers events [end - max_len - 1, end) with end = len - c*max_len
    first_chunk = np.concatenate([[0], np.cumsum(n_chunks)[:-1]])
    c = np.arange(len(owner)) - np.repeat(first_chunk, n_chunks)
    end = lengths[owner] - c * max_len
    start = np.maximum(end - max_len - 1, 0)
    n_inputs = end - start - 1
    offsets = seqs.offsets[:-1][owner]
    inputs = _window_index(offsets, n_inputs, start, max_len)
    targets = _window_index(offsets, n_inputs, start + 1, max_len)
    history = _gather_history(seqs, event_gaps(seqs), inputs, n_inputs)
    pad = targets < 0
    safe = np.where(pad, 0, targets)
    target_items = np.where(pad, 0, seqs.items[safe]).astype(np.int64)
    target_behaviors = np.where(pad, 0, seqs.behaviors[safe]).astype(np.int64)
    ends = np.where(inputs < 0, 0.0, session_end[np.where(inputs < 0, 0, inputs)]).astype(np.float32)
    return TrainingWindows(
        history, torch.from_numpy(target_items), torch.from_numpy(target_behaviors), torch.from_numpy(ends)
    )


def event_index(seqs: Sequences, keep: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Flat indices into ``seqs`` of the first ``keep[i]`` events of user ``rows[i]`` (all users if None)."""
    starts = seqs.offsets[:-1] if rows is None else seqs.offsets[:-1][rows]
    idx = _window_index(starts, keep, np.zeros_like(keep), int(keep.max(initial=0)))
    return idx[idx >= 0]


def take_users(seqs: Sequences, rows: np.ndarray) -> Sequences:
    """The sequences of users ``rows`` (positions in ``seqs``), in that order."""
    lengths = seqs.lengths[rows]
    flat = event_index(seqs, lengths, rows)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ts = None if seqs.timestamps is None else seqs.timestamps[flat]
    return Sequences(offsets, seqs.items[flat], seqs.behaviors[flat], ts)
