"""Impression logs of both synthetic worlds (`recsim data synth --impressions`).

The worlds are frozen ground truth: without the flag their logs must stay exactly what they were
(fingerprints pinned from main's code path before the flag existed), and with it the events they
already wrote must not move.
"""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from recsim_env.choice import choice_probabilities, choice_utilities
from recsim_env.cli import main
from recsim_env.config import WORLD_CHOICE
from user_models.data.artifact import IMPRESSIONS_SCHEMA, SequenceDataset, file_sha256
from user_models.synthetic import (
    CascadeConfig,
    CascadeWorld,
    SyntheticConfig,
    SyntheticWorld,
    generate_logs,
    generate_slate_logs,
    synthesize_cascade_dataset,
    synthesize_dataset,
    synthesize_impression_dataset,
)
from user_models.synthetic.cascade_logs import LOGGING_POLICIES
from user_models.synthetic.slate_logs import plackett_luce_probability

ORGANIC = SyntheticConfig(n_users=200, n_items=300, seed=3, mean_events_per_user=20)
CASCADE = CascadeConfig(n_users=200, n_items=300, seed=3)
# Computed with main's code (commit 84f1139, before --impressions existed) for the configs above.
ORGANIC_FINGERPRINT = "0f0b802253dced470e8a897a417ddfbb6c5ba9583395800bc2dddc6a51a80930"
CASCADE_A_FINGERPRINT = "f0a290d56d08bd564df113fc96d210f2aa12fdafae55eb0179040f549733d55e"
CASCADE_A_EVENTS_SHA256 = "7016f0a22f9179c650da4086c7f3520a3c5bd0251280d424861db0a5d1e73f0f"


def raw_events(ds: SequenceDataset) -> pl.DataFrame:
    """The interactions in raw item ids (ids may be renumbered when shown-only items join)."""
    raw = ds.items.select("item", "raw_id")
    return ds.interactions.join(raw, on="item").sort(["user", "position"]).drop("item")


def test_organic_logs_unchanged_and_continued_by_slate_sessions():
    plain = synthesize_dataset(ORGANIC)
    assert plain.fingerprint == ORGANIC_FINGERPRINT and plain.impressions is None
    ds = synthesize_impression_dataset(ORGANIC)
    imp = ds.impressions
    assert imp is not None and imp.schema == pl.Schema(IMPRESSIONS_SCHEMA)
    inter = ds.interactions
    # every organic event is still there, first, at the same position; the slate choices come after
    organic = plain.interactions
    assert inter.join(organic, on=["user", "position"], how="semi").equals(organic)
    appended = inter.join(organic, on=["user", "position"], how="anti")
    clicks = imp.filter(pl.col("clicked") == 1)
    slate_session = imp.group_by("user").agg(pl.col("session").first().alias("slate_session"))
    appended = appended.join(slate_session, on="user")
    chosen = appended.filter(pl.col("session") == pl.col("slate_session"))
    assert chosen.height == clicks.height > 0
    assert chosen.select("user", "item", "timestamp").equals(clicks.select("user", "item", "timestamp"))
    assert chosen["behavior"].to_list() == clicks["behavior"].to_list()
    last = organic.group_by("user").agg(pl.col("session").max(), pl.col("timestamp").max().alias("t"))
    first_slate = imp.group_by("user").agg(pl.col("session").first(), pl.col("timestamp").min().alias("t0"),
                                           pl.col("timestamp").max().alias("t1"))
    both = last.join(first_slate, on="user", suffix="_slate")
    assert (both["session_slate"] == both["session"] + 1).all()
    assert (both["t0"] - both["t"] >= ORGANIC.between_sessions_min_seconds).all()
    # then every user browses one closing organic session: the slate session is nobody's last
    closing = appended.filter(pl.col("session") != pl.col("slate_session"))
    assert (closing["session"] == closing["slate_session"] + 1).all()
    assert closing["user"].n_unique() == ORGANIC.n_users
    assert closing.join(imp, on=["user", "timestamp"], how="semi").height == 0  # no slate shown there
    start = closing.group_by("user").agg(pl.col("timestamp").min().alias("c0")).join(both, on="user")
    assert (start["c0"] - start["t1"] >= ORGANIC.between_sessions_min_seconds).all()
    assert ds.meta.extra["impression_logging"]["closing_sessions_cut"] == 0
    per_slate = imp.group_by("impression").agg(pl.col("clicked").sum(), pl.len(),
                                               pl.col("propensity").n_unique())
    assert per_slate["clicked"].max() <= 1 and set(per_slate["len"]) == {5}
    assert set(per_slate["propensity"]) == {1}
    assert 0 < (per_slate["clicked"] == 0).mean() < 1  # "none of these" happens, and so do choices
    assert SyntheticWorld.from_dataset(ds).n_items == ds.n_items


def test_organic_choice_is_the_world_env_choice():
    """The logged slates are answered by RecSim-World-v0's frozen WORLD_CHOICE: same probabilities."""
    world = SyntheticWorld(ORGANIC)
    g = torch.Generator().manual_seed(0)
    state = world.sample_users(7, g)
    slates = torch.randint(1, ORGANIC.n_items + 1, (7, 5), generator=g)
    logits = world.item_logits(state, slates)
    ours = torch.softmax(torch.cat([logits, torch.zeros(7, 1)], dim=1), dim=1)
    utility = choice_utilities(logits, torch.zeros_like(slates, dtype=torch.bool), WORLD_CHOICE)
    theirs = choice_probabilities(utility, torch.ones_like(slates, dtype=torch.bool),
                                  WORLD_CHOICE.no_choice_logit, WORLD_CHOICE.position_decay)
    torch.testing.assert_close(ours, theirs)


