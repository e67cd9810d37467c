"""The dataset artifact: round trip, splits, validation of version, schema and fingerprint."""

import json

import numpy as np
import polars as pl
import pytest

from user_models.data.artifact import DatasetMeta, SequenceDataset
from user_models.errors import DatasetError


def tiny_dataset() -> SequenceDataset:
    # user 0: items 1,2,3,4 ; user 1: items 2,3,1
    inter = pl.DataFrame(
        {
            "user": [0, 0, 0, 0, 1, 1, 1],
            "item": [1, 2, 3, 4, 2, 3, 1],
            "behavior": [1, 2, 1, 1, 1, 1, 2],
            "timestamp": [10, 20, 30, 40, 5, 6, 7],
            "session": [0, 0, 0, 1, 0, 0, 0],
            "position": [0, 1, 2, 3, 0, 1, 2],
        }
    )
    items = pl.DataFrame(
        {"item": [1, 2, 3, 4], "raw_id": list("abcd"), "title": None, "category": None, "price": None}
    )
    users = pl.DataFrame({"user": [0, 1], "user_key": ["u0", "u1"]})
    meta = DatasetMeta(
        name="tiny",
        behaviors=("view", "buy"),
        n_users=0,
        n_items=0,
        n_interactions=0,
        n_sessions=0,
        has_timestamps=True,
        behavior_source="events",
        session_gap_seconds=1800,
    )
    return SequenceDataset.from_frames(inter, items, users, meta)


def test_counts_and_leave_last_out():
    ds = tiny_dataset()
    assert (ds.n_users, ds.n_items, ds.meta.n_interactions, ds.meta.n_sessions) == (2, 4, 7, 3)
    test = ds.leave_last_out("test")
    assert test.target_items.tolist() == [4, 1]
    assert test.history.user(0)[0].tolist() == [1, 2, 3]
    valid = ds.leave_last_out("valid")
    assert valid.target_items.tolist() == [3, 3]
    assert valid.history.user(1)[0].tolist() == [2]
    train = ds.train_sequences()
    assert train.lengths.tolist() == [2, 1]
    assert train.user(0)[2].tolist() == [10, 20]


def test_round_trip(tmp_path):
    ds = tiny_dataset()
    ds.save(tmp_path / "d")
    back = SequenceDataset.load(tmp_path / "d")
    assert back.meta == ds.meta
    np.testing.assert_array_equal(back.sequences.items, ds.sequences.items)


def test_existing_output_needs_overwrite(tmp_path):
    ds = tiny_dataset()
    ds.save(tmp_path / "d")
    with pytest.raises(DatasetError, match="--overwrite"):
        ds.save(tmp_path / "d")
    ds.save(tmp_path / "d", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no temporary leftovers


def test_wrong_version_and_tampering_fail_clearly(tmp_path):
    ds = tiny_dataset()
    ds.save(tmp_path / "d")
    meta_path = tmp_path / "d" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = 99
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="format version 99"):
        SequenceDataset.load(tmp_path / "d")
    meta["format_version"] = 1
    meta["fingerprint"] = "0" * 64
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="fingerprint mismatch"):
        SequenceDataset.load(tmp_path / "d")


def test_out_of_range_ids_are_rejected():
    ds = tiny_dataset()
    bad = ds.interactions.with_columns(
        pl.when(pl.col("position") == 0).then(9).otherwise(pl.col("item")).alias("item")
    )
    with pytest.raises(DatasetError, match="'item' value 9 out of range"):
        SequenceDataset.from_frames(bad, ds.items, ds.users, ds.meta)
