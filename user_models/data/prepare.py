"""The ingestion pipeline: raw log -> validate -> clean -> map ids & behaviors -> sessionize -> dataset.

One path for every input format (readers only rename columns, see :mod:`user_models.data.readers`):

1. **read**: only the mapped columns are materialised (Polars scans the file lazily, so a file larger
   than memory works as long as those columns fit: roughly 70 bytes per event for four text columns
   while parsing; see docs/data_formats.md).
2. **spaces stripped from ids** (only when some were padded; no row is removed): ``" 7"`` is user ``7``.
   **missing user or item**: rows without a user or item id (and rows without an event/rating value when
   the data has them) are dropped.
3. **unparsable timestamps**: empty, unparsable and implausible times are dropped or, under the
   ``error`` policy, reported with their line. Numbers are unix time; the unit is detected from the
   *median* magnitude (< 1e11 seconds, < 1e14 milliseconds, < 1e17 microseconds, else nanoseconds; 1e11 s
   is the year 5138 and 1e11 ms is 1973) or set with ``time_unit``; a file whose rows disagree about the
   unit is refused. Calendar times before ``min_time`` (1990) or after ``max_time`` (tomorrow) are
   implausible (see :func:`_parse_timestamps`). Strings that are not numbers are ISO-8601 (``T`` or
   space between date and time, optional fraction, ``Z`` or ``+hh:mm`` offset, or a date alone);
   times without an offset are UTC. Everything is stored as whole unix seconds (floored).
4. **events outside the vocabulary**: dropped or, under ``error``, reported.
5. **exact duplicates**: rows equal in user, item, time and event/rating keep their first occurrence.
   Without timestamps a repeat cannot be told from a re-consumption, so nothing is removed.
6. **k-core**: users with fewer than ``min_user_events`` events and items with fewer than
   ``min_item_events`` are removed, repeatedly, until every remaining user and item qualifies.

Every step is a :class:`~user_models.data.artifact.CleaningStep` in ``meta.json``; a step that leaves
nothing raises :class:`~user_models.errors.DatasetError` naming it.

Ids are assigned in the sort order of the raw ids (numerically when every id is an integer, else as
strings), so the same input always gives the same ids: items ``1..n`` (0 is padding), users ``0..m-1``.
A user's events are ordered by time, ties by file order (MovieLens has many ratings per second), and a
new session starts after an inactivity gap longer than ``session_gap_seconds``; without time every user
is one session. User ids are replaced by a keyed hash (HMAC-SHA256, 16 hex digits) under a salt that is
random per run and never stored, unless the caller gives one (stable pseudonyms across runs) or asks
to keep the raw ids.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import time as _time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from tqdm.auto import tqdm

from user_models.data.artifact import CleaningStep, DatasetMeta, SequenceDataset, file_sha256
from user_models.data.funnel import funnel_cleaning_step
from user_models.data.readers import RawItems, RawLog, explain_read_error
from user_models.errors import DatasetError, InputError

Policy = Literal["drop", "error"]
TimeUnit = Literal["auto", "s", "ms", "us", "ns"]

DEFAULT_RATING_THRESHOLDS = (2.5, 3.5)
"""Ratings below 2.5 are "dislike", below 3.5 "neutral", the rest "like" (1-5 stars: 1-2 / 3 / 4-5)."""
DEFAULT_RATING_BEHAVIORS = ("dislike", "neutral", "like")
SINGLE_BEHAVIOR = "interact"
"""The one behavior of logs that carry neither events nor ratings."""
CLICK_BEHAVIOR = "click"
"""The one behavior of interactions made of impression clicks that name no behavior."""

_UNIT_DIVISOR = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
MIN_PLAUSIBLE_TIME = 631_152_000.0
"""1990-01-01T00:00:00Z in unix seconds: the default earliest plausible event time."""
MAX_ABS_RATING = 1e6
"""Ratings beyond this magnitude (and non-finite ones) are refused as not ratings."""
_ISO_FORMATS = ("%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%d")
_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True)
class PrepareConfig:
    """How a raw log becomes a dataset. Every default is documented in ``docs/data_formats.md``.

    Attributes:
        name: dataset name stored in the metadata.
        behaviors: event names from lowest to highest engagement (e.g. ``view, click, cart, buy``), or the
            names of the rating levels. None: events ordered by decreasing frequency (the commonest event
            is the lowest engagement), ratings named ``dislike, neutral, like``.
        rating_thresholds: ascending cut points; a rating ``r`` gets level ``#{t : r >= t}``.
        min_user_events: k-core threshold for users (1 disables it).
        min_item_events: k-core threshold for items (1 disables it).
        session_gap_seconds: inactivity longer than this starts a new session.
        bad_timestamps: ``drop`` (count and remove) or ``error`` (stop at the first one).
        unknown_events: ``drop`` or ``error`` for events outside ``behaviors``.
        time_unit: unit of numeric timestamps; ``auto`` detects it from the magnitude.
        keep_raw_ids: store raw user ids instead of pseudonyms.
        salt: HMAC key for the pseudonyms; None draws a random one that is never stored.
        temporal_test_fraction: the global temporal cutoff is the timestamp at the ``1 - f`` quantile
            (lower interpolation, so a real event time); events at or after it form the temporal test
            split (a bit more than ``f`` when times tie).
        collapse_funnel: merge consecutive events on one item by one user (a view, cart, buy seconds
            apart) into one interaction with the deepest behavior; event logs only, see
            :mod:`user_models.data.funnel`.
        funnel_window_seconds: the largest gap inside one funnel; None: ``session_gap_seconds``.
    """

    name: str = "dataset"
    behaviors: tuple[str, ...] | None = None
    rating_thresholds: tuple[float, ...] = DEFAULT_RATING_THRESHOLDS
    min_user_events: int = 5
    min_item_events: int = 5
    session_gap_seconds: float = 1800.0
    bad_timestamps: Policy = "drop"
    unknown_events: Policy = "drop"
    time_unit: TimeUnit = "auto"
    keep_raw_ids: bool = False
    salt: str | None = None
    temporal_test_fraction: float = 0.1
    collapse_funnel: bool = True
    funnel_window_seconds: float | None = None
    min_time: float = MIN_PLAUSIBLE_TIME
    """Earliest plausible event time (unix seconds; default 1990-01-01). Earlier calendar times are
    implausible: dropped and counted, or reported under ``bad_timestamps="error"``. Files whose times are
    all small counts (relative time, e.g. seconds from 0) are not calendar times and are not judged."""
    max_time: float | None = None
    """Latest plausible event time (unix seconds); None means one day after now."""
    strip_ids: bool = True
    """Remove spaces around user ids, item ids and event names (counted in the cleaning report)."""

    def __post_init__(self) -> None:
        if self.funnel_window_seconds is not None and not self.funnel_window_seconds >= 0:
            raise InputError(f"funnel window must be >= 0 seconds, got {self.funnel_window_seconds}")
        if self.min_user_events < 1 or self.min_item_events < 1:
            raise InputError("--min-user-events and --min-item-events must be at least 1")
        if not self.session_gap_seconds > 0:
            raise InputError(f"session gap must be positive, got {self.session_gap_seconds}")
        if not math.isfinite(self.min_time) or (self.max_time is not None and not (
                math.isfinite(self.max_time) and self.max_time > self.min_time)):
            raise InputError(f"plausible time range must be finite and increasing, got {self.min_time} .. "
                             f"{self.max_time}")
        if not 0 < self.temporal_test_fraction < 1:
            raise InputError(f"temporal test fraction must be in (0, 1), got {self.temporal_test_fraction}")
        if list(self.rating_thresholds) != sorted(set(self.rating_thresholds)) or not self.rating_thresholds:
            raise InputError(f"rating thresholds must be strictly ascending, got {self.rating_thresholds}")
        if self.behaviors is not None:
            if len(set(self.behaviors)) != len(self.behaviors) or not all(self.behaviors):
                raise InputError(f"behavior names must be distinct and non-empty, got {self.behaviors}")
            if len(self.behaviors) > 127:
                raise InputError(f"at most 127 behaviors, got {len(self.behaviors)}")


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``90s``, ``30m``, ``2h``, ``1d`` or a bare number of seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise InputError(f"invalid duration {text!r}; use a number with a unit s, m, h or d (e.g. 30m)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]


def prepare(
    log: RawLog | None,
    config: PrepareConfig = PrepareConfig(),
    items: RawItems | None = None,
    progress: bool = False,
    impressions: RawLog | None = None,
) -> SequenceDataset:
    """Turn a raw log (and optional item metadata and impressions) into a validated
    :class:`SequenceDataset`.

    Args:
        log: the events, as returned by :func:`~user_models.data.readers.read_log`; None when the
            impressions are the only log (then the interactions are their clicked rows).
        config: cleaning, vocabulary, session and privacy settings.
        items: item metadata joined on the raw item id; items absent from it get null metadata.
        progress: show a progress bar over the pipeline stages (stderr).
        impressions: what was shown, as returned by
            :func:`~user_models.data.readers.read_impressions` (or the MIND reader): stored as the
            dataset's impression table with its own cleaning report (see :func:`_clean_impressions`).

    Raises:
        InputError: a bad value under the ``error`` policy, a non-numeric rating, or a step that removes
            every event (the message names the file, line, column and value, or the step).
    """
    if log is None and impressions is None:
        raise InputError("nothing to prepare: give an interaction log, an impression table, or both")
    with tqdm(total=len(_STAGES), desc="prepare", unit="stage", disable=not progress, leave=False) as bar:
        bar.set_postfix_str(_STAGES[0])
        imp: pl.DataFrame | None = None
        imp_report: _Report | None = None
        derived = False  # interactions are the impressions' clicks
        if impressions is not None:
            raw_imp = _read(impressions)
            if raw_imp.height == 0:
                raise DatasetError(f"{impressions.path}: no data rows")
            imp_report = _Report(impressions, raw_imp.height, "impressions")
            imp = _clean_impressions(raw_imp, impressions, config, imp_report)
            if log is None:
                log, derived = _clicks_as_log(raw_imp, imp, impressions), True
                if config.behaviors is None and "event" not in log.columns:
                    config = replace(config, behaviors=(CLICK_BEHAVIOR,))
        assert log is not None
        frame = _read(log)
        if frame.height == 0:
            raise DatasetError(f"{log.path}: no data rows")
        report = _Report(log, frame.height)
        for step in log.steps:
            report.add(step.step, step.rows_before, step.rows_after, step.detail)

        _next_stage(bar)
        frame = _strip_ids(frame, log, config, report)
        frame = _drop_missing(frame, report)
        # From here on users and items are dense integer codes in raw-id order; raw ids live in *_ids.
        # Impressions share the codes: the ids are taken over both tables.
        user_codes, user_ids, imp_users = _encode_shared(frame["user"], imp, "user")
        item_codes, item_ids, imp_items = _encode_shared(frame["item"], imp, "item")
        frame = frame.with_columns(pl.Series("user", user_codes), pl.Series("item", item_codes))
        input_counts = {"events": report.rows_read, "users": _n_distinct(user_codes, imp, len(user_ids)),
                        "items": _n_distinct(item_codes, imp, len(item_ids))}
        frame, time_unit = _parse_timestamps(frame, log, config, report)
        frame, behaviors, behavior_source, order = _map_behaviors(frame, log, config, report)
        frame = _sort_events(frame)
        frame = _drop_duplicates(frame, report)
        window, note = config.funnel_window_seconds, ""
        if window is None:
            window, note = config.session_gap_seconds, "the session gap"
        frame, step = funnel_cleaning_step(frame, config.collapse_funnel, window, behavior_source, behaviors,
                                           note)
        report.add(step.step, step.rows_before, step.rows_after, step.detail)

        _next_stage(bar)
        frame = _k_core(frame, config, report, len(user_ids), len(item_ids))

        _next_stage(bar)
        # Re-number the survivors densely; order (and so determinism) is still the raw-id order.
        user_table = _id_table(frame["user"].to_numpy(), len(user_ids), first_id=0)
        if imp is not None and imp_report is not None and imp_users is not None and imp_items is not None:
            imp = imp.with_columns(pl.Series("user", user_table[imp_users]), pl.Series("item", imp_items))
            imp = _drop_slates_of_unknown_users(imp, imp_report)
            shown_items = imp["item"].to_numpy()
        else:
            shown_items = np.zeros(0, dtype=np.int32)
        frame, kept_users = _densify(frame, "user", len(user_ids), first_id=0)
        item_table = _id_table(np.concatenate([frame["item"].to_numpy(), shown_items]), len(item_ids), 1)
        frame, kept_items = _densify(frame, "item", len(item_ids), first_id=1, table=item_table)
        interactions = _sessionize(frame, config.session_gap_seconds)
        users = _users_table(user_ids.gather(kept_users), config)
        items_table, item_match = _items_table(item_ids.gather(kept_items), items)
        impression_table: pl.DataFrame | None = None
        impression_notes: dict[str, Any] = {}
        if imp is not None and imp_report is not None and impressions is not None:
            imp = imp.with_columns(pl.Series("item", item_table[imp["item"].to_numpy()]))
            impression_table, impression_notes = _impression_table(
                imp, interactions, behaviors, behavior_source, config, imp_report, impressions,
                derived)

        _next_stage(bar)
        sources = [] if derived else [_source(log.path, report.rows_read)]
        if impressions is not None and imp_report is not None and impressions.path != log.path or derived:
            assert impressions is not None and imp_report is not None
            sources.append(_source(impressions.path, imp_report.rows_read))
        if items is not None:
            sources.append(_source(items.path, items.frame.height))
        has_time = "timestamp" in frame.columns
        del frame
        meta = DatasetMeta(
            name=config.name,
            behaviors=behaviors,
            n_users=0, n_items=0, n_interactions=0, n_sessions=0,  # stamped by from_frames
            has_timestamps=has_time,
            behavior_source=behavior_source,
            session_gap_seconds=config.session_gap_seconds,
            temporal_cutoff=_temporal_cutoff(interactions, config) if has_time else None,
            rating_thresholds=config.rating_thresholds if behavior_source == "ratings" else None,
            sources=tuple(sources),
            cleaning=tuple(report.steps),
            impression_cleaning=tuple(imp_report.steps) if imp_report is not None else (),
            extra={
                "input_counts": input_counts,
                "columns": log.columns,
                "time_unit": time_unit,
                "behavior_order": order,
                "user_keys": _user_key_note(config),
                "temporal_test_fraction": config.temporal_test_fraction,
                **({"item_metadata": item_match} if item_match else {}),
                **({"impressions": impression_notes} if impression_notes else {}),
            },
        )
        dataset = SequenceDataset.from_frames(interactions, items_table, users, meta, impression_table)
        bar.update(1)
        return dataset


# --- stages ---------------------------------------------------------------------------------------------
class _Report:
    """Collects cleaning steps and refuses a step that empties the dataset (or the impressions)."""

    def __init__(self, log: RawLog, rows_read: int, what: str = "events") -> None:
        self.log = log
        self.rows_read = rows_read
        self.what = what
        self.steps: list[CleaningStep] = []

    def add(self, step: str, before: int, after: int, detail: str = "", hint: str = "") -> None:
        self.steps.append(CleaningStep(step, before, after, detail))
        if after == 0:
            raise DatasetError(f"{self.log.path}: step '{step}' removed all {before} remaining {self.what}"
                               f"{' (' + detail + ')' if detail else ''}{'; ' + hint if hint else ''}")


_STAGES = ("read", "clean", "k-core", "ids & sessions", "metadata")


def _next_stage(bar: tqdm) -> None:
    bar.update(1)
    bar.set_postfix_str(_STAGES[min(bar.n, len(_STAGES) - 1)])


def _read(log: RawLog) -> pl.DataFrame:
    try:
        frame = log.frame.collect(engine="streaming")
    except pl.exceptions.NoDataError:
        raise InputError(f"{log.path}: file is empty") from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(explain_read_error(log.path, log.fmt, exc)) from None
    for col in ("user", "item", "event"):
        if col in frame.columns and isinstance(frame.schema[col], pl.List | pl.Struct | pl.Array):
            first = frame.filter(pl.col(col).is_not_null()).row(0, named=True)
            raise InputError(f"{log.path}: {log.where(first['row'])}, column {log.columns[col]!r}: value "
                             f"{str(first[col])[:40]} is a list or an object; expected an id or a name")
    # Later steps keep the first of equal rows and break time ties by file order: rows in file order.
    return frame if frame["row"].is_sorted() else frame.sort("row")


def _is_missing(col: str, dtype: pl.DataType) -> pl.Expr:
    expr = pl.col(col).is_null()
    if dtype == pl.String:
        expr = expr | (pl.col(col).str.strip_chars() == "")
    elif dtype.is_float():
        expr = expr | pl.col(col).is_nan()
    return expr


def _strip_ids(frame: pl.DataFrame, log: RawLog, config: PrepareConfig, report: _Report,
               roles: tuple[str, ...] = ("user", "item", "event")) -> pl.DataFrame:
    """Spaces around ids and event names are padding, not part of the id (``" 7"`` is user ``7``)."""
    if not config.strip_ids:
        return frame
    cols = [c for c in roles if c in frame.columns and frame.schema[c] == pl.String]
    if not cols:
        return frame
    padded = frame.select(
        (pl.col(c).is_not_null() & (pl.col(c).str.strip_chars() != pl.col(c))).sum().alias(c) for c in cols
    ).row(0, named=True)
    if not any(padded.values()):
        return frame
    out = frame.with_columns(pl.col(c).str.strip_chars() for c in cols)
    detail = ", ".join(f"{log.columns[c]}: {n}" for c, n in padded.items() if n)
    report.add("spaces stripped from ids", frame.height, out.height, f"values changed (rows kept): {detail}")
    return out


def _drop_missing(frame: pl.DataFrame, report: _Report) -> pl.DataFrame:
    checked = [c for c in ("user", "item", "event", "rating") if c in frame.columns]
    flags = frame.select(_is_missing(c, frame.schema[c]).alias(c) for c in checked)
    counts = {c: int(flags[c].sum()) for c in checked}
    any_missing = flags.select(pl.any_horizontal(checked)).to_series()
    out = frame.filter(~any_missing)
    detail = ", ".join(f"{report.log.columns[c]}: {n}" for c, n in counts.items() if n)
    report.add("missing user or item", frame.height, out.height, detail)
    return out


def _encode_ids(ids: pl.Series) -> tuple[np.ndarray, pl.Series]:
    """Dense codes ``0..k-1`` in the sort order of the raw ids, and the raw id (as text) of each code.

    Ids sort numerically when every one is a plain integer literal (no sign, padding or spaces, so
    ``"007"`` stays a distinct string), else as strings. Ids are compared exactly as written.
    """
    as_int = _as_integers(ids)
    if as_int is not None:
        values = as_int.unique().sort()
        lo, hi = int(values[0]), int(values[-1])
        if hi - lo < 8 * len(ids) + 1_000_000:  # a lookup table beats hashing when ids are compact
            table = np.zeros(hi - lo + 1, dtype=np.int32)
            table[values.to_numpy() - lo] = np.arange(len(values), dtype=np.int32)
            codes = table[as_int.to_numpy() - lo]
        else:
            codes = as_int.replace_strict(values, np.arange(len(values), dtype=np.int32)).to_numpy()
        return codes, values.cast(pl.String)
    text = ids.cast(pl.String)
    values = text.unique().sort()
    codes = text.cast(pl.Enum(values)).to_physical().to_numpy().astype(np.int32)
    return codes, values


def _as_integers(ids: pl.Series) -> pl.Series | None:
    if ids.dtype.is_integer():
        return ids.cast(pl.Int64)
    if ids.dtype != pl.String:
        return None
    as_int = ids.cast(pl.Int64, strict=False)
    if as_int.null_count() or ids.str.contains(r"^[+\s]|^-?0\d|\s$").any():
        return None
    return as_int


def _parse_timestamps(
    frame: pl.DataFrame, log: RawLog, config: PrepareConfig, report: _Report
) -> tuple[pl.DataFrame, str | None]:
    """Unix seconds for every row; unparsable and implausible times are dropped (counted) or reported.

    Numeric times take one unit for the whole file, from the *median* magnitude (so one absurd value
    cannot flip it). A row whose own magnitude says another unit and would then be a plausible time
    means the file mixes units: it is refused, since no single reading is right. Calendar times (ISO
    strings, datetimes, or numbers whose median is after ``min_time``) outside
    ``[min_time, max_time]`` are implausible; numbers that are all small counts are relative time and
    only a row off by a unit (1000x) is implausible there.
    """
    if "timestamp" not in frame.columns:
        return frame, None
    raw = frame["timestamp"]
    col = log.columns["timestamp"]
    seconds, unit, numbers, num_unit = _to_unix_seconds(raw, config.time_unit)
    bad = seconds.is_null()
    n_bad = int(bad.sum())
    if n_bad and config.bad_timestamps == "error":
        first = frame.filter(bad).row(0, named=True)
        raise InputError(
            f"{log.path}: {log.where(first['row'])}, column {col!r}: cannot parse "
            f"timestamp {first['timestamp']!r} (expected unix seconds/milliseconds or ISO-8601); pass "
            "--bad-timestamps drop to skip such rows"
        )
    lo = config.min_time
    hi = config.max_time if config.max_time is not None else _time.time() + 86_400
    numeric = numbers.is_not_null() if numbers is not None else pl.Series([False] * len(raw))
    calendar_numbers = False
    if numbers is not None and bool(numeric.any()):
        median = seconds.filter(numeric).median()
        calendar_numbers = isinstance(median, int | float) and median >= lo
    judged = ~bad & (~numeric | calendar_numbers)
    implausible = judged & ((seconds < lo) | (seconds > hi))
    if numbers is not None and num_unit is not None and bool(numeric.any()):
        own = _unit_codes(numbers.abs())
        disagree = numeric & (own != _UNITS.index(num_unit))
        if config.time_unit == "auto" and bool(disagree.any()):
            own_seconds = (numbers / own.replace_strict(list(range(4)), [_UNIT_DIVISOR[u] for u in _UNITS],
                                                        return_dtype=pl.Float64)).floor()
            mixed = disagree & (own_seconds >= lo) & (own_seconds <= hi)
            if bool(mixed.any()):
                first = frame.filter(mixed).row(0, named=True)
                code = own.filter(mixed)[0]
                raise InputError(
                    f"{log.path}: {log.where(first['row'])}, column {col!r}: timestamp "
                    f"{first['timestamp']!r} is in unix {_UNITS[code]} but the file is in unix {num_unit} "
                    f"(median magnitude); {int(mixed.sum())} of {int(numeric.sum())} rows disagree about the "
                    "unit: convert them, or pass --time-unit to read every row in one unit"
                )
        if not calendar_numbers:
            implausible = implausible | (disagree & ~bad)
    n_implausible = int(implausible.sum())
    if n_implausible:
        first = frame.filter(implausible).row(0, named=True)
        where = f"{log.where(first['row'])} value {first['timestamp']!r}"
        span = f"{_date(lo)} .. {_date(hi)}"
        if config.bad_timestamps == "error":
            raise InputError(
                f"{log.path}: {log.where(first['row'])}, column {col!r}: implausible timestamp "
                f"{first['timestamp']!r} (read as unix {num_unit or unit}: outside {span}, or off by a "
                "unit); set --min-time/--max-time, --time-unit, or pass --bad-timestamps drop"
            )
    remove = bad | implausible
    out = frame.with_columns(seconds.alias("timestamp")).filter(~remove)
    details = []
    if n_bad:
        details.append(f"{n_bad} empty or unparsable in {col!r}")
    if n_implausible:
        details.append(f"{n_implausible} implausible (outside {span} or off by a unit; first: {where})")
    report.add("unparsable timestamps", frame.height, out.height, "; ".join(details))
    return out, unit


_UNITS = ("s", "ms", "us", "ns")


def _unit_codes(magnitude: pl.Series) -> pl.Series:
    """Unit index (0 s, 1 ms, 2 us, 3 ns) that a unix time of this magnitude is most likely in."""
    codes = sum((magnitude >= bound).cast(pl.Int8) for bound in (1e11, 1e14, 1e17))
    assert isinstance(codes, pl.Series)
    return codes.fill_null(0)


def _date(seconds: float) -> str:
    import datetime as dt

    try:
        return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d")
    except (OverflowError, OSError, ValueError):
        return f"{seconds:g}"


def parse_time_bound(text: str) -> float:
    """Unix seconds of ``--min-time``/``--max-time``: a number of seconds or an ISO-8601 date/time."""
    try:
        value = float(text)
    except ValueError:
        parsed = _iso_seconds(pl.Series([text.strip()]))[0]
        if parsed is None:
            raise InputError(f"invalid time {text!r}; use unix seconds or an ISO-8601 date such as "
                             "1990-01-01") from None
        return float(parsed)
    if not math.isfinite(value):
        raise InputError(f"invalid time {text!r}: not finite")
    return value


def _to_unix_seconds(
    raw: pl.Series, unit: TimeUnit
) -> tuple[pl.Series, str, pl.Series | None, str | None]:
    """Whole unix seconds (Int64, null where unparsable), a description of the detected format, the
    numeric values (null where not a number; None when the column has no numbers) and their unit."""
    if raw.dtype == pl.Date:
        return raw.cast(pl.Datetime("ms")).dt.epoch("s"), "date", None, None
    if isinstance(raw.dtype, pl.Datetime):
        return raw.dt.epoch("s"), "datetime", None, None
    if raw.dtype == pl.String:
        numbers = raw.cast(pl.Float64, strict=False)
        text = raw
        if numbers.null_count() > raw.null_count():  # padded numbers or ISO strings
            text = raw.str.strip_chars()
            numbers = text.cast(pl.Float64, strict=False)
        numbers = numbers.set(~numbers.is_finite(), None)
        seconds, kind, num_unit = _numeric_seconds(numbers, unit)
        if not (numbers.is_null() & text.is_not_null()).any():
            return seconds, kind, numbers, num_unit
        iso = _iso_seconds(text)
        if numbers.null_count() == len(numbers):
            return iso, "iso-8601", None, None
        return pl.select(pl.coalesce(seconds, iso)).to_series(), f"{kind} and iso-8601", numbers, num_unit
    if not raw.dtype.is_numeric():
        return (pl.Series(raw.name, [None] * len(raw), dtype=pl.Int64), f"unsupported type {raw.dtype}",
                None, None)
    numbers = raw.cast(pl.Float64)
    numbers = numbers.set(~numbers.is_finite(), None)
    seconds, kind, num_unit = _numeric_seconds(numbers, unit)
    return seconds, kind, numbers, num_unit


def _numeric_seconds(values: pl.Series, unit: TimeUnit) -> tuple[pl.Series, str, str]:
    """Seconds of finite ``values`` in ``unit``; ``auto`` takes the unit of the median magnitude."""
    if unit == "auto":
        middle = values.abs().median()
        magnitude = float(middle) if isinstance(middle, int | float) else 0.0
        unit = _UNITS[int(_unit_codes(pl.Series([magnitude]))[0])]  # type: ignore[assignment]
    # clipped so an absurd value stays a (far out of range, so implausible) integer instead of failing
    seconds = (values / _UNIT_DIVISOR[unit]).floor().clip(-(2.0**62), 2.0**62).cast(pl.Int64)
    return seconds, f"unix {unit}", unit


def _iso_seconds(text: pl.Series) -> pl.Series:
    """ISO-8601 strings to unix seconds; each value may use any of the accepted forms."""
    norm = text.str.replace(r"^(\d{4}-\d\d-\d\d)[T ]", "${1} ").str.replace(r"Z$", "+00:00")
    parsed = [norm.str.to_datetime(fmt, strict=False, time_zone="UTC") for fmt in _ISO_FORMATS]
    return pl.select(pl.coalesce(parsed)).to_series().dt.epoch("s")


def _map_behaviors(
    frame: pl.DataFrame, log: RawLog, config: PrepareConfig, report: _Report
) -> tuple[pl.DataFrame, tuple[str, ...], Literal["events", "ratings", "none"], str]:
    if "event" in frame.columns:
        events = frame["event"].cast(pl.String)
        if config.behaviors is not None:
            vocab, order = config.behaviors, "given"
        else:
            counts = events.value_counts(sort=True).sort(["count", "event"], descending=[True, False])
            vocab, order = tuple(counts["event"].to_list()), "by decreasing frequency"
        ids = (events.cast(pl.Enum(vocab), strict=False).to_physical().cast(pl.Int16) + 1).cast(pl.Int8)
        unknown = ids.is_null()
        n_unknown = int(unknown.sum())
        if n_unknown and config.unknown_events == "error":
            first = frame.filter(unknown).row(0, named=True)
            raise InputError(
                f"{log.path}: {log.where(first['row'])}, column {log.columns['event']!r}: unknown event "
                f"{first['event']!r} (vocabulary: {', '.join(vocab)}); add it to --behaviors or pass "
                "--unknown-events drop"
            )
        dropped = events.filter(unknown).value_counts(sort=True).head(5)
        detail = ", ".join(f"{e!r}: {n}" for e, n in dropped.iter_rows())
        out = frame.with_columns(ids.alias("behavior")).filter(~unknown).drop("event")
        report.add("events outside the vocabulary", frame.height, out.height, detail,
                   hint=f"the vocabulary is {', '.join(vocab)}")
        return out, vocab, "events", order
    if "rating" in frame.columns:
        return _map_ratings(frame, log, config)
    names = config.behaviors or (SINGLE_BEHAVIOR,)
    if len(names) != 1:
        raise InputError(f"{log.path}: --behaviors names {len(names)} behaviors but the log has no event or "
                         "rating column (map one with --event-col or --rating-col)")
    return frame.with_columns(pl.lit(1, dtype=pl.Int8).alias("behavior")), names, "none", "single"


def _map_ratings(
    frame: pl.DataFrame, log: RawLog, config: PrepareConfig
) -> tuple[pl.DataFrame, tuple[str, ...], Literal["ratings"], str]:
    thresholds = config.rating_thresholds
    if config.behaviors is not None:
        names = config.behaviors
    elif len(thresholds) == len(DEFAULT_RATING_BEHAVIORS) - 1:
        names = DEFAULT_RATING_BEHAVIORS
    else:
        raise InputError(f"{len(thresholds)} rating thresholds make {len(thresholds) + 1} levels: name them "
                         "with --behaviors")
    if len(names) != len(thresholds) + 1:
        raise InputError(f"{len(thresholds)} rating thresholds make {len(thresholds) + 1} levels, but "
                         f"--behaviors names {len(names)}: {', '.join(names)}")
    raw = frame["rating"]
    if raw.dtype == pl.String:
        rating = raw.str.strip_chars().cast(pl.Float64, strict=False)
    elif raw.dtype.is_numeric():
        rating = raw.cast(pl.Float64)
    else:
        raise InputError(f"{log.path}: column {log.columns['rating']!r} has type {raw.dtype}, "
                         "expected numbers")
    bad = rating.is_null() | rating.is_nan()
    if bad.any():
        first = frame.filter(bad).row(0, named=True)
        raise InputError(f"{log.path}: {log.where(first['row'])}, column {log.columns['rating']!r}: value "
                         f"{first['rating']!r} is not a number")
    bad = ~rating.is_finite() | (rating.abs() > MAX_ABS_RATING)
    if bad.any():
        first = frame.filter(bad).row(0, named=True)
        raise InputError(f"{log.path}: {log.where(first['row'])}, column {log.columns['rating']!r}: value "
                         f"{first['rating']!r} is not a plausible rating (finite, at most "
                         f"{MAX_ABS_RATING:g} in magnitude)")
    level = pl.sum_horizontal([(pl.col("rating") >= t).cast(pl.Int8) for t in thresholds]) + 1
    out = frame.with_columns(rating.alias("rating")).with_columns(level.cast(pl.Int8).alias("behavior"))
    return out, names, "ratings", "rating thresholds"


def _sort_events(frame: pl.DataFrame) -> pl.DataFrame:
    """Order events by user, then time, then file order (every later step keeps this order).

    User and time are packed into one int64 key (user * time span + time) when it fits: sorting on
    (key, row) is about twice as fast as on (user, time, row) and gives the same order.
    """
    if "timestamp" not in frame.columns:
        return frame.sort(["user", "row"])
    lo, hi, top_user = frame.select(pl.col("timestamp").min().alias("lo"), pl.col("timestamp").max(),
                                    pl.col("user").max()).row(0)
    span = hi - lo + 1
    if (top_user + 1) * span >= 2**62:
        return frame.sort(["user", "timestamp", "row"])
    key = pl.col("user").cast(pl.Int64) * span + (pl.col("timestamp") - lo)
    return frame.sort([key, "row"])


def _drop_duplicates(frame: pl.DataFrame, report: _Report) -> pl.DataFrame:
    """Keep the first (in file order) of rows equal in user, item, time and event or rating.

    The frame is sorted by user and time, so duplicates sit in runs of equal (user, time); only rows
    in such runs are compared on all values (MovieLens has many; typical event logs very few).
    """
    if "timestamp" not in frame.columns:
        report.add("exact duplicates", frame.height, frame.height, "skipped: no timestamps, repeats are kept")
        return frame
    user, ts = frame["user"].to_numpy(), frame["timestamp"].to_numpy()
    tie = (user[1:] == user[:-1]) & (ts[1:] == ts[:-1])
    in_run = np.zeros(frame.height, dtype=bool)
    in_run[1:] |= tie
    in_run[:-1] |= tie
    keep = np.ones(frame.height, dtype=bool)
    if in_run.any():
        value = "rating" if "rating" in frame.columns else "behavior"
        suspects = frame.filter(pl.Series(in_run))  # still in (user, time, file) order
        first = suspects.select(pl.struct("user", "timestamp", "item", value).is_first_distinct())
        keep[np.flatnonzero(in_run)[~first.to_series().to_numpy()]] = False
    out = frame.filter(pl.Series(keep))
    report.add("exact duplicates", frame.height, out.height)
    return out


def _k_core(
    frame: pl.DataFrame, config: PrepareConfig, report: _Report, n_users: int, n_items: int
) -> pl.DataFrame:
    """Iteratively drop users and items below their minimum count (bincount over the dense codes)."""
    ku, ki = config.min_user_events, config.min_item_events
    users = frame["user"].to_numpy()
    items = frame["item"].to_numpy()
    users_before = int(np.count_nonzero(np.bincount(users, minlength=n_users)))
    items_before = int(np.count_nonzero(np.bincount(items, minlength=n_items)))
    keep = np.ones(len(users), dtype=bool)
    rounds = 0
    while True:
        user_count = np.bincount(users[keep], minlength=n_users)
        item_count = np.bincount(items[keep], minlength=n_items)
        ok = keep & (user_count[users] >= ku) & (item_count[items] >= ki)
        if ok.sum() == keep.sum():
            break
        keep = ok
        rounds += 1
    out = frame.filter(pl.Series(keep))
    kept_users = int(np.count_nonzero(user_count >= ku)) if keep.any() else 0
    kept_items = int(np.count_nonzero(item_count >= ki)) if keep.any() else 0
    detail = (f"min {ku} per user, {ki} per item, {rounds} rounds; users {users_before} -> {kept_users}, "
              f"items {items_before} -> {kept_items}")
    report.add("k-core", frame.height, out.height, detail,
               hint="lower --min-user-events / --min-item-events")
    return out


def _densify(
    frame: pl.DataFrame, col: str, n_codes: int, first_id: int, table: np.ndarray | None = None
) -> tuple[pl.DataFrame, pl.Series]:
    """Renumber the codes still present in ``col`` as ``first_id, first_id + 1, ...`` (order kept).

    ``table`` (from :func:`_id_table`) numbers a larger set of codes instead (items only shown in
    impressions get ids too). Returns the frame and, for each new id, its old code (to pick the raw ids
    that survived).
    """
    codes = frame[col].to_numpy()
    if table is None:
        table = _id_table(codes, n_codes, first_id)
    present = np.flatnonzero(table >= 0)
    return frame.with_columns(pl.Series(col, table[codes])), pl.Series(present)


def _id_table(codes: np.ndarray, n_codes: int, first_id: int) -> np.ndarray:
    """New id of each old code: the codes present in ``codes`` numbered from ``first_id`` in code order,
    -1 for the others."""
    present = np.flatnonzero(np.bincount(codes, minlength=n_codes))
    table = np.full(n_codes, -1, dtype=np.int32)
    table[present] = np.arange(first_id, first_id + len(present), dtype=np.int32)
    return table


def _sessionize(frame: pl.DataFrame, gap_seconds: float) -> pl.DataFrame:
    """Number positions and sessions of events already in (user, time, file) order."""
    has_time = "timestamp" in frame.columns
    user = frame["user"].to_numpy()
    n = len(user)
    starts = np.empty(n, dtype=bool)
    starts[0] = True
    np.not_equal(user[1:], user[:-1], out=starts[1:])
    first_index = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    position = np.arange(n) - first_index
    if has_time:
        ts = frame["timestamp"].to_numpy()
        new_session = starts.copy()
        new_session[1:] |= np.diff(ts) > gap_seconds
        global_session = np.cumsum(new_session) - 1
        session = global_session - global_session[first_index]
        timestamp = pl.Series("timestamp", ts, dtype=pl.Int64)
    else:
        session = np.zeros(n, dtype=np.int64)
        timestamp = pl.Series("timestamp", [None] * n, dtype=pl.Int64)
    return pl.DataFrame({
        "user": frame["user"], "item": frame["item"], "behavior": frame["behavior"], "timestamp": timestamp,
        "session": session.astype(np.int32), "position": position.astype(np.int32),
    })


def _users_table(raw_ids: pl.Series, config: PrepareConfig) -> pl.DataFrame:
    """User ``i`` has raw id ``raw_ids[i]``; its key is that id or a salted-hash pseudonym of it."""
    raw = raw_ids.to_list()
    if config.keep_raw_ids:
        keys = raw
    else:
        salt = (config.salt.encode() if config.salt is not None else secrets.token_bytes(32))
        keys = [hmac.new(salt, r.encode(), hashlib.sha256).hexdigest()[:16] for r in raw]
    return pl.DataFrame({"user": np.arange(len(raw), dtype=np.int32), "user_key": keys})


def _user_key_note(config: PrepareConfig) -> str:
    if config.keep_raw_ids:
        return "raw ids (--keep-raw-ids)"
    salt = "a salt given by the user" if config.salt is not None else "a random salt"
    return f"HMAC-SHA256 of the raw id under {salt}, first 16 hex digits; the salt is not stored"


def _items_table(raw_ids: pl.Series, items: RawItems | None) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Item ``i + 1`` has raw id ``raw_ids[i]``; metadata is joined on the raw id as written."""
    table = pl.DataFrame({"item": np.arange(1, len(raw_ids) + 1, dtype=np.int32), "raw_id": raw_ids})
    if items is None:
        return table.with_columns(title=pl.lit(None, pl.String), category=pl.lit(None, pl.String),
                                  price=pl.lit(None, pl.Float64)), {}
    meta = items.frame.rename({"item": "raw_id"})
    joined = table.join(meta, on="raw_id", how="left", maintain_order="left")
    matched = int(joined["raw_id"].is_in(meta["raw_id"].implode()).sum())
    return joined, {"path": str(items.path), "rows": items.frame.height, "matched_items": matched,
                    "items_without_metadata": table.height - matched}


