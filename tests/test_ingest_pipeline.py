"""The ingestion pipeline: cleaning counts, k-core, ids, behaviors, ordering, sessions, privacy, splits."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from user_models.data.prepare import PrepareConfig, parse_duration, prepare
from user_models.data.readers import ColumnMap, ItemColumnMap, read_items, read_log
from user_models.errors import InputError

NO_KCORE = PrepareConfig(min_user_events=1, min_item_events=1)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def steps(ds) -> dict[str, int]:
    return {s.step: s.removed for s in ds.meta.cleaning}


def test_every_cleaning_step_is_counted(tmp_path):
    csv = write(tmp_path / "log.csv", "\n".join([
        "user,item,timestamp,event",
        "a,x,100,view",
        "a,x,100,view",        # exact duplicate of the line above
        "a,y,200,click",
        ",y,300,view",         # missing user
        "b,,300,view",         # missing item
        "b,x,not-a-time,view",  # unparsable timestamp
        "b,y,400,share",       # outside the vocabulary
        "b,x,500,buy",
    ]) + "\n")
    config = PrepareConfig(behaviors=("view", "click", "buy"), min_user_events=1, min_item_events=1)
    ds = prepare(read_log(csv), config)
    assert steps(ds) == {"missing user or item": 2, "unparsable timestamps": 1,
                         "events outside the vocabulary": 1, "exact duplicates": 1, "funnel collapse": 0,
                         "k-core": 0}
    assert ds.meta.n_interactions == 3
    assert "'share': 1" in next(s.detail for s in ds.meta.cleaning if s.step.startswith("events"))
    assert ds.meta.extra["input_counts"] == {"events": 8, "users": 2, "items": 2}


def test_k_core_is_iterative(tmp_path):
    # k=2. Round 1 drops user c (one event); then item z has one event left (b's), round 2 drops it;
    # then user b has one event left, round 3 drops b.
    rows = ["user,item", "a,x", "a,y", "a,x", "a,y", "b,z", "b,x", "c,z", "d,y", "d,x"]
    ds = prepare(read_log(write(tmp_path / "log.csv", "\n".join(rows) + "\n")),
                 PrepareConfig(min_user_events=2, min_item_events=2))
    kept = ds.users.height, ds.items["raw_id"].to_list()
    assert kept == (2, ["x", "y"])
    assert ds.meta.n_interactions == 6
    assert "3 rounds" in next(s.detail for s in ds.meta.cleaning if s.step == "k-core")


def test_ids_follow_raw_id_order_and_are_deterministic(tmp_path):
    rows = ["user,item,timestamp", "10,30,1", "9,2,2", "10,2,3", "9,100,4"]
    csv = write(tmp_path / "log.csv", "\n".join(rows) + "\n")
    a = prepare(read_log(csv), NO_KCORE)
    b = prepare(read_log(csv), NO_KCORE)
    # numeric ids sort numerically: 2 < 30 < 100 (not as strings), padding 0 is never used
    assert a.items["raw_id"].to_list() == ["2", "30", "100"]
    assert a.items["item"].to_list() == [1, 2, 3]
    assert a.fingerprint == b.fingerprint
    # user 0 is raw "9"
    assert a.sequences.user(0)[0].tolist() == [1, 3]


def test_padded_ids_stay_strings(tmp_path):
    csv = write(tmp_path / "log.csv", "user,item\nu1,007\nu1,7\nu1,010\n")
    ds = prepare(read_log(csv), NO_KCORE)
    assert ds.items["raw_id"].to_list() == ["007", "010", "7"]


def test_time_ties_keep_file_order_and_sessions_split_on_gap(tmp_path):
    rows = ["user,item,timestamp",
            "u,c,100", "u,a,100", "u,b,100",   # three events in one second: file order c, a, b
            "u,d,50",                           # earlier in time, later in the file
            "u,e,2000",                         # 1900 s after the previous: new session with gap 30m
            "u,f,2010"]
    ds = prepare(read_log(write(tmp_path / "log.csv", "\n".join(rows) + "\n")),
                 PrepareConfig(min_user_events=1, min_item_events=1, session_gap_seconds=1800))
    raw = ds.items["raw_id"].to_list()
    order = [raw[i - 1] for i in ds.sequences.user(0)[0]]
    assert order == ["d", "c", "a", "b", "e", "f"]
    assert ds.interactions["session"].to_list() == [0, 0, 0, 0, 1, 1]
    assert ds.interactions["position"].to_list() == list(range(6))


def test_no_timestamps_file_order_one_session(tmp_path):
    txt = write(tmp_path / "seq.txt", "1 5\n1 3\n2 3\n1 5\n\n2 4\n")
    ds = prepare(read_log(txt), NO_KCORE)
    assert not ds.meta.has_timestamps and ds.meta.temporal_cutoff is None
    assert ds.sequences.user(0)[0].tolist() == [3, 1, 3]  # items 3,4,5 -> ids 1,2,3; repeats kept
    assert ds.meta.n_sessions == 2
    assert steps(ds)["missing user or item"] == 1  # the blank line
    assert ds.behaviors == ("interact",)
    with pytest.raises(InputError, match="temporal"):
        ds.temporal_split()


def test_timestamp_formats(tmp_path):
    csv = write(tmp_path / "log.csv", "\n".join([
        "user,item,time",
        "a,x,2024-01-01T00:00:00Z",
        "a,y,2024-01-01 01:00:00",
        "a,z,2024-01-01T03:00:00+02:00",
        "a,w,2024-01-02",
    ]) + "\n")
    ds = prepare(read_log(csv), NO_KCORE)
    base = 1704067200
    assert sorted(ds.interactions["timestamp"].to_list()) == [base, base + 3600, base + 3600, base + 86400]
    assert ds.meta.extra["time_unit"] == "iso-8601"
    ms = write(tmp_path / "ms.csv", "user,item,ts\na,x,1704067200123\na,y,1704067201999\n")
    ds = prepare(read_log(ms), NO_KCORE)
    assert ds.interactions["timestamp"].to_list() == [base, base + 1]
    assert ds.meta.extra["time_unit"] == "unix ms"


def test_rating_thresholds_and_custom_names(tmp_path):
    csv = write(tmp_path / "r.csv", "user,item,rating\na,1,1\na,2,2.5\na,3,3\na,4,3.5\na,5,5\n")
    ds = prepare(read_log(csv), NO_KCORE)
    assert ds.behaviors == ("dislike", "neutral", "like")
    assert ds.interactions["behavior"].to_list() == [1, 2, 2, 3, 3]
    assert ds.meta.rating_thresholds == (2.5, 3.5)
    ds = prepare(read_log(csv), PrepareConfig(min_user_events=1, min_item_events=1, rating_thresholds=(4,),
                                              behaviors=("seen", "loved")))
    assert ds.interactions["behavior"].to_list() == [1, 1, 1, 1, 2]
    with pytest.raises(InputError, match="3 levels"):
        prepare(read_log(csv), PrepareConfig(behaviors=("a", "b")))


def test_event_vocabulary_by_frequency_when_not_given(tmp_path):
    csv = write(tmp_path / "e.csv", "user,item,event\na,1,buy\na,2,view\na,3,view\na,4,click\na,5,view\n")
    ds = prepare(read_log(csv), NO_KCORE)
    assert ds.behaviors == ("view", "buy", "click")  # frequency, then name
    assert ds.meta.extra["behavior_order"] == "by decreasing frequency"


def test_user_ids_are_pseudonymised(tmp_path):
    csv = write(tmp_path / "log.csv", "user,item\nalice@example.com,1\nbob,1\n")
    log = read_log(csv)
    hidden = prepare(log, NO_KCORE)
    keys = hidden.users["user_key"].to_list()
    assert "alice@example.com" not in keys and all(len(k) == 16 for k in keys)
    hidden.save(tmp_path / "ds")
    blob = b"".join(p.read_bytes() for p in (tmp_path / "ds").iterdir())
    assert b"alice" not in blob
    other = prepare(log, NO_KCORE)
    assert other.users["user_key"].to_list() != keys  # random salt per run
    salted = [prepare(log, PrepareConfig(min_user_events=1, min_item_events=1, salt="s")) for _ in range(2)]
    assert salted[0].users["user_key"].to_list() == salted[1].users["user_key"].to_list()
    raw = prepare(log, PrepareConfig(min_user_events=1, min_item_events=1, keep_raw_ids=True))
    assert raw.users["user_key"].to_list() == ["alice@example.com", "bob"]


def test_custom_columns_iso_times_string_ids_and_item_file(tmp_path):
    csv = write(tmp_path / "shop.csv", "\n".join([
        "visitor;sku;when;what",  # header only to show the mapping, the file itself is comma-separated
    ]).replace(";", ",") + "\n" + "\n".join([
        "v-1,SKU-B,2024-03-01T10:00:00Z,view",
        "v-1,SKU-A,2024-03-01T10:05:00Z,cart",
        "v-2,SKU-A,2024-03-02T09:00:00+01:00,view",
    ]) + "\n")
    items = write(tmp_path / "items.csv", "sku,name,tags,cost\nSKU-A,Alpha,x|y,9.5\nSKU-B,Beta,,\n")
    log = read_log(csv, columns=ColumnMap(user="visitor", item="sku", time="when", event="what"))
    meta = read_items(items, columns=ItemColumnMap(item="sku", title="name", category="tags", price="cost"))
    ds = prepare(log, PrepareConfig(behaviors=("view", "cart"), min_user_events=1, min_item_events=1), meta)
    assert ds.items.to_dicts() == [
        {"item": 1, "raw_id": "SKU-A", "title": "Alpha", "category": "x|y", "price": 9.5},
        {"item": 2, "raw_id": "SKU-B", "title": "Beta", "category": None, "price": None},
    ]
    assert ds.sequences.user(0)[0].tolist() == [2, 1]
    assert ds.interactions["timestamp"].to_list()[-1] == 1709366400  # 09:00+01:00 = 08:00 UTC
    assert len(ds.meta.sources) == 2 and all(len(s["sha256"]) == 64 for s in ds.meta.sources)


def test_temporal_split(tmp_path):
    rows = ["user,item,timestamp"] + [f"u{u},{i},{u * 10 + i}" for u in range(3) for i in range(1, 6)]
    ds = prepare(read_log(write(tmp_path / "t.csv", "\n".join(rows) + "\n")),
                 PrepareConfig(min_user_events=1, min_item_events=1, temporal_test_fraction=0.2))
    times = np.sort(ds.interactions["timestamp"].to_numpy())
    assert ds.meta.temporal_cutoff == int(times[int(0.8 * (len(times) - 1))])  # lower 80% quantile
    train, test = ds.temporal_split(cutoff=23)
    # user 0 (1..5) all before, user 1 (11..15) all before, user 2 (21..25): 21, 22 before, 23 first after
    assert train.lengths.tolist() == [5, 5, 2]
    assert test.users.tolist() == [2]
    assert test.history.user(0)[2].tolist() == [21, 22]
    assert test.target_timestamps.tolist() == [23]


def test_parse_duration():
    assert [parse_duration(t) for t in ("90", "90s", "30m", "2h", "1d", "1.5h")] == [
        90, 90, 1800, 7200, 86400, 5400]
    with pytest.raises(InputError, match="duration"):
        parse_duration("30 minutes")


def test_other_table_formats_give_the_same_dataset(tmp_path):
    frame = pl.DataFrame({"user_id": ["a", "a", "b", "b"], "item_id": [1, 2, 1, 2],
                          "timestamp": [10, 20, 30, 40], "event": ["view", "buy", "view", "view"]})
    frame.write_csv(tmp_path / "l.csv")
    frame.write_csv(tmp_path / "l.tsv", separator="\t")
    frame.write_parquet(tmp_path / "l.parquet")
    frame.write_ndjson(tmp_path / "l.jsonl")
    config = PrepareConfig(behaviors=("view", "buy"), min_user_events=1, min_item_events=1)
    prints = {prepare(read_log(tmp_path / f"l.{ext}"), config).fingerprint
              for ext in ("csv", "tsv", "parquet", "jsonl")}
    assert len(prints) == 1


ML100K = Path(os.environ.get("RECSIM_ML100K", Path(__file__).resolve().parents[1] / "../shared/data/ml-100k"))


@pytest.mark.skipif(not (ML100K / "ml-100k.inter").is_file(),
                    reason=f"MovieLens-100K not found at {ML100K} (set RECSIM_ML100K)")
def test_ml100k_counts_match_the_source():
    from user_models.data.movielens import read_ml100k

    log, items = read_ml100k(ML100K)
    ds = prepare(log, PrepareConfig(name="ml-100k"), items)
    assert ds.meta.extra["input_counts"] == {"events": 100_000, "users": 943, "items": 1_682}
    assert ds.meta.cleaning[0].rows_before == 100_000
    assert sum(s.removed for s in ds.meta.cleaning) == 100_000 - ds.meta.n_interactions
    assert ds.n_users == 943 and ds.meta.behavior_source == "ratings"
    assert ds.items.filter(pl.col("raw_id") == "1")["category"].item() == "Animation|Children's|Comedy"
    # many ratings share a second: order inside a user follows the file
    ts = ds.sequences.timestamps
    assert ts is not None and np.all(np.diff(ts)[np.diff(ds.interactions["user"].to_numpy()) == 0] >= 0)


def test_a_column_named_row_does_not_clash(tmp_path):
    csv = write(tmp_path / "log.csv", "row,user,item\n7,a,x\n3,a,y\n")
    ds = prepare(read_log(csv), NO_KCORE)
    assert ds.sequences.user(0)[0].tolist() == [1, 2]  # file order, not the "row" column


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 6), st.integers(0, 8), st.integers(0, 5_000), st.sampled_from("vcb")),
        min_size=1, max_size=80,
    ),
    k=st.integers(1, 3),
)
def test_invariants_on_random_logs(tmp_path, rows, k):
    lines = ["user,item,timestamp,event"] + [f"u{u},i{i},{t},{e}" for u, i, t, e in rows]
    csv = write(tmp_path / "log.csv", "\n".join(lines) + "\n")
    config = PrepareConfig(behaviors=("v", "c", "b"), min_user_events=k, min_item_events=k,
                           session_gap_seconds=600)
    try:
        ds = prepare(read_log(csv), config)
    except InputError as exc:
        assert "removed all" in str(exc)  # the only way a valid log can fail: k-core empties it
        return
    inter = ds.interactions
    assert sum(s.removed for s in ds.meta.cleaning) == len(rows) - inter.height
    assert inter.group_by("user").len()["len"].min() >= k  # k-core holds for users ...
    assert inter.group_by("item").len()["len"].min() >= k  # ... and items
    per_user = inter.group_by("user", maintain_order=True).agg("position", "session", "timestamp")
    for positions, sessions, times in per_user.select("position", "session", "timestamp").iter_rows():
        assert positions == list(range(len(positions)))
        assert times == sorted(times)
        gaps = np.diff(times) > 600
        assert sessions == [0, *np.cumsum(gaps).tolist()]
    assert inter.unique(["user", "item", "timestamp", "behavior"]).height == inter.height
