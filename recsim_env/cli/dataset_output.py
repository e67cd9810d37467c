"""What every ``recsim data`` subcommand that writes a dataset shares: the output flags, the early
output check, the atomic save and the statistics printout."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from user_models.data.artifact import SequenceDataset
from user_models.data.stats import dataset_stats
from user_models.outputs import DATASET
from user_models.outputs import check_output as check


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """``--out`` and ``--overwrite``, identical for every dataset producer."""
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="dataset directory to write (created atomically: temp dir, then rename)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace DIR if it is a dataset written by recsim (has its meta.json); any "
                             "other existing path is refused")


def check_output(out: Path, overwrite: bool, inputs: Sequence[Path | None] = ()) -> None:
    """Fail before any work when the output may not be written (see :mod:`user_models.outputs`)."""
    check(out, DATASET, overwrite=overwrite, inputs=inputs)


def save_and_report(dataset: SequenceDataset, out: Path, overwrite: bool,
                    inputs: Sequence[Path | None] = ()) -> None:
    """Write ``dataset`` to ``out`` atomically, then print its statistics and cleaning report."""
    dataset.save(out, overwrite=overwrite, inputs=inputs)
    print_stats(dataset_stats(dataset), title=f"{out}")


def print_stats(stats: dict[str, Any], title: str) -> None:
    """Render :func:`~user_models.data.stats.dataset_stats` output as rich tables."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    summary = Table(title=f"dataset {stats['name']} ({title})", show_header=False)
    summary.add_column("", style="bold")
    summary.add_column("", justify="right")
    for key in ("users", "items", "interactions", "sessions"):
        summary.add_row(key, f"{stats[key]:,}")
    summary.add_row("density", f"{stats['density']:.5f}")
    summary.add_row("timestamps", "yes" if stats["has_timestamps"] else "no (file order)")
    summary.add_row("temporal cutoff", str(stats["temporal_cutoff"]))
    if "input_counts" in stats:
        c = stats["input_counts"]
        summary.add_row("input (before cleaning)",
                        f"{c['users']:,} users, {c['items']:,} items, {c['events']:,} events")
    console.print(summary)

    lengths = Table(title="length distributions (events)")
    keys = list(stats["sequence_length"])
    lengths.add_column("")
    for key in keys:
        lengths.add_column(key, justify="right")
    for name in ("sequence_length", "session_length"):
        lengths.add_row(name.replace("_", " "), *(f"{stats[name][k]:.1f}" for k in keys))
    console.print(lengths)

    behaviors = Table(title=f"behaviors (from {stats['behavior_source']})")
    for col in ("id", "name", "count", "share"):
        behaviors.add_column(col, justify="left" if col == "name" else "right")
    for b in stats["behaviors"]:
        behaviors.add_row(str(b["id"]), b["name"], f"{b['count']:,}", f"{b['share']:.1%}")
    console.print(behaviors)

    if "impressions" in stats:
        _print_impressions(console, stats["impressions"])

    cleaning = Table(title="cleaning report")
    for col in ("step", "before", "after", "removed", "detail"):
        cleaning.add_column(col, justify="left" if col in ("step", "detail") else "right")
    for s in stats["cleaning"]:
        cleaning.add_row(s["step"], f"{s['rows_before']:,}", f"{s['rows_after']:,}", f"{s['removed']:,}",
                         s["detail"])
    console.print(cleaning)


SLOTS_SHOWN = 20
"""``recsim data stats`` lists the click-through rate of at most this many slots (JSON has them all)."""


def _print_impressions(console: Any, imp: dict[str, Any]) -> None:
    from rich.table import Table

    summary = Table(title="impressions (what was shown)", show_header=False)
    summary.add_column("", style="bold")
    summary.add_column("", justify="right")
    summary.add_row("impressions (slates)", f"{imp['impressions']:,}")
    summary.add_row("rows (shown slots)", f"{imp['rows']:,}")
    summary.add_row("users with impressions", f"{imp['users']:,}")
    summary.add_row("mean slate size", f"{imp['slate_size']['mean']:.1f}")
    summary.add_row("clicks", f"{imp['clicks']:,}")
    summary.add_row("click-through rate (per slot)", f"{imp['ctr']:.2%}")
    summary.add_row("slates with no click", f"{imp['no_click_share']:.1%}")
    summary.add_row("slates with 2+ clicks", f"{imp['multi_click_share']:.1%}")
    summary.add_row("rows with a propensity", f"{imp['with_propensity']:.1%}")
    summary.add_row("rows with a session", f"{imp['with_session']:.1%}")
    console.print(summary)
    slots = Table(title="click-through rate by slot (0 = top)")
    for col in ("slot", "shown", "clicks", "ctr"):
        slots.add_column(col, justify="right")
    for row in imp["ctr_by_slot"][:SLOTS_SHOWN]:
        slots.add_row(str(row["slot"]), f"{row['shown']:,}", f"{row['clicks']:,}", f"{row['ctr']:.2%}")
    if len(imp["ctr_by_slot"]) > SLOTS_SHOWN:
        slots.caption = f"{len(imp['ctr_by_slot']) - SLOTS_SHOWN} more slots in --json"
    console.print(slots)
    cleaning = Table(title="impression cleaning report")
    for col in ("step", "before", "after", "removed", "detail"):
        cleaning.add_column(col, justify="left" if col in ("step", "detail") else "right")
    for s in imp["cleaning"]:
        cleaning.add_row(s["step"], f"{s['rows_before']:,}", f"{s['rows_after']:,}", f"{s['removed']:,}",
                         s["detail"])
    console.print(cleaning)
