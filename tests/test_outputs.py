"""Output safety: --overwrite replaces only recsim's own outputs, never an input; no leftovers; SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from _user_model_data import cyclic_dataset

from recsim_env.cli import main
from user_models.errors import OutputError
from user_models.outputs import (
    DATASET,
    RECORDING,
    USER_MODEL,
    check_output,
    clean_stale,
    replace_output,
)

GOOD = "user,item,timestamp,event\na,x,100,view\na,y,200,buy\nb,x,300,view\n"
LOOSE = ["--no-progress", "--min-user-events", "1", "--min-item-events", "1"]


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` with its content (to assert nothing was written or deleted)."""
    return {str(p.relative_to(root)): p.read_text(errors="replace") for p in sorted(root.rglob("*"))
            if p.is_file()}


def prepare(src: Path, out: Path | str, *flags: str) -> int:
    return main(["data", "prepare", "--input", str(src), "--out", str(out), *LOOSE, *flags])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("recsim: error: ") and "Traceback" not in err
    return err


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_overwrite_refuses_a_directory_that_is_not_a_dataset(tmp_path, capsys):
    src = tmp_path / "log.csv"
    src.write_text(GOOD)
    home = tmp_path / "home"
    (home / "sub").mkdir(parents=True)
    (home / "thesis.txt").write_text("four years")
    (home / "sub" / "notes.md").write_text("n")
    before = tree(tmp_path)
    assert prepare(src, home, "--overwrite") == 2
    err = one_line_error(capsys)
    assert f"{home}: is a directory that is not a dataset written by recsim-env" in err
    assert "meta.json" in err and "refusing to delete it" in err
    assert tree(tmp_path) == before
    # a meta.json that is not ours (no format_version/fingerprint) does not make it a dataset either
    (home / "meta.json").write_text('{"title": "mine"}')
    assert prepare(src, home, "--overwrite") == 2
    assert (home / "thesis.txt").read_text() == "four years"


def test_input_inside_the_output_is_never_deleted(tmp_path, capsys):
    src = tmp_path / "log.csv"
    src.write_text(GOOD)
    out = tmp_path / "out"
    assert prepare(src, out) == 0
    inner = out / "log.csv"
    inner.write_text(GOOD)  # the dataset directory now also holds the input
    before = tree(tmp_path)
    capsys.readouterr()
    assert prepare(inner, out, "--overwrite") == 2
    assert f"contains the input {inner}" in one_line_error(capsys)
    assert tree(tmp_path) == before
    # the same for --items and for the output being the input file itself
    assert main(["data", "prepare", "--input", str(src), "--items", str(inner), "--out", str(out), *LOOSE,
                 "--overwrite"]) == 2
    assert "contains the input" in one_line_error(capsys)
    assert tree(tmp_path) == before


def test_out_dot_and_parents_of_the_cwd_are_refused(tmp_path, capsys, monkeypatch):
    src = tmp_path / "log.csv"
    src.write_text(GOOD)
    out = tmp_path / "ds"
    assert prepare(src, out) == 0
    capsys.readouterr()
    before = tree(tmp_path)
    monkeypatch.chdir(out)
    assert prepare(src, ".", "--overwrite") == 2
    assert "is the current directory or contains it" in one_line_error(capsys)
    assert prepare(src, "..", "--overwrite") == 2
    one_line_error(capsys)
    assert tree(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "log.csv"]  # no ..tmp-* left behind


def test_existing_file_is_refused_and_leaves_no_old_copy(tmp_path, capsys):
    src = tmp_path / "log.csv"
    src.write_text(GOOD)
    target = tmp_path / "notes.txt"
    target.write_text("keep")
    assert prepare(src, target, "--overwrite") == 2
    assert "is a file that is not a dataset" in one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv", "notes.txt"]
    assert target.read_text() == "keep"


