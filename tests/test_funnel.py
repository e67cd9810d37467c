"""Funnel collapsing at ingestion: hand-computed tables (issue 14 item 3)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from recsim_env.cli import main
from user_models.data.funnel import collapse_funnel
from user_models.data.prepare import PrepareConfig, prepare
from user_models.data.readers import read_log
from user_models.errors import InputError

FUNNEL = ("view", "click", "cart", "buy")


def frame(rows: list[tuple[int, int, int, int]]) -> pl.DataFrame:
    """(user, item, behavior, timestamp) rows, already in (user, time) order, with a file-order column."""
    user, item, behavior, ts = zip(*rows, strict=True)
    return pl.DataFrame({"row": list(range(len(rows))), "user": list(user), "item": list(item),
                         "behavior": pl.Series(behavior, dtype=pl.Int8), "timestamp": list(ts)})


def test_a_funnel_becomes_one_interaction_with_the_deepest_behavior_and_the_first_time():
    out, merged = collapse_funnel(frame([(0, 7, 1, 100), (0, 7, 2, 110), (0, 7, 4, 130), (0, 7, 3, 150)]),
                                  window_seconds=60)
    assert out.select("row", "item", "behavior", "timestamp").rows() == [(0, 7, 4, 100)]
    assert merged == 1 and out.schema["behavior"] == pl.Int8


def test_window_edges_are_between_neighbouring_rows_and_inclusive():
    rows = [(0, 7, 1, 0), (0, 7, 2, 60),   # gap 60 == window: same funnel
            (0, 7, 3, 121),                # gap 61 > window: a new funnel
            (0, 7, 4, 181)]                # gap 60 again: joins the second funnel
    out, merged = collapse_funnel(frame(rows), window_seconds=60)
    assert out.select("behavior", "timestamp").rows() == [(2, 0), (4, 121)]
    assert merged == 2
    out0, merged0 = collapse_funnel(frame(rows), window_seconds=0)
    assert out0.height == 4 and merged0 == 0


def test_interleaved_items_and_other_users_break_runs():
    rows = [(0, 1, 1, 0), (0, 2, 1, 5), (0, 1, 4, 10),   # view A, view B, buy A: three interactions
            (0, 3, 1, 20), (0, 3, 3, 25),                # view C, cart C: one
            (1, 3, 2, 26)]                               # another user's click on C: its own
    out, merged = collapse_funnel(frame(rows), window_seconds=3600)
    assert out.select("user", "item", "behavior", "timestamp").rows() == [
        (0, 1, 1, 0), (0, 2, 1, 5), (0, 1, 4, 10), (0, 3, 3, 20), (1, 3, 2, 26)]
    assert merged == 1


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


LOG = ["user,item,timestamp,event",
       "a,x,100,view", "a,x,105,cart", "a,x,130,buy",    # one funnel
       "a,y,200,view",                                  # a different item
       "a,x,9000,view",                                 # x again, hours later: a new interaction
       "b,x,100,view", "b,y,101,view", "b,x,102,click"]  # interleaved: three interactions


def test_prepare_collapses_by_default_and_counts_it(tmp_path):
    config = PrepareConfig(behaviors=FUNNEL, min_user_events=1, min_item_events=1)
    ds = prepare(read_log(write(tmp_path / "log.csv", LOG)), config)
    step = next(s for s in ds.meta.cleaning if s.step == "funnel collapse")
    assert (step.rows_before, step.rows_after) == (8, 6)
    assert "window 1800 s (the session gap)" in step.detail and "1 runs" in step.detail
    a = ds.interactions.filter(pl.col("user") == 0)
    assert a.select("item", "behavior", "timestamp").rows() == [(1, 4, 100), (2, 1, 200), (1, 1, 9000)]
    steps = [s.step for s in ds.meta.cleaning]
    assert steps.index("exact duplicates") < steps.index("funnel collapse") < steps.index("k-core")


def test_no_collapse_and_window_options(tmp_path):
    log = read_log(write(tmp_path / "log.csv", LOG))
    kept = prepare(log, PrepareConfig(behaviors=FUNNEL, min_user_events=1, min_item_events=1,
                                      collapse_funnel=False))
    assert kept.meta.n_interactions == 8
    assert next(s for s in kept.meta.cleaning if s.step == "funnel collapse").detail.startswith("skipped")
    narrow = prepare(log, PrepareConfig(behaviors=FUNNEL, min_user_events=1, min_item_events=1,
                                        funnel_window_seconds=10))
    assert narrow.meta.n_interactions == 7  # a's buy (25 s after the cart) is a funnel of its own
    with pytest.raises(InputError):
        PrepareConfig(funnel_window_seconds=-1)


def test_ratings_and_single_behavior_logs_are_untouched(tmp_path):
    ratings = write(tmp_path / "r.csv", ["user,item,timestamp,rating", "a,x,1,4", "a,x,2,5", "a,y,3,1"])
    ds = prepare(read_log(ratings), PrepareConfig(min_user_events=1, min_item_events=1))
    step = next(s for s in ds.meta.cleaning if s.step == "funnel collapse")
    assert ds.meta.n_interactions == 3 and step.removed == 0 and "ratings" in step.detail
    single = write(tmp_path / "s.csv", ["user,item,timestamp", "a,x,1", "a,x,2", "a,y,3"])
    ds = prepare(read_log(single), PrepareConfig(min_user_events=1, min_item_events=1))
    assert ds.meta.n_interactions == 3
    assert "single behavior" in next(s for s in ds.meta.cleaning if s.step == "funnel collapse").detail


def test_cli_flags(tmp_path, capsys):
    log = write(tmp_path / "log.csv", LOG)
    base = ["data", "prepare", "--input", str(log), "--behaviors", ",".join(FUNNEL), "--min-user-events",
            "1", "--min-item-events", "1", "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "d1")]) == 0
    assert main([*base, "--no-collapse-funnel", "--out", str(tmp_path / "d2")]) == 0
    assert main([*base, "--funnel-window", "10s", "--out", str(tmp_path / "d3")]) == 0
    capsys.readouterr()
    metas = [json.loads((tmp_path / d / "meta.json").read_text()) for d in ("d1", "d2", "d3")]
    assert [m["n_interactions"] for m in metas] == [6, 8, 7]
