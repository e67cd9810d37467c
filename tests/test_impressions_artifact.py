"""The impression table of the dataset artifact: round trip, version-1 directories, validation."""

import json

import polars as pl
import pytest
from test_artifact import tiny_dataset

from user_models.data.artifact import FORMAT_VERSION, IMPRESSIONS_SCHEMA, SequenceDataset
from user_models.errors import DatasetError


def tiny_impressions() -> pl.DataFrame:
    # impression 0 (user 0): items 1, 2 shown, 2 clicked (behavior 1); impression 1 (user 1): no click
    return pl.DataFrame({
        "user": [0, 0, 1, 1, 1], "impression": [0, 0, 1, 1, 1], "timestamp": [15, 15, 4, 4, 4],
        "session": [0, 0, None, None, None], "slot": [0, 1, 0, 1, 2], "item": [1, 2, 4, 3, 2],
        "clicked": [0, 1, 0, 0, 0], "behavior": [None, 1, None, None, None],
        "propensity": [0.5, 0.5, None, None, None],
    })


def with_impressions(impressions: pl.DataFrame) -> SequenceDataset:
    ds = tiny_dataset()
    return SequenceDataset.from_frames(ds.interactions, ds.items, ds.users, ds.meta, impressions)


def test_round_trip_keeps_the_table_and_its_counts(tmp_path):
    ds = with_impressions(tiny_impressions())
    assert (ds.meta.n_impressions, ds.meta.n_impression_rows) == (2, 5)
    assert ds.fingerprint == tiny_dataset().fingerprint  # the interactions' fingerprint is unchanged
    ds.save(tmp_path / "d")
    meta = json.loads((tmp_path / "d" / "meta.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION == 2
    assert meta["schema"]["impressions"]["slot"] == "Int16"
    back = SequenceDataset.load(tmp_path / "d")
    assert back.impressions is not None
    assert back.impressions.schema == pl.Schema(IMPRESSIONS_SCHEMA)
    assert back.impressions.equals(ds.impressions)
    assert back.meta.impressions_fingerprint == ds.meta.impressions_fingerprint != ""


def test_a_version_1_directory_loads_without_impressions(tmp_path):
    tiny_dataset().save(tmp_path / "d")
    meta_path = tmp_path / "d" / "meta.json"
    meta = json.loads(meta_path.read_text())
    # What the version-1 writer produced: no impression keys, format_version 1.
    for key in ("n_impressions", "n_impression_rows", "impression_cleaning", "impressions_fingerprint"):
        del meta[key]
    meta["format_version"] = 1
    meta_path.write_text(json.dumps(meta))
    ds = SequenceDataset.load(tmp_path / "d")
    assert ds.impressions is None and ds.meta.format_version == 1
    assert ds.fingerprint == tiny_dataset().fingerprint
    ds.save(tmp_path / "again")  # saved again, it is a version-2 directory
    assert json.loads((tmp_path / "again" / "meta.json").read_text())["format_version"] == 2


def test_unknown_version_fails(tmp_path):
    tiny_dataset().save(tmp_path / "d")
    meta_path = tmp_path / "d" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = 3
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="format version 3, this recsim-env reads versions 1, 2"):
        SequenceDataset.load(tmp_path / "d")


def test_tampered_impressions_fail_the_fingerprint(tmp_path):
    with_impressions(tiny_impressions()).save(tmp_path / "d")
    file = tmp_path / "d" / "impressions.parquet"
    frame = pl.read_parquet(file).with_columns(clicked=pl.Series([1, 0, 0, 0, 0], dtype=pl.Int8),
                                               behavior=pl.Series([1, None, None, None, None], dtype=pl.Int8))
    frame.write_parquet(file)
    with pytest.raises(DatasetError, match="impressions.parquet: fingerprint mismatch"):
        SequenceDataset.load(tmp_path / "d")
    file.unlink()
    with pytest.raises(DatasetError, match="impressions.parquet: cannot read"):
        SequenceDataset.load(tmp_path / "d")


@pytest.mark.parametrize(("change", "message"), [
    ({"item": [1, 2, 5, 3, 2]}, "column 'item' value 5 out of range"),
    ({"user": [0, 0, 2, 1, 1]}, "column 'user' value 2 out of range"),
    ({"clicked": [0, 2, 0, 0, 0]}, "column 'clicked' value 2 out of range"),
    ({"behavior": [1, 1, None, None, None]}, "column 'behavior' value 1 must be a behavior id"),
    ({"behavior": [None, 3, None, None, None]}, "column 'behavior' value 3 must be a behavior id"),
    ({"propensity": [0.0, 0.5, None, None, None]}, "column 'propensity' value 0.0 is not a probability"),
    ({"slot": [0, 0, 0, 1, 2]}, "row 2: rows are not sorted by (impression, slot)"),
    ({"impression": [1, 1, 2, 2, 2]}, "row 1: rows are not sorted"),
    ({"user": [0, 1, 1, 1, 1]}, "impression 0 has several users or times"),
])
def test_bad_impression_tables_are_refused(change, message):
    frame = tiny_impressions().with_columns(**{k: pl.Series(v) for k, v in change.items()})
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        with_impressions(frame)
