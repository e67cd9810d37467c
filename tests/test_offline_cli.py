"""The offline commands end to end through ``recsim`` on a hand-written user (tiny sizes)."""

import json

import pytest

from recsim_env.cli import main


@pytest.fixture(scope="module")
def files(cli_files):
    return cli_files


def args(files, *extra):
    return [
        "--model",
        str(files / "user.json"),
        "--data",
        str(files / "data"),
        "--env-config",
        str(files / "env.yaml"),
        *extra,
    ]


def test_benchmark_ope_and_fidelity_commands(files, capsys):
    out = files / "bench"
    assert (
        main(
            [
                "benchmark",
                *args(
                    files,
                    "--policies",
                    "random,popular",
                    "--episodes",
                    "4",
                    "--seeds",
                    "1",
                    "--resamples",
                    "50",
                    "--out",
                    str(out),
                ),
            ]
        )
        == 0
    )
    assert "| popular |" in capsys.readouterr().out
    assert json.loads((out / "results.json").read_text())["config"]["env"]["slate_size"] == 2
    assert (
        main(
            [
                "ope",
                *args(
                    files,
                    "--targets",
                    "uniform,popular",
                    "--logged",
                    "50",
                    "--seeds",
                    "2",
                    "--truth-users",
                    "100",
                    "--out",
                    str(files / "ope"),
                ),
            ]
        )
        == 0
    )
    rows = json.loads((files / "ope" / "ope.json").read_text())["rows"]
    assert {r["target"] for r in rows} == {"uniform", "popular"}
    assert (
        main(
            [
                "fidelity",
                *args(files, "--users", "8", "--ground-truth", "no", "--out", str(files / "fidelity")),
            ]
        )
        == 0
    )
    assert "noise floor" in (files / "fidelity" / "fidelity.md").read_text()


def test_export_minari_command(files, tmp_path, monkeypatch):
    minari = pytest.importorskip(
        "minari", reason="needs the optional extra: pip install 'recsim-env[minari]'"
    )
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    assert (
        main(
            [
                "export-minari",
                *args(files, "--policy", "random", "--episodes", "3", "--dataset-id", "recsim/cli-random-v0"),
            ]
        )
        == 0
    )
    assert minari.load_dataset("recsim/cli-random-v0").total_episodes == 3


def test_bad_input_is_a_one_line_error(files, capsys):
    assert (
        main(
            [
                "benchmark",
                *args(files, "--env-id", "NoSuchEnv-v0", "--policies", "random", "--out", str(files / "bad")),
            ]
        )
        == 2
    )
    assert capsys.readouterr().err.startswith("recsim: error: --env-id 'NoSuchEnv-v0'")
    assert main(["fidelity", *args(files, "--ground-truth", "yes", "--out", str(files / "bad"))]) == 2
    assert "not a synthetic dataset" in capsys.readouterr().err
