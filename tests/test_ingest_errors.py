"""Bad input through `recsim data prepare`: one line naming file/row/column/value, exit 2, no output."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from recsim_env.cli import main

GOOD = "user,item,timestamp,event\na,x,100,view\na,y,200,buy\nb,x,300,view\n"


def run_prepare(tmp_path: Path, capsys, content: str | bytes, *flags: str, name: str = "log.csv") -> str:
    """Run prepare on a file with ``content``; assert exit 2 and no output; return the error line."""
    tmp_path = Path(tempfile.mkdtemp(dir=tmp_path))  # one clean directory per call
    src = tmp_path / name
    if isinstance(content, bytes):
        src.write_bytes(content)
    else:
        src.write_text(content)
    out = tmp_path / "out"
    code = main(["data", "prepare", "--input", str(src), "--out", str(out), "--no-progress",
                 "--min-user-events", "1", "--min-item-events", "1", *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary leftovers
    assert "\n" not in err and err.startswith("recsim: error: ") and "Traceback" not in err
    return err


def test_missing_required_column_lists_the_available_ones(tmp_path, capsys):
    err = run_prepare(tmp_path, capsys, GOOD, "--user-col", "visitor")
    expected = "log.csv: missing column 'visitor' (user, --user-col); available columns: user, item, time"
    assert expected in err
    err = run_prepare(tmp_path, capsys, "who,what\n1,2\n")
    assert "missing required user column" in err and "available columns: who, what" in err


@pytest.mark.parametrize("content", ["", "user,item\n"], ids=["empty", "header-only"])
def test_empty_file(tmp_path, capsys, content):
    err = run_prepare(tmp_path, capsys, content)
    assert "log.csv: file is empty" in err or "log.csv: no data rows" in err


def test_wrong_delimiter(tmp_path, capsys):
    err = run_prepare(tmp_path, capsys, GOOD.replace(",", "\t"))
    assert "available columns: user\titem\ttimestamp\tevent" in err and "wrong delimiter?" in err


def test_non_numeric_rating(tmp_path, capsys):
    err = run_prepare(tmp_path, capsys, "user,item,rating\na,x,4\na,y,five\n")
    assert "log.csv: line 3, column 'rating': value 'five' is not a number" in err


def test_non_numeric_item_price(tmp_path, capsys):
    (tmp_path / "items.csv").write_text("item,price\nx,1.5\ny,cheap\n")
    src = tmp_path / "log.csv"
    src.write_text(GOOD)
    code = main(["data", "prepare", "--input", str(src), "--items", str(tmp_path / "items.csv"),
                 "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 2
    assert "items.csv: line 3, column 'price': value 'cheap' is not a number" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_dataset_emptied_by_a_filter_names_it(tmp_path, capsys):
    err = run_prepare(tmp_path, capsys, GOOD, "--min-user-events", "5")
    assert "step 'k-core' removed all 3 remaining events" in err and "lower --min-user-events" in err
    err = run_prepare(tmp_path, capsys, GOOD, "--behaviors", "like", "--unknown-events", "drop")
    assert "step 'events outside the vocabulary' removed all 3" in err


def test_unknown_event_under_error_policy(tmp_path, capsys):
    err = run_prepare(tmp_path, capsys, GOOD.replace("buy", "share"), "--behaviors", "view,buy",
                      "--unknown-events", "error")
    assert "log.csv: line 3, column 'event': unknown event 'share' (vocabulary: view, buy)" in err


def test_bad_timestamp_under_error_policy(tmp_path, capsys):
    err = run_prepare(tmp_path, capsys, GOOD.replace("200", "yesterday"), "--bad-timestamps", "error")
    assert "log.csv: line 3, column 'timestamp': cannot parse timestamp 'yesterday'" in err


def test_output_exists_without_overwrite(tmp_path, capsys):
    src = tmp_path / "log.csv"
    src.write_text(GOOD)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    args = ["data", "prepare", "--input", str(src), "--out", str(out), "--no-progress",
            "--min-user-events", "1", "--min-item-events", "1"]
    assert main(args) == 2
    assert "out: output exists; pass --overwrite" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    # --overwrite replaces only a dataset recsim wrote: this directory is someone else's
    assert main([*args, "--overwrite"]) == 2
    assert "is a directory that is not a dataset written by recsim-env" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    (out / "keep.txt").unlink()
    out.rmdir()
    assert main(args) == 0
    assert main([*args, "--overwrite"]) == 0  # an earlier dataset is replaced
    assert sorted(p.name for p in out.iterdir()) == ["interactions.parquet", "items.parquet", "meta.json",
                                                     "users.parquet"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv", "out"]  # no leftovers


def test_bad_flags(tmp_path, capsys):
    assert "--behaviors names 2 behaviors but the log has no event or rating column" in run_prepare(
        tmp_path, capsys, "user,item\na,x\n", "--behaviors", "a,b")
    assert "invalid duration '30 min'" in run_prepare(tmp_path, capsys, GOOD, "--session-gap", "30 min")
    assert "cannot tell the format" in run_prepare(tmp_path, capsys, GOOD, name="log.dat")
