"""Bad input to ingestion and to dataset loading: no silent corruption, one line naming the place.

Every refusal: exit code 2, one `recsim: error:` line naming file, line/row, column and value, and no
output (nothing written, nothing deleted). Every acceptance: what was removed is counted.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import polars as pl
import pytest
from _user_model_data import cyclic_dataset

from recsim_env.cli import main
from user_models.data.artifact import SequenceDataset
from user_models.data.prepare import PrepareConfig, prepare
from user_models.data.readers import read_log
from user_models.errors import DatasetError

LOOSE = ["--no-progress", "--min-user-events", "1", "--min-item-events", "1"]
T0 = 1_700_000_000  # 2023-11-14, a plausible unix time in seconds


def refused(tmp_path: Path, capsys, content: str | bytes, *flags: str, name: str = "log.csv") -> str:
    """Run prepare on ``content``: exit 2, one line, no output, input untouched; return the line."""
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    src = work / name
    src.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = src.read_bytes()
    code = main(["data", "prepare", "--input", str(src), "--out", str(work / "out"), *LOOSE, *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "\n" not in err and err.startswith("recsim: error: ") and "Traceback" not in err
    assert sorted(p.name for p in work.iterdir()) == [name] and src.read_bytes() == before
    return err


def accepted(tmp_path: Path, content: str, *flags: str, name: str = "log.csv") -> SequenceDataset:
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    (work / name).write_text(content)
    assert main(["data", "prepare", "--input", str(work / name), "--out", str(work / "out"), *LOOSE,
                 *flags]) == 0
    return SequenceDataset.load(work / "out")


def steps(ds: SequenceDataset) -> dict[str, tuple[int, str]]:
    return {s.step: (s.removed, s.detail) for s in ds.meta.cleaning}


def seconds_log(n: int = 60) -> list[str]:
    """``n`` rows of 3 users, one event a minute, unix seconds."""
    return ["user,item,timestamp"] + [f"u{i % 3},i{i % 7},{T0 + 60 * i}" for i in range(n)]


# --- timestamp units -------------------------------------------------------------------------------
def test_one_absurd_timestamp_does_not_flip_the_unit(tmp_path, capsys):
    rows = seconds_log()
    rows[10] = "u0,i2,12345678901234567890123"  # line 11: a 23-digit number
    ds = accepted(tmp_path, "\n".join(rows) + "\n")
    assert ds.meta.extra["time_unit"] == "unix s"
    removed, detail = steps(ds)["unparsable timestamps"]
    assert removed == 1 and "1 implausible" in detail and "line 11 value '12345678901234567890123'" in detail
    assert steps(ds)["exact duplicates"][0] == 0  # times did not collapse into 1970
    assert ds.meta.n_interactions == 59
    err = refused(tmp_path, capsys, "\n".join(rows) + "\n", "--bad-timestamps", "error")
    assert "log.csv: line 11, column 'timestamp': implausible timestamp '12345678901234567890123'" in err


def test_a_file_mixing_seconds_and_milliseconds_is_refused(tmp_path, capsys):
    rows = seconds_log()
    for i in range(40, 61):  # the last third in milliseconds
        user, item, ts = rows[i].split(",")
        rows[i] = f"{user},{item},{int(ts) * 1000}"
    err = refused(tmp_path, capsys, "\n".join(rows) + "\n")
    assert f"log.csv: line 41, column 'timestamp': timestamp '{(T0 + 60 * 39) * 1000}' is in unix ms but " \
           "the file is in unix s (median magnitude); 21 of 60 rows disagree about the unit" in err
    # the same in JSONL (numbers, not strings) and with the majority in ms
    lines = [json.dumps({"user": "a", "item": f"i{i}", "ts": (T0 + i) * (1000 if i < 5 else 1)})
             for i in range(8)]
    err = refused(tmp_path, capsys, "\n".join(lines) + "\n", name="log.jsonl")
    assert "log.jsonl: line 6, column 'ts': timestamp" in err
    assert "is in unix s but the file is in unix ms" in err
    # an explicit unit reads every row in it: the disagreeing rows are implausible and counted
    ds = accepted(tmp_path, "\n".join(rows) + "\n", "--time-unit", "s")
    assert steps(ds)["unparsable timestamps"][0] == 21


@pytest.mark.parametrize("bad, where", [
    ("315532800", "1980-01-01"), ("4102444800", "2100-01-01"), ("1980-01-01T00:00:00Z", "iso before 1990"),
    ("2999-12-31", "iso future"),
])
def test_implausible_calendar_times_are_counted_or_refused(tmp_path, capsys, bad, where):
    rows = seconds_log(30)
    if not bad[0:4].isdigit() or "-" in bad:
        rows = ["user,item,timestamp"] + [f"u{i % 3},i{i % 7},2023-11-14T00:{i:02d}:00Z" for i in range(30)]
    rows[5] = f"u1,i1,{bad}"
    ds = accepted(tmp_path, "\n".join(rows) + "\n")
    removed, detail = steps(ds)["unparsable timestamps"]
    assert removed == 1 and f"line 6 value '{bad}'" in detail and "1990-01-01 .. " in detail
    err = refused(tmp_path, capsys, "\n".join(rows) + "\n", "--bad-timestamps", "error")
    assert f"line 6, column 'timestamp': implausible timestamp '{bad}'" in err
    # the range is configurable
    wide = accepted(tmp_path, "\n".join(rows) + "\n", "--min-time", "1970-01-01", "--max-time", "3000-01-01")
    assert steps(wide)["unparsable timestamps"][0] == 0


def test_relative_times_are_not_judged_by_the_calendar(tmp_path):
    ds = accepted(tmp_path, "user,item,timestamp\na,x,1\na,y,2\nb,x,3\n")
    assert steps(ds)["unparsable timestamps"][0] == 0


def test_bad_time_bounds_are_refused(tmp_path, capsys):
    assert "invalid time 'soon'" in refused(tmp_path, capsys, "\n".join(seconds_log(5)) + "\n",
                                            "--max-time", "soon")
    assert "plausible time range must be finite and increasing" in refused(
        tmp_path, capsys, "\n".join(seconds_log(5)) + "\n", "--min-time", "2000-01-01", "--max-time", "1999")


# --- ratings, prices ---------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["inf", "-inf", "1e308", "Infinity", "NaN", "-1e7"])
def test_non_finite_or_absurd_ratings_are_refused(tmp_path, capsys, value):
    err = refused(tmp_path, capsys, f"user,item,rating\na,x,4\na,y,{value}\nb,x,3\n")
    assert f"log.csv: line 3, column 'rating': value '{value}' is not a" in err


def test_non_finite_ratings_in_jsonl_numbers(tmp_path, capsys):
    lines = ['{"user": "a", "item": "x", "rating": 4}', '{"user": "a", "item": "y", "rating": 1e308}']
    err = refused(tmp_path, capsys, "\n".join(lines) + "\n", name="log.jsonl")
    assert "log.jsonl: line 2, column 'rating': value 1e+308 is not a plausible rating" in err


@pytest.mark.parametrize("constant", ["Infinity", "-Infinity", "NaN"])
def test_json_constants_that_are_not_json_are_named(tmp_path, capsys, constant):
    # Python's json writes float('inf') as Infinity, which JSON (and the fast reader) refuse
    lines = ['{"user": "a", "item": "x"}', f'{{"user": "a", "item": {constant}}}']
    err = refused(tmp_path, capsys, "\n".join(lines) + "\n", name="log.jsonl")
    assert f"log.jsonl: line 2: invalid JSON ({constant} is not a JSON number" in err


@pytest.mark.parametrize("price", ["inf", "nan", "-Infinity"])
def test_non_finite_item_price_is_refused(tmp_path, capsys, price):
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    (work / "items.csv").write_text(f"item,price\nx,1.5\ny,{price}\n")
    (work / "log.csv").write_text("user,item\na,x\na,y\n")
    assert main(["data", "prepare", "--input", str(work / "log.csv"), "--items", str(work / "items.csv"),
                 "--out", str(work / "out"), *LOOSE]) == 2
    assert f"items.csv: line 3, column 'price': value '{price}' is not a" in capsys.readouterr().err
    assert not (work / "out").exists()


# --- padded ids -------------------------------------------------------------------------------------
def test_padded_ids_are_stripped_and_counted(tmp_path):
    content = "user,item,event\na,x,view\n a ,x , view\n7,y,view\n 7,y,buy\n"
    ds = accepted(tmp_path, content)
    assert ds.n_users == 2 and ds.n_items == 2 and ds.behaviors == ("view", "buy")
    removed, detail = steps(ds)["spaces stripped from ids"]
    assert removed == 0 and detail == "values changed (rows kept): user: 2, item: 1, event: 1"
    kept = accepted(tmp_path, content, "--keep-id-spaces")
    assert kept.n_users == 4 and "spaces stripped from ids" not in steps(kept)


# --- parse errors name the line -----------------------------------------------------------------------
@pytest.mark.parametrize("content, name, message", [
    ("user,item,timestamp\na,x,1\na,y,2,extra\n", "log.csv",
     "log.csv: line 3: 4 fields, the header has 3 (a ragged row"),
    (b"user,item\na,x\na,\xff\xfey\n", "log.csv", "log.csv: line 3: byte 0xFF is not UTF-8"),
    (b"user,item,title\na,x,caf\xe9\n", "log.csv", "log.csv: line 2: byte 0xE9 is not UTF-8 (the file looks "
                                                   "Latin-1"),
    (b"us\xe9r,item\na,x\n", "log.csv", "log.csv: line 1: byte 0xE9 is not UTF-8"),
    (b"user\titem\na\tx\nb\t\xe9\n", "log.tsv", "log.tsv: line 3: byte 0xE9 is not UTF-8"),
    ('{"user": "a", "item": "x"}\n{"user": "a", "item": "y"\n', "log.jsonl",
     "log.jsonl: line 2: invalid JSON (Expecting ',' delimiter at column"),
    ('{"user": "a", "item": "x"}\n[1, 2]\n', "log.jsonl",
     "log.jsonl: line 2: expected a JSON object per line, got an array"),
    ('{"user": "a", "item": "x"}\n\n7\n', "log.jsonl", "log.jsonl: line 3: expected a JSON object per line, "
                                                      "got a number"),
    ('user,item,timestamp\na,"multi\nline\nitem",1\na,y,2,9\n', "log.csv",
     "log.csv: line 5: 4 fields, the header has 3"),
    ('user,item,extra\na,x,a"b\nb,y,z\n', "log.csv", "log.csv: line 2: a quote inside an unquoted field"),
    ('user,item\na,"x"y\n', "log.csv", "log.csv: line 2: text after the closing quote"),
    ('user,item\na,x\nb,"y\nc,z\n', "log.csv", "log.csv: line 3: a quoted field opened here is never closed"),
    ('{"user": "a", "item": 1}\n{"user": "b", "item": true}\n', "log.jsonl",
     "log.jsonl: line 2, column 'item': value true is a boolean but line 1 has a number"),
    ('{"user": "a", "item": {"id": 1}}\n', "log.jsonl",
     "log.jsonl: line 1, column 'item': value {'id': 1} is a list or an object"),
    ("\n\n", "log.jsonl", "log.jsonl: file is empty"),
], ids=["ragged", "non-utf8", "latin1", "latin1-header", "latin1-tsv", "bad-jsonl", "jsonl-array",
        "jsonl-number", "ragged-after-multiline", "quote-inside", "text-after-quote", "unclosed-quote",
        "jsonl-type-clash", "jsonl-object-id", "jsonl-blank"])
def test_parse_errors_name_the_line(tmp_path, capsys, content, name, message):
    assert message in refused(tmp_path, capsys, content, name=name)


def test_value_errors_count_lines_after_multiline_quoted_fields(tmp_path, capsys):
    rows = ['user,item,rating', 'a,"two\nlines",4', 'a,"three\nlines\nhere",5', 'b,x,4', 'b,y,five']
    err = refused(tmp_path, capsys, "\n".join(rows) + "\n")
    assert "log.csv: line 8, column 'rating': value 'five' is not a number" in err  # not line 6


def test_a_directory_as_input_is_reported_as_one(tmp_path, capsys):
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    (work / "logs.csv").mkdir()
    assert main(["data", "prepare", "--input", str(work / "logs.csv"), "--out", str(work / "out"),
                 *LOOSE]) == 2
    assert "logs.csv: is a directory, not a file" in capsys.readouterr().err
    (work / "plain").mkdir()
    assert main(["data", "prepare", "--input", str(work / "plain"), "--out", str(work / "out"),
                 *LOOSE]) == 2
    assert "plain: is a directory holding neither u.data nor a *.inter file" in capsys.readouterr().err
    assert sorted(p.name for p in work.iterdir()) == ["logs.csv", "plain"]


def test_python_api_gives_the_same_errors(tmp_path):
    src = tmp_path / "log.csv"
    src.write_bytes(b"user,item\na,\xe9\n")
    with pytest.raises(DatasetError.__mro__[1], match="line 2: byte 0xE9 is not UTF-8"):
        prepare(read_log(src), PrepareConfig(min_user_events=1, min_item_events=1))


# --- datasets are validated on load -------------------------------------------------------------------
@pytest.fixture
def saved(tmp_path) -> Path:
    cyclic_dataset(n_users=4, length=6).save(tmp_path / "ds")
    return tmp_path / "ds"


def rewrite_table(root: Path, name: str, change) -> None:
    file = root / f"{name}.parquet"
    change(pl.read_parquet(file)).write_parquet(file)


def rewrite_meta(root: Path, change) -> None:
    meta = json.loads((root / "meta.json").read_text())
    meta = change(meta)
    (root / "meta.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("damage, message", [
    (lambda r: rewrite_table(r, "items", lambda f: f.head(0)), "items.parquet: 0 rows, but meta.json says "
                                                               "item count 10"),
    (lambda r: rewrite_table(r, "users", lambda f: f.head(2)), "users.parquet: 2 rows, but meta.json says "
                                                               "user count 4"),
    (lambda r: rewrite_table(r, "interactions", lambda f: f.with_columns(
        pl.when(pl.col("position") == 3).then(0).otherwise(pl.col("item")).cast(pl.Int32).alias("item"))),
     "interactions.parquet: column 'item' value 0 out of range [1, 10]"),
    (lambda r: rewrite_table(r, "interactions", lambda f: f.with_columns(
        pl.when(pl.col("position") == 3).then(99).otherwise(pl.col("item")).cast(pl.Int32).alias("item"))),
     "interactions.parquet: column 'item' value 99 out of range [1, 10]"),
    (lambda r: rewrite_table(r, "interactions", lambda f: f.reverse()),
     "interactions.parquet: row 1: events are not sorted by (user, position)"),
    (lambda r: rewrite_meta(r, lambda m: [m]), "meta.json: expected a JSON object, got list"),
    (lambda r: rewrite_meta(r, lambda m: {**m, "n_users": "three hundred"}),
     "meta.json: key 'n_users' must be a count (integer >= 0), got \"three hundred\""),
    (lambda r: rewrite_meta(r, lambda m: {**m, "n_items": -3}),
     "meta.json: key 'n_items' must be a count (integer >= 0), got -3"),
    (lambda r: rewrite_meta(r, lambda m: {**m, "behaviors": "view"}),
     "meta.json: key 'behaviors' must be a non-empty list of names"),
    (lambda r: rewrite_meta(r, lambda m: {**m, "has_timestamps": "yes"}),
     "meta.json: key 'has_timestamps' must be true or false"),
    (lambda r: rewrite_meta(r, lambda m: {**m, "session_gap_seconds": -1}),
     "meta.json: key 'session_gap_seconds' must be a positive number"),
    (lambda r: rewrite_meta(r, lambda m: {**m, "cleaning": [1]}),
     "meta.json: key 'cleaning' must be a list of cleaning steps"),
    (lambda r: (r / "meta.json").write_bytes(b"\xff{}"), "meta.json: not UTF-8 text"),
], ids=["items-empty", "users-short", "item-zero", "item-high", "unsorted", "meta-array", "n-users-text",
        "n-items-negative", "behaviors-str", "timestamps-str", "gap-negative", "cleaning-int", "meta-binary"])
def test_damaged_datasets_fail_on_load_with_one_line(saved, capsys, damage, message):
    damage(saved)
    before = {p.name: p.read_bytes() for p in saved.iterdir()}
    for verify in (True, False):
        with pytest.raises(DatasetError) as info:
            SequenceDataset.load(saved, verify=verify)
        assert message in str(info.value) and "\n" not in str(info.value)
    assert main(["data", "stats", str(saved)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before


def test_training_on_a_damaged_dataset_fails_before_torch(saved, tmp_path, capsys):
    rewrite_table(saved, "interactions", lambda f: f.with_columns(
        pl.when(pl.col("position") == 2).then(50).otherwise(pl.col("item")).cast(pl.Int32).alias("item")))
    assert main(["user-model", "train", "--data", str(saved), "--out", str(tmp_path / "m"), "--epochs", "1",
                 "--no-progress"]) == 2
    assert "value 50 out of range" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
    shutil.rmtree(saved)
