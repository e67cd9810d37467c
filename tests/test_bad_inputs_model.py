"""Bad input to the user model: NaN training, NaN/tied scores, bad checkpoints, bad flags, bad resume state.

Each case: exit code 2 (or the library's InputError), one line naming the file/key/tensor/value, and
nothing written or deleted.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _user_model_data import cyclic_dataset
from safetensors.torch import load_file, save_file

import user_models.outputs as outputs_module
import user_models.train as train_module
from recsim_env.cli import main
from user_models.checkpoint import load_user_model, save_user_model
from user_models.data.artifact import file_sha256
from user_models.errors import CheckpointError, InputError
from user_models.evaluate import target_ranks
from user_models.train import TrainConfig, train_user_model
from user_models.transformer import TransformerConfig, UserTransformer

TINY = ["--dim", "8", "--layers", "1", "--heads", "2", "--max-len", "6", "--batch-size", "16",
        "--no-progress"]
MODEL = TransformerConfig(dim=8, layers=1, heads=2, max_len=6, dropout=0.0)


def config(epochs: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=16, lr=5e-3, warmup_steps=2, patience=100, progress=False)


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("recsim: error: ") and "Traceback" not in err
    return err


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("bad-model")
    cyclic_dataset(n_users=12).save(base / "data")
    assert main(["user-model", "train", "--data", str(base / "data"), "--out", str(base / "model"),
                 "--epochs", "2", *TINY]) == 0
    return base


def copy_model(root: Path, tmp_path: Path) -> Path:
    import shutil

    shutil.copytree(root / "model", tmp_path / "model")
    return tmp_path / "model"


def rewrite_config(model: Path, change) -> None:
    config = json.loads((model / "config.json").read_text())
    change(config)
    (model / "config.json").write_text(json.dumps(config))


# --- NaN models ------------------------------------------------------------------------------------
def test_diverging_training_stops_with_a_clear_error_and_writes_nothing(root, tmp_path, capsys):
    out = tmp_path / "diverged"
    capsys.readouterr()
    code = main(["user-model", "train", "--data", str(root / "data"), "--out", str(out), "--epochs", "2",
                 "--lr", "1e6", *TINY])
    assert code == 2
    err = one_line_error(capsys)
    assert "training diverged" in err and "lr 1e+06" in err and "lower --lr" in err
    assert not out.exists()


def test_nan_and_tied_scores_rank_the_target_pessimistically():
    nan = float("nan")
    scores = torch.tensor([[0.0, nan, nan, nan, nan],     # all NaN: the target ranks last
                           [0.0, 1.0, 1.0, 1.0, 1.0],     # all tied: last, whatever its id
                           [0.0, 0.2, nan, 0.9, 0.1],     # one NaN competitor ranks ahead
                           [0.0, 0.5, 0.5, 0.1, 0.7]])    # tie with a larger id counts
    targets = torch.tensor([1, 1, 3, 1])
    assert target_ranks(scores, targets).tolist() == [3, 3, 1, 2]
    seen = torch.tensor([[2, 3], [2, 0], [2, 0], [2, 4]])  # masked items never count, NaN or not
    assert target_ranks(scores, targets, seen).tolist() == [1, 2, 0, 0]


def test_checkpoint_with_non_finite_weights_fails_to_load(root, tmp_path, capsys):
    model = copy_model(root, tmp_path)
    weights = load_file(str(model / "model.safetensors"))
    weights["item_emb.weight"][3, 1] = float("nan")
    save_file(weights, str(model / "model.safetensors"))
    rewrite_config(model, lambda c: c["sha256"].update({"model.safetensors":
                                                        file_sha256(model / "model.safetensors")}))
    with pytest.raises(CheckpointError, match=r"tensor 'item_emb.weight' holds NaN or infinite values"):
        load_user_model(model)
    before = tree(model)
    assert main(["user-model", "eval", "--model", str(model), "--data", str(root / "data")]) == 2
    assert "model.safetensors: tensor 'item_emb.weight' holds NaN" in one_line_error(capsys)
    assert tree(model) == before


def test_a_non_finite_model_is_never_saved(tmp_path):
    ds = cyclic_dataset(n_users=4)
    model = UserTransformer(MODEL, ds.n_items, ds.behaviors)
    with torch.no_grad():
        model.item_bias[2] = float("inf")
    with pytest.raises(CheckpointError, match="refusing to save a model whose tensor 'item_bias'"):
        save_user_model(model, tmp_path / "m", ds)
    assert not (tmp_path / "m").exists()


# --- config.json ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("change, message", [
    (lambda c: c.update(model=[1, 2]), "key 'model' must be an object, got [1, 2]"),
    (lambda c: c.update(sha256=[1]), "key 'sha256' must be an object, got [1]"),
    (lambda c: c["model"].update(dim=-8), "invalid model config (dim must be in [2, 4096], got -8)"),
    (lambda c: c["model"].update(dim=8.0), "invalid model config (dim must be an integer, got 8.0)"),
    (lambda c: c["model"].update(dropout="x"), "dropout must be in [0, 1), got 'x'"),
    (lambda c: c.update(n_items="ten"), "key 'n_items' must be a positive integer, got 'ten'"),
    (lambda c: c.update(n_items=0), "key 'n_items' must be a positive integer, got 0"),
    (lambda c: c.update(behaviors=5), "key 'behaviors' must be a list of names, got 5"),
    (lambda c: c.update(behaviors=[1, 2]), "key 'behaviors' must be a list of names"),
    (lambda c: c.update(dataset="x"), "key 'dataset' must be an object"),
], ids=["model-list", "sha-list", "negative-dim", "float-dim", "str-dropout", "str-items", "zero-items",
        "int-behaviors", "int-names", "str-dataset"])
def test_malformed_config_json_gives_one_line(root, tmp_path, capsys, change, message):
    model = copy_model(root, tmp_path)
    rewrite_config(model, change)
    before = tree(model)
    assert main(["user-model", "eval", "--model", str(model), "--data", str(root / "data")]) == 2
    err = one_line_error(capsys)
    assert "config.json" in err and message in err
    assert tree(model) == before


def test_config_json_that_is_not_an_object(root, tmp_path):
    model = copy_model(root, tmp_path)
    (model / "config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="config.json: expected a JSON object"):
        load_user_model(model)


def test_weight_shape_mismatch_names_the_tensor_and_shapes(root, tmp_path):
    model = copy_model(root, tmp_path)
    rewrite_config(model, lambda c: c["model"].update(dim=16))
    with pytest.raises(CheckpointError) as info:
        load_user_model(model)
    text = str(info.value)
    assert "weights do not fit the config (tensor 'item_emb.weight' has shape [11, 8], the config needs " \
           "[11, 16]" in text
    assert "more difference(s)" in text and "\n" not in text


def test_vocab_shorter_than_n_items_is_rejected(root, tmp_path):
    model = copy_model(root, tmp_path)
    vocab = json.loads((model / "vocab.json").read_text())
    vocab["items"] = vocab["items"][:-2]
    (model / "vocab.json").write_text(json.dumps(vocab))
    rewrite_config(model, lambda c: c["sha256"].update({"vocab.json": file_sha256(model / "vocab.json")}))
    with pytest.raises(CheckpointError, match=r"vocab.json: 8 item ids, but config.json says n_items 10"):
        load_user_model(model)


# --- flags: rejected before any work ----------------------------------------------------------------
@pytest.mark.parametrize("flags, message", [
    (["--dim", "0"], "--dim must be in [2, 4096], got 0"),
    (["--dim", "100000"], "--dim must be in [2, 4096], got 100000"),
    (["--max-len", "10000000"], "--max-len must be in [2, 4096], got 10000000"),
    (["--layers", "0"], "--layers must be in [1, 64], got 0"),
    (["--heads", "0"], "--heads must be in [1, 64], got 0"),
    (["--dropout", "1.5"], "--dropout must be in [0, 1), got 1.5"),
    (["--dropout", "nan"], "--dropout must be in [0, 1), got nan"),
    (["--batch-size", "0"], "--batch-size must be an integer of at least 1, got 0"),
    (["--lr", "nan"], "--lr must be a finite number >= 0, got nan"),
    (["--lr", "inf"], "--lr must be a finite number >= 0, got inf"),
    (["--lr", "-1"], "--lr must be a finite number >= 0, got -1.0"),
    (["--weight-decay", "-0.1"], "--weight-decay must be a finite number >= 0"),
    (["--patience", "0"], "--patience must be an integer of at least 1, got 0"),
    (["--label-smoothing", "1"], "--label-smoothing must be in [0, 1), got 1.0"),
    (["--epochs", "-3"], "--epochs must be an integer of at least 1, got -3"),
])
def test_bad_training_flags_exit_2_before_any_work(root, tmp_path, capsys, monkeypatch, flags, message):
    from user_models.data.artifact import SequenceDataset

    def no_work(*args, **kwargs):
        raise AssertionError("the dataset was loaded before the flags were checked")

    monkeypatch.setattr(SequenceDataset, "load", no_work)
    out = tmp_path / "m"
    assert main(["user-model", "train", "--data", str(root / "data"), "--out", str(out), *TINY,
                 *flags]) == 2
    assert message in one_line_error(capsys)
    assert not out.exists()


def test_absurd_catalogue_times_dim_is_refused():
    from user_models.train import check_model_size

    check_model_size(TransformerConfig(), 1000)
    with pytest.raises(InputError, match="model too large: about .* parameters .* lower --dim"):
        check_model_size(TransformerConfig(dim=4096, heads=2), 1_000_000)


# --- resume ----------------------------------------------------------------------------------------
def test_resume_state_is_replaced_as_one_unit(tmp_path, monkeypatch):
    """A kill between writing the weights and the epoch count must not make --resume train an extra
    epoch: the new state is a whole directory renamed over the old, so the old state survives intact."""
    torch.set_num_threads(1)
    ds = cyclic_dataset(n_users=12)
    reference, _ = train_user_model(ds, tmp_path / "a", MODEL, config(3))
    saves = []
    real_swap = outputs_module._swap_in

    def killed_on_third_save(tmp, target):
        saves.append(target)
        if len(saves) == 3:  # epoch 3's state is complete in tmp, the process dies before the rename
            assert sorted(p.name for p in tmp.iterdir()) == ["progress.json", "state.safetensors"]
            raise KeyboardInterrupt
        real_swap(tmp, target)

    monkeypatch.setattr(outputs_module, "_swap_in", killed_on_third_save)
    with pytest.raises(KeyboardInterrupt):
        train_user_model(ds, tmp_path / "b", MODEL, config(3))
    monkeypatch.undo()
    progress = json.loads((tmp_path / "b" / "resume" / "progress.json").read_text())
    assert progress["epoch"] == 2
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["resume"]  # no .resume.tmp-* left
    resumed, result = train_user_model(ds, tmp_path / "b", MODEL, config(3), resume=True)
    assert result.epochs_run == 3
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_resume_puts_back_a_state_moved_aside_by_a_killed_swap(tmp_path):
    torch.set_num_threads(1)
    ds = cyclic_dataset(n_users=12)
    train_user_model(ds, tmp_path / "b", MODEL, config(2))
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    os.replace(tmp_path / "b" / "resume", tmp_path / "b" / f".resume.old-{proc.pid}-k1")
    _, result = train_user_model(ds, tmp_path / "b", MODEL, config(2), resume=True)
    assert result.epochs_run == 2 and len(result.history) == 2  # the finished state, not a fresh start
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["config.json", "model.safetensors",
                                                                   "resume", "vocab.json"]


@pytest.mark.parametrize("victim, content, message", [
    ("progress.json", None, "progress.json: truncated or invalid JSON (line"),
    ("progress.json", b"[1, 2]", "progress.json: not a resume state (missing epoch"),
    ("progress.json", b"\xff\xfe", "progress.json: cannot read (UnicodeDecodeError)"),
    ("state.safetensors", pickle.dumps({"weights": [1.0]}), "state.safetensors: not a safetensors file"),
    ("state.safetensors", b"", "state.safetensors: not a safetensors file"),
], ids=["truncated", "array", "binary", "pickle", "empty"])
def test_unreadable_resume_state_gives_one_line(root, tmp_path, capsys, victim, content, message):
    model = copy_model(root, tmp_path)
    file = model / "resume" / victim
    file.write_bytes(file.read_bytes()[: len(file.read_bytes()) // 2] if content is None else content)
    before = tree(model)
    capsys.readouterr()
    assert main(["user-model", "train", "--data", str(root / "data"), "--out", str(model), "--epochs", "2",
                 "--resume", *TINY]) == 2
    err = one_line_error(capsys)
    assert message in err and "train again without --resume" in err
    assert tree(model) == before


def test_resume_with_another_architecture_names_the_tensor(root, tmp_path, capsys):
    model = copy_model(root, tmp_path)
    flags = [f if f != "8" else "16" for f in TINY]  # --dim 16 instead of 8
    assert main(["user-model", "train", "--data", str(root / "data"), "--out", str(model), "--epochs", "2",
                 "--resume", *flags]) == 2
    err = one_line_error(capsys)
    assert "state.safetensors: weights do not fit the config (tensor 'item_bias'" not in err
    assert "weights do not fit the config (tensor 'item_emb.weight' has shape [11, 8], the config needs " \
           "[11, 16]" in err


def test_resume_and_overwrite_are_exclusive(root, capsys):
    with pytest.raises(SystemExit) as info:
        main(["user-model", "train", "--data", str(root / "data"), "--out", str(root / "model"), "--resume",
              "--overwrite"])
    assert info.value.code == 2


def test_train_module_reexports_stay_importable():
    assert callable(train_module.train_user_model)


def test_eval_plot_never_replaces_a_file_that_is_not_a_png(root, tmp_path, capsys):
    notes = tmp_path / "notes.png"
    notes.write_text("my notes")
    capsys.readouterr()
    assert main(["user-model", "eval", "--model", str(root / "model"), "--data", str(root / "data"),
                 "--plot", str(notes)]) == 2
    assert "--plot" in one_line_error(capsys) and notes.read_text() == "my notes"
