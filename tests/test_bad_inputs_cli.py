"""Bad inputs to the env and offline commands: exit code 2, one line naming the flag/key/value, and
nothing written or deleted (``--out`` of every writer, ``--device``, empty policy lists, env kwargs)."""

from __future__ import annotations

import json
import os

import pytest
import torch

from recsim_env.cli import main


@pytest.fixture(scope="module")
def files(cli_files):
    return cli_files


def sim(files):
    return ["--model", str(files / "user.json"), "--data", str(files / "data")]


def tiny(files):
    return [*sim(files), "--env-config", str(files / "env.yaml")]


def commands(files, out):
    """Every writing command with ``out`` as its output, sized to run in about a second."""
    return {
        "benchmark": ["benchmark", *tiny(files), "--policies", "random", "--episodes", "3", "--seeds", "1",
                      "--resamples", "20", "--save-trajectories", "0", "--out", str(out)],
        "fidelity": ["fidelity", *tiny(files), "--users", "4", "--ground-truth", "no", "--out", str(out)],
        "ope": ["ope", *tiny(files), "--targets", "uniform", "--logged", "20", "--seeds", "1",
                "--truth-users", "20", "--out", str(out)],
        "agent train": ["agent", "train", "--algo", "ppo", *sim(files), "--timesteps", "64",
                        "--hyperparams", "n_steps=32", "batch_size=32", "n_epochs=1", "eval_freq=0",
                        "n_eval_episodes=2", "checkpoint_freq=0", "env_kwargs.candidates.n_candidates=6",
                        "--no-progress", "--out", str(out)],
        "visualize --record": ["visualize", *sim(files), "--steps", "2", "--no-window", "--record", str(out)],
        "demo": ["demo", "--quick", "--out", str(out)],
    }


WRITERS = ("benchmark", "fidelity", "ope", "agent train", "visualize --record", "demo")


