"""The MIND news-recommendation layout (``behaviors.tsv``, ``news.tsv``): impressions and click histories.

``behaviors.tsv`` has no header and five tab-separated fields per line::

    impression id <TAB> user id <TAB> time (11/15/2019 8:55:22 AM) <TAB> history <TAB> impressions

where the history is the user's clicked news before the logging period, space-separated (empty for new
users), and the impressions are the slate shown, space-separated ``news-label`` tokens, ``N123-1``
clicked, ``N456-0`` not. The reader turns each line into

- **impression rows**: one per token, slot = the token's place in the list (0 first), clicked = its
  label, the line's time and impression id;
- **interactions**: every clicked token (at the impression's time) plus the click history.

The history has **no time**. MIND repeats it on every line of a user, so one copy is kept (the user's
earliest line; lines with another history are counted) and its clicks are placed, in the given order,
one second apart and ending one day before the user's first impression: they come before every logged
event and form a session of their own, but their times and gaps are made up (only their order is real)
and they are marked in ``meta.json``. Times are read as UTC (MIND does not say).

A token that is not ``id-0`` or ``id-1`` (the MIND test split has no labels), a line with another number
of fields, or an empty impression list stops the run with the line; blank lines are dropped and
counted. ``news.tsv`` (id, category, subcategory, title, abstract, url, entities; no header) gives the
titles and ``category|subcategory``.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from user_models.data.artifact import CleaningStep
from user_models.data.readers import RawItems, RawLog, _check_items, _collect, _existing
from user_models.errors import InputError

MIND_TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"
"""``11/15/2019 8:55:22 AM``."""
HISTORY_OFFSET_SECONDS = 86_400
"""The click history ends this long before the user's first impression (its true times are unknown)."""
FIELDS = ("impression id", "user", "time", "history", "impressions")


def mind_file(path: str | Path, name: str = "behaviors.tsv") -> Path:
    """``path`` itself, or ``path/name`` when ``path`` is a directory (a MIND split)."""
    path = Path(path)
    return _existing(path / name if path.is_dir() else path)


def mind_news(path: str | Path) -> Path | None:
    """The ``news.tsv`` beside a MIND ``behaviors.tsv`` (or in the split directory), if present."""
    path = Path(path)
    candidate = (path if path.is_dir() else path.parent) / "news.tsv"
    return candidate if candidate.is_file() else None


def _lines(path: Path) -> pl.DataFrame:
    """The file's lines (``line``: 0-based line index, ``text``); no quoting, nothing inferred."""
    lazy = pl.scan_csv(path, separator="\x1f", has_header=False, quote_char=None, new_columns=["text"],
                       infer_schema=False, row_index_name="line", raise_if_empty=True)
    frame = _collect(lazy, path, "mind")
    return frame.with_columns(pl.col("line").cast(pl.Int64), pl.col("text").str.strip_chars_end("\r"))


def read_mind(path: str | Path) -> tuple[RawLog, RawLog]:
    """Read ``behaviors.tsv`` into the interactions (click histories and clicks) and the impressions.

    Returns ``(log, impressions)`` for :func:`user_models.data.prepare.prepare`; both name the file's
    lines in their errors.

    Raises:
        InputError: a malformed line or token (with its line and value).
    """
    file = mind_file(path)
    lines = _lines(file)
    blank = lines["text"].is_null() | (lines["text"].str.strip_chars() == "")
    n_blank = int(blank.sum())
    lines = lines.filter(~blank)
    if lines.height == 0:
        raise InputError(f"{file}: file is empty")
    parts = lines.with_columns(pl.col("text").str.split("\t").alias("f"))
    bad = parts.filter(pl.col("f").list.len() != len(FIELDS))
    if bad.height:
        first = bad.row(0, named=True)
        raise InputError(f"{file}: line {first['line'] + 1}: {len(first['f'])} tab-separated fields, MIND "
                         f"behaviors.tsv has {len(FIELDS)} ({', '.join(FIELDS)})")
    rows = parts.select(
        "line",
        pl.col("f").list.get(0).str.strip_chars().alias("impression"),
        pl.col("f").list.get(1).str.strip_chars().alias("user"),
        pl.col("f").list.get(2).str.strip_chars().alias("time_text"),
        pl.col("f").list.get(3).str.strip_chars().alias("history"),
        pl.col("f").list.get(4).str.strip_chars().alias("slate"),
    )
    seconds = rows["time_text"].str.to_datetime(MIND_TIME_FORMAT, strict=False, time_zone="UTC").dt.epoch("s")
    # Unparsable times keep their text, so the pipeline reports them (and counts or refuses them).
    rows = rows.with_columns(seconds.alias("seconds"),
                             pl.when(seconds.is_not_null()).then(seconds.cast(pl.String))
                             .otherwise(pl.col("time_text")).alias("timestamp"))
    empty = rows.filter(pl.col("slate") == "")
    if empty.height:
        raise InputError(f"{file}: line {empty['line'][0] + 1}, column 'impressions': empty impression list")

    tokens = rows.select("line", "impression", "user", "timestamp",
                         pl.col("slate").str.split(" ").alias("token")).with_columns(
        pl.int_ranges(pl.col("token").list.len()).alias("slot")).explode("token", "slot")
    tokens = tokens.filter(pl.col("token") != "")  # doubled spaces
    parsed = pl.col("token").str.extract_groups(r"^(.+)-([01])$")
    tokens = tokens.with_columns(parsed.struct.field("1").alias("item"),
                                 parsed.struct.field("2").alias("clicked"))
    bad = tokens.filter(pl.col("item").is_null())
    if bad.height:
        first = bad.row(0, named=True)
        raise InputError(f"{file}: line {first['line'] + 1}, column 'impressions': token {first['token']!r} "
                         "is not news-label with label 0 or 1 (e.g. N123-1; MIND's test split has no "
                         "labels)")
    imp_frame = tokens.with_row_index("row").select(
        pl.col("row").cast(pl.Int64), "user", "timestamp", "impression", "item",
        pl.col("slot").cast(pl.String), "clicked")
    impressions = RawLog(
        imp_frame.lazy(), file,
        {"user": "user (field 2)", "timestamp": "time (field 3)", "impression": "impression id (field 1)",
         **dict.fromkeys(("item", "slot", "clicked"), "impressions (field 5)")},
        1, (file,), "mind", tokens["line"].to_numpy())

    log, steps = _interactions(rows, tokens, n_blank)
    interactions = RawLog(
        log.select("row", "user", "item", "timestamp", "event").lazy(), file,
        {"user": "user (field 2)", "item": "history (field 4) / impressions (field 5)",
         "timestamp": "time (field 3)", "event": "(click)"},
        1, (file,), "mind", log["line"].to_numpy(), steps)
    return interactions, impressions


