"""The demo's report writer: ``report.md``, ``summary.json``, the stage-time table and the plots.

Nothing here runs a stage: :mod:`recsim_env.demo.stages` hands over Markdown sections and facts,
:func:`recsim_env.demo.run_demo` the stage times, and this module lays them out.
"""

from __future__ import annotations

import json
import os
import platform
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from recsim_env.demo.config import DEFAULT, QUICK, DemoConfig

DOCS_HINT = "in the recsim-env repository"
"""How the report points at the project's docs: by name, not by a link into a checkout (the installed
package does not know where, or whether, the repository's ``docs/`` folder is)."""


@dataclass(frozen=True)
class StageTime:
    """One finished stage and its wall time."""

    name: str
    seconds: float


def report_markdown(config: DemoConfig, sections: Sequence[tuple[str, str]], times: Sequence[StageTime]
                    ) -> str:
    """``report.md``: a header (command, sizes, machine), the numbered ``(title, markdown)`` sections in
    order, and the stage times."""
    sizes = config.sizes
    total = sum(t.seconds for t in times)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        f"# recsim demo: {config.dataset}",
        "",
    ]
    if sizes is not DEFAULT:
        lines += [
            f"> **This is a {sizes.name} run**: a smaller world and fewer epochs, steps and users than the "
            "default `recsim demo`, so intervals are wider and the agent is barely trained. Run without "
            "`--quick` for the full-size numbers.",
            "",
        ]
    contents = ", ".join(f"[{title}](#{i}-{anchor(title)})" for i, (title, _) in enumerate(sections, 1))
    lines += [
        f"Command: `recsim demo --dataset {config.dataset}"
        + (f" --data-dir {config.data_dir}" if config.data_dir else "")
        + f" --out {config.out}" + (" --quick" if sizes is QUICK else "") + "`. "
        f"Sizes: `{sizes.name}`, seed {config.seed}, device {config.device}. Total time {total:.0f} s on "
        f"{platform.machine()} with {os.cpu_count()} CPU cores (load average {load:.1f} at the end).",
        "",
        "From behavior logs to a trained recommendation agent: learn a user model from the logs, calibrate "
        "it into a simulator, train an RL agent in it, and compare the agent with classic recommenders "
        f"on the same simulated users. See `docs/concepts.md` {DOCS_HINT} for what is learned and what "
        "is configured.",
        "",
        f"Contents: {contents}, [Stage times](#stage-times).",
        "",
    ]
    for i, (title, text) in enumerate(sections, 1):
        lines += [f"## {i}. {title}", "", text, ""]
    lines += ["## Stage times", "", "| stage | seconds |", "|---|---:|"]
    lines += [f"| {t.name} | {t.seconds:.1f} |" for t in times]
    lines += [f"| **total** | **{total:.1f}** |", ""]
    return "\n".join(lines)


def summary_json(config: DemoConfig, times: Sequence[StageTime], facts: Mapping[str, Any]) -> str:
    """``summary.json``: the config, the stage times and every stage's headline facts."""
    summary = {"config": config.as_json(), "stages": [asdict(t) for t in times], **facts}
    return json.dumps(summary, indent=2, default=float) + "\n"


def timing_table(times: Sequence[StageTime]) -> Table:
    """The stage times as a table for the console."""
    table = Table(title="stage times")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    for t in times:
        table.add_row(t.name, f"{t.seconds:.1f}")
    table.add_row("[bold]total", f"[bold]{sum(t.seconds for t in times):.1f}")
    return table


def ranking_table(reports: Sequence[Mapping[str, Any]]) -> str:
    """Next-item ranking metrics, one row per model (:func:`user_models.evaluate.ranking_report`'s)."""
    keys = ("hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20", "mrr")
    lines = ["| model | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    lines += [f"| {r['model']} | " + " | ".join(f"{r[k]:.4f}" for k in keys) + " |" for r in reports]
    return "\n".join(lines)


def plot_learning_curve(timesteps: Any, results: Any, path: Path) -> None:
    """The agent's evaluation returns (mean and one standard deviation) against training steps."""
    # Imported here, not at the top: selecting the Agg backend is process-wide, and importing the demo
    # should not do it to its caller.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mean, std = results.mean(axis=1), results.std(axis=1)
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(timesteps, mean, marker="o")
    ax.fill_between(timesteps, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("evaluation return")
    ax.set_title("MaskablePPO on the learned simulator")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def anchor(title: str) -> str:
    """GitHub's heading anchor (lower case, punctuation dropped, spaces to dashes)."""
    return re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")


def demote(markdown: str, by: int) -> str:
    """Push every heading of ``markdown`` ``by`` levels down (to nest it in the report)."""
    return re.sub(r"^(#+) ", lambda m: "#" * (len(m.group(1)) + by) + " ", markdown, flags=re.M)


def write_text(path: Path, text: str) -> None:
    """Write through a temporary sibling renamed into place (no half-written reports)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