def snapshot(root):
    """Every path under ``root`` with its bytes (for "nothing was written or deleted")."""
    return {p: (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def run(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


def one_line(err):
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("recsim: error: "), err
    return lines[0]


# --- --out of every writer ------------------------------------------------------------------------
@pytest.mark.parametrize("command", WRITERS)
def test_existing_output_is_refused_without_overwrite(files, tmp_path, capsys, command):
    out = tmp_path / ("x.gif" if "record" in command else "out")
    if "record" in command:
        out.write_bytes(b"GIF89a-old")
    else:
        out.mkdir()
        (out / "thesis.txt").write_text("years of work")
    before = snapshot(tmp_path)
    code, err = run(commands(files, out)[command], capsys)
    flag = "--record" if "record" in command else "--out"
    assert code == 2
    assert f"{flag} {out}: output exists; pass --overwrite" in one_line(err)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", WRITERS)
def test_overwrite_never_replaces_what_recsim_did_not_write(files, tmp_path, capsys, command):
    out = tmp_path / ("x.gif" if "record" in command else "home")
    if "record" in command:
        out.write_text("not a gif")
    else:
        (out / "sub").mkdir(parents=True)
        (out / "thesis.txt").write_text("years of work")
    before = snapshot(tmp_path)
    code, err = run([*commands(files, out)[command], "--overwrite"], capsys)
    assert code == 2
    assert "--overwrite only replaces those, refusing to delete it" in one_line(err)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", WRITERS)
def test_output_below_a_regular_file_fails_before_any_work(files, tmp_path, capsys, command):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / ("x.gif" if "record" in command else "out")
    before = snapshot(tmp_path)
    code, err = run(commands(files, out)[command], capsys)
    assert code == 2
    assert f"{out}: {tmp_path / 'file'} is a file, not a directory" in one_line(err)
    assert snapshot(tmp_path) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
@pytest.mark.parametrize("command", WRITERS)
def test_output_in_an_unwritable_directory_fails_before_any_work(files, tmp_path, capsys, command):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        out = locked / ("x.gif" if "record" in command else "out")
        code, err = run(commands(files, out)[command], capsys)
        assert code == 2
        assert f"{out}: cannot write in {locked}" in one_line(err)
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


def test_record_into_proc_is_one_line(files, capsys):
    code, err = run(commands(files, "/proc/x.gif")["visualize --record"], capsys)
    assert code == 2 and "--record /proc/x.gif" in one_line(err)


def test_output_containing_an_input_is_refused(files, capsys):
    before = snapshot(files)
    code, err = run([*commands(files, files)["benchmark"], "--overwrite"], capsys)
    assert code == 2 and f"--out {files}" in one_line(err)
    assert snapshot(files) == before


@pytest.mark.parametrize("command", ["benchmark", "fidelity", "ope"])
def test_overwrite_replaces_an_earlier_report_atomically(files, tmp_path, capsys, command):
    out = tmp_path / "report"
    assert main(commands(files, out)[command]) == 0
    marker = {"benchmark": "results.json", "fidelity": "fidelity.json", "ope": "ope.json"}[command]
    assert (out / marker).is_file()
    (out / "stale.txt").write_text("from the earlier run")
    assert main(commands(files, out)[command]) == 2  # refused without --overwrite
    assert main([*commands(files, out)[command], "--overwrite"]) == 0
    assert (out / marker).is_file() and not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # no temporary left behind


def test_record_overwrite_replaces_an_earlier_recording(files, tmp_path, capsys):
    out = tmp_path / "s.gif"
    assert main(commands(files, out)["visualize --record"]) == 0
    first = out.read_bytes()
    assert first[:6] in (b"GIF87a", b"GIF89a")
    assert main(commands(files, out)["visualize --record"]) == 2
    assert main([*commands(files, out)["visualize --record"], "--overwrite", "--seed", "3"]) == 0
    assert out.read_bytes()[:6] in (b"GIF87a", b"GIF89a")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.gif"]


def test_agent_train_writes_atomically_and_overwrites_only_an_agent_run(files, tmp_path, capsys):
    out = tmp_path / "run"
    argv = commands(files, out)["agent train"]
    assert main(argv) == 0
    assert (out / "final" / "agent.json").is_file()
    assert main(argv) == 2
    assert main([*argv, "--overwrite"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


# --- --device ---------------------------------------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without CUDA")
@pytest.mark.parametrize("argv", [
    ["env", "check", "--slate-size", "2", "--episodes", "1"],
    ["env", "calibrate", "--out", "cal.json"],
    ["agent", "eval", "--policy", "random", "--episodes", "2"],
    ["benchmark", "--policies", "random", "--out", "bench"],
    ["visualize", "--no-window", "--record", "x.gif"],
    ["demo", "--quick", "--out", "demo"],
])
def test_unavailable_device_is_one_line_for_every_command(files, tmp_path, capsys, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    needs_sim = argv[0] != "demo"
    code, err = run([*argv, *(sim(files) if needs_sim else []), "--device", "cuda"], capsys)
    assert code == 2
    assert one_line(err) == "recsim: error: --device cuda: no CUDA device is available (this torch build " \
                            "or machine)"
    assert list(tmp_path.iterdir()) == []


def test_unknown_device_is_one_line(files, capsys):
    code, err = run(["env", "check", *sim(files), "--device", "tpu9"], capsys)
    assert code == 2 and "--device 'tpu9'" in one_line(err)


# --- empty and unknown policy lists -------------------------------------------------------------------
@pytest.mark.parametrize(("command", "flag", "value"), [
    ("benchmark", "--policies", ""),
    ("benchmark", "--policies", " , "),
    ("fidelity", "--policies", ""),
    ("ope", "--targets", ""),
])
def test_empty_policy_list_names_the_flag(files, tmp_path, capsys, command, flag, value):
    out = tmp_path / "out"
    argv = commands(files, out)[command]
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]
    code, err = run(argv, capsys)
    assert code == 2
    assert one_line(err).startswith(f"recsim: error: {flag}: give at least one")
    assert not out.exists()


def test_benchmark_unknown_policy_fails_before_running_and_creates_nothing(files, tmp_path, capsys):
    out = tmp_path / "bench"
    argv = commands(files, out)["benchmark"]
    argv[argv.index("--policies") + 1] = "random,nonexistent"
    code, err = run(argv, capsys)
    assert code == 2 and "nonexistent" in one_line(err)
    assert list(tmp_path.iterdir()) == []


# --- --env-kwargs ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("kwarg", "message"), [
    ("slate_size", "--env-kwargs"),
    ("slate_size=abc", "slate_size"),
    ("slate_size=2.5", "slate_size"),
    ("slate_size=true", "slate_size"),
    ("slate_size=0", "slate_size"),
    ("no_such_setting=1", "no_such_setting"),
])
def test_agent_eval_env_kwargs_errors_name_the_key(files, capsys, kwarg, message):
    code, err = run(["agent", "eval", "--policy", "random", *sim(files), "--episodes", "2", "--env-kwargs",
                     kwarg], capsys)
    line = one_line(err)
    assert code == 2 and message in line
    assert "--hyperparams" not in line


def test_agent_train_hyperparams_without_equals_names_hyperparams(files, tmp_path, capsys):
    code, err = run(["agent", "train", "--algo", "ppo", *sim(files), "--out", str(tmp_path / "run"),
                     "--hyperparams", "learning_rate"], capsys)
    assert code == 2 and "--hyperparams" in one_line(err)
    assert list(tmp_path.iterdir()) == []


def test_benchmark_results_json_is_what_overwrite_recognises(files, tmp_path):
    out = tmp_path / "b"
    assert main(commands(files, out)["benchmark"]) == 0
    assert "config" in json.loads((out / "results.json").read_text())