def _temporal_cutoff(interactions: pl.DataFrame, config: PrepareConfig) -> int:
    value = interactions["timestamp"].quantile(1 - config.temporal_test_fraction, interpolation="lower")
    return int(value) if value is not None and not math.isnan(value) else 0


def _source(path: Path, rows: int) -> dict[str, Any]:
    return {"path": str(path), "sha256": file_sha256(path), "rows": rows}


# --- impressions ----------------------------------------------------------------------------------------
_TRUE = ("1", "true")
_FALSE = ("0", "false")


def _clean_impressions(
    raw: pl.DataFrame, imp: RawLog, config: PrepareConfig, report: _Report
) -> pl.DataFrame:
    """Validate and clean an impression table before ids are assigned; every step is counted.

    A slate is kept whole or not at all: a row dropped for a missing id or an unparsable time takes the
    rest of its impression with it (step "incomplete slates"), since a slate missing a slot is not what
    was shown. Values that cannot mean anything stop the run with file, line, column and value:
    ``clicked`` other than 0/1/true/false, a position that is not an integer >= 0, a propensity outside
    (0, 1], one impression id with several users or times, or two different items in one slot.

    Returns ``row``, ``user``, ``item`` (raw ids), ``impression`` (raw id), ``position`` (Int64, as
    given), ``clicked`` (Int8), and when present ``timestamp`` (unix seconds), ``behavior`` (raw name),
    ``propensity`` (Float64).
    """
    frame = _strip_ids(raw, imp, config, report, roles=("user", "item", "impression", "behavior"))
    cols = imp.columns
    required = [c for c in ("user", "item", "impression", "slot", "clicked") if c in frame.columns]
    flags = frame.select(_is_missing(c, frame.schema[c]).alias(c) for c in required)
    counts = {c: int(flags[c].sum()) for c in required}
    missing = flags.select(pl.any_horizontal(required)).to_series()
    frame_kept = frame.filter(~missing)
    detail = ", ".join(f"{cols[c]}: {n}" for c, n in counts.items() if n)
    report.add("missing user, item, impression, position or clicked", frame.height, frame_kept.height,
               detail)
    lost = [frame.filter(missing)["impression"]]  # slates that lost a row (dropped whole below)
    frame = frame_kept

    def refuse(bad: pl.Series, role: str, why: str) -> None:
        if bool(bad.any()):
            first = frame.filter(bad).row(0, named=True)
            raise InputError(f"{imp.path}: {imp.where(first['row'])}, column {cols[role]!r}: value "
                             f"{first[role]!r} {why}")

    clicked = frame["clicked"]
    if clicked.dtype == pl.Boolean or clicked.dtype.is_integer():
        flag = clicked.cast(pl.Int64)
        refuse(~flag.is_in([0, 1]), "clicked", "is not 0/1 (or true/false)")
    else:
        text = clicked.cast(pl.String).str.strip_chars().str.to_lowercase()
        text = text.str.replace(r"^(-?\d+)\.0*$", "${1}")  # 1.0 (a float column) is 1
        refuse(~text.is_in([*_TRUE, *_FALSE]), "clicked", "is not 0/1 (or true/false)")
        flag = text.is_in(_TRUE)
    frame = frame.with_columns(flag.cast(pl.Int8).alias("clicked"))

    position = frame["slot"]
    if position.dtype.is_integer():
        number = position.cast(pl.Int64)
    else:
        text = position.cast(pl.String).str.strip_chars().str.replace(r"\.0*$", "")
        number = text.cast(pl.Int64, strict=False)
    refuse(number.is_null() | (number < 0), "slot", "is not a position (an integer >= 0)")
    frame = frame.with_columns(number.alias("slot"))

    if "propensity" in frame.columns:
        value = frame["propensity"]
        if value.dtype.is_numeric():
            prob = value.cast(pl.Float64)
            given = value.is_not_null()
        else:
            text = value.cast(pl.String).str.strip_chars()
            prob = text.cast(pl.Float64, strict=False)
            given = value.is_not_null() & (text != "")
        refuse(given & (prob.is_null() | ~prob.is_finite() | (prob <= 0) | (prob > 1)), "propensity",
               "is not a probability in (0, 1]")
        frame = frame.with_columns(prob.alias("propensity"))

    timed, _ = _parse_timestamps(frame, imp, config, report)
    if timed.height < frame.height:
        lost.append(frame.join(timed, on="row", how="anti")["impression"])
    frame = timed
    # Integer codes of the impression ids (raw-id order): every later step groups by them.
    frame = frame.with_columns(pl.Series("code", _encode_ids(frame["impression"])[0], dtype=pl.Int64))

    keys = ["user", "timestamp"] if "timestamp" in frame.columns else ["user"]
    per = frame.group_by("code").agg(*(pl.col(k).n_unique() for k in keys))
    bad_ids = per.filter(pl.any_horizontal(pl.col(k) > 1 for k in keys))["code"]
    if bad_ids.len():
        rows = frame.filter(pl.col("code").is_in(bad_ids.implode()))
        first = rows.row(0, named=True)
        other = rows.filter(pl.any_horizontal(pl.col(k) != first[k] for k in keys)).row(0, named=True)
        what = " or ".join(cols[k] for k in keys)
        raise InputError(f"{imp.path}: {imp.where(other['row'])}: impression {first['impression']!r} has "
                         f"another {what} than at {imp.where(first['row'])} (one impression is one slate "
                         "shown to one user at one time)")

    content = [c for c in ("item", "clicked", "behavior", "propensity") if c in frame.columns]
    top = int(frame["slot"].max()) + 1  # type: ignore[arg-type]
    if top * (int(frame["code"].max()) + 1) < 2**62:  # type: ignore[arg-type]
        first_of_slot = (frame["code"] * top + frame["slot"]).is_first_distinct()  # in row order
    else:
        first_of_slot = frame.select(pl.struct("code", "slot").is_first_distinct()).to_series()
    if not bool(first_of_slot.all()):
        same = frame.select(pl.struct("code", "slot", *content).is_first_distinct()).to_series()
        conflict = ~first_of_slot & same
        if bool(conflict.any()):
            first = frame.filter(conflict).row(0, named=True)
            raise InputError(f"{imp.path}: {imp.where(first['row'])}, column {cols['slot']!r}: impression "
                             f"{first['impression']!r} position {first['slot']} appears twice with "
                             "different contents")
    out = frame.filter(first_of_slot)
    report.add("exact duplicate slots", frame.height, out.height)

    # Slates that lost a row to a missing id or a bad time are dropped whole.
    broken = pl.concat([x.cast(pl.String) for x in lost]).drop_nulls().unique()
    complete = out
    if broken.len():
        complete = out.filter(~pl.col("impression").cast(pl.String).is_in(broken.implode()))
    report.add("incomplete slates", out.height, complete.height,
               f"{broken.len()} impressions that lost a row above, dropped whole" if broken.len() else "")
    return complete


