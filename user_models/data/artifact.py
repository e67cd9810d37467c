"""The prepared dataset artifact: the one contract between ingestion and everything downstream.

A dataset directory holds

- ``interactions.parquet``: one row per event, sorted by ``(user, position)``. Columns: ``user`` (0..m-1),
  ``item`` (1..n; 0 is padding and never stored), ``behavior`` (1..B; 0 means "no response" and is never
  stored), ``timestamp`` (unix seconds, null when the source had no time), ``session`` (per-user session
  index from 0), ``position`` (per-user event index from 0).
- ``items.parquet``: ``item`` (1..n), ``raw_id``, ``title``, ``category`` (genres joined by ``|``),
  ``price``; one row per item id, metadata null when unknown.
- ``users.parquet``: ``user`` (0..m-1), ``user_key`` (salted-hash pseudonym, or the raw id when the
  dataset was prepared with ``keep_raw_ids``).
- ``impressions.parquet`` (optional, format version 2): what was shown, one row per (impression, slot).
  Columns: ``user`` (the same 0..m-1 index), ``impression`` (slate id 0..K-1, dense, in the order of the
  sort ``(user, timestamp, impression)``), ``timestamp`` (unix seconds, null when unknown), ``session``
  (the user's session index of the interactions when it can be told, else null), ``slot`` (0-based
  position in the slate), ``item`` (the same 1..n index; items only ever shown get ids too),
  ``clicked`` (0/1), ``behavior`` (the click's behavior id, null when not clicked or unknown),
  ``propensity`` (the logging policy's probability, null when unknown). Sorted by
  ``(impression, slot)``.
- ``meta.json``: format version, schema, counts, behavior vocabulary, sources with sha256, the cleaning
  report (and the impressions' own), the split settings and content fingerprints.

Version-1 directories (written before impressions existed) still load, with ``impressions`` None.

The directory is written to a temporary sibling and renamed into place, so a reader never sees half of
one. :meth:`SequenceDataset.load` checks the format version, the schema and the fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from user_models.errors import DatasetError, OutputError
from user_models.outputs import DATASET, OutputKind, check_output, replace_output

FORMAT_VERSION = 2
"""Bumped whenever the layout or the meaning of a column changes; an unknown version fails to load."""
READABLE_VERSIONS = (1, 2)
"""Versions :meth:`SequenceDataset.load` reads: 1 is version 2 without impressions."""

INTERACTIONS_SCHEMA: dict[str, pl.DataType] = {
    "user": pl.Int32(),
    "item": pl.Int32(),
    "behavior": pl.Int8(),
    "timestamp": pl.Int64(),
    "session": pl.Int32(),
    "position": pl.Int32(),
}
ITEMS_SCHEMA: dict[str, pl.DataType] = {
    "item": pl.Int32(),
    "raw_id": pl.String(),
    "title": pl.String(),
    "category": pl.String(),
    "price": pl.Float64(),
}
USERS_SCHEMA: dict[str, pl.DataType] = {"user": pl.Int32(), "user_key": pl.String()}
IMPRESSIONS_SCHEMA: dict[str, pl.DataType] = {
    "user": pl.Int32(),
    "impression": pl.Int64(),
    "timestamp": pl.Int64(),
    "session": pl.Int32(),
    "slot": pl.Int16(),
    "item": pl.Int32(),
    "clicked": pl.Int8(),
    "behavior": pl.Int8(),
    "propensity": pl.Float64(),
}
"""The impression table: one row per (impression, slot); ``timestamp``, ``session``, ``behavior`` and
``propensity`` may be null."""

PROPENSITY_SLATE = "slate"
"""``meta.extra["propensity_kind"]`` when the ``propensity`` column holds the probability of the whole
ordered slate (the same on every row of an impression), as the synthetic worlds' loggers write it.
Without that key a propensity is the logging probability of the shown item in its slot (the Open Bandit
convention), which is what slot-level off-policy estimators need."""

EvalSplit = Literal["valid", "test"]


@dataclass(frozen=True)
class CleaningStep:
    """One cleaning step and how many rows it removed (nothing is dropped without being counted)."""

    step: str
    rows_before: int
    rows_after: int
    detail: str = ""

    @property
    def removed(self) -> int:
        return self.rows_before - self.rows_after


@dataclass(frozen=True)
class DatasetMeta:
    """Everything about a dataset that is not the events themselves; saved as ``meta.json``."""

    name: str
    behaviors: tuple[str, ...]
    """Behavior names, lowest engagement first; behavior id ``i + 1`` is ``behaviors[i]``."""
    n_users: int
    n_items: int
    n_interactions: int
    n_sessions: int
    has_timestamps: bool
    behavior_source: Literal["events", "ratings", "none"]
    session_gap_seconds: float
    temporal_cutoff: int | None = None
    """Unix seconds; events at or after it form the temporal test split (None without timestamps)."""
    rating_thresholds: tuple[float, ...] | None = None
    sources: tuple[dict[str, Any], ...] = ()
    """Input files: ``{"path", "sha256", "rows"}``."""
    cleaning: tuple[CleaningStep, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form provenance (e.g. the synthetic world's config)."""
    fingerprint: str = ""
    """Content hash of the interactions (what a checkpoint is tied to); impressions have their own."""
    format_version: int = FORMAT_VERSION
    n_impressions: int = 0
    """Slates shown (distinct impression ids); 0 without an impression table."""
    n_impression_rows: int = 0
    """Rows of the impression table (one per shown slot)."""
    impression_cleaning: tuple[CleaningStep, ...] = ()
    """The impressions' own cleaning report (every row dropped from them, and why)."""
    impressions_fingerprint: str = ""
    """Content hash of the impression table; empty without one."""

    @property
    def has_impressions(self) -> bool:
        return bool(self.impressions_fingerprint)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["cleaning"] = [{**asdict(s), "removed": s.removed} for s in self.cleaning]
        out["impression_cleaning"] = [{**asdict(s), "removed": s.removed} for s in self.impression_cleaning]
        out["schema"] = {
            "interactions": {k: str(v) for k, v in INTERACTIONS_SCHEMA.items()},
            "items": {k: str(v) for k, v in ITEMS_SCHEMA.items()},
            "users": {k: str(v) for k, v in USERS_SCHEMA.items()},
            **({"impressions": {k: str(v) for k, v in IMPRESSIONS_SCHEMA.items()}}
               if self.has_impressions else {}),
        }
        out["id_maps"] = {"items": "items.parquet", "users": "users.parquet"}
        return out

    @classmethod
    def from_json(cls, data: Any, source: Path) -> DatasetMeta:
        """Parse ``meta.json`` content; every field is type-checked (one-line :class:`DatasetError`)."""
        if not isinstance(data, dict):
            raise DatasetError(f"{source}: expected a JSON object, got {type(data).__name__}")
        version = data.get("format_version")
        if version not in READABLE_VERSIONS or isinstance(version, bool):
            raise DatasetError(
                f"{source}: dataset format version {version!r}, this recsim-env reads versions "
                f"{', '.join(map(str, READABLE_VERSIONS))}; prepare the dataset again"
            )
        for key in ("name", "behaviors", "n_users", "n_items", "n_interactions", "n_sessions",
                    "has_timestamps", "behavior_source", "session_gap_seconds"):
            if key not in data:
                raise DatasetError(f"{source}: missing key {key!r} in meta.json")

        def field(key: str, check: Any, rule: str, default: Any = None) -> Any:
            value = data.get(key, default)
            if not check(value):
                raise DatasetError(f"{source}: key {key!r} must be {rule}, got {_short_json(value)}")
            return value

        def count(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool) and v >= 0

        def number(v: Any) -> bool:
            return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

        def steps(key: str) -> tuple[CleaningStep, ...]:
            found = field(key, lambda v: isinstance(v, list) and all(
                isinstance(c, dict) and isinstance(c.get("step"), str) and count(c.get("rows_before"))
                and count(c.get("rows_after")) for c in v), "a list of cleaning steps", [])
            return tuple(CleaningStep(c["step"], c["rows_before"], c["rows_after"], str(c.get("detail", "")))
                         for c in found)

        return cls(
            name=field("name", lambda v: isinstance(v, str), "a string"),
            behaviors=tuple(field("behaviors", lambda v: isinstance(v, list) and v and all(
                isinstance(b, str) and b for b in v), "a non-empty list of names")),
            n_users=field("n_users", count, "a count (integer >= 0)"),
            n_items=field("n_items", count, "a count (integer >= 0)"),
            n_interactions=field("n_interactions", count, "a count (integer >= 0)"),
            n_sessions=field("n_sessions", count, "a count (integer >= 0)"),
            has_timestamps=field("has_timestamps", lambda v: isinstance(v, bool), "true or false"),
            behavior_source=field("behavior_source", lambda v: v in ("events", "ratings", "none"),
                                  "one of 'events', 'ratings', 'none'"),
            session_gap_seconds=float(field("session_gap_seconds", lambda v: number(v) and v > 0,
                                            "a positive number")),
            temporal_cutoff=field("temporal_cutoff", lambda v: v is None or (isinstance(v, int)
                                                                            and not isinstance(v, bool)),
                                  "an integer or null"),
            rating_thresholds=(
                tuple(field("rating_thresholds", lambda v: isinstance(v, list) and all(map(number, v)),
                            "a list of numbers"))
                if data.get("rating_thresholds") is not None else None
            ),
            sources=tuple(field("sources", lambda v: isinstance(v, list), "a list", [])),
            cleaning=steps("cleaning"),
            extra=dict(field("extra", lambda v: isinstance(v, dict), "an object", {})),
            fingerprint=field("fingerprint", lambda v: isinstance(v, str), "a string", ""),
            format_version=version,
            n_impressions=field("n_impressions", count, "a count (integer >= 0)", 0),
            n_impression_rows=field("n_impression_rows", count, "a count (integer >= 0)", 0),
            impression_cleaning=steps("impression_cleaning"),
            impressions_fingerprint=field("impressions_fingerprint", lambda v: isinstance(v, str),
                                          "a string", ""),
        )


