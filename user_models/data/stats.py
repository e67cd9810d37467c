"""Summary statistics of a prepared dataset (what ``recsim data stats`` prints)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import polars as pl

from user_models.data.artifact import SequenceDataset

LENGTH_QUANTILES = (0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)


def dataset_stats(ds: SequenceDataset) -> dict[str, Any]:
    """Counts, sequence-length, session-length and behavior distributions, and the cleaning report.

    Returns a JSON-serialisable dict; quantiles use linear interpolation over users (or sessions).
    """
    meta = ds.meta
    user = ds.interactions["user"].to_numpy()
    session = ds.interactions["session"].to_numpy()
    lengths = np.bincount(user, minlength=ds.n_users)
    # Events are sorted by (user, position) and a session is a contiguous run of equal (user, session).
    starts = np.flatnonzero(np.r_[True, (user[1:] != user[:-1]) | (session[1:] != session[:-1])])
    session_lengths = np.diff(np.r_[starts, len(user)]) if len(user) else np.zeros(0, dtype=np.int64)
    counts = np.bincount(ds.interactions["behavior"].to_numpy(), minlength=ds.n_behaviors + 1)[1:]
    total = max(int(counts.sum()), 1)
    stats: dict[str, Any] = {
        "name": meta.name,
        "users": meta.n_users,
        "items": meta.n_items,
        "interactions": meta.n_interactions,
        "sessions": meta.n_sessions,
        "has_timestamps": meta.has_timestamps,
        "behavior_source": meta.behavior_source,
        "temporal_cutoff": meta.temporal_cutoff,
        "density": meta.n_interactions / max(meta.n_users * meta.n_items, 1),
        "sequence_length": _distribution(lengths),
        "session_length": _distribution(session_lengths),
        "behaviors": [
            {"id": i + 1, "name": name, "count": int(c), "share": int(c) / total}
            for i, (name, c) in enumerate(zip(meta.behaviors, counts, strict=True))
        ],
        "cleaning": [{**asdict(step), "removed": step.removed} for step in meta.cleaning],
        "fingerprint": meta.fingerprint,
    }
    if "input_counts" in meta.extra:
        stats["input_counts"] = meta.extra["input_counts"]
    if ds.impressions is not None:
        stats["impressions"] = impression_stats(ds)
    return stats


def impression_stats(ds: SequenceDataset) -> dict[str, Any]:
    """What was shown and what was clicked: counts, click-through rate by slot (0 = top), the share of
    slates without a click, slate sizes and the impressions' cleaning report.

    Raises:
        ValueError: the dataset has no impression table.
    """
    imp = ds.impressions
    if imp is None:
        raise ValueError(f"{ds.meta.name}: no impression table")
    per_slate = imp.group_by("impression").agg(pl.col("clicked").sum().alias("clicks"), pl.len().alias("k"))
    by_slot = imp.group_by("slot").agg(pl.len().alias("shown"), pl.col("clicked").sum().alias("clicks")).sort(
        "slot")
    n_slates = per_slate.height
    return {
        "impressions": n_slates,
        "rows": imp.height,
        "users": imp["user"].n_unique(),
        "clicks": int(imp["clicked"].sum()),
        "ctr": float(imp["clicked"].to_numpy().mean()),
        "no_click_share": float((per_slate["clicks"] == 0).to_numpy().mean()) if n_slates else 0.0,
        "multi_click_share": float((per_slate["clicks"] > 1).to_numpy().mean()) if n_slates else 0.0,
        "slate_size": _distribution(per_slate["k"].to_numpy()),
        "ctr_by_slot": [{"slot": int(slot), "shown": int(shown), "clicks": int(clicks), "ctr": clicks / shown}
                        for slot, shown, clicks in by_slot.iter_rows()],
        "with_propensity": float(imp["propensity"].is_not_null().to_numpy().mean()),
        "with_session": float(imp["session"].is_not_null().to_numpy().mean()),
        "cleaning": [{**asdict(step), "removed": step.removed} for step in ds.meta.impression_cleaning],
    }


def _distribution(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {"mean": 0.0, **{f"p{round(q * 100)}": 0.0 for q in LENGTH_QUANTILES}}
    quantiles = np.quantile(values, LENGTH_QUANTILES)
    return {"mean": float(values.mean()),
            **{f"p{round(q * 100)}": float(v) for q, v in zip(LENGTH_QUANTILES, quantiles, strict=True)}}
