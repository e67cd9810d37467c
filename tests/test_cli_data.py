"""`recsim data prepare` / `recsim data stats`: the CLI contract, mapping flags, help text, ml-100k."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest

from recsim_env.cli import build_parser, main
from user_models.data import SequenceDataset, movielens

ML100K = Path(os.environ.get("RECSIM_ML100K", Path(__file__).resolve().parents[1] / "../shared/data/ml-100k"))


def test_prepare_with_mapping_flags_then_stats(tmp_path, capsys):
    log = tmp_path / "clicks.csv"
    log.write_text("\n".join([
        "visitor,product,at,kind",
        "alice,p-2,2024-05-01T10:00:00Z,view",
        "alice,p-1,2024-05-01T10:01:00Z,click",
        "alice,p-1,2024-05-01T12:00:00Z,buy",
        "bob,p-1,2024-05-02T08:00:00+02:00,view",
        "bob,p-2,2024-05-02T08:00:30+02:00,view",
    ]) + "\n")
    items = tmp_path / "catalog.csv"
    items.write_text("pid,label,genre\np-1,One,a|b\np-2,Two,c\n")
    out = tmp_path / "ds"
    code = main(["data", "prepare", "--input", str(log), "--input-format", "csv", "--user-col", "visitor",
                 "--item-col", "product", "--time-col", "at", "--event-col", "kind", "--behaviors",
                 "view,click,buy", "--items", str(items), "--item-id-col", "pid", "--title-col", "label",
                 "--category-col", "genre", "--min-user-events", "2", "--min-item-events", "2",
                 "--session-gap", "1h", "--out", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "cleaning report" in printed and "k-core" in printed
    ds = SequenceDataset.load(out)
    assert (ds.n_users, ds.n_items, ds.meta.n_interactions) == (2, 2, 5)
    assert ds.meta.n_sessions == 3  # alice's buy comes 1 h 59 m after her click
    assert ds.items["title"].to_list() == ["One", "Two"]

    assert main(["data", "stats", str(out), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["users"], stats["items"], stats["interactions"], stats["sessions"]) == (2, 2, 5, 3)
    assert [(b["name"], b["count"]) for b in stats["behaviors"]] == [("view", 3), ("click", 1), ("buy", 1)]
    assert stats["sequence_length"]["p50"] == 2.5
    assert [s["step"] for s in stats["cleaning"]] == ["missing user or item", "unparsable timestamps",
                                                      "events outside the vocabulary", "exact duplicates",
                                                      "funnel collapse", "k-core"]
    assert main(["data", "stats", str(out)]) == 0
    assert "behaviors" in capsys.readouterr().out


def test_stats_on_a_non_dataset_fails_cleanly(tmp_path, capsys):
    assert main(["data", "stats", str(tmp_path)]) == 2
    assert "not a dataset directory" in capsys.readouterr().err


def _leaf_parsers(parser: argparse.ArgumentParser, path: str = "") -> dict[str, argparse.ArgumentParser]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return {path: parser}
    found = {}
    for name, child in subs[0].choices.items():
        found.update(_leaf_parsers(child, f"{path} {name}".strip()))
    return found


def test_every_data_option_is_documented():
    leaves = {k: v for k, v in _leaf_parsers(build_parser()).items() if k.startswith("data ")}
    assert {"data prepare", "data stats"} <= set(leaves)
    for name, parser in leaves.items():
        for action in parser._actions:
            documented = action.help and action.help != argparse.SUPPRESS
            assert documented, f"{name}: {action.option_strings} undocumented"
    contract = ["--input", "--input-format", "--user-col", "--item-col", "--time-col", "--event-col",
                "--rating-col", "--behaviors", "--items", "--item-id-col", "--title-col", "--category-col",
                "--min-user-events", "--min-item-events", "--session-gap", "--out", "--overwrite",
                "--dataset", "--data-dir", "--download"]
    options = {s for a in leaves["data prepare"]._actions for s in a.option_strings}
    assert set(contract) <= options
    assert {"--json"} <= {s for a in leaves["data stats"]._actions for s in a.option_strings}


def test_dataset_needs_a_source_and_download_offline_fails(tmp_path, capsys, monkeypatch):
    out = tmp_path / "ml"
    assert main(["data", "prepare", "--dataset", "ml-100k", "--out", str(out)]) == 2
    assert "needs --data-dir PATH or --download" in capsys.readouterr().err

    def offline(url: str, timeout: float) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(movielens, "urlopen", offline)
    code = main(["data", "prepare", "--dataset", "ml-100k", "--download", "--data-dir", str(tmp_path / "dl"),
                 "--out", str(out)])
    assert code == 2
    assert "download failed" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.skipif(not (ML100K / "ml-100k.inter").is_file(),
                    reason=f"MovieLens-100K not found at {ML100K} (set RECSIM_ML100K)")
def test_prepare_ml100k_from_data_dir(tmp_path, capsys):
    out = tmp_path / "ml"
    assert main(["data", "prepare", "--dataset", "ml-100k", "--data-dir", str(ML100K), "--out", str(out),
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["data", "stats", str(out), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["input_counts"] == {"events": 100_000, "users": 943, "items": 1_682}
    removed = sum(s["removed"] for s in stats["cleaning"])
    assert stats["users"] == 943 and stats["interactions"] + removed == 100_000
