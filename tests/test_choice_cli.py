"""`recsim user-model fit-choice` / `eval-choice` on the cascade world's impressions, and the env
picking the learned choice up from the checkpoint."""

import json

import polars as pl
import pytest

from recsim_env.cli import main
from recsim_env.config import EnvConfig
from recsim_env.factory import build_env_core
from user_models.checkpoint import CHOICE_CONFIG, load_learned_choice
from user_models.data.artifact import SequenceDataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("choice")
    data, model = root / "data", root / "model"
    assert main(["data", "synth", "--world", "cascade", "--users", "150", "--items", "120", "--seed", "1",
                 "--impressions", "--out", str(data)]) == 0
    assert main(["user-model", "train", "--data", str(data), "--out", str(model), "--epochs", "2",
                 "--dim", "16", "--layers", "1", "--max-len", "16", "--no-progress"]) == 0
    return data, model


def test_the_cascade_impressions_match_the_ingested_consumptions(trained) -> None:
    data, _ = trained
    ds = SequenceDataset.load(data)
    table = ds.impressions
    assert table is not None and table.height > 0
    clicks = table.filter(pl.col("clicked") == 1).select("user", "item", "timestamp")
    consumed = ds.interactions.select("user", "item", "timestamp")
    # every click on an item the consumption log kept (the k-core drops rare items from it, not from what
    # was shown) is an ingested consumption of the same user, item and time (the view row)
    kept = clicks.filter(pl.col("item").is_in(consumed["item"].unique().implode()))
    assert 0 < kept.height and kept.join(consumed, on=["user", "item", "timestamp"], how="anti").height == 0
    assert table["impression"].is_sorted() and set(table["slot"].unique()) <= set(range(10))


def test_fit_eval_and_the_env_uses_it(trained, tmp_path, capsys) -> None:
    data, model = trained
    assert main(["user-model", "fit-choice", "--model", str(model), "--data", str(data), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    held = report["held_out"]
    assert held["learned choice"]["log_likelihood"] > held["calibrated MNL"]["log_likelihood"]
    assert (model / CHOICE_CONFIG).is_file()
    plot = tmp_path / "rel.png"
    assert main(["user-model", "eval-choice", "--model", str(model), "--data", str(data), "--plot",
                 str(plot)]) == 0
    out = capsys.readouterr().out
    assert "| learned choice |" in out and "| calibrated MNL |" in out
    assert plot.read_bytes()[:4] == b"\x89PNG"
    core, _ = build_env_core(model, data, EnvConfig())
    assert core.learned_choice is not None
    core, _ = build_env_core(model, data, EnvConfig.from_mapping({"choice": {"source": "calibrated"}}))
    assert core.learned_choice is None


def test_no_impressions_is_a_clear_error(tmp_path, capsys) -> None:
    data, model = tmp_path / "d", tmp_path / "m"
    assert main(["data", "synth", "--users", "40", "--items", "30", "--out", str(data)]) == 0
    assert main(["user-model", "train", "--data", str(data), "--out", str(model), "--epochs", "1",
                 "--dim", "16", "--layers", "1", "--max-len", "8", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["user-model", "fit-choice", "--model", str(model), "--data", str(data)]) != 0
    assert "has no impression log" in capsys.readouterr().err


def test_ope_on_the_cascade_impressions_says_it_needs_propensities(trained, tmp_path, capsys) -> None:
    """Policy A logs the probability of each whole ordered slate, not of each shown slot, and says so in
    the dataset's meta; the slot-level estimators refuse it by name."""
    data, model = trained
    capsys.readouterr()
    assert main(["ope", "--model", str(model), "--data", str(data), "--from-impressions", "--out",
                 str(tmp_path / "ope")]) != 0
    assert "probabilities of whole ordered slates, not of each shown slot" in capsys.readouterr().err
    assert not (tmp_path / "ope").exists()


def test_scored_on_another_logging_policys_impressions(trained, tmp_path, capsys) -> None:
    data, model = trained
    other = tmp_path / "B"
    assert main(["data", "synth", "--world", "cascade", "--users", "60", "--items", "120", "--seed", "1",
                 "--logging-policy", "B", "--impressions", "--out", str(other)]) == 0
    if not (model / CHOICE_CONFIG).exists():
        assert main(["user-model", "fit-choice", "--model", str(model), "--data", str(data)]) == 0
    capsys.readouterr()
    assert main(["user-model", "eval-choice", "--model", str(model), "--data", str(data), "--heldout-data",
                 str(other), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    shown = SequenceDataset.load(other).impressions
    assert shown is not None
    b_raw = shown["impression"].n_unique()
    assert result["dataset"] == "cascade-B"
    assert 0 < result["learned choice"]["impressions"] <= b_raw
    # every ingested slate is either scored or counted among the drops
    slates_dropped = sum(v for k, v in result["dropped"].items() if k.startswith("impressions") or
                         k in ("no timestamp", "before the first consumption"))
    assert result["learned choice"]["impressions"] + slates_dropped == b_raw


def test_the_form_is_fitted_as_asked_and_auto_keeps_the_one_better_on_unseen_users(trained, capsys) -> None:
    data, model = trained
    assert main(["user-model", "fit-choice", "--model", str(model), "--data", str(data), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["form"] == "mnl" and set(report["form_trials"]) == {"mnl"}
    assert "learned, cascade form" in report["held_out"]
    assert main(["user-model", "fit-choice", "--model", str(model), "--data", str(data), "--form", "auto",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    trials = report["form_trials"]
    assert set(trials) == {"mnl", "cascade"} and report["form"] == min(trials, key=trials.get)
    assert load_learned_choice(model).form == report["form"]
    assert main(["user-model", "fit-choice", "--model", str(model), "--data", str(data), "--form",
                 "cascade", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["form"] == "cascade"
    core, _ = build_env_core(model, data, EnvConfig())
    assert core.learned_choice is not None and core.learned_choice.form == "cascade"
