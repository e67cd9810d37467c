"""Held-out-policy fidelity: the simulator fitted to logs of policy A predicts the logs of policy B."""

from __future__ import annotations

import json

import pytest

from recsim_env.cli import main
from recsim_env.config import EnvConfig
from recsim_env.offline.fidelity import heldout_policy_fidelity
from recsim_env.population import logged_stats, median_session_gap
from user_models.data.artifact import SequenceDataset


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    root = tmp_path_factory.mktemp("heldout")
    for policy in ("A", "B"):
        assert main(["data", "synth", "--world", "cascade", "--logging-policy", policy, "--users", "120",
                     "--items", "150", "--seed", "5", "--out", str(root / policy)]) == 0
    return root


def test_predicted_statistics_are_compared_with_the_held_out_logs(logs) -> None:
    a, b = SequenceDataset.load(logs / "A"), SequenceDataset.load(logs / "B")
    result = heldout_policy_fidelity("world", a, b, EnvConfig(slate_size=5), n_users=60, seed=0)
    expected = logged_stats(b, median_session_gap(a))
    assert result.logged["events_per_session"] == pytest.approx(expected.events_per_session)
    assert result.logged["consumption_rate"] == pytest.approx(expected.consumption_rate)
    for key in ("events_per_session", "consumption_rate"):
        error = (result.simulated[key] - result.logged[key]) / result.logged[key]
        assert result.errors[key] == pytest.approx(error)
    assert abs(sum(result.simulated["behavior_mix"]) - 1) < 1e-9
    assert 0 <= result.errors["behavior_mix_js"] <= 1
    assert result.unmatched_items == len(set(b.items["raw_id"].to_list()) - set(a.items["raw_id"].to_list()))


def test_fidelity_command_writes_the_held_out_section(logs, tmp_path, capsys) -> None:
    out = tmp_path / "fidelity"
    assert main(["fidelity", "--model", "world", "--data", str(logs / "A"), "--heldout-logs", str(logs / "B"),
                 "--ground-truth", "no", "--users", "40", "--out", str(out)]) == 0
    report = json.loads((out / "fidelity.json").read_text())["heldout_policy_fidelity"]
    assert set(report["errors"]) >= {"events_per_session", "consumption_rate", "return_per_session"}
    assert "## Held-out policy" in (out / "fidelity.md").read_text()
    capsys.readouterr()
    assert main(["fidelity", "--model", "world", "--data", str(logs / "A"), "--heldout-logs",
                 str(tmp_path / "missing"), "--ground-truth", "no", "--out", str(tmp_path / "f2")]) == 2
