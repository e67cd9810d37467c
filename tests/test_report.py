"""Benchmark summaries and report files from hand-made episodes (no simulator needed)."""

import csv
import json

import numpy as np
import pytest

from recsim_env.offline.metrics import Catalogue, Episode, categories_multi_hot
from recsim_env.offline.report import markdown_table, paired_differences, summarize, write_reports

N_ITEMS = 6


def catalogue() -> Catalogue:
    cats, _ = categories_multi_hot(["A", "A", "B", "B", "C", "C"])
    emb = np.random.default_rng(0).normal(size=(N_ITEMS + 1, 4))
    return Catalogue(embeddings=emb, categories=cats, popularity=np.arange(N_ITEMS + 1), n_behaviors=2)


def episodes(items: list[int], n: int, reward: float) -> list[Episode]:
    # Every episode shows the same two slates; rewards shift per episode so returns vary.
    return [
        Episode(
            slates=np.array([items[:2], items[2:4]]),
            chosen=np.array([items[0], 0]),
            behaviors=np.array([1, 0]),
            rewards=np.array([reward + 0.01 * i, 0.0]),
        )
        for i in range(n)
    ]


def test_summaries_population_metrics_and_pairing(tmp_path):
    by_policy = {"narrow": episodes([1, 1, 1, 1], 20, 1.0), "broad": episodes([1, 2, 3, 4], 20, 2.0)}
    populations = {p: np.repeat([0, 1], 10) for p in by_policy}  # two seeds of ten episodes each
    summaries, tables = summarize(
        by_policy, populations, catalogue(), ("click", "buy"), np.random.default_rng(0), n_resamples=200
    )
    cell = {(s.policy, s.metric): s for s in summaries}
    # Coverage: "narrow" only shows item 1 -> 1/6; "broad" shows 1..4 -> 4/6 in both seeds (no spread).
    assert cell[("narrow", "coverage")].estimate == pytest.approx(1 / 6)
    assert (cell[("broad", "coverage")].low, cell[("broad", "coverage")].high) == pytest.approx(
        (4 / 6, 4 / 6)
    )
    # Gini of exposure [4, 0, 0, 0, 0, 0] is 5/6; of [1, 1, 1, 1, 0, 0] it is 1/3.
    assert cell[("narrow", "exposure_gini")].estimate == pytest.approx(5 / 6)
    assert cell[("broad", "exposure_gini")].estimate == pytest.approx(1 / 3)
    assert cell[("broad", "consumption_rate")].estimate == 0.5
    assert cell[("broad", "rate_click")].estimate == 0.5
    ret = cell[("broad", "return")]
    assert ret.estimate == pytest.approx(2.095) and ret.low < ret.estimate < ret.high
    # Paired returns differ by exactly 1.0 in every episode: a zero-width interval.
    diff = paired_differences(tables, "narrow", np.random.default_rng(1), n_resamples=200)
    d = {(x.policy, x.metric): x for x in diff}[("broad", "return")]
    assert (d.estimate, d.low, d.high) == pytest.approx((1.0, 1.0, 1.0))

    keys = {p: [(0, i) for i in range(20)] for p in by_policy}
    paths = write_reports(tmp_path, summaries, diff, tables, keys, {"episodes": 20, "seeds": 1})
    assert {p.name for p in tmp_path.iterdir()} == {
        "results.csv",
        "episodes.csv",
        "results.json",
        "results.md",
        "metrics.png",
        "returns.png",
    }
    rows = list(csv.DictReader(paths["results.csv"].open()))
    assert len(rows) == len(summaries)
    assert len(list(csv.DictReader(paths["episodes.csv"].open()))) == 40
    data = json.loads(paths["results.json"].read_text())
    assert data["config"]["episodes"] == 20 and len(data["paired_differences"]) == 3
    assert paths["metrics.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| broad |" in paths["results.md"].read_text()


def test_markdown_table_cells():
    from recsim_env.offline.report import MetricSummary

    md = markdown_table([MetricSummary("p", "return", 1.0, 0.5, 1.5, 3)], metrics=("return", "length"))
    assert md.splitlines() == ["| policy | return |", "|---|---|", "| p | 1.000 [0.500, 1.500] |"]