def _clicks_as_log(raw: pl.DataFrame, clean: pl.DataFrame, imp: RawLog) -> RawLog:
    """The interactions of an impression-only log: its clicked rows (of the slates that survived
    cleaning), with the raw values, through the ordinary pipeline."""
    clicked = clean.filter(pl.col("clicked") == 1).select("row")
    roles = [r for r in ("user", "item", "timestamp") if r in raw.columns]
    columns: dict[str, str] = {r: imp.columns[r] for r in roles}
    select = [pl.col("row"), *(pl.col(r) for r in roles)]
    if "behavior" in raw.columns:
        select.append(pl.col("behavior").alias("event"))
        columns["event"] = imp.columns["behavior"]
    frame = raw.join(clicked, on="row", how="semi").select(select).sort("row")
    return RawLog(frame.lazy(), imp.path, columns, imp.first_line, imp.sources, imp.fmt, imp.row_origin)


def _encode_shared(
    log_ids: pl.Series, imp: pl.DataFrame | None, col: str
) -> tuple[np.ndarray, pl.Series, np.ndarray | None]:
    """:func:`_encode_ids` over the log's and the impressions' raw ids together: codes of the log, the
    raw id of each code, and codes of the impressions (None without them)."""
    if imp is None:
        codes, ids = _encode_ids(log_ids)
        return codes, ids, None
    other = imp[col]
    if log_ids.dtype != other.dtype:
        log_ids, other = log_ids.cast(pl.String), other.cast(pl.String)
    codes, ids = _encode_ids(pl.concat([log_ids, other]))
    return codes[:len(log_ids)], ids, codes[len(log_ids):]


