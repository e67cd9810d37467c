"""Summaries with confidence intervals and the benchmark's report files (CSV, JSON, Markdown, PNG).

:func:`summarize` turns per-policy episodes into one :class:`MetricSummary` per (policy, metric): the
per-episode metrics of :mod:`recsim_env.offline.metrics` averaged over episodes, and the population metrics
(catalogue coverage, exposure Gini) computed per evaluation population (seed) and averaged, with a
t-interval over seeds. :func:`paired_differences` compares every policy with a reference
policy episode by episode, which common random numbers make legitimate (episode ``i`` of every policy
met the same user with the same random streams).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recsim_env.offline.metrics import Catalogue, Episode, episode_metrics, exposure_counts, gini
from recsim_env.offline.stats import (
    DEFAULT_RESAMPLES,
    bootstrap_mean_ci,
    paired_difference_ci,
    replicate_interval,
)

POPULATION_METRICS = ("coverage", "exposure_gini")
HEADLINE_METRICS = (
    "return",
    "length",
    "consumption_rate",
    "intra_list_distance",
    "category_entropy",
    "novelty",
    "coverage",
    "exposure_gini",
)
"""Columns of the Markdown table and panels of the bar plot, in order."""


@dataclass(frozen=True)
class MetricSummary:
    """One metric of one policy with its 95% bootstrap interval over ``n_episodes`` episodes."""

    policy: str
    metric: str
    estimate: float
    low: float
    high: float
    n_episodes: int


@dataclass(frozen=True)
class PairedDifference:
    """``metric(policy) - metric(reference)`` over paired episodes, with its bootstrap interval."""

    policy: str
    reference: str
    metric: str
    estimate: float
    low: float
    high: float
    n_pairs: int


def per_episode_table(
    episodes: Sequence[Episode], catalogue: Catalogue, behavior_names: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """Metric name -> ``[n_episodes]`` values of every per-episode metric."""
    rows = [episode_metrics(ep, catalogue, behavior_names) for ep in episodes]
    return {name: np.array([r[name] for r in rows]) for name in rows[0]}


def summarize(
    episodes_by_policy: dict[str, list[Episode]],
    populations: dict[str, np.ndarray],
    catalogue: Catalogue,
    behavior_names: tuple[str, ...],
    rng: np.random.Generator,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> tuple[list[MetricSummary], dict[str, dict[str, np.ndarray]]]:
    """Every metric of every policy with its interval, and the per-episode tables they came from.

    Args:
        episodes_by_policy: each policy's episodes.
        populations: per policy, ``[n_episodes]`` the evaluation population (seed) of each episode;
            coverage and exposure Gini are computed per population and averaged, with a t-interval.
        catalogue: item embeddings, categories and popularity.
        behavior_names: names of behavior ids ``1..n``.
        rng: bootstrap randomness.
        n_resamples: bootstrap resamples per interval.
    """
    summaries: list[MetricSummary] = []
    tables: dict[str, dict[str, np.ndarray]] = {}
    for policy, episodes in episodes_by_policy.items():
        if not episodes:
            raise ValueError(f"policy {policy!r} has no episodes")
        table = per_episode_table(episodes, catalogue, behavior_names)
        tables[policy] = table
        n = len(episodes)
        for metric, values in table.items():
            ci = bootstrap_mean_ci(values, rng, n_resamples=n_resamples)
            summaries.append(MetricSummary(policy, metric, ci.estimate, ci.low, ci.high, n))
        groups = np.asarray(populations[policy])
        exposures = [
            exposure_counts(
                np.concatenate([episodes[i].slates.reshape(-1) for i in np.flatnonzero(groups == g)]),
                catalogue.n_items,
            )
            for g in np.unique(groups)
        ]
        for metric, per_population in (
            ("coverage", [float((e > 0).mean()) for e in exposures]),
            ("exposure_gini", [gini(e) for e in exposures]),
        ):
            ci = replicate_interval(np.array(per_population))
            summaries.append(MetricSummary(policy, metric, ci.estimate, ci.low, ci.high, n))
    return summaries, tables


def paired_differences(
    tables: dict[str, dict[str, np.ndarray]],
    reference: str,
    rng: np.random.Generator,
    *,
    metrics: Sequence[str] = ("return", "length", "consumption_rate"),
    n_resamples: int = DEFAULT_RESAMPLES,
) -> list[PairedDifference]:
    """Each policy minus ``reference`` per metric, pairing episode ``i`` with episode ``i``."""
    out = []
    for policy, table in tables.items():
        if policy == reference:
            continue
        for metric in metrics:
            a, b = table[metric], tables[reference][metric]
            ci = paired_difference_ci(a, b, rng, n_resamples=n_resamples)
            out.append(PairedDifference(policy, reference, metric, ci.estimate, ci.low, ci.high, int(a.size)))
    return out


# --- files ----------------------------------------------------------------------------------------


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def markdown_table(summaries: Sequence[MetricSummary], metrics: Sequence[str] = HEADLINE_METRICS) -> str:
    """Policies as rows, metrics as columns, each cell ``estimate [low, high]``."""
    cell = {(s.policy, s.metric): s for s in summaries}
    policies = list(dict.fromkeys(s.policy for s in summaries))
    shown = [m for m in metrics if any((p, m) in cell for p in policies)]
    lines = ["| policy | " + " | ".join(shown) + " |", "|---" * (len(shown) + 1) + "|"]
    for p in policies:
        values = []
        for m in shown:
            s = cell.get((p, m))
            values.append("" if s is None else f"{s.estimate:.3f} [{s.low:.3f}, {s.high:.3f}]")
        lines.append(f"| {p} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def write_reports(
    out_dir: Path,
    summaries: Sequence[MetricSummary],
    differences: Sequence[PairedDifference],
    tables: dict[str, dict[str, np.ndarray]],
    episode_keys: dict[str, list[tuple[int, int]]],
    config: dict[str, Any],
) -> dict[str, Path]:
    """Write ``results.csv``, ``episodes.csv``, ``results.json``, ``results.md`` and the PNG plots.

    Args:
        out_dir: target directory (created).
        summaries: per (policy, metric) intervals.
        differences: paired differences against the reference policy.
        tables: per-policy per-episode metric values.
        episode_keys: per policy, ``(seed, episode)`` of each row of its table.
        config: the run's settings, stored in the JSON and the Markdown header.

    Returns:
        Name -> path of every file written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in ("results.csv", "episodes.csv", "results.json", "results.md")}
    _write_atomic(
        paths["results.csv"],
        _csv_text(
            ["policy", "metric", "estimate", "low", "high", "n_episodes"],
            [[s.policy, s.metric, s.estimate, s.low, s.high, s.n_episodes] for s in summaries],
        ),
    )
    metric_names = list(next(iter(tables.values())).keys())
    episode_rows = [
        [policy, seed, episode, *(table[m][i] for m in metric_names)]
        for policy, table in tables.items()
        for i, (seed, episode) in enumerate(episode_keys[policy])
    ]
    _write_atomic(
        paths["episodes.csv"], _csv_text(["policy", "seed", "episode", *metric_names], episode_rows)
    )
    _write_atomic(
        paths["results.json"],
        json.dumps(
            {
                "config": config,
                "metrics": [asdict(s) for s in summaries],
                "paired_differences": [asdict(d) for d in differences],
            },
            indent=2,
        )
        + "\n",
    )
    md = [
        "# Benchmark",
        "",
        "Settings: " + ", ".join(f"`{k}={v}`" for k, v in config.items() if not isinstance(v, dict | list)),
        "",
        "Each cell: mean over episodes [95% percentile-bootstrap interval]. Coverage and exposure Gini are",
        "computed per evaluation population (seed) and averaged [95% t-interval over seeds; nan: one seed].",
        "",
        markdown_table(summaries),
    ]
    if differences:
        md += [
            f"## Paired differences against `{differences[0].reference}` (common random numbers)",
            "",
            "| policy | metric | difference [95% CI] |",
            "|---|---|---|",
            *(
                f"| {d.policy} | {d.metric} | {d.estimate:+.3f} [{d.low:+.3f}, {d.high:+.3f}] |"
                for d in differences
            ),
            "",
        ]
    _write_atomic(paths["results.md"], "\n".join(md))
    paths.update(plot_reports(out_dir, summaries, tables))
    return paths


