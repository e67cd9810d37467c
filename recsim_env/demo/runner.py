"""The demo as one call: every stage of :data:`~recsim_env.demo.stages.STAGES` in order, timed, then
the report."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from recsim_env.demo.config import MEASURED_CORES, DemoConfig, expected_seconds
from recsim_env.demo.report import StageTime, report_markdown, summary_json, timing_table, write_text
from recsim_env.demo.stages import STAGE_WRITES, STAGES, DemoRun


def demo_plan(config: DemoConfig, cores: int | None = None) -> Table:
    """What a run will do, as ``recsim demo`` prints it before starting: every stage with the time it
    is expected to take on ``cores`` CPU cores (default: this machine's) and the files it writes."""
    cores = cores or os.cpu_count() or 1
    table = Table(title=f"recsim demo ({config.sizes.name} sizes, {config.dataset}) on {cores} CPU "
                  f"core{'s' if cores != 1 else ''}, device {config.device}: writes into {config.out}/")
    table.add_column("stage")
    table.add_column("expected", justify="right")
    table.add_column("writes")
    total: float | None = 0.0
    for key, title, _ in STAGES:
        seconds = expected_seconds(config.sizes, key, cores)
        total = None if seconds is None or total is None else total + seconds
        table.add_row(title, "not measured" if seconds is None else _duration(seconds),
                      ", ".join(STAGE_WRITES[key]))
    table.add_row("[bold]report", "", "report.md, summary.json")
    table.add_row("[bold]total", "" if total is None else f"[bold]{_duration(total)}", "")
    scaled = f", x{MEASURED_CORES / cores:.0f} for {cores} core" if cores < MEASURED_CORES else ""
    table.caption = (f"expected: a synthetic-world run measured on {MEASURED_CORES} CPU cores beside other "
                     f"jobs{scaled}; an idle machine, ml-100k or a GPU change it")
    return table


def _duration(seconds: float) -> str:
    return f"~{seconds:.0f} s" if seconds < 90 else f"~{seconds / 60:.0f} min"


def run_demo(config: DemoConfig, console: Console | None = None) -> Path:
    """Run every stage, write ``OUT/report.md`` (and ``OUT/summary.json``); returns the report's path.

    Args:
        config: dataset, sizes, seed and output directory.
        console: a ``rich.console.Console`` for stage headers and timings (default: a new one on stdout).
    """
    console = console or Console()
    console.print(demo_plan(config))
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