@pytest.mark.parametrize("where", ["file-parent", "unwritable"])
def test_unusable_output_path_fails_before_the_work(tmp_path, capsys, monkeypatch, where):
    import user_models.data.prepare as prepare_module

    src = tmp_path / "log.csv"
    src.write_text(GOOD)
    (tmp_path / "plain").write_text("x")
    out = tmp_path / "plain" / "out" if where == "file-parent" else Path("/proc/recsim-nowhere/out")

    def no_work(*args, **kwargs):
        raise AssertionError("prepare ran before the output was checked")

    monkeypatch.setattr(prepare_module, "prepare", no_work)
    assert prepare(src, out) == 2
    err = one_line_error(capsys)
    assert ("plain is a file, not a directory" in err) if where == "file-parent" else ("cannot write" in err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv", "plain"]


def test_synth_follows_the_same_rules(tmp_path, capsys):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.txt").write_text("x")
    assert main(["data", "synth", "--out", str(home), "--overwrite", "--users", "5", "--items", "5"]) == 2
    assert "not a dataset written by recsim-env" in one_line_error(capsys)
    assert tree(home) == {"thesis.txt": "x"}


def test_stale_leftovers_of_dead_processes_are_cleaned(tmp_path, capsys):
    src = tmp_path / "log.csv"
    src.write_text(GOOD)
    dead, alive = dead_pid(), os.getpid()
    stale = tmp_path / f".out.tmp-{dead}-abc_12"
    (stale / "half").mkdir(parents=True)
    probe = tmp_path / f".out.probe-{dead}-zz"
    probe.write_text("")
    live = tmp_path / f".out.tmp-{alive}-xyz"  # a concurrent run: left alone
    live.mkdir()
    other = tmp_path / f".other.tmp-{dead}-abc"  # another output's: not ours to judge
    other.mkdir()
    assert prepare(src, tmp_path / "out") == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["log.csv", "out", live.name, other.name])


def test_old_copy_of_a_killed_swap_is_put_back(tmp_path):
    ds = cyclic_dataset(n_users=3)
    ds.save(tmp_path / "d")
    moved = tmp_path / f".d.old-{dead_pid()}-q1"
    os.replace(tmp_path / "d", moved)  # killed between "move the old aside" and "rename the new in"
    assert clean_stale(tmp_path / "d") == [moved]
    assert (tmp_path / "d" / "meta.json").is_file() and not moved.exists()


def test_sigterm_is_an_interrupt_and_leaves_nothing(tmp_path):
    target = tmp_path / "d"
    with pytest.raises(KeyboardInterrupt), replace_output(target, DATASET) as tmp:
        (tmp / "meta.json").write_text("{}")
        os.kill(os.getpid(), signal.SIGTERM)
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_sigterm_during_prepare_in_a_subprocess_leaves_no_tmp(tmp_path):
    code = (
        "import os, signal, sys\n"
        "from user_models.outputs import DATASET, replace_output\n"
        "with replace_output(sys.argv[1], DATASET) as tmp:\n"
        "    (tmp / 'x').write_text('half')\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "out")], env=env,
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "KeyboardInterrupt" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_file_kind_replaces_only_its_own_files(tmp_path):
    gif = tmp_path / "session.gif"
    gif.write_bytes(b"GIF89a....")
    with replace_output(gif, RECORDING, overwrite=True) as tmp:
        tmp.write_bytes(b"GIF89anew")
    assert gif.read_bytes() == b"GIF89anew" and sorted(tmp_path.iterdir()) == [gif]
    fake = tmp_path / "thesis.gif"
    fake.write_text("not a gif")
    with pytest.raises(OutputError, match="not a recording"):
        check_output(fake, RECORDING, overwrite=True)
    with pytest.raises(OutputError, match="output exists"):
        check_output(gif, RECORDING)


def test_user_model_train_refuses_an_existing_checkpoint(tmp_path, capsys):
    cyclic_dataset(n_users=8).save(tmp_path / "data")
    tiny = ["--dim", "8", "--layers", "1", "--heads", "2", "--max-len", "6", "--epochs", "1",
            "--no-progress"]
    args = ["user-model", "train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "m"), *tiny]
    assert main(args) == 0
    before = tree(tmp_path / "m")
    capsys.readouterr()
    assert main(args) == 2  # used to overwrite silently
    assert "output exists; pass --overwrite" in one_line_error(capsys)
    assert tree(tmp_path / "m") == before
    assert main([*args, "--overwrite"]) == 0
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors",
                                                                   "resume", "vocab.json"]
    # a directory that is not a checkpoint, and the dataset itself, are refused even with --overwrite
    capsys.readouterr()
    for out in (tmp_path / "data", tmp_path):
        argv = ["user-model", "train", "--data", str(tmp_path / "data"), "--out", str(out), *tiny,
                "--overwrite"]
        assert main(argv) == 2
        err = one_line_error(capsys)
        assert "not a user-model checkpoint" in err or "contains the input" in err
    assert (tmp_path / "data" / "meta.json").is_file()


def test_user_model_kind_recognises_interrupted_runs(tmp_path):
    run = tmp_path / "run"
    (run / "resume").mkdir(parents=True)
    (run / "resume" / "progress.json").write_text('{"epoch": 1, "train_config": {}}')
    assert USER_MODEL.recognises(run)
    (run / "resume" / "progress.json").write_text('{"anything": 1}')
    assert not USER_MODEL.recognises(run)


def test_an_empty_directory_counts_as_absent(tmp_path):
    (tmp_path / "empty").mkdir()
    with replace_output(tmp_path / "empty", DATASET) as tmp:
        (tmp / "meta.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]
    assert (tmp_path / "empty" / "meta.json").is_file()
