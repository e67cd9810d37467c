"""``recsim demo`` end to end at the tiny test size, and its input errors."""

import json
import re

import pytest
import torch
from rich.console import Console

from recsim_env.cli import main
from recsim_env.demo import (
    DEFAULT,
    QUICK,
    STAGE_SECONDS,
    STAGE_WRITES,
    STAGES,
    TINY,
    DemoConfig,
    demo_plan,
    expected_seconds,
    run_demo,
)

pytestmark = pytest.mark.slow  # end to end: the longest tests of the suite


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The tiny demo's report and what it printed."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("demo")
    console = Console(record=True, width=200)
    return run_demo(DemoConfig(out=out, sizes=TINY, progress=False), console=console), console.export_text()


@pytest.fixture(scope="module")
def report(run):
    return run[0]


def test_the_plan_is_printed_first_and_every_stage_writes_what_it_announced(run):
    report, printed = run
    assert printed.index("writes into") < printed.index("stage 1/8")
    for _, title, _ in STAGES:
        assert title in printed.split("stage 1/8")[0], title
    for key, paths in STAGE_WRITES.items():
        for path in paths:
            target = report.parent / path.rstrip("/")
            assert target.is_dir() if path.endswith("/") else target.is_file(), (key, path)
    assert set(STAGE_WRITES) == {key for key, _, _ in STAGES}


def test_report_has_every_section_with_numbers(report):
    text = report.read_text()
    headings = re.findall(r"^## \d+\. (.+)$", text, flags=re.M)
    assert headings == [title for _, title, _ in STAGES]
    assert "This is a tiny (tests) run" in text
    # user model against the next-item baselines: one row each, numbers in [0, 1]
    for model in ("Transformer", "Pop", "Markov", "GRU4Rec"):
        row = re.search(rf"^\| {model} \|(.+)\|$", text, flags=re.M)
        assert row is not None, model
        assert all(0.0 <= float(v) <= 1.0 for v in row.group(1).split("|"))
    # the benchmark table names the agent and every baseline, with intervals
    for policy in ("random", "popular", "greedy", "oracle", "ppo"):
        assert re.search(rf"^\| {policy} \| -?\d+\.\d+ \[", text, flags=re.M), policy
    assert "| statistic | logged | simulated before | simulated after |" in text  # calibration
    assert "Ground-truth fidelity" in text and "Kendall" in text  # synthetic: world vs simulator
    assert re.search(r"^\| \*\*total\*\* \| \*\*\d+\.\d\*\* \|$", text, flags=re.M)


def test_report_files_exist_and_are_linked(report):
    out = report.parent
    text = report.read_text()
    for image in re.findall(r"!\[[^]]*\]\(([^)]+)\)", text):
        assert (out / image).stat().st_size > 0, image
    assert {"session.gif", "learning_curve.png", "reliability.png", "benchmark/metrics.png"} <= set(
        re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    )
    assert (out / "session.gif").read_bytes()[:6] in (b"GIF89a", b"GIF87a")
    summary = json.loads((out / "summary.json").read_text())
    assert [s["name"] for s in summary["stages"]] == [title for _, title, _ in STAGES]
    assert set(summary["benchmark_return"]) == {"random", "popular", "greedy", "oracle", "ppo"}
    assert summary["data"]["users"] == TINY.synthetic_users
    assert -1.0 <= summary["fidelity"]["kendall_tau"] <= 1.0


def test_expected_times_are_measured_for_the_presets_and_scale_with_cores(tmp_path):
    for sizes in (DEFAULT, QUICK):
        assert set(STAGE_SECONDS[sizes.name]) == {key for key, _, _ in STAGES}
        for key, _, _ in STAGES:
            two = expected_seconds(sizes, key, 2)
            assert two is not None and two > 0
            assert expected_seconds(sizes, key, 1) == pytest.approx(2 * two)  # half the cores, twice the time
            assert expected_seconds(sizes, key, 16) == two  # more cores are not promised to help
    assert expected_seconds(TINY, "agent", 2) is None
    console = Console(record=True, width=200)
    console.print(demo_plan(DemoConfig(out=tmp_path / "out", sizes=QUICK), cores=1))
    text = console.export_text()
    assert "on 1 CPU core," in text and "quick sizes" in text and "session.gif" in text
    total = sum(expected_seconds(QUICK, key, 1) or 0 for key, _, _ in STAGES)
    assert f"~{total / 60:.0f} min" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dataset", "ml-100k"], "needs --data-dir"),
        (["--dataset", "ml-100k", "--data-dir", "/nonexistent/ml"], "no such directory"),
        (["--data-dir", "."], "goes with --dataset ml-100k"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, argv, message):
    assert main(["demo", "--out", str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "out").exists()
