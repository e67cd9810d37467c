"""Property: `recsim data prepare` on random malformed CSV/JSONL either refuses (exit 2, one line, no
output, no leftovers) or succeeds with a cleaning report that accounts for every input row."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsim_env.cli import main
from user_models.data.artifact import SequenceDataset

TOKENS = ["a", "b", " a ", "7", " 7", "007", "", " ", "x", "y", "view", "buy", " view", "nan", "inf", "-inf",
          "1e308", "4", "3.5", "-1", "1700000000", "1700000060", "1700000000000", "12345678901234567890123",
          "2023-11-14T00:00:00Z", "1980-01-01", "2999-01-01", "yesterday", "\u00e9", "\"q\"", "a\"b"]
COLUMNS = ["user", "item", "timestamp", "event", "rating", "extra"]

field = st.sampled_from(TOKENS)
header = st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=5, unique=True)


IDS = ["a", "b", " a ", "7", " 7", "007", "x", "y", "", "\u00e9"]
VALUES = {"user": IDS, "item": IDS,
          "timestamp": ["1700000000", "1700000060", "1700000000000", "12345678901234567890123", "",
                        "2023-11-14T00:00:00Z", "1980-01-01", "2999-01-01", "yesterday", "5", "inf"],
          "event": ["view", "buy", " view", "", "click"],
          "rating": ["4", "3.5", "-1", "nan", "inf", "1e308", "", "five", "1"],
          "extra": TOKENS}


@st.composite
def csv_files(draw) -> bytes:
    others = draw(st.lists(st.sampled_from(COLUMNS[2:]), unique=True, max_size=3))
    cols = draw(st.permutations(["user", "item", *others])) if draw(st.integers(0, 9)) else draw(header)

    def row():
        values = [draw(st.sampled_from(VALUES.get(c, TOKENS))) for c in cols]
        if not draw(st.integers(0, 14)):  # now and then a ragged row
            values = values[:-1] if draw(st.booleans()) else [*values, "z"]
        return values

    rows = [row() for _ in range(draw(st.integers(0, 12)))]
    sep = draw(st.sampled_from([",", ",", "\t"]))
    lines = [sep.join(cols)] + [sep.join(r) for r in rows]
    data = ("\n".join(lines) + draw(st.sampled_from(["\n", "", "\n\n"]))).encode()
    if draw(st.booleans()) and draw(st.booleans()):
        data = data.replace(b"\xc3\xa9", b"\xe9")  # Latin-1 e-acute
    return data


@st.composite
def jsonl_files(draw) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 10))):
        kind = draw(st.sampled_from(["object"] * 12 + ["array", "number", "broken", "blank"]))
        if kind == "object":
            keys = ["user", "item", *draw(st.lists(st.sampled_from(COLUMNS[2:5]), unique=True, max_size=3))]
            if not draw(st.integers(0, 9)):
                keys = draw(st.lists(st.sampled_from(COLUMNS[:5]), unique=True, max_size=5))
            other = st.one_of(st.integers(-5, 2_000_000_000_000), st.floats(allow_nan=False), st.none(),
                              st.booleans(), st.just([1]), st.just({"x": 1}))
            def value(key: str, other=other):
                usual = st.sampled_from(VALUES[key])
                return draw(st.one_of(usual, other) if draw(st.integers(0, 3)) == 0 else usual)

            lines.append(json.dumps({k: value(k) for k in keys}))
        elif kind == "array":
            lines.append("[1, 2]")
        elif kind == "number":
            lines.append("7")
        elif kind == "broken":
            lines.append('{"user": "a", "item": ')
        else:
            lines.append("")
    return ("\n".join(lines) + "\n").encode()


def run(data: bytes, name: str) -> None:
    work = Path(tempfile.mkdtemp())
    try:
        src = work / name
        src.write_bytes(data)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["data", "prepare", "--input", str(src), "--out", str(work / "out"), "--no-progress",
                         "--min-user-events", "1", "--min-item-events", "1"])
        text = err.getvalue().strip()
        assert code in (0, 2), text
        if code == 2:
            assert text.startswith("recsim: error: ") and "\n" not in text and "Traceback" not in text
            assert "cannot read (" not in text  # a read failure is diagnosed: its line and what is wrong
            assert sorted(p.name for p in work.iterdir()) == [name]  # no output, no leftovers
            return
        assert sorted(p.name for p in work.iterdir()) == [name, "out"]
        ds = SequenceDataset.load(work / "out")
        steps = ds.meta.cleaning
        read = ds.meta.extra["input_counts"]["events"]
        assert steps[0].rows_before == read
        for before, after in zip(steps, steps[1:], strict=False):
            assert after.rows_before == before.rows_after  # every removed row is in exactly one step
        assert steps[-1].rows_after == ds.meta.n_interactions
        assert read == expected_rows(data, name)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def expected_rows(data: bytes, name: str) -> int:
    text = data.decode("utf-8")
    if name.endswith(".jsonl"):
        return sum(1 for line in text.splitlines() if line.strip())
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines = lines[:-1]
    return len(lines) - 1  # header; a blank line is a (missing) row


SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(csv_files())
def test_random_csv_is_refused_cleanly_or_fully_accounted(data):
    run(data, "log.csv")


@SETTINGS
@given(jsonl_files())
def test_random_jsonl_is_refused_cleanly_or_fully_accounted(data):
    run(data, "log.jsonl")