def _interactions(rows: pl.DataFrame, tokens: pl.DataFrame, n_blank: int
                  ) -> tuple[pl.DataFrame, tuple[CleaningStep, ...]]:
    """History clicks (one copy per user, placed before the first impression) and impression clicks."""
    first_time = rows.group_by("user").agg(pl.col("seconds").min().alias("t0"))
    earliest = rows.sort(["seconds", "line"], nulls_last=True).group_by("user", maintain_order=True).first()
    differs = rows.join(earliest.select("user", pl.col("history").alias("kept")), on="user").filter(
        pl.col("history") != pl.col("kept")).height
    history = earliest.select("user", "line", pl.col("history").str.split(" ").alias("item")).explode("item")
    history = history.filter(pl.col("item").is_not_null() & (pl.col("item") != ""))
    history = history.with_columns(
        pl.int_range(pl.len()).over("user").alias("i"), pl.len().over("user").alias("n")
    ).join(first_time, on="user").with_columns(
        (pl.col("t0") - HISTORY_OFFSET_SECONDS - (pl.col("n") - pl.col("i")))
        .cast(pl.String).alias("timestamp"))
    all_copies = int(rows.select(
        pl.col("history").str.split(" ").list.eval(pl.element().filter(pl.element() != "")).list.len().sum()
    ).item())
    clicks = tokens.filter(pl.col("clicked") == "1").select("line", "user", "item", "timestamp")
    log = pl.concat([history.select("line", "user", "item", "timestamp"), clicks])
    log = log.with_row_index("row").with_columns(pl.col("row").cast(pl.Int64), pl.lit("click").alias("event"))
    steps = (
        CleaningStep("MIND: one click history per user", all_copies + clicks.height, log.height,
                     f"the history is repeated on each line of a user: kept the earliest line's "
                     f"({history.height} clicks, timed in order one second apart ending "
                     f"{HISTORY_OFFSET_SECONDS} s before the user's first impression: made-up times); "
                     f"{differs} lines had another history; {n_blank} blank lines skipped"),
    )
    return log, steps


def read_news(path: str | Path) -> RawItems:
    """``news.tsv``: titles and ``category|subcategory`` of the news items (no header)."""
    file = mind_file(path, "news.tsv")
    lines = _lines(file)
    lines = lines.filter(pl.col("text").is_not_null() & (pl.col("text").str.strip_chars() != ""))
    if lines.height == 0:
        raise InputError(f"{file}: file is empty")
    parts = lines.with_columns(pl.col("text").str.split("\t").alias("f"))
    bad = parts.filter(pl.col("f").list.len() < 4)
    if bad.height:
        first = bad.row(0, named=True)
        raise InputError(f"{file}: line {first['line'] + 1}: {len(first['f'])} tab-separated fields, MIND "
                         "news.tsv has at least 4 (id, category, subcategory, title)")
    category = pl.concat_str([pl.col("f").list.get(1), pl.col("f").list.get(2)], separator="|")
    frame = parts.select(pl.col("line").alias("row"), pl.col("f").list.get(0).str.strip_chars().alias("item"),
                         pl.col("f").list.get(3).alias("title"), category.alias("category"),
                         pl.lit(None, pl.String).alias("price"))
    return RawItems(_check_items(frame, file, 1, None, "mind"), file)
