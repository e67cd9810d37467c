"""The demo as one call: every stage of :data:`~recsim_env.demo.stages.STAGES` in order, timed, then
the report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from recsim_env.demo.config import DemoConfig
from recsim_env.demo.report import StageTime, report_markdown, summary_json, timing_table, write_text
from recsim_env.demo.stages import STAGES, DemoRun


def run_demo(config: DemoConfig, console: Console | None = None) -> Path:
    """Run every stage, write ``OUT/report.md`` (and ``OUT/summary.json``); returns the report's path.

    Args:
        config: dataset, sizes, seed and output directory.
        console: a ``rich.console.Console`` for stage headers and timings (default: a new one on stdout).
    """
    console = console or Console()
    config.out.mkdir(parents=True, exist_ok=True)
    run = DemoRun(config)
    sections: list[tuple[str, str]] = []
    facts: dict[str, Any] = {}
    times: list[StageTime] = []
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    for i, (_, title, stage) in enumerate(STAGES, 1):
        console.rule(f"[bold]stage {i}/{len(STAGES)}: {title}")
        began = time.perf_counter()
        result = stage(run)
        times.append(StageTime(title, time.perf_counter() - began))
        sections.append((title, result.section))
        facts.update(result.facts)
        console.print(f"[green]done[/green] {title} in {times[-1].seconds:.1f} s "
                      f"(total {time.perf_counter() - start:.0f} s)")
    report = config.out / "report.md"
    write_text(report, report_markdown(config, sections, times))
    write_text(config.out / "summary.json", summary_json(config, times, facts))
    console.print(timing_table(times))
    console.print(f"[bold]report:[/bold] {report}  (open it in a Markdown viewer; plots and session.gif "
                  "sit beside it)")
    return report
