"""``recsim demo`` end to end at the tiny test size, and its input errors."""

import json
import re

import pytest
import torch

from recsim_env.cli import main
from recsim_env.demo import STAGES, TINY, DemoConfig, run_demo

pytestmark = pytest.mark.slow  # end to end: the longest tests of the suite


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("demo")
    return run_demo(DemoConfig(out=out, sizes=TINY, progress=False))


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
