"""`recsim user-model` end to end on a tiny dataset: train, eval, baselines, profile, bad input = exit 2."""

import json

import pytest
import torch
from _user_model_data import cyclic_dataset

from recsim_env.cli import main

TINY = ["--dim", "16", "--layers", "1", "--heads", "2", "--max-len", "8", "--batch-size", "16",
        "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("cli")
    cyclic_dataset().save(root / "data")
    code = main(["user-model", "train", "--data", str(root / "data"), "--out", str(root / "model"),
                 "--epochs", "3", "--seed", "1", *TINY])
    assert code == 0
    return root


def test_train_then_eval_json(trained, capsys):
    capsys.readouterr()
    assert main(["user-model", "eval", "--model", str(trained / "model"), "--data", str(trained / "data"),
                 "--split", "valid", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["split"] == "valid" and report["ranking"].endswith("seen items not masked")
    for key in ("ndcg@10", "hr@10", "mrr", "hr@5", "ndcg@20"):
        assert 0.0 <= report[key] <= 1.0
    assert report["seen_masked"]["ranking"].endswith("seen items masked (except the target)")
    assert set(report["behavior"]) >= {"accuracy", "macro_f1", "auc_ovr"}
    assert set(report["session_end"]) >= {"auc", "log_loss", "ece"}
    assert (trained / "model" / "reliability_valid.png").is_file()


def test_eval_table_labels_both_protocols(trained, capsys):
    capsys.readouterr()
    assert main(["user-model", "eval", "--model", str(trained / "model"),
                 "--data", str(trained / "data")]) == 0
    out = capsys.readouterr().out
    assert "seen items not masked" in out and "seen items masked" in out and "session end" in out


def test_baselines_json_per_model(trained, capsys):
    capsys.readouterr()
    assert main(["user-model", "baselines", "--data", str(trained / "data"), "--epochs", "2", "--json",
                 "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"Pop", "Markov", "GRU4Rec"}
    assert all("ndcg@10" in r and "mrr" in r and r["split"] == "test" for r in report.values())
    assert report["Markov"]["hr@5"] > 0.9  # the +1 walk is one transition away


def test_profile_prints_categories(trained, capsys):
    capsys.readouterr()
    assert main(["user-model", "profile", "--model", str(trained / "model"), "--data", str(trained / "data"),
                 "--user", "u3", "--top", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("user 3 (u3)") and len(lines) == 3
    assert {line.split()[0] for line in lines[1:]} <= {"Drama", "Comedy", "Action"}


@pytest.mark.parametrize("argv, message", [
    (["eval", "--model", "{root}/nowhere", "--data", "{root}/data"], "not a user-model checkpoint"),
    (["eval", "--model", "{root}/model", "--data", "{root}/nowhere"], "not a dataset directory"),
    (["profile", "--model", "{root}/model", "--data", "{root}/data", "--user", "nobody"], "no such user"),
    (["train", "--data", "{root}/data", "--out", "{root}/m2", "--epochs", "0"], "--epochs must be"),
    (["train", "--data", "{root}/data", "--out", "{root}/m2", "--heads", "3"], "not divisible"),
    (["train", "--data", "{root}/data", "--out", "{root}/m3", "--resume"], "no resume/ state"),
])
def test_bad_input_exits_2_with_one_line(trained, capsys, argv, message):
    capsys.readouterr()
    assert main(["user-model", *[a.format(root=trained) for a in argv]]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
