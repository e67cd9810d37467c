"""Test helpers: small logged datasets drawn from a hand-written user (nothing here is needed at run time)."""

from __future__ import annotations

import numpy as np
import polars as pl
import torch

from user_models.data.artifact import DatasetMeta, SequenceDataset
from user_models.handwritten import HandwrittenUser
from user_models.protocol import History


def logged_dataset(
    user: HandwrittenUser,
    n_users: int = 40,
    n_sessions: int = 3,
    consume_rate: float = 0.6,
    step_seconds: int = 60,
    seed: int = 0,
) -> SequenceDataset:
    """Logs of ``n_users`` users of ``user``, with ``n_sessions`` sessions each.

    Every ``step_seconds`` the logged user consumes with probability ``consume_rate`` (an item drawn
    from the softmax of its logits over the catalogue, a behavior from its response table) and then
    ends the session with its end probability; otherwise time passes without an event. Sessions are
    a day apart. So the logs' consumption rate per step and session length are known by construction.
    """
    rng = np.random.default_rng(seed)
    torch_gen = torch.Generator().manual_seed(seed)
    catalogue = torch.arange(1, user.n_items + 1)[None, :]
    rows: dict[str, list[int]] = {k: [] for k in ("user", "item", "behavior", "timestamp", "session",
                                                  "position")}
    for u in range(n_users):
        empty = torch.zeros(1, 0, dtype=torch.long)
        state = user.encode(History(empty, empty, empty.float(), torch.zeros(1, dtype=torch.long)))
        t, position = 1_000_000 + u * 7, 0
        for session in range(n_sessions):
            t += 86_400
            while True:
                t += step_seconds
                if rng.random() >= consume_rate:
                    continue
                probs = torch.softmax(user.item_logits(state, catalogue), dim=1)[0]
                item = int(torch.multinomial(probs, 1, generator=torch_gen)) + 1
                table = user.behavior_probs(state, torch.tensor([[item]]))[0, 0]
                behavior = int(torch.multinomial(table, 1, generator=torch_gen)) + 1
                state = user.step(state, torch.tensor([item]), torch.tensor([behavior]),
                                  torch.tensor([float(step_seconds)]), torch.tensor([True]))
                for key, value in (("user", u), ("item", item), ("behavior", behavior), ("timestamp", t),
                                   ("session", session), ("position", position)):
                    rows[key].append(value)
                position += 1
                if rng.random() < float(user.end_prob(state)[0]):
                    break
    items = pl.DataFrame({"item": list(range(1, user.n_items + 1)),
                          "raw_id": [f"i{i}" for i in range(1, user.n_items + 1)],
                          "title": [f"item {i}" for i in range(1, user.n_items + 1)],
                          "category": [f"genre{g}" for g in user.config.genres], "price": None})
    users = pl.DataFrame({"user": list(range(n_users)), "user_key": [f"u{u}" for u in range(n_users)]})
    meta = DatasetMeta(name="handwritten", behaviors=user.behaviors, n_users=0, n_items=0, n_interactions=0,
                       n_sessions=0, has_timestamps=True, behavior_source="events",
                       session_gap_seconds=1800)
    return SequenceDataset.from_frames(pl.DataFrame(rows), items, users, meta)
