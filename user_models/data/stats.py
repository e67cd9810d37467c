"""Summary statistics of a prepared dataset (what ``recsim data stats`` prints)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from user_models.data.artifact import SequenceDataset

LENGTH_QUANTILES = (0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)


def dataset_stats(ds: SequenceDataset) -> dict[str, Any]:
    """Counts, sequence-length, session-length and behavior distributions, and the cleaning report.

    Returns a JSON-serialisable dict; quantiles use linear interpolation over users (or sessions).
    """
    meta = ds.meta
    lengths = ds.sequences.lengths
    session_lengths = (
        ds.interactions.group_by("user", "session").len()["len"].to_numpy()
        if ds.interactions.height else np.zeros(0, dtype=np.int64)
    )
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
    return stats


def _distribution(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {"mean": 0.0, **{f"p{round(q * 100)}": 0.0 for q in LENGTH_QUANTILES}}
    quantiles = np.quantile(values, LENGTH_QUANTILES)
    return {"mean": float(values.mean()),
            **{f"p{round(q * 100)}": float(v) for q, v in zip(LENGTH_QUANTILES, quantiles, strict=True)}}