def plot_reports(
    out_dir: Path, summaries: Sequence[MetricSummary], tables: dict[str, dict[str, np.ndarray]]
) -> dict[str, Path]:
    """``metrics.png`` (bars with 95% intervals, one panel per headline metric) and ``returns.png``
    (box plots of episode returns per policy, mean marked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = list(tables)
    cell = {(s.policy, s.metric): s for s in summaries}
    metrics = [m for m in HEADLINE_METRICS if all((p, m) in cell for p in policies)]
    cols = 4
    rows = (len(metrics) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    x = np.arange(len(policies))
    for ax, metric in zip(axes.flat, metrics, strict=False):
        est = np.array([cell[(p, metric)].estimate for p in policies])
        low = np.array([cell[(p, metric)].low for p in policies])
        high = np.array([cell[(p, metric)].high for p in policies])
        ax.bar(x, est, color="tab:blue", alpha=0.75)
        # No whisker where an interval is undefined (NaN: a population metric of a single seed).
        yerr = np.nan_to_num(np.clip([est - low, high - est], 0.0, None))
        ax.errorbar(x, est, yerr=yerr, fmt="none", ecolor="black", capsize=4)
        ax.set_title(metric)
        ax.set_xticks(x, policies, rotation=30, ha="right")
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    fig.suptitle("Policy metrics (bars: mean; whiskers: 95% bootstrap CI)")
    fig.tight_layout()
    metrics_png = out_dir / "metrics.png"
    fig.savefig(metrics_png, dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(max(5, 1.5 * len(policies)), 4))
    ax.boxplot([tables[p]["return"] for p in policies], positions=x, showmeans=True)
    ax.set_xticks(x, policies, rotation=30, ha="right")
    ax.set_ylabel("episode return")
    ax.set_title("Distribution of episode returns")
    fig.tight_layout()
    returns_png = out_dir / "returns.png"
    fig.savefig(returns_png, dpi=100)
    plt.close(fig)
    return {"metrics.png": metrics_png, "returns.png": returns_png}