def _n_distinct(codes: np.ndarray, imp: pl.DataFrame | None, total: int) -> int:
    """Distinct ids in the log (``total`` counts the impressions' too)."""
    return total if imp is None else int(np.count_nonzero(np.bincount(codes, minlength=total)))


def _drop_slates_of_unknown_users(imp: pl.DataFrame, report: _Report) -> pl.DataFrame:
    """Impressions of users who have no interactions left (none logged, or removed by the k-core)
    cannot be tied to a history: dropped, counted."""
    out = imp.filter(pl.col("user") >= 0)
    lost = imp.filter(pl.col("user") < 0)["code"].n_unique()
    report.add("users without interactions", imp.height, out.height,
               f"{lost} impressions of users absent from the interactions (or removed by the k-core)"
               if lost else "")
    return out


def _impression_table(
    imp: pl.DataFrame, interactions: pl.DataFrame, behaviors: tuple[str, ...], behavior_source: str,
    config: PrepareConfig, report: _Report, raw: RawLog, derived: bool,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The artifact's impression table from cleaned impressions with final user and item ids.

    Impression ids are numbered ``0..K-1`` in ``(user, timestamp, raw impression id)`` order, slots
    ``0..k-1`` in the order of the given positions (1-based positions become 0-based; gaps close up,
    counted). A click's behavior is looked up in the dataset's vocabulary (unknown names: null and
    counted, or an error under ``unknown_events="error"``); without a behavior column a click is the
    vocabulary's ``click`` when it has one. The session is that of the user's interactions within the
    session gap before (else after) the impression; null when none is that close or the impressions
    have no time while the interactions do.
    """
    notes: dict[str, Any] = {"columns": raw.columns,
                             "interactions": "the impressions' clicked rows" if derived else "the log"}
    has_time = "timestamp" in imp.columns
    if not has_time:
        imp = imp.with_columns(pl.lit(None, pl.Int64).alias("timestamp"))
    # One row per impression: its user and time (one each, checked), numbered in (user, time, raw id) order.
    slates = imp.group_by("code").agg(pl.col("user").first(), pl.col("timestamp").first())
    slates = slates.sort(["user", "timestamp", "code"], nulls_last=True)
    number = np.full(int(slates["code"].max()) + 1, -1, dtype=np.int64)  # type: ignore[arg-type]
    number[slates["code"].to_numpy()] = np.arange(slates.height)
    keep = [c for c in ("row", "user", "timestamp", "slot", "item", "clicked", "behavior", "propensity")
            if c in imp.columns]
    frame = imp.select(keep).with_columns(pl.Series("impression", number[imp["code"].to_numpy()]))
    top = int(frame["slot"].max()) + 1  # type: ignore[arg-type]
    if top * slates.height < 2**62:  # one packed integer key sorts much faster than two columns
        frame = frame.sort(pl.col("impression") * top + pl.col("slot"))
    else:
        frame = frame.sort(["impression", "slot"])
    impression = frame["impression"].to_numpy()
    new = np.ones(len(impression), dtype=bool)
    new[1:] = impression[1:] != impression[:-1]
    start = np.flatnonzero(new)
    slot = np.arange(len(impression)) - np.repeat(start, np.diff(np.append(start, len(impression))))
    changed = impression[frame["slot"].to_numpy() != slot]  # sorted: count its distinct values
    n_renumbered = int(np.count_nonzero(changed[1:] != changed[:-1])) + 1 if len(changed) else 0
    report.add("positions as 0-based slots", frame.height, frame.height,
               f"{n_renumbered} impressions had positions other than 0..k-1 (1-based or with gaps) and were "
               "renumbered in order" if n_renumbered else "")
    if int(slot.max()) >= 2**15:
        raise InputError(f"{raw.path}: a slate of {int(slot.max()) + 1} items; at most {2**15 - 1} slots")
    frame = frame.with_columns(pl.Series("slot", slot, dtype=pl.Int16))

    clicked = pl.col("clicked") == 1
    if "behavior" in frame.columns:
        names = frame.select(pl.when(clicked).then(pl.col("behavior").cast(pl.String))).to_series()
        ids = (names.cast(pl.Enum(behaviors), strict=False).to_physical().cast(pl.Int16) + 1).cast(pl.Int8)
        unknown = frame.select(clicked & names.is_not_null() & ids.is_null()).to_series()
        if bool(unknown.any()):
            first = frame.filter(unknown).row(0, named=True)
            if config.unknown_events == "error":
                raise InputError(f"{raw.path}: {raw.where(first['row'])}, column "
                                 f"{raw.columns['behavior']!r}: unknown behavior {first['behavior']!r} "
                                 f"(vocabulary: {', '.join(behaviors)}); pass --unknown-events drop to keep "
                                 "the click without a behavior")
        report.add("click behaviors outside the vocabulary", frame.height, frame.height,
                   f"{int(unknown.sum())} clicks kept with a null behavior" if bool(unknown.any()) else "")
        behavior = pl.when(clicked).then(pl.Series(ids)).otherwise(None)
        notes["behavior"] = f"column {raw.columns['behavior']!r} in the vocabulary {', '.join(behaviors)}"
    elif CLICK_BEHAVIOR in behaviors or (derived and len(behaviors) == 1):
        click_id = behaviors.index(CLICK_BEHAVIOR) + 1 if CLICK_BEHAVIOR in behaviors else 1
        behavior = pl.when(clicked).then(pl.lit(click_id)).otherwise(None)
        notes["behavior"] = f"no behavior column: a click is behavior {behaviors[click_id - 1]!r}"
    else:
        behavior = pl.lit(None)
        notes["behavior"] = (f"no behavior column and no 'click' in the vocabulary ({behavior_source}): "
                             "null")
    if "propensity" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, pl.Float64).alias("propensity"))
        notes["propensity"] = "none given (null)"
    else:
        notes["propensity"] = f"column {raw.columns['propensity']!r}"
    frame = frame.with_columns(behavior.cast(pl.Int8).alias("behavior"))
    session, session_note = _impression_sessions(slates, interactions, config.session_gap_seconds, has_time)
    notes["session"] = session_note
    table = frame.with_columns(session.gather(impression).alias("session")).select(
        "user", "impression", "timestamp", "session", "slot", "item", "clicked", "behavior", "propensity")
    return table, notes


def _impression_sessions(
    slates: pl.DataFrame, interactions: pl.DataFrame, gap: float, has_time: bool
) -> tuple[pl.Series, str]:
    """Each impression's session (``slates``: one row per impression, in impression-id order): the
    user's interaction session within ``gap`` seconds before the impression, else within ``gap`` after
    it, else null."""
    n = slates.height
    if interactions["timestamp"].null_count() == interactions.height:
        return pl.Series("session", np.zeros(n, dtype=np.int32)), "no times in the interactions: session 0"
    if not has_time:
        return pl.Series("session", [None] * n, dtype=pl.Int32), "no times in the impressions: null"
    events = interactions.select("user", pl.col("timestamp").alias("t"), "session").sort("t")
    keys = slates.select(pl.int_range(n).alias("i"), "user", "timestamp").sort("timestamp")
    found = []
    for strategy in ("backward", "forward"):
        hit = keys.join_asof(events, left_on="timestamp", right_on="t", by="user", strategy=strategy,
                             check_sortedness=False)
        close = (pl.col("timestamp") - pl.col("t")).abs() <= gap
        found.append(hit.select("i", pl.when(close).then(pl.col("session")).alias(strategy)))
    both = found[0].join(found[1], on="i").sort("i")
    session = both.select(pl.coalesce("backward", "forward").cast(pl.Int32)).to_series().alias("session")
    return session, (f"the interaction session within the session gap ({gap:g} s) before the impression, "
                     "else after it; null when none is that close")
