"""Tiny learnable datasets shared by the user-model tests."""

import numpy as np
import polars as pl

from user_models.data.artifact import DatasetMeta, SequenceDataset


def cyclic_dataset(n_users: int = 24, n_items: int = 10, length: int = 12, seed: int = 0) -> SequenceDataset:
    """Users walk the catalogue in steps of +1 from a random start (a pattern a sequence model learns).

    Behavior: "buy" on even items, "view" on odd ones; a new session every 4 events; 2 genres per item.
    """
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n_items, n_users)
    users = np.repeat(np.arange(n_users), length)
    position = np.tile(np.arange(length), n_users)
    items = (starts[users] + position) % n_items + 1
    inter = pl.DataFrame({
        "user": users, "item": items, "behavior": np.where(items % 2 == 0, 2, 1),
        "timestamp": 1_000_000 + users * 100_000 + position * 60 + (position // 4) * 7200,
        "session": position // 4, "position": position,
    })
    genres = ["Drama", "Comedy", "Action"]
    item_frame = pl.DataFrame({
        "item": np.arange(1, n_items + 1), "raw_id": [f"i{i}" for i in range(n_items)], "title": None,
        "category": [f"{genres[i % 3]}|{genres[(i + 1) % 3]}" for i in range(n_items)], "price": None,
    })
    user_frame = pl.DataFrame({"user": np.arange(n_users), "user_key": [f"u{u}" for u in range(n_users)]})
    meta = DatasetMeta(name="cyclic", behaviors=("view", "buy"), n_users=0, n_items=0, n_interactions=0,
                       n_sessions=0, has_timestamps=True, behavior_source="events", session_gap_seconds=1800)
    return SequenceDataset.from_frames(inter, item_frame, user_frame, meta)
