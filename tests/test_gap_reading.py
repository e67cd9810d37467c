"""The time-gap reading: dwell by behavior plus passed-over slates, fitted to consumption logs."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsim_env.gap_reading import compare_readings, describe, read_gaps
from recsim_env.population import logged_stats, median_session_gap
from user_models.data.artifact import DatasetMeta, SequenceDataset

DWELL = {1: 20.0, 2: 150.0}  # median seconds after a view, after a buy


def _logs(consume: float, browse: float, seed: int = 0, n_users: int = 300, events: int = 12,
          same_second: float = 0.0) -> SequenceDataset:
    """One session per user; after each event a dwell (log-normal by its behavior), then ``k`` slates
    passed over, ``P(k) = consume (1 - consume)^k``, each taking about ``browse`` seconds; timestamps in
    whole seconds. ``same_second``: share of events logged in the same second as the one before."""
    rng = np.random.default_rng(seed)
    columns = ("user", "item", "behavior", "timestamp", "session", "position")
    rows: dict[str, list[int]] = {k: [] for k in columns}
    for u in range(n_users):
        t = 1_000_000.0 + 86_400 * u
        behavior = 1
        for position in range(events):
            if position:
                if rng.random() >= same_second:
                    t += DWELL[behavior] * np.exp(0.4 * rng.standard_normal())
                    passed = rng.geometric(consume) - 1
                    t += browse * np.exp(0.1 * rng.standard_normal(passed)).sum()
            behavior = 2 if rng.random() < 0.3 else 1
            for key, value in (("user", u), ("item", 1 + (u + position) % 20), ("behavior", behavior),
                               ("timestamp", int(round(t))), ("session", 0), ("position", position)):
                rows[key].append(value)
    items = pl.DataFrame({"item": list(range(1, 21)), "raw_id": [f"i{i}" for i in range(1, 21)],
                          "title": [f"item {i}" for i in range(1, 21)], "category": ["g"] * 20,
                          "price": None})
    users = pl.DataFrame({"user": list(range(n_users)), "user_key": [f"u{u}" for u in range(n_users)]})
    meta = DatasetMeta(name="gaps", behaviors=("view", "buy"), n_users=0, n_items=0, n_interactions=0,
                       n_sessions=0, has_timestamps=True, behavior_source="events", session_gap_seconds=1800)
    return SequenceDataset.from_frames(pl.DataFrame(rows), items, users, meta)


def test_dwell_alone_reads_one_step_per_event_where_one_unit_reads_slates_after_buys():
    # Every event answers a slate; a buy's long dwell is not slates passed over.
    dataset = _logs(consume=1.0, browse=30.0)
    reading = read_gaps(dataset)
    assert reading.consumption_rate > 0.95
    assert reading.dwell_median_seconds == pytest.approx((20.0, 150.0), rel=0.1)
    step = median_session_gap(dataset)
    unit_rate = logged_stats(dataset, step).consumption_rate
    assert unit_rate < 0.8  # the one-unit reading turns the buys' dwell into passed-over slates
    comparison = compare_readings(dataset, step, unit_rate)
    view, buy = comparison["unit_passed_over_by_behavior"]
    assert buy > 2 and view < 0.3
    assert comparison["disagree"]
    line = describe(comparison, dataset.meta.behaviors)
    assert "do not identify the consumption rate" in line and f"{unit_rate:.3f}" in line


def test_passed_over_slates_are_recovered_beside_the_dwell():
    dataset = _logs(consume=0.5, browse=60.0)
    reading = read_gaps(dataset)
    assert reading.identified
    assert reading.consumption_rate == pytest.approx(0.5, abs=0.05)
    assert reading.browse_seconds == pytest.approx(60.0, rel=0.15)


def test_same_second_events_are_left_out_and_the_reading_is_computed_once():
    dataset = _logs(consume=0.5, browse=60.0, same_second=0.3, seed=1)
    stamps = dataset.interactions["timestamp"].to_numpy()
    same = np.r_[False, np.diff(stamps) == 0] & (dataset.interactions["position"].to_numpy() > 0)
    assert same.sum() > 500
    reading = read_gaps(dataset)
    assert reading.n_gaps < (dataset.interactions["position"].to_numpy() > 0).sum() - 500
    assert reading.consumption_rate == pytest.approx(0.5, abs=0.06)
    assert read_gaps(dataset) is reading  # one fit per dataset object