def test_organic_impression_logs_are_deterministic():
    logs = generate_logs(ORGANIC)
    a, b = generate_slate_logs(ORGANIC, logs), generate_slate_logs(ORGANIC, logs)
    assert a.impressions.equals(b.impressions) and a.events.equals(b.events)


def test_cascade_logs_unchanged_and_impressions_ingested(tmp_path):
    plain = synthesize_cascade_dataset(CASCADE, tmp_path / "plain", "A")
    assert plain.fingerprint == CASCADE_A_FINGERPRINT and plain.impressions is None
    assert file_sha256(tmp_path / "plain" / "events.csv") == CASCADE_A_EVENTS_SHA256
    ds = synthesize_cascade_dataset(CASCADE, tmp_path / "imp", "A", impressions=True)
    assert file_sha256(tmp_path / "imp" / "events.csv") == CASCADE_A_EVENTS_SHA256
    slates = pl.read_parquet(tmp_path / "imp" / "impressions.parquet")
    assert slates.drop("propensity").equals(pl.read_parquet(tmp_path / "plain" / "impressions.parquet"))
    assert raw_events(ds).equals(raw_events(plain))  # the same interactions, in raw item ids
    imp = ds.impressions
    assert imp is not None and ds.n_items >= plain.n_items
    # every ingested slate is a logged one: clicked slot = logged position, same items (raw ids)
    raw = dict(zip(ds.items["item"].to_list(), ds.items["raw_id"].to_list(), strict=True))
    first = imp.filter(pl.col("impression") == 0)
    key = ds.users.filter(pl.col("user") == first["user"][0])["user_key"][0]
    logged = slates.filter((pl.col("user_id") == int(key)) & (pl.col("timestamp") == first["timestamp"][0]))
    assert [int(raw[i]) for i in first["item"]] == logged["slate"][0].to_list()
    clicked = first.filter(pl.col("clicked") == 1)["slot"].to_list()
    assert clicked == ([] if logged["position"][0] < 0 else [logged["position"][0]])
    assert imp["propensity"].null_count() == 0 and float(imp["propensity"].max()) <= 1
    # every shown slot is accounted for: kept, or dropped by a counted step (users the k-core removed)
    removed = sum(s.removed for s in ds.meta.impression_cleaning)
    assert removed == slates.height * CASCADE.slate_size - imp.height > 0
    assert "Plackett-Luce" in ds.meta.extra["impression_propensity"]


def test_cascade_b_has_no_propensity(tmp_path):
    ds = synthesize_cascade_dataset(CascadeConfig(n_users=60, n_items=200, seed=1), tmp_path, "B",
                                    impressions=True)
    assert ds.impressions is not None and ds.impressions["propensity"].null_count() == ds.impressions.height
    assert ds.meta.extra["impression_propensity"].startswith("null")


def test_logging_policy_slate_probability_is_the_sampling_frequency():
    """Policy A's slates (top-k of noisy scores) are drawn with the Plackett-Luce probability."""
    c = CascadeConfig(n_users=10, n_items=6, n_categories=2, seed=1, slate_size=2, memory_size=2)
    world, pol, n = CascadeWorld(c), LOGGING_POLICIES["A"], 40_000
    g = torch.Generator().manual_seed(0)
    profile = (torch.randn(1, c.dim, generator=g) * 0.3).expand(n, -1).clone()
    recent = torch.tensor([[3, 0]]).expand(n, -1).clone()  # item 3 was just consumed: never shown
    slates = pol.slates(world, profile, recent, 2, g)
    prob = pol.slate_probability(world, profile, recent, slates)
    assert prob is not None
    counts = collections.Counter(map(tuple, slates.tolist()))
    seen = {tuple(s): float(p) for s, p in zip(slates.tolist(), prob, strict=True)}
    for slate, count in counts.items():
        p = seen[slate]
        assert abs(count / n - p) < 4 * np.sqrt(p * (1 - p) / n) + 1e-4, slate
    everything = torch.tensor([[a, b] for a in range(1, 7) for b in range(1, 7)
                               if a != b and 3 not in (a, b)])
    total = pol.slate_probability(world, profile[:1].expand(len(everything), -1),
                                  recent[:1].expand(len(everything), -1), everything)
    assert total is not None and float(total.sum()) == pytest.approx(1.0)
    assert LOGGING_POLICIES["B"].slate_probability(world, profile, recent, slates) is None


def test_plackett_luce_by_hand():
    logits = torch.log(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    # P(3 then 1) = 4/10 * 2/6
    assert float(plackett_luce_probability(logits, torch.tensor([[3, 1]]))) == pytest.approx(4 / 10 * 2 / 6)


@pytest.mark.parametrize("world", ["organic", "cascade"])
def test_synth_cli_writes_impressions(tmp_path, capsys, world):
    out = tmp_path / "d"
    assert main(["data", "synth", "--world", world, "--users", "60", "--items", "200", "--seed", "2",
                 "--impressions", "--out", str(out)]) == 0
    ds = SequenceDataset.load(out)
    assert ds.impressions is not None and ds.meta.n_impressions > 0
    assert "slates with no click" in capsys.readouterr().out
    assert main(["data", "synth", "--world", world, "--users", "60", "--items", "200", "--seed", "2",
                 "--out", str(tmp_path / "plain")]) == 0
    assert SequenceDataset.load(tmp_path / "plain").impressions is None
    assert not Path(tmp_path / "plain" / "impressions.parquet").exists()
