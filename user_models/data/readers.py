"""Readers: every supported log layout becomes one common raw frame.

A reader only locates and renames columns; it does not parse or judge values (that is the pipeline's
job in :mod:`user_models.data.prepare`, so every format gets the same checks and the same counts).

The common raw frame (a Polars ``LazyFrame``) has the columns

- ``row``: the event's index in file order from 0 (ties in time keep this order; errors cite it),
- ``user``, ``item``: raw ids as the file has them (strings for text files),
- ``timestamp`` (optional): raw time values (unix numbers, ISO-8601 strings, or datetimes),
- ``event`` (optional): raw event names, or ``rating`` (optional): raw rating values.

Text files are scanned lazily with every column read as a string: nothing is inferred from a sample, so
a bad value deep in a large file is reported by the pipeline with its line instead of failing inside the
CSV parser, and only the mapped columns are ever materialised.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from user_models.data.artifact import CleaningStep
from user_models.errors import DatasetError, InputError

InputFormat = Literal["csv", "tsv", "parquet", "jsonl", "recbole", "movielens", "sasrec", "mind"]
INPUT_FORMATS: tuple[str, ...] = ("csv", "tsv", "parquet", "jsonl", "recbole", "movielens", "sasrec", "mind")
TABLE_FORMATS: tuple[str, ...] = ("csv", "tsv", "parquet", "jsonl")
"""The generic table layouts (impression tables and item files come in these)."""

# Column names tried, in order, when a role is not mapped explicitly (compared case-insensitively).
USER_CANDIDATES = ("user", "user_id", "userid", "uid", "visitorid", "customer_id")
ITEM_CANDIDATES = ("item", "item_id", "itemid", "iid", "movieid", "movie_id", "product_id", "productid")
TIME_CANDIDATES = ("timestamp", "time", "ts", "datetime", "event_time", "date")
EVENT_CANDIDATES = ("event", "event_type", "behavior", "behaviour", "action")
RATING_CANDIDATES = ("rating", "score", "stars")
ITEM_ID_CANDIDATES = ("item", "item_id", "itemid", "iid", "movieid", "movie_id", "product_id", "id")
TITLE_CANDIDATES = ("title", "movie_title", "name", "item_name")
CATEGORY_CANDIDATES = ("category", "categories", "genres", "genre", "class")
PRICE_CANDIDATES = ("price",)
IMPRESSION_CANDIDATES = ("impression", "impression_id", "impressionid", "slate", "slate_id", "request_id")
POSITION_CANDIDATES = ("position", "slot", "rank", "pos")
CLICKED_CANDIDATES = ("clicked", "click", "is_click", "label")
BEHAVIOR_CANDIDATES = ("behavior", "behaviour", "event", "event_type")
PROPENSITY_CANDIDATES = ("propensity", "propensity_score", "pscore")

ROW_INDEX = "__recsim_row__"
"""Name of the file-order index while scanning (renamed to ``row``), chosen not to clash with a column."""

MOVIELENS_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
"""The 19 genre flags at the end of each ``u.item`` row, in file order (as listed in ``u.genre``)."""


@dataclass(frozen=True)
class ColumnMap:
    """Which source column plays which role; None means "detect from the usual names"."""

    user: str | None = None
    item: str | None = None
    time: str | None = None
    event: str | None = None
    rating: str | None = None


@dataclass(frozen=True)
class ImpressionColumnMap:
    """Columns of an impression table (one row per shown slot); None means "detect from the usual
    names". ``behavior`` (the click's behavior) and ``propensity`` (the logging probability) are
    optional; the others are required except ``time``."""

    user: str | None = None
    time: str | None = None
    impression: str | None = None
    item: str | None = None
    position: str | None = None
    clicked: str | None = None
    behavior: str | None = None
    propensity: str | None = None

    @classmethod
    def parse(cls, text: str | None) -> ImpressionColumnMap:
        """``role=column,role=column`` (the ``--impression-columns`` flag) into a map; roles are the
        field names."""
        if text is None:
            return cls()
        roles: dict[str, str] = {}
        valid = [f for f in cls.__dataclass_fields__]
        for part in text.split(","):
            role, sep, column = (x.strip() for x in part.partition("="))
            if not sep or not column or role not in valid:
                raise InputError(f"--impression-columns: expected role=column with a role among "
                                 f"{', '.join(valid)}, got {part.strip()!r}")
            if role in roles:
                raise InputError(f"--impression-columns: role {role!r} given twice")
            roles[role] = column
        return cls(**roles)


@dataclass(frozen=True)
class ItemColumnMap:
    """Columns of an item metadata file; None means "detect from the usual names"."""

    item: str | None = None
    title: str | None = None
    category: str | None = None
    price: str | None = None


@dataclass(frozen=True)
class RawLog:
    """An interaction log located and renamed to the common raw frame, not yet read or parsed.

    Attributes:
        frame: lazy frame with ``row``, ``user``, ``item`` and optional ``timestamp``, ``event``/``rating``.
        path: the file the events come from (error messages name it).
        columns: source column name of each role present in ``frame`` (error messages cite these).
        first_line: file line of ``row`` 0 for text files (2 below a header), None for binary formats
            (their errors cite "row N", counted from 1).
        sources: every file read, for the artifact's provenance (sha256 is taken by the pipeline).
    """

    frame: pl.LazyFrame
    path: Path
    columns: dict[str, str]
    first_line: int | None
    sources: tuple[Path, ...]
    fmt: str = ""
    """The layout read (``csv``, ``jsonl``, ...): decides how a row maps back to a file line."""
    row_origin: np.ndarray | None = None
    """For layouts whose rows are not the file's rows (a MIND line holds a whole slate, a Parquet
    row a list of items): the 0-based file line (text, ``first_line`` set) or file row of each ``row``."""
    steps: tuple[CleaningStep, ...] = ()
    """Cleaning already done while reading (counted like every other step; e.g. MIND's repeated
    histories)."""

    def where(self, row: int) -> str:
        """Human location of a raw row: ``line N`` in text files, ``row N`` otherwise.

        CSV/TSV lines are found by re-reading the file (only when an error is reported), so a quoted
        field spanning several lines before the row does not shift the number; JSONL skips blank lines.
        """
        if self.row_origin is not None:
            origin = int(self.row_origin[row])
            return f"row {origin + 1}" if self.first_line is None else f"line {origin + self.first_line}"
        if self.first_line is None:
            return f"row {row + 1}"
        return f"line {line_of_row(self.path, self.fmt, row, self.first_line)}"


@dataclass(frozen=True)
class RawItems:
    """Item metadata: ``item`` (raw id, string), ``title``, ``category`` (``|``-joined), ``price``."""

    frame: pl.DataFrame
    path: Path


# --- entry points ---------------------------------------------------------------------------------------
def infer_format(path: Path) -> InputFormat:
    """Guess the layout from the file name; ``--input-format`` overrides it."""
    name = path.name.lower()
    if name == "u.data" or (path.is_dir() and (path / "u.data").is_file()):
        return "movielens"
    if path.is_dir() and any(path.glob("*.inter")):
        return "recbole"
    if path.is_dir() and (path / "behaviors.tsv").is_file():
        return "mind"
    suffix = path.suffix.lower()
    by_suffix: dict[str, InputFormat] = {
        ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
        ".jsonl": "jsonl", ".ndjson": "jsonl", ".inter": "recbole", ".txt": "sasrec",
    }
    if suffix in by_suffix:
        return by_suffix[suffix]
    if path.is_dir():
        raise InputError(f"{path}: is a directory holding neither u.data nor a *.inter file (nor MIND's "
                         "behaviors.tsv); give the log file itself")
    raise InputError(f"{path}: cannot tell the format from the name; pass --input-format "
                     f"({'|'.join(INPUT_FORMATS)})")


def read_log(path: str | Path, fmt: InputFormat | None = None, columns: ColumnMap | None = None) -> RawLog:
    """Locate the events of ``path`` and rename their columns to the common raw frame.

    Args:
        path: the log file (for ``recbole`` and ``movielens`` also the directory holding it).
        fmt: the layout; inferred from the name when None.
        columns: explicit column names; roles left None are detected from the usual names.

    Raises:
        InputError: the file is missing, empty, or lacks a required column (the message lists the
            available ones).
    """
    path = Path(path)
    fmt = fmt or infer_format(path)
    columns = columns or ColumnMap()
    if fmt == "movielens":
        return _read_movielens_data(_in_dir(path, "u.data"))
    if fmt == "sasrec":
        return _read_sasrec(_existing(path))
    if fmt == "mind":
        raise InputError(f"{path}: MIND holds impressions too: read it with user_models.data.mind.read_mind")
    if fmt == "recbole":
        return _read_recbole_inter(_recbole_file(path, ".inter"), columns)
    path = _existing(path)
    _check_quotes(path, fmt)
    lazy, first_line = _scan_table(path, fmt)
    return _map_log_columns(lazy, path, columns, first_line, fmt)


def read_items(
    path: str | Path, fmt: InputFormat | None = None, columns: ItemColumnMap | None = None
) -> RawItems:
    """Read an item metadata file (id, title, category or genres, price) of any tabular format.

    Category values that are lists (Parquet/JSONL) are joined with ``|``; strings are kept as they are.
    """
    path = Path(path)
    fmt = fmt or infer_format(path)
    columns = columns or ItemColumnMap()
    if fmt == "movielens":
        return _read_movielens_items(_in_dir(path, "u.item"))
    if fmt == "recbole":
        return _read_recbole_items(_recbole_file(path, ".item"), columns)
    if fmt == "sasrec":
        raise InputError(f"{path}: SASRec text holds no item metadata; give a csv/tsv/parquet/jsonl file")
    path = _existing(path)
    _check_quotes(path, fmt)
    lazy, first_line = _scan_table(path, fmt)
    return _map_item_columns(lazy, path, columns, first_line, fmt)


def read_impressions(
    path: str | Path, fmt: InputFormat | None = None, columns: ImpressionColumnMap | None = None
) -> RawLog:
    """Locate an impression table (csv/tsv/parquet/jsonl, one row per shown slot) and rename its
    columns to the roles ``user``, ``timestamp``, ``impression``, ``item``, ``slot`` (the position as
    given), ``clicked``, ``behavior`` and ``propensity``. Values are judged by the pipeline
    (:func:`user_models.data.prepare.prepare`), as for interaction logs.

    Raises:
        InputError: the file is missing or empty, or a required column is absent.
    """
    path = Path(path)
    fmt = fmt or infer_format(path)
    if fmt not in TABLE_FORMATS:
        raise InputError(f"{path}: impression tables are {'/'.join(TABLE_FORMATS)}, not {fmt} (MIND "
                         "behaviors.tsv is read with --input-format mind)")
    columns = columns or ImpressionColumnMap()
    path = _existing(path)
    _check_quotes(path, fmt)
    lazy, first_line = _scan_table(path, fmt)
    available = _column_names(lazy, path, fmt)
    flag = "--impression-columns {}=C"
    spec = (("user", columns.user, USER_CANDIDATES, True),
            ("timestamp", columns.time, TIME_CANDIDATES, False),
            ("impression", columns.impression, IMPRESSION_CANDIDATES, True),
            ("item", columns.item, ITEM_CANDIDATES, True),
            ("slot", columns.position, POSITION_CANDIDATES, True),
            ("clicked", columns.clicked, CLICKED_CANDIDATES, True),
            ("behavior", columns.behavior, BEHAVIOR_CANDIDATES, False),
            ("propensity", columns.propensity, PROPENSITY_CANDIDATES, False))
    field_of = {"timestamp": "time", "slot": "position"}
    present: dict[str, str] = {}
    for role, requested, candidates, required in spec:
        col = _pick(available, requested, candidates, f"impression {field_of.get(role, role)}",
                    flag.format(field_of.get(role, role)), path, required)
        if col is not None:
            present[role] = col
    if len(set(present.values())) < len(present):
        raise InputError(f"{path}: one column mapped to two roles: {present}")
    frame = lazy.select(pl.col(ROW_INDEX).cast(pl.Int64).alias("row"),
                        *(pl.col(c).alias(r) for r, c in present.items()))
    return RawLog(frame, path, present, first_line, (path,), fmt)


def companion_items(path: str | Path, fmt: InputFormat) -> Path | None:
    """The item file that ships next to a log in the RecBole or MovieLens layouts, if present."""
    path = Path(path)
    if fmt == "recbole":
        inter = _recbole_file(path, ".inter")
        candidate = inter.with_suffix(".item")
    elif fmt == "movielens":
        candidate = (path if path.is_dir() else path.parent) / "u.item"
    else:
        return None
    return candidate if candidate.is_file() else None


# --- generic tables -------------------------------------------------------------------------------------
def _scan_table(path: Path, fmt: str) -> tuple[pl.LazyFrame, int | None]:
    """Scan a csv/tsv/parquet/jsonl file lazily; returns the frame and the file line of data row 0."""
    if fmt in ("csv", "tsv"):
        lazy = pl.scan_csv(path, separator="," if fmt == "csv" else "\t", infer_schema=False,
                           row_index_name=ROW_INDEX, raise_if_empty=True)
        return lazy, 2
    if fmt == "parquet":
        return pl.scan_parquet(path).with_row_index(ROW_INDEX), None
    if fmt == "jsonl":
        return pl.scan_ndjson(path, infer_schema_length=None, row_index_name=ROW_INDEX), 1
    raise InputError(f"{path}: unknown input format {fmt!r}; expected one of {', '.join(INPUT_FORMATS)}")


def _column_names(lazy: pl.LazyFrame, path: Path, fmt: str = "") -> list[str]:
    try:
        names = lazy.collect_schema().names()
    except pl.exceptions.NoDataError:
        raise InputError(f"{path}: file is empty") from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(explain_read_error(path, fmt, exc)) from None
    if any("\ufffd" in n for n in names):  # Polars decodes a bad header lossily: say why instead
        raise InputError(_encoding_problem(path) or f"{path}: the header is not UTF-8 text")
    return [n for n in names if n != ROW_INDEX]


def _pick(
    available: Sequence[str], requested: str | None, candidates: Sequence[str], role: str, flag: str,
    path: Path, required: bool,
) -> str | None:
    """The source column for ``role``: the requested one (which must exist) or the first usual name."""
    if requested is not None:
        if requested not in available:
            raise InputError(f"{path}: missing column {requested!r} ({role}, {flag}); available columns: "
                             f"{', '.join(available)}{_delimiter_hint(available)}")
        return requested
    lowered = {name.lower(): name for name in available}
    for name in candidates:
        if name in lowered:
            return lowered[name]
    if required:
        raise InputError(f"{path}: missing required {role} column (tried {', '.join(candidates)}; name it "
                         f"with {flag}); available columns: {', '.join(available)}"
                         f"{_delimiter_hint(available)}")
    return None


def _delimiter_hint(available: Sequence[str]) -> str:
    if len(available) == 1 and any(sep in available[0] for sep in (",", "\t", ";", "|", " ")):
        return " (the header is a single column: wrong delimiter? check --input-format)"
    return ""


def _map_log_columns(
    lazy: pl.LazyFrame, path: Path, columns: ColumnMap, first_line: int | None, fmt: str = ""
) -> RawLog:
    available = _column_names(lazy, path, fmt)
    user = _pick(available, columns.user, USER_CANDIDATES, "user", "--user-col", path, True)
    item = _pick(available, columns.item, ITEM_CANDIDATES, "item", "--item-col", path, True)
    time = _pick(available, columns.time, TIME_CANDIDATES, "timestamp", "--time-col", path, False)
    event = rating = None
    if columns.event is not None and columns.rating is not None:
        raise InputError(f"{path}: give --event-col or --rating-col, not both")
    if columns.rating is None:
        event = _pick(available, columns.event, EVENT_CANDIDATES, "event", "--event-col", path, False)
    if event is None:
        rating = _pick(available, columns.rating, RATING_CANDIDATES, "rating", "--rating-col", path, False)
    roles = {"user": user, "item": item, "timestamp": time, "event": event, "rating": rating}
    present = {role: col for role, col in roles.items() if col is not None}
    if len(set(present.values())) < len(present):
        raise InputError(f"{path}: one column mapped to two roles: {present}")
    frame = lazy.select(pl.col(ROW_INDEX).cast(pl.Int64).alias("row"),
                        *(pl.col(c).alias(r) for r, c in present.items()))
    return RawLog(frame, path, present, first_line, (path,), fmt)


def _map_item_columns(
    lazy: pl.LazyFrame, path: Path, columns: ItemColumnMap, first_line: int | None, fmt: str = ""
) -> RawItems:
    available = _column_names(lazy, path, fmt)
    item = _pick(available, columns.item, ITEM_ID_CANDIDATES, "item id", "--item-id-col", path, True)
    assert item is not None  # required=True
    title = _pick(available, columns.title, TITLE_CANDIDATES, "title", "--title-col", path, False)
    category = _pick(available, columns.category, CATEGORY_CANDIDATES, "category", "--category-col", path,
                     False)
    price = _pick(available, columns.price, PRICE_CANDIDATES, "price", "--price-col", path, False)
    frame = _collect(lazy, path, fmt)

    def text(col: str | None) -> pl.Expr:
        if col is None:
            return pl.lit(None, dtype=pl.String)
        if isinstance(frame.schema[col], pl.List):
            return pl.col(col).cast(pl.List(pl.String)).list.join("|")
        return pl.col(col).cast(pl.String)

    out = frame.select(
        pl.col(ROW_INDEX).cast(pl.Int64).alias("row"),
        pl.col(item).cast(pl.String).str.strip_chars().alias("item"),
        text(title).alias("title"),
        text(category).alias("category"),
        (pl.col(price) if price is not None else pl.lit(None)).alias("price"),
    )
    return RawItems(_check_items(out, path, first_line, price, fmt), path)


def _check_items(
    frame: pl.DataFrame, path: Path, first_line: int | None, price_col: str | None, fmt: str = ""
) -> pl.DataFrame:
    """Item ids must be present and unique and prices finite numbers; metadata is never silently
    dropped."""

    def where(row: int) -> str:
        if first_line is None:
            return f"row {row + 1}"
        return f"line {line_of_row(path, fmt, row, first_line)}"

    missing = frame.filter(pl.col("item").is_null() | (pl.col("item") == ""))
    if missing.height:
        raise InputError(f"{path}: {where(missing['row'][0])}: empty item id ({missing.height} rows)")
    dup = frame.filter(pl.col("item").is_duplicated()).sort("row")
    if dup.height:
        raise InputError(f"{path}: {where(dup['row'][1])}: duplicate item id {dup['item'][0]!r}")
    price = frame["price"]
    if price.dtype == pl.String:
        parsed = price.str.strip_chars().cast(pl.Float64, strict=False)
        bad = frame.filter(parsed.is_null() & price.is_not_null())
        if bad.height:
            raise InputError(f"{path}: {where(bad['row'][0])}, column {price_col!r}: value "
                             f"{bad['price'][0]!r} is not a number")
        price = parsed
    elif price.dtype != pl.Null and not price.dtype.is_numeric():
        raise InputError(f"{path}: column {price_col!r} has type {price.dtype}, expected numbers")
    price = price.cast(pl.Float64)
    bad = frame.filter(price.is_not_null() & ~price.is_finite())
    if bad.height:
        raise InputError(f"{path}: {where(bad['row'][0])}, column {price_col!r}: value "
                         f"{bad['price'][0]!r} is not a finite number")
    return frame.with_columns(price.alias("price")).drop("row")


def _collect(lazy: pl.LazyFrame, path: Path, fmt: str = "") -> pl.DataFrame:
    try:
        return lazy.collect()
    except pl.exceptions.NoDataError:
        raise InputError(f"{path}: file is empty") from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(explain_read_error(path, fmt, exc)) from None


# --- diagnosing unreadable text files ---------------------------------------------------------------
def explain_read_error(path: Path, fmt: str, exc: BaseException) -> str:
    """A one-line message naming the first bad line of a file the fast reader rejected.

    The fast reader (Polars) reports "invalid utf-8 sequence" or "found more fields than defined"
    without a position; this re-reads the file in Python (only on failure) to find the line: a byte
    that is not UTF-8 (with a hint when the file looks Latin-1), a CSV/TSV row with another number of
    fields than the header (quoted fields spanning lines counted right), a JSONL line that is not
    valid JSON or not an object. Falls back to the reader's own first line.
    """
    if fmt in ("csv", "tsv", "jsonl", "recbole", "movielens", "sasrec"):
        try:
            found = _encoding_problem(path)
            if found is None and fmt in ("csv", "tsv"):
                found = _quote_problem(path, "," if fmt == "csv" else "\t")
            if found is None and fmt in ("csv", "tsv"):
                found = _ragged_row(path, "," if fmt == "csv" else "\t")
            if found is None and fmt == "jsonl":
                found = _bad_json_line(path)
        except OSError:
            found = None
        if found is not None:
            return found
    return f"{path}: cannot read ({_first_line(exc)})"


def _check_quotes(path: Path, fmt: str) -> None:
    if fmt in ("csv", "tsv"):
        problem = _quote_problem(path, "," if fmt == "csv" else "\t")
        if problem is not None:
            raise InputError(problem)


def _encoding_problem(path: Path) -> str | None:
    """The first byte of ``path`` that is not UTF-8, as a message with its line (None: all UTF-8)."""
    carry, lines_before = b"", 0
    with open(path, "rb") as f:
        while True:
            block = f.read(1 << 20)
            data = carry + block
            if not data:
                return None
            try:
                data.decode("utf-8")
                carry = b""
            except UnicodeDecodeError as exc:
                truncated = exc.reason == "unexpected end of data"
                if truncated and block:  # a character split across blocks: decide with the next one
                    carry = data[exc.start:]
                    lines_before += data.count(b"\n", 0, exc.start)
                    continue
                line = lines_before + data.count(b"\n", 0, exc.start) + 1
                return (f"{path}: line {line}: byte 0x{data[exc.start]:02X} is not UTF-8 (the file looks "
                        "Latin-1/Windows-1252 or otherwise encoded; convert it to UTF-8, e.g. "
                        "iconv -f latin1 -t utf-8)")
            if not block:
                return None
            lines_before += data.count(b"\n")


def _quote_problem(path: Path, delimiter: str) -> str | None:
    """The first quote the fast reader would misread: inside an unquoted field, followed by text after
    it closes, or opening a field that is never closed (Polars may then swallow the rest of the file as
    one field without an error, the csv module silently accepts the first two).

    Files without a ``"`` are skipped after a byte scan; otherwise only the quotes are visited (the text
    between them is counted at C speed), so the check costs little next to parsing.
    """
    with open(path, "rb") as f:
        if not any(b'"' in block for block in iter(lambda: f.read(1 << 22), b"")):
            return None
    text = path.read_text(encoding="utf-8", errors="replace")
    n = len(text)
    boundary = (delimiter, "\n", "\r")
    i, line, pos = 0, 1, 0  # pos: where line numbers were last counted up to
    while True:
        start = text.find('"', i)
        if start < 0:
            return None
        line += text.count("\n", pos, start)
        pos = start
        if start > 0 and text[start - 1] not in boundary:
            return (f"{path}: line {line}: a quote inside an unquoted field (quote the whole field and "
                    'double the quote: "a""b")')
        j = start + 1
        while True:  # find the closing quote, skipping doubled ones
            end = text.find('"', j)
            if end < 0:
                return f"{path}: line {line}: a quoted field opened here is never closed"
            if end + 1 < n and text[end + 1] == '"':
                j = end + 2
                continue
            break
        if end + 1 < n and text[end + 1] not in boundary:
            close_line = line + text.count("\n", start, end)
            return (f"{path}: line {close_line}: text after the closing quote of a quoted field (double a "
                    'quote inside a quoted field: "a""b")')
        i = end + 1


def _ragged_row(path: Path, delimiter: str) -> str | None:
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            return None
        start = reader.line_num + 1
        for record in reader:
            if record and len(record) != len(header):
                return (f"{path}: line {start}: {len(record)} fields, the header has {len(header)} "
                        "(a ragged row: check the delimiter and the quoting)")
            start = reader.line_num + 1
    return None


def _refuse_json_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number; write null for a missing value")


def _bad_json_line(path: Path) -> str | None:
    import json

    with open(path, encoding="utf-8") as f:
        if not any(line.strip() for line in f):
            return f"{path}: file is empty"
    first_kind: dict[str, tuple[str, int]] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line, parse_constant=_refuse_json_constant)
            except json.JSONDecodeError as exc:
                return f"{path}: line {number}: invalid JSON ({exc.msg} at column {exc.pos + 1})"
            except ValueError as exc:  # NaN/Infinity: Python reads them, JSON (and Polars) does not
                return f"{path}: line {number}: invalid JSON ({exc})"
            if not isinstance(value, dict):
                return f"{path}: line {number}: expected a JSON object per line, got {_json_kind(value)}"
            for key, item in value.items():
                kind = _json_kind(item)
                if kind == "null":
                    continue
                seen, where = first_kind.setdefault(key, (kind, number))
                clash = {seen, kind}
                if seen != kind and (clash & {"an array", "an object"} or clash == {"a number", "a boolean"}):
                    return (f"{path}: line {number}, column {key!r}: value {json.dumps(item)[:40]} is {kind} "
                            f"but line {where} has {seen}; use one type per column")
    return None


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "a string" if isinstance(value, str) else "a number"


def line_of_row(path: Path, fmt: str, row: int, first_line: int) -> int:
    """File line where data row ``row`` (0-based, file order) starts.

    CSV/TSV: records are counted with Python's csv reader, so quoted fields spanning lines are handled
    (Polars and the csv module both treat a blank line as a row). JSONL: blank lines are not rows.
    Other layouts (and any file that cannot be re-read) have one row per line below ``first_line``.
    """
    try:
        if fmt in ("csv", "tsv"):
            import csv

            with open(path, newline="", encoding="utf-8", errors="replace") as f:
                reader = csv.reader(f, delimiter="," if fmt == "csv" else "\t")
                next(reader, None)  # header
                start = reader.line_num + 1
                for index, _ in enumerate(reader):
                    if index == row:
                        return start
                    start = reader.line_num + 1
        elif fmt == "jsonl":
            with open(path, encoding="utf-8", errors="replace") as f:
                index = -1
                for number, line in enumerate(f, start=1):
                    if line.strip():
                        index += 1
                        if index == row:
                            return number
    except OSError:
        pass
    return row + first_line


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _existing(path: Path) -> Path:
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a file (directories are read only as "
                         "--input-format recbole or movielens; for other layouts give the log file)")
    if not path.is_file():
        raise InputError(f"{path}: no such file" if not path.exists() else f"{path}: not a regular file")
    return path


def _in_dir(path: Path, name: str) -> Path:
    """``path`` itself, or ``path/name`` when ``path`` is a directory."""
    return _existing(path / name if path.is_dir() else path)


# --- RecBole atomic files ------------------------------------------------------------------------------
def _recbole_file(path: Path, suffix: str) -> Path:
    """The ``.inter``/``.item`` file: ``path`` itself, its sibling, or the only one in directory ``path``."""
    if path.is_dir():
        found = sorted(path.glob(f"*{suffix}"))
        if len(found) != 1:
            raise InputError(f"{path}: expected exactly one *{suffix} file, found {len(found)}")
        return found[0]
    if path.suffix != suffix:
        path = path.with_suffix(suffix)
    return _existing(path)


def _scan_recbole(path: Path) -> tuple[pl.LazyFrame, dict[str, str]]:
    """Scan an atomic file; header fields are ``name:type``. Returns the frame and name -> type."""
    try:
        with open(path, encoding="utf-8") as f:
            header = f.readline().rstrip("\n").rstrip("\r")
    except UnicodeDecodeError:
        raise InputError(f"{path}: header is not UTF-8 text") from None
    if not header:
        raise InputError(f"{path}: file is empty")
    types = {}
    for field in header.split("\t"):
        name, _, kind = field.partition(":")
        types[name] = kind or "token"
    lazy = pl.scan_csv(path, separator="\t", quote_char=None, infer_schema=False,
                       row_index_name=ROW_INDEX, new_columns=list(types), raise_if_empty=True)
    return lazy, types


def _read_recbole_inter(path: Path, columns: ColumnMap) -> RawLog:
    lazy, _ = _scan_recbole(path)
    return _map_log_columns(lazy, path, columns, 2, "recbole")


def _read_recbole_items(path: Path, columns: ItemColumnMap) -> RawItems:
    lazy, types = _scan_recbole(path)
    category = columns.category or next(
        (c for c in types if c.lower() in CATEGORY_CANDIDATES), None
    )
    if category is not None and types.get(category) == "token_seq":
        # token_seq holds space-separated tokens (one genre each); the artifact joins genres with "|".
        lazy = lazy.with_columns(pl.col(category).str.strip_chars().str.replace_all(r"\s+", "|"))
    return _map_item_columns(lazy, path, ItemColumnMap(columns.item, columns.title, category, columns.price),
                             2)


# --- MovieLens original layout (u.data / u.item) ------------------------------------------------------
def _read_movielens_data(path: Path) -> RawLog:
    """``u.data``: tab-separated ``user item rating timestamp``, no header."""
    names = ["user", "item", "rating", "timestamp"]
    lazy = pl.scan_csv(path, separator="\t", has_header=False, new_columns=names, infer_schema=False,
                       row_index_name="row", raise_if_empty=True)
    _column_names(lazy, path)  # empty-file check
    columns = {name: name for name in names}
    return RawLog(lazy.select(pl.col("row").cast(pl.Int64), *names), path, columns, 1, (path,), "movielens")


def _read_movielens_items(path: Path) -> RawItems:
    """``u.item``: Latin-1, ``|``-separated: id, title, dates, URL, then 19 genre flags (0/1)."""
    text = path.read_bytes().decode("latin-1")
    if not text.strip():
        raise InputError(f"{path}: file is empty")
    flags = [f"g{i}" for i in range(len(MOVIELENS_GENRES))]
    names = ["item", "title", "release_date", "video_release_date", "url", *flags]
    try:
        frame = pl.read_csv(io.BytesIO(text.encode("utf-8")), separator="|", has_header=False,
                            new_columns=names, infer_schema=False, quote_char=None)
    except pl.exceptions.PolarsError as exc:
        raise InputError(f"{path}: cannot read as MovieLens u.item ({_first_line(exc)})") from None
    if frame.width != len(names):
        raise DatasetError(f"{path}: expected {len(names)} '|'-separated fields per line, "
                           f"found {frame.width}")
    genres = pl.concat_str(
        [pl.when(pl.col(f) == "1").then(pl.lit(g)) for f, g in zip(flags, MOVIELENS_GENRES, strict=True)],
        separator="|", ignore_nulls=True,
    )
    out = frame.with_row_index("row").select(
        pl.col("row").cast(pl.Int64), pl.col("item").str.strip_chars(), "title",
        pl.when(genres == "").then(None).otherwise(genres).alias("category"),
        pl.lit(None, dtype=pl.String).alias("price"),
    )
    return RawItems(_check_items(out, path, 1, None), path)


# --- SASRec-style text ---------------------------------------------------------------------------------
def _read_sasrec(path: Path) -> RawLog:
    """Whitespace-separated ``user item`` per line, no header, no time: line order is time order.

    Blank lines become rows without user and item (counted and dropped as missing); a line with any
    other number of fields is an error naming the line.
    """
    lazy = pl.scan_csv(path, separator="\x1f", has_header=False, quote_char=None, new_columns=["line"],
                       infer_schema=False, row_index_name="row", raise_if_empty=True)
    _column_names(lazy, path)  # empty-file check
    parts = pl.col("line").str.extract_groups(r"^\s*(\S+)\s+(\S+)\s*$")
    frame = lazy.select(pl.col("row").cast(pl.Int64), "line", parts.alias("parts")).select(
        "row", "line", pl.col("parts").struct.field("1").alias("user"),
        pl.col("parts").struct.field("2").alias("item"),
    )
    bad = _collect(
        frame.filter(pl.col("user").is_null() & (pl.col("line").str.strip_chars() != "")).head(1), path
    )
    if bad.height:
        raise InputError(f"{path}: line {bad['row'][0] + 1}: expected 'user item', got {bad['line'][0]!r}")
    return RawLog(frame.drop("line"), path, {"user": "field 1", "item": "field 2"}, 1, (path,), "sasrec")