@dataclass(frozen=True)
class Sequences:
    """Per-user event sequences packed end to end (CSR layout), users ``0..n_users-1`` in order.

    User ``u``'s events are ``items[offsets[u]:offsets[u + 1]]`` (and likewise for the other arrays),
    oldest first. ``timestamps`` is None when the source had no time.
    """

    offsets: np.ndarray  # int64 [n_users + 1]
    items: np.ndarray  # int32 [n_events]
    behaviors: np.ndarray  # int8 [n_events]
    timestamps: np.ndarray | None  # int64 [n_events]

    @property
    def n_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def user(self, u: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Items, behaviors and timestamps of user ``u``."""
        lo, hi = self.offsets[u], self.offsets[u + 1]
        ts = None if self.timestamps is None else self.timestamps[lo:hi]
        return self.items[lo:hi], self.behaviors[lo:hi], ts

    def truncate(self, drop_last: np.ndarray | int) -> Sequences:
        """The same users with the last ``drop_last`` events of each removed (at least one kept)."""
        lengths = self.lengths
        keep = np.maximum(lengths - drop_last, 0)
        starts = self.offsets[:-1]
        idx = _ranges(starts, keep)
        offsets = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)
        ts = None if self.timestamps is None else self.timestamps[idx]
        return Sequences(offsets, self.items[idx], self.behaviors[idx], ts)


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for each pair, without a Python loop."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    out_offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    base = np.repeat(starts - out_offsets, counts)
    return base + np.arange(total, dtype=np.int64)


@dataclass(frozen=True)
class SplitView:
    """Next-event prediction examples: each user's history and the event that follows it."""

    users: np.ndarray  # int64 [n]
    history: Sequences  # n users, in the order of ``users``
    target_items: np.ndarray  # int32 [n]
    target_behaviors: np.ndarray  # int8 [n]
    target_timestamps: np.ndarray | None  # int64 [n]


class SequenceDataset:
    """A prepared dataset: interactions, items and users tables plus :class:`DatasetMeta`.

    Build one with :meth:`from_frames` (ingestion does this) or read one with :meth:`load`.
    """

    def __init__(
        self, interactions: pl.DataFrame, items: pl.DataFrame, users: pl.DataFrame, meta: DatasetMeta,
        impressions: pl.DataFrame | None = None,
    ) -> None:
        self.interactions = interactions
        self.items = items
        self.users = users
        self.meta = meta
        self.impressions = impressions
        """What was shown (:data:`IMPRESSIONS_SCHEMA`), or None when the logs had no impressions."""
        self.path: Path | None = None

    # --- construction -----------------------------------------------------------------------------
    @classmethod
    def from_frames(
        cls, interactions: pl.DataFrame, items: pl.DataFrame, users: pl.DataFrame, meta: DatasetMeta,
        impressions: pl.DataFrame | None = None,
    ) -> SequenceDataset:
        """Validate the tables, sort the events (and impressions) and stamp counts and fingerprints into
        ``meta``."""
        interactions = _conform(interactions, INTERACTIONS_SCHEMA, "interactions").sort(["user", "position"])
        items = _conform(items, ITEMS_SCHEMA, "items").sort("item")
        users = _conform(users, USERS_SCHEMA, "users").sort("user")
        n_users, n_items = users.height, items.height
        _check_ids(interactions, n_users, n_items, len(meta.behaviors))
        # (user, session) pairs counted on one packed int64 key: much faster than a struct n_unique.
        session_key = pl.col("user").cast(pl.Int64) * 2**31 + pl.col("session")
        n_sessions = interactions.select(session_key.n_unique()).item() if interactions.height else 0
        meta = _replace(
            meta,
            n_users=n_users,
            n_items=n_items,
            n_interactions=interactions.height,
            n_sessions=int(n_sessions),
            fingerprint=_fingerprint(interactions, n_items, meta.behaviors),
            format_version=FORMAT_VERSION,
            n_impressions=0, n_impression_rows=0, impressions_fingerprint="",
        )
        if impressions is not None:
            impressions = _conform(impressions, IMPRESSIONS_SCHEMA, "impressions")
            impressions = impressions.sort(["impression", "slot"])
            _check_impressions(impressions, n_users, n_items, len(meta.behaviors), "impressions")
            meta = _replace(meta, n_impressions=_n_slates(impressions), n_impression_rows=impressions.height,
                            impressions_fingerprint=_impressions_fingerprint(impressions))
        return cls(interactions, items, users, meta, impressions)

    @classmethod
    def load(cls, path: str | os.PathLike[str], verify: bool = True) -> SequenceDataset:
        """Read a dataset directory; check format version, schema and (if ``verify``) the fingerprint."""
        root = Path(path)
        meta_path = root / "meta.json"
        if not meta_path.is_file():
            raise DatasetError(f"{root}: not a dataset directory (no meta.json); run `recsim data prepare`")
        try:
            raw = json.loads(meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{meta_path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
        except UnicodeDecodeError:
            raise DatasetError(f"{meta_path}: not UTF-8 text") from None
        meta = DatasetMeta.from_json(raw, meta_path)
        tables = {}
        for name, schema in (("interactions", INTERACTIONS_SCHEMA), ("items", ITEMS_SCHEMA),
                             ("users", USERS_SCHEMA)):
            file = root / f"{name}.parquet"
            try:
                frame = pl.read_parquet(file)
            except Exception as exc:  # polars raises several types for missing/corrupt files
                raise DatasetError(f"{file}: cannot read ({type(exc).__name__}: {exc})") from None
            tables[name] = _conform(frame, schema, str(file), cast=False)
        _check_loaded(root, tables["interactions"], tables["items"], tables["users"], meta)
        impressions = _load_impressions(root, meta) if meta.has_impressions else None
        ds = cls(tables["interactions"], tables["items"], tables["users"], meta, impressions)
        if verify:
            actual = _fingerprint(ds.interactions, meta.n_items, meta.behaviors)
            if actual != meta.fingerprint:
                raise DatasetError(
                    f"{root}: fingerprint mismatch (meta.json {meta.fingerprint[:12]}, data {actual[:12]}); "
                    "the files were modified after preparation"
                )
            if impressions is not None:
                actual = _impressions_fingerprint(impressions)
                if actual != meta.impressions_fingerprint:
                    raise DatasetError(
                        f"{root / 'impressions.parquet'}: fingerprint mismatch (meta.json "
                        f"{meta.impressions_fingerprint[:12]}, data {actual[:12]}); the file was modified "
                        "after preparation"
                    )
        ds.path = root
        return ds

    def save(self, path: str | os.PathLike[str], overwrite: bool = False,
             inputs: Iterable[str | os.PathLike[str] | None] = ()) -> Path:
        """Write the dataset directory atomically (temporary sibling, then rename).

        ``overwrite`` replaces only an earlier dataset (see :mod:`user_models.outputs`); ``inputs``
        (the source files) may not lie inside ``path``.

        Raises:
            DatasetError: ``path`` exists and may not be replaced, or cannot be written.
        """
        root = Path(path)
        try:
            check_output(root, DATASET, overwrite=overwrite, inputs=inputs)
        except OutputError as exc:
            raise DatasetError(str(exc)) from None
        with atomic_directory(root, overwrite=overwrite, kind=DATASET, inputs=inputs) as tmp:
            self.interactions.write_parquet(tmp / "interactions.parquet")
            self.items.write_parquet(tmp / "items.parquet")
            self.users.write_parquet(tmp / "users.parquet")
            meta = self.meta
            if self.impressions is not None:
                self.impressions.write_parquet(tmp / "impressions.parquet")
            elif meta.format_version != FORMAT_VERSION:  # a version-1 dataset: the same data in version 2
                meta = _replace(meta, format_version=FORMAT_VERSION)
            (tmp / "meta.json").write_text(json.dumps(meta.to_json(), indent=2) + "\n")
        self.path = root
        return root

    # --- views ------------------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return self.meta.n_users

    @property
    def n_items(self) -> int:
        """Number of real items; item ids are ``1..n_items`` and 0 is padding."""
        return self.meta.n_items

    @property
    def behaviors(self) -> tuple[str, ...]:
        return self.meta.behaviors

    @property
    def n_behaviors(self) -> int:
        return len(self.meta.behaviors)

    @property
    def fingerprint(self) -> str:
        return self.meta.fingerprint

    @cached_property
    def sequences(self) -> Sequences:
        """All events of all users, packed; see :class:`Sequences`."""
        counts = self.interactions.group_by("user").len().sort("user")
        lengths = np.zeros(self.n_users, dtype=np.int64)
        lengths[counts["user"].to_numpy()] = counts["len"].to_numpy()
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        ts = self.interactions["timestamp"].to_numpy() if self.meta.has_timestamps else None
        return Sequences(
            offsets,
            self.interactions["item"].to_numpy().astype(np.int32, copy=False),
            self.interactions["behavior"].to_numpy().astype(np.int8, copy=False),
            None if ts is None else ts.astype(np.int64, copy=False),
        )

    def leave_last_out(self, split: EvalSplit) -> SplitView:
        """Leave-last-out evaluation examples: test = each user's last event, valid = the one before.

        The history is everything before the target; training uses :meth:`train_sequences` (the rest).
        """
        seqs = self.sequences
        drop = {"test": 1, "valid": 2}[split]
        users = np.flatnonzero(seqs.lengths > drop)
        target_idx = seqs.offsets[users + 1] - drop
        sub = _subset(seqs, users)
        history = sub.truncate(drop)
        ts = None if seqs.timestamps is None else seqs.timestamps[target_idx]
        return SplitView(users, history, seqs.items[target_idx], seqs.behaviors[target_idx], ts)

    def train_sequences(self) -> Sequences:
        """Each user's events minus the validation and test events (leave-last-out training data)."""
        return self.sequences.truncate(2)

    def temporal_split(self, cutoff: int | None = None) -> tuple[Sequences, SplitView]:
        """Global temporal split at ``cutoff`` (default ``meta.temporal_cutoff``).

        Training data is every user's events strictly before the cutoff (a prefix, since events are in
        time order). The test examples are, for each user with events on both sides, the first event at
        or after the cutoff given everything before it; users entirely after the cutoff are cold-start
        and are left out. Deterministic: no sampling.
        """
        seqs = self.sequences
        cutoff = self.meta.temporal_cutoff if cutoff is None else cutoff
        if seqs.timestamps is None or cutoff is None:
            raise DatasetError(f"{self.meta.name}: no timestamps, so no temporal split; use leave_last_out")
        before = np.concatenate([[0], np.cumsum(seqs.timestamps < cutoff)])
        n_before = before[seqs.offsets[1:]] - before[seqs.offsets[:-1]]
        train = seqs.truncate(seqs.lengths - n_before)
        users = np.flatnonzero((n_before > 0) & (n_before < seqs.lengths))
        target_idx = seqs.offsets[users] + n_before[users]
        history = _subset(train, users)
        view = SplitView(users, history, seqs.items[target_idx], seqs.behaviors[target_idx],
                         seqs.timestamps[target_idx])
        return train, view


def _subset(seqs: Sequences, users: np.ndarray) -> Sequences:
    lengths = seqs.lengths[users]
    idx = _ranges(seqs.offsets[users], lengths)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ts = None if seqs.timestamps is None else seqs.timestamps[idx]
    return Sequences(offsets, seqs.items[idx], seqs.behaviors[idx], ts)


def _replace(meta: DatasetMeta, **changes: Any) -> DatasetMeta:
    from dataclasses import replace

    return replace(meta, **changes)


def _conform(
    frame: pl.DataFrame, schema: dict[str, pl.DataType], what: str, cast: bool = True
) -> pl.DataFrame:
    missing = [c for c in schema if c not in frame.columns]
    if missing:
        raise DatasetError(f"{what}: missing column(s) {missing}; available: {frame.columns}")
    frame = frame.select(list(schema))
    if cast:
        return frame.cast(schema)  # type: ignore[arg-type]
    for name, dtype in schema.items():
        if frame.schema[name] != dtype:
            raise DatasetError(f"{what}: column {name!r} has type {frame.schema[name]}, expected {dtype}")
    return frame


def _check_ids(interactions: pl.DataFrame, n_users: int, n_items: int, n_behaviors: int) -> None:
    if interactions.height == 0:
        raise DatasetError("interactions: no events left")
    for col, lo, hi in (("user", 0, n_users - 1), ("item", 1, n_items), ("behavior", 1, n_behaviors)):
        bad = interactions.filter((pl.col(col) < lo) | (pl.col(col) > hi) | pl.col(col).is_null())
        if bad.height:
            raise DatasetError(
                f"interactions: column {col!r} value {bad[col][0]} out of range [{lo}, {hi}] "
                f"({bad.height} rows)"
            )


def _check_loaded(root: Path, interactions: pl.DataFrame, items: pl.DataFrame, users: pl.DataFrame,
                  meta: DatasetMeta) -> None:
    """A loaded dataset must be what :meth:`SequenceDataset.from_frames` writes: tables that agree with
    ``meta.json``, ids in range, events sorted by ``(user, position)`` with positions ``0, 1, ...``.

    Checked even with ``verify=False`` (the fingerprint covers only the events): downstream code indexes
    arrays by these ids, so a bad one would surface as a raw ``IndexError`` deep in training.
    """
    tables = (("items", items, meta.n_items, 1), ("users", users, meta.n_users, 0))
    for name, frame, expected, first in tables:
        file = root / f"{name}.parquet"
        if frame.height != expected:
            raise DatasetError(f"{file}: {frame.height} rows, but meta.json says {name[:-1]} count "
                               f"{expected}")
        col = name[:-1]
        ids = frame[col]
        if frame.height and not (ids.is_sorted() and ids[0] == first and ids[-1] == first + expected - 1
                                 and ids.n_unique() == expected):
            raise DatasetError(f"{file}: column {col!r} must be the ids {first}..{first + expected - 1} in "
                               "order")
    file = root / "interactions.parquet"
    if interactions.height != meta.n_interactions:
        raise DatasetError(f"{file}: {interactions.height} rows, but meta.json says n_interactions "
                           f"{meta.n_interactions}")
    try:
        _check_ids(interactions, meta.n_users, meta.n_items, len(meta.behaviors))
    except DatasetError as exc:
        raise DatasetError(f"{file}: {str(exc).removeprefix('interactions: ')}") from None
    user = interactions["user"].to_numpy()
    position = interactions["position"].to_numpy()
    if len(user) > 1:
        step = np.diff(user)
        new_user = step != 0
        ok = (step >= 0) & np.where(new_user, position[1:] == 0, position[1:] == position[:-1] + 1)
        if position[0] != 0 or not ok.all():
            row = 0 if position[0] != 0 else int(np.flatnonzero(~ok)[0]) + 1
            raise DatasetError(f"{file}: row {row + 1}: events are not sorted by (user, position) with "
                               f"positions 0, 1, ... (user {user[row]}, position {position[row]}); prepare "
                               "the dataset again")
    elif len(user) == 1 and position[0] != 0:
        raise DatasetError(f"{file}: row 1: position {position[0]}, expected 0")


def _load_impressions(root: Path, meta: DatasetMeta) -> pl.DataFrame:
    file = root / "impressions.parquet"
    try:
        frame = pl.read_parquet(file)
    except Exception as exc:  # polars raises several types for missing/corrupt files
        raise DatasetError(f"{file}: cannot read ({type(exc).__name__}: {exc})") from None
    frame = _conform(frame, IMPRESSIONS_SCHEMA, str(file), cast=False)
    if frame.height != meta.n_impression_rows:
        raise DatasetError(f"{file}: {frame.height} rows, but meta.json says n_impression_rows "
                           f"{meta.n_impression_rows}")
    _check_impressions(frame, meta.n_users, meta.n_items, len(meta.behaviors), str(file))
    if _n_slates(frame) != meta.n_impressions:
        raise DatasetError(f"{file}: {_n_slates(frame)} impressions, but meta.json says n_impressions "
                           f"{meta.n_impressions}")
    return frame


def _n_slates(impressions: pl.DataFrame) -> int:
    return int(impressions["impression"][-1]) + 1 if impressions.height else 0


def _check_impressions(frame: pl.DataFrame, n_users: int, n_items: int, n_behaviors: int, what: str) -> None:
    """Ids in range, ``clicked`` 0/1 with a behavior only on clicks, propensities in (0, 1], rows
    sorted by ``(impression, slot)`` with impression ids ``0..K-1`` and one user and time per impression.

    Checked on every load (as the interactions are): the choice model indexes by these ids.
    """
    if frame.height == 0:
        raise DatasetError(f"{what}: no impressions left (omit the table instead)")
    ranges = (("user", 0, n_users - 1), ("item", 1, n_items), ("clicked", 0, 1),
              ("slot", 0, 2**15 - 1), ("impression", 0, 2**62))
    for col, lo, hi in ranges:
        bad = frame.filter((pl.col(col) < lo) | (pl.col(col) > hi) | pl.col(col).is_null())
        if bad.height:
            raise DatasetError(f"{what}: column {col!r} value {bad[col][0]} out of range [{lo}, {hi}] "
                               f"({bad.height} rows)")
    bad = frame.filter(pl.col("behavior").is_not_null()
                       & ((pl.col("behavior") < 1) | (pl.col("behavior") > n_behaviors)
                          | (pl.col("clicked") == 0)))
    if bad.height:
        raise DatasetError(f"{what}: column 'behavior' value {bad['behavior'][0]} must be a behavior id in "
                           f"[1, {n_behaviors}] on a clicked row ({bad.height} rows)")
    bad = frame.filter(pl.col("propensity").is_not_null()
                       & ~((pl.col("propensity") > 0) & (pl.col("propensity") <= 1)))
    if bad.height:
        raise DatasetError(f"{what}: column 'propensity' value {bad['propensity'][0]} is not a probability "
                           f"in (0, 1] ({bad.height} rows)")
    imp = frame["impression"].to_numpy()
    slot = frame["slot"].to_numpy()
    step = np.diff(imp)
    ok = ((step == 0) & (np.diff(slot) > 0)) | (step == 1)
    if imp[0] != 0 or not ok.all():
        row = 0 if imp[0] != 0 else int(np.flatnonzero(~ok)[0]) + 1
        raise DatasetError(f"{what}: row {row + 1}: rows are not sorted by (impression, slot) with "
                           f"impression ids 0, 1, ... and distinct slots (impression {imp[row]}, slot "
                           f"{slot[row]})")
    mixed = frame.group_by("impression").agg(pl.col("user").n_unique().alias("u"),
                                             pl.col("timestamp").n_unique().alias("t"))
    bad = mixed.filter((pl.col("u") > 1) | (pl.col("t") > 1))
    if bad.height:
        first = int(bad["impression"].min())  # type: ignore[arg-type]
        raise DatasetError(f"{what}: impression {first} has several users or times "
                           f"({bad.height} impressions)")


def _impressions_fingerprint(impressions: pl.DataFrame) -> str:
    h = hashlib.sha256()
    for col in IMPRESSIONS_SCHEMA:
        values = impressions[col]
        h.update(values.fill_null(-1).to_numpy().tobytes())
        h.update(values.is_null().to_numpy().tobytes())
    return h.hexdigest()


def _short_json(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _fingerprint(interactions: pl.DataFrame, n_items: int, behaviors: tuple[str, ...]) -> str:
    """A content hash of the events, the catalogue size and the vocabulary (not of file bytes)."""
    h = hashlib.sha256()
    h.update(json.dumps({"n_items": n_items, "behaviors": list(behaviors)}).encode())
    for col in ("user", "item", "behavior", "timestamp"):
        h.update(interactions[col].fill_null(-1).to_numpy().tobytes())
    return h.hexdigest()


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, read in chunks (inputs may be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextmanager
def atomic_directory(target: Path, overwrite: bool = False, kind: OutputKind | None = None,
                     inputs: Iterable[str | os.PathLike[str] | None] = ()) -> Iterator[Path]:
    """Yield a temporary directory beside ``target`` that replaces it only if the block succeeds.

    A thin wrapper of :func:`user_models.outputs.replace_output`: ``kind`` decides what ``overwrite``
    may replace. ``kind=None`` is the legacy "any directory" rule for writers not yet given a kind.
    """
    with replace_output(target, kind or _ANY_DIRECTORY, overwrite=overwrite, inputs=inputs) as tmp:
        yield tmp


_ANY_DIRECTORY = OutputKind("directory", check=lambda p: p.is_dir())
