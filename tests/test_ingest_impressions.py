"""Impression logs through `recsim data prepare`: the generic table (csv/tsv/parquet/jsonl, with a
column mapping), the MIND layout, and their bad input (one line naming file, line, column and value)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import polars as pl
import pytest

from recsim_env.cli import main
from user_models.data.artifact import IMPRESSIONS_SCHEMA, SequenceDataset

LOOSE = ["--no-progress", "--min-user-events", "1", "--min-item-events", "1", "--keep-raw-ids"]
T0 = 1_700_000_000

# Two users, four slates; user a's slate s2 has 1-based positions with a gap (1, 3); nobody clicks s3.
IMPRESSIONS = pl.DataFrame({
    "uid": ["a", "a", "a", "a", "a", "b", "b", "b", "b"],
    "ts": [T0, T0, T0, T0 + 100, T0 + 100, T0 + 50, T0 + 50, T0 + 9000, T0 + 9000],
    "req": ["s1", "s1", "s1", "s2", "s2", "s3", "s3", "s4", "s4"],
    "iid": ["x", "y", "z", "x", "w", "y", "z", "z", "q"],
    "pos": [0, 1, 2, 1, 3, 0, 1, 0, 1],
    "click": [0, 1, 0, 1, 0, 0, 0, 1, 0],
    "event": [None, "buy", None, "view", None, None, None, "view", None],
    "p": [0.5, 0.25, 0.125, 0.5, 0.5, 1.0, 1.0, 0.2, 0.2],
})
MAPPING = "user=uid,time=ts,impression=req,item=iid,position=pos,clicked=click,behavior=event,propensity=p"


def write_table(frame: pl.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        frame.write_parquet(path)
    elif path.suffix == ".jsonl":
        frame.write_ndjson(path)
    else:
        frame.write_csv(path, separator="\t" if path.suffix == ".tsv" else ",")
    return path


def prepare(tmp_path: Path, capsys, *args: str) -> SequenceDataset:
    out = tmp_path / "out"
    code = main(["data", "prepare", *args, "--out", str(out), *LOOSE])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return SequenceDataset.load(out)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".jsonl"])
def test_impressions_alone_give_the_clicks_as_interactions(tmp_path, capsys, suffix):
    src = write_table(IMPRESSIONS, tmp_path / f"imp{suffix}")
    ds = prepare(tmp_path, capsys, "--impressions", str(src), "--impression-columns", MAPPING,
                 "--behaviors", "view,buy")
    imp = ds.impressions
    assert imp is not None and imp.schema == pl.Schema(IMPRESSIONS_SCHEMA)
    raw = dict(zip(ds.items["item"], ds.items["raw_id"], strict=True))
    # q and w are only shown, never clicked: they get item ids all the same.
    assert sorted(raw.values()) == ["q", "w", "x", "y", "z"]
    # interactions = the clicked rows, in time order, with their behaviors
    inter = ds.interactions
    assert [raw[i] for i in inter["item"]] == ["y", "x", "z"]
    assert [ds.behaviors[b - 1] for b in inter["behavior"]] == ["buy", "view", "view"]
    # impression ids dense in (user, time) order; slots 0-based in position order (1, 3 -> 0, 1)
    assert imp["impression"].to_list() == [0, 0, 0, 1, 1, 2, 2, 3, 3]
    assert imp["slot"].to_list() == [0, 1, 2, 0, 1, 0, 1, 0, 1]
    assert [raw[i] for i in imp["item"]] == ["x", "y", "z", "x", "w", "y", "z", "z", "q"]
    assert imp["clicked"].to_list() == [0, 1, 0, 1, 0, 0, 0, 1, 0]
    assert imp["behavior"].to_list() == [None, 2, None, 1, None, None, None, 1, None]
    assert imp["propensity"].to_list() == [0.5, 0.25, 0.125, 0.5, 0.5, 1.0, 1.0, 0.2, 0.2]
    # sessions follow the interactions: user b's slate at T0+50 is within the gap before the click at
    # T0+9000? no (8950 s > 30 min): its own click-less slate gets no session; the clicked one is 0
    assert imp["session"].to_list() == [0, 0, 0, 0, 0, None, None, 0, 0]
    assert (ds.meta.n_impressions, ds.meta.n_impression_rows) == (4, 9)
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    steps = {s["step"]: s for s in meta["impression_cleaning"]}
    assert "1 impressions had positions other than 0..k-1" in steps["positions as 0-based slots"]["detail"]
    assert meta["sources"][0]["rows"] == 9


def test_stats_show_ctr_by_slot_and_slates_without_a_click(tmp_path, capsys):
    src = write_table(IMPRESSIONS, tmp_path / "imp.parquet")
    prepare(tmp_path, capsys, "--impressions", str(src), "--impression-columns", MAPPING, "--behaviors",
            "view,buy")
    assert main(["data", "stats", str(tmp_path / "out"), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)["impressions"]
    # slots after renumbering: 0 = (x, x, y, z) with clicks (0, 1, 0, 1); 1 = (y, w, z, q): (1, 0, 0, 0)
    assert stats["ctr_by_slot"] == [{"slot": 0, "shown": 4, "clicks": 2, "ctr": 0.5},
                                    {"slot": 1, "shown": 4, "clicks": 1, "ctr": 0.25},
                                    {"slot": 2, "shown": 1, "clicks": 0, "ctr": 0.0}]
    assert (stats["impressions"], stats["rows"], stats["clicks"]) == (4, 9, 3)
    assert stats["no_click_share"] == 0.25 and stats["with_propensity"] == 1.0
    assert main(["data", "stats", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert "slates with no click" in text and "25.0%" in text and "click-through rate by slot" in text


def test_impressions_beside_a_log_share_its_ids_and_drop_unknown_users(tmp_path, capsys):
    log = tmp_path / "log.csv"
    log.write_text(f"user,item,timestamp,event\na,x,{T0 - 60},view\na,y,{T0},buy\nc,x,{T0},view\n")
    imp = write_table(IMPRESSIONS, tmp_path / "imp.parquet")
    ds = prepare(tmp_path, capsys, "--input", str(log), "--impressions", str(imp),
                 "--impression-columns", MAPPING, "--behaviors", "view,buy")
    users = dict(zip(ds.users["user"], ds.users["user_key"], strict=True))
    assert sorted(users.values()) == ["a", "c"]  # b has no interactions: its slates are dropped, counted
    assert ds.interactions.height == 3  # the log, not the clicks
    assert set(ds.impressions["user"].to_list()) == {next(u for u, k in users.items() if k == "a")}
    steps = {s.step: s for s in ds.meta.impression_cleaning}
    assert steps["users without interactions"].removed == 4
    assert "2 impressions of users absent" in steps["users without interactions"].detail
    assert ds.impressions["session"].to_list() == [0] * 5  # within the gap of a's interactions
    # items only shown to a (z, w) are in the catalogue; q was only shown to b, whose slates are gone
    assert sorted(ds.items["raw_id"].to_list()) == ["w", "x", "y", "z"]


def test_incomplete_slates_and_duplicates_are_dropped_and_counted(tmp_path, capsys):
    frame = pl.concat([
        IMPRESSIONS.with_columns(pl.col("iid").cast(pl.String)),
        IMPRESSIONS.head(1),  # an exact duplicate of s1's slot 0
    ]).with_columns(pl.when(pl.int_range(pl.len()) == 6).then(None).otherwise(pl.col("iid")).alias("iid"))
    src = write_table(frame, tmp_path / "imp.csv")
    ds = prepare(tmp_path, capsys, "--impressions", str(src), "--impression-columns", MAPPING,
                 "--behaviors", "view,buy")
    steps = {s.step: s for s in ds.meta.impression_cleaning}
    assert steps["missing user, item, impression, position or clicked"].removed == 1
    assert steps["exact duplicate slots"].removed == 1
    assert steps["incomplete slates"].removed == 1  # s3 lost its slot 1: its slot 0 goes too
    assert ds.meta.n_impressions == 3


def write(tmp_path: Path, text: str, name: str = "imp.csv") -> Path:
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    (work / name).write_text(text)
    return work / name


def refused(tmp_path: Path, capsys, *args: str) -> str:
    out = tmp_path / "refused-out"
    code = main(["data", "prepare", *args, "--out", str(out), *LOOSE])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert not out.exists()
    assert "\n" not in err and err.startswith("recsim: error: ") and "Traceback" not in err
    return err


HEADER = "user,time,impression,item,position,clicked\n"


@pytest.mark.parametrize(("rows", "message"), [
    ("a,1700000000,s1,x,0,1\na,1700000000,s1,y,1,yes\n",
     "imp.csv: line 3, column 'clicked': value 'yes' is not 0/1 (or true/false)"),
    ("a,1700000000,s1,x,0,1\na,1700000000,s1,y,-1,0\n",
     "imp.csv: line 3, column 'position': value '-1' is not a position (an integer >= 0)"),
    ("a,1700000000,s1,x,0,1\na,1700000000,s1,y,first,0\n",
     "imp.csv: line 3, column 'position': value 'first' is not a position"),
    ("a,1700000000,s1,x,0,1\nb,1700000000,s1,y,1,0\n",
     "imp.csv: line 3: impression 's1' has another user or time than at line 2"),
    ("a,1700000000,s1,x,0,1\na,1700000005,s1,y,1,0\n",
     "imp.csv: line 3: impression 's1' has another user or time than at line 2"),
    ("a,1700000000,s1,x,0,1\na,1700000000,s1,y,0,0\n",
     "imp.csv: line 3, column 'position': impression 's1' position 0 appears twice with different contents"),
], ids=["clicked", "negative-position", "text-position", "two-users", "two-times", "slot-conflict"])
def test_bad_impression_values_name_file_line_column_value(tmp_path, capsys, rows, message):
    err = refused(tmp_path, capsys, "--impressions", str(write(tmp_path, HEADER + rows)))
    assert message in err


def test_bad_propensity_and_unknown_behavior(tmp_path, capsys):
    text = "user,time,impression,item,position,clicked,propensity\na,1700000000,s1,x,0,1,1.5\n"
    err = refused(tmp_path, capsys, "--impressions", str(write(tmp_path, text)))
    assert "imp.csv: line 2, column 'propensity': value '1.5' is not a probability in (0, 1]" in err
    log = write(tmp_path, "user,item,timestamp,event\na,x,1700000000,view\n", "log.csv")
    text = "user,time,impression,item,position,clicked,event\na,1700000000,s1,x,0,1,cart\n"
    err = refused(tmp_path, capsys, "--input", str(log), "--impressions", str(write(tmp_path, text)),
                  "--unknown-events", "error")
    assert "imp.csv: line 2, column 'event': unknown behavior 'cart' (vocabulary: view)" in err


def test_mapping_errors(tmp_path, capsys):
    src = str(write(tmp_path, "who,time,impression,item,position,clicked\na,1,s,x,0,1\n"))
    err = refused(tmp_path, capsys, "--impressions", src)
    assert "missing required impression user column" in err and "--impression-columns user=C" in err
    err = refused(tmp_path, capsys, "--impressions", src, "--impression-columns", "user=who,slot=position")
    assert "--impression-columns: expected role=column with a role among user, time" in err
    err = refused(tmp_path, capsys, "--impressions", src, "--impression-columns", "user=nobody")
    assert "missing column 'nobody' (impression user, --impression-columns user=C)" in err
    err = refused(tmp_path, capsys, "--impressions", src, "--user-col", "who")
    assert "--user-col describes --input" in err
    err = refused(tmp_path, capsys)
    assert "give --input PATH, --dataset NAME or --impressions PATH" in err


# --- MIND -------------------------------------------------------------------------------------------
BEHAVIORS_TSV = (
    "1\tU1\t11/15/2019 8:55:22 AM\tN1 N2 N3\tN4-1 N5-0 N6-0\n"
    "2\tU2\t11/15/2019 9:05:00 AM\t\tN4-0 N1-1\n"
    "\n"
    "3\tU1\t11/15/2019 1:00:00 PM\tN1 N2 N3\tN7-0 N5-1\n"
)
NEWS_TSV = "N1\tsports\tfootball\tA \"quoted\" title\tabstract\turl\t[]\t[]\nN4\tnews\tworld\tT4\t\t\t\t\n"


def test_mind_behaviors_and_news(tmp_path, capsys):
    split = tmp_path / "MINDsmall_train"
    split.mkdir()
    (split / "behaviors.tsv").write_text(BEHAVIORS_TSV)
    (split / "news.tsv").write_text(NEWS_TSV)
    ds = prepare(tmp_path, capsys, "--input", str(split), "--input-format", "mind")
    raw = dict(zip(ds.items["item"], ds.items["raw_id"], strict=True))
    assert sorted(raw.values()) == [f"N{i}" for i in range(1, 8)]
    titles = dict(zip(ds.items["raw_id"], ds.items["category"], strict=True))
    assert titles["N1"] == "sports|football" and titles["N2"] is None
    users = dict(zip(ds.users["user_key"], ds.users["user"], strict=True))
    u1 = ds.interactions.filter(pl.col("user") == users["U1"])
    # history (one copy, in order, before the first impression) then the clicks of both impressions
    assert [raw[i] for i in u1["item"]] == ["N1", "N2", "N3", "N4", "N5"]
    first = 1573808122  # 11/15/2019 8:55:22 AM UTC
    assert u1["timestamp"].to_list() == [first - 86400 - 3, first - 86400 - 2, first - 86400 - 1, first,
                                         first + 4 * 3600 + 4 * 60 + 38]
    assert u1["session"].to_list() == [0, 0, 0, 1, 2]
    imp = ds.impressions
    assert imp["impression"].to_list() == [0, 0, 0, 1, 1, 2, 2]
    assert [raw[i] for i in imp["item"]] == ["N4", "N5", "N6", "N7", "N5", "N4", "N1"]
    assert imp["clicked"].to_list() == [1, 0, 0, 0, 1, 0, 1]
    assert imp["session"].to_list() == [1, 1, 1, 2, 2, 0, 0]
    step = ds.meta.cleaning[0]
    assert step.step == "MIND: one click history per user" and step.removed == 3  # U1's repeated history
    assert "1 blank lines skipped" in step.detail and "made-up times" in step.detail


@pytest.mark.parametrize(("text", "message"), [
    ("1\tU1\t11/15/2019 8:55:22 AM\tN1\tN4-1 N5\n",
     "behaviors.tsv: line 1, column 'impressions': token 'N5' is not news-label with label 0 or 1"),
    ("1\tU1\t11/15/2019 8:55:22 AM\tN1\tN4-1\n2\tU2\tN1\tN4-2\n",
     "behaviors.tsv: line 2: 4 tab-separated fields, MIND behaviors.tsv has 5"),
    ("1\tU1\t11/15/2019 8:55:22 AM\tN1\t\n",
     "behaviors.tsv: line 1, column 'impressions': empty impression list"),
], ids=["unlabelled-token", "missing-field", "empty-slate"])
def test_malformed_mind_lines(tmp_path, capsys, text, message):
    src = write(tmp_path, text, "behaviors.tsv")
    err = refused(tmp_path, capsys, "--input", str(src), "--input-format", "mind")
    assert message in err


def test_mind_bad_time_is_counted_or_refused(tmp_path, capsys):
    text = BEHAVIORS_TSV.replace("11/15/2019 9:05:00 AM", "yesterday")
    src = write(tmp_path, text, "behaviors.tsv")
    err = refused(tmp_path, capsys, "--input", str(src), "--input-format", "mind",
                  "--bad-timestamps", "error")
    assert "behaviors.tsv: line 2, column 'time (field 3)': cannot parse timestamp 'yesterday'" in err
    ds = prepare(tmp_path, capsys, "--input", str(src), "--input-format", "mind")
    assert ds.meta.n_impressions == 2  # U2's line is gone from both tables, counted in each report
    assert {s.step: s.removed for s in ds.meta.impression_cleaning}["unparsable timestamps"] == 2


def test_impressions_without_time(tmp_path, capsys):
    """No time column: file order is time order for the clicks, every session is 0 (as the
    interactions'), and timestamps are null."""
    src = write_table(IMPRESSIONS.drop("ts"), tmp_path / "imp.csv")
    ds = prepare(tmp_path, capsys, "--impressions", str(src), "--impression-columns",
                 MAPPING.replace("time=ts,", ""), "--behaviors", "view,buy")
    imp = ds.impressions
    assert imp["timestamp"].null_count() == imp.height and set(imp["session"]) == {0}
    raw = dict(zip(ds.items["item"], ds.items["raw_id"], strict=True))
    assert [raw[i] for i in ds.interactions["item"]] == ["y", "x", "z"]  # a's two clicks, then b's
    assert imp["impression"].to_list() == [0, 0, 0, 1, 1, 2, 2, 3, 3]  # (user, raw impression id) order
