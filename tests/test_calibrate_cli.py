"""Calibration against logs with known statistics, and the `recsim env` commands."""

import json
from dataclasses import replace

import pytest

from recsim_env.cli import main
from recsim_env.config import Calibration, SimConfig
from recsim_env.env import RecSimEnv
from recsim_env.offline.calibrate import (
    IDLE_BOUNDS,
    OFFSET_BOUNDS,
    CalibrationSettings,
    calibrate,
    format_report,
)
from recsim_env.offline.leave_impressions import consumption_steps, fit_leave
from recsim_env.population import logged_stats
from recsim_env.testing import logged_dataset
from user_models.handwritten import clickbait_user


@pytest.fixture(scope="module")
def user():
    return clickbait_user(10)


@pytest.fixture(scope="module")
def dataset(user):
    return logged_dataset(user, n_users=40, consume_rate=0.5, seed=3)


def test_logged_long_gap_share_recovers_the_generating_process(user, dataset):
    # One consumption per 60 s step with probability 0.5: a gap of 3 steps or more between events of
    # one session needs two misses first, probability 0.5 ** 2 (sessions end after events only).
    stats = logged_stats(dataset, step_seconds=60)
    assert stats.long_gap_share == pytest.approx(0.25, abs=0.05)


def test_logged_stats_recover_the_generating_process(user, dataset):
    stats = logged_stats(dataset, step_seconds=60)
    # logs: one consumption per 60 s step with probability 0.5; sessions end with prob 0.05 per event
    assert stats.consumption_rate == pytest.approx(0.5, abs=0.05)
    assert stats.events_per_session == pytest.approx(20, rel=0.3)


def test_calibration_moves_simulation_to_the_logs(user, dataset, tmp_path):
    settings = CalibrationSettings(n_users=96, n_examples=256, rounds=14, max_steps=150)
    cal = calibrate(user, dataset, SimConfig(slate_size=3), settings, progress=False)
    logged, before, after = cal.report["logged"], cal.report["before"], cal.report["after"]

    def error(stats):
        return sum(abs(stats[key] - logged[key]) / logged[key]
                   for key in ("consumption_rate", "events_per_session"))

    assert error(after) < 0.5 * error(before)
    assert abs(after["consumption_rate"] - logged["consumption_rate"]) < 0.1
    assert "| events per session |" in format_report(cal)
    # the dwell reading of the same gaps is reported beside the one-unit reading the calibration uses
    gaps = cal.report["gap_reading"]
    assert gaps["unit_consumption_rate"] == logged["consumption_rate"]
    assert 0 < gaps["consumption_rate"] <= 1
    assert "Steps from the time gaps, in one unit of 60 s" in format_report(cal)
    back = Calibration.load(cal.save(tmp_path / "cal.json"))
    assert back == cal
    env = RecSimEnv(user, dataset, calibration=tmp_path / "cal.json")
    assert env.core.config.choice.no_choice_logit == pytest.approx(cal.no_choice_logit)


def test_consumption_logs_fit_the_leave_by_likelihood_on_the_rebuilt_steps(user, dataset):
    settings = CalibrationSettings(n_users=32, n_examples=64, rounds=4, max_steps=100, item_wear=False)
    cal = calibrate(user, dataset, SimConfig(slate_size=3), settings, progress=False)
    leave = cal.report["leave"]
    assert leave["source"].startswith("consumption steps rebuilt from the time gaps")
    # the very fit of the steps the gaps give, with the logged consumption rate for the unlogged tail
    rate = cal.report["logged"]["consumption_rate"]
    steps = consumption_steps(user, dataset, cal.report["step_seconds"], rate)
    fit = fit_leave(steps, cal.report["hazard_scale"], OFFSET_BOUNDS, IDLE_BOUNDS, wear=True)
    assert leave["steps"] == len(steps.left) and leave["unlogged_pass"] == pytest.approx(1 - rate)
    assert cal.wear_weights == pytest.approx(fit.wear_weights)
    assert cal.wear_decay == pytest.approx(fit.wear_decay)
    assert cal.end_logit_offset == pytest.approx(fit.end_logit_offset)
    assert "steps rebuilt from the consumption gaps" in format_report(cal)
    # only the no-choice logit is searched by simulation (plus the report's final run)
    assert [r["end_logit_offset"] for r in cal.report["rounds"]] == pytest.approx(
        [fit.end_logit_offset] * len(cal.report["rounds"]))
    assert len({r["no_choice_logit"] for r in cal.report["rounds"]}) == len(cal.report["rounds"]) > 1
    # --no-session-wear, or a consumption rate given instead of read off the timestamps: the search
    for other in (replace(settings, session_wear=False), replace(settings, target_consumption_rate=0.5)):
        searched = calibrate(user, dataset, SimConfig(slate_size=3), other, progress=False)
        assert searched.report["leave"]["source"].startswith("simulated") and searched.wear_weights == ()


@pytest.mark.slow
def test_env_check_and_calibrate_commands(user, dataset, tmp_path, capsys):
    model, data = user.save(tmp_path / "user.json"), dataset.save(tmp_path / "data")
    assert main(["env", "check", "--model", str(model), "--data", str(data), "--slate-size", "2",
                 "--episodes", "1", "--max-steps", "20", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert len(results) == 6 and {r["checkers"] for r in results} == {"passed"}
    assert all(1 <= r["mean_length"] <= 20 for r in results)
    out = tmp_path / "cal.json"
    assert main(["env", "calibrate", "--model", str(model), "--data", str(data), "--out", str(out),
                 "--n-users", "32", "--rounds", "2", "--examples", "64"]) == 0
    assert "wrote" in capsys.readouterr().out and Calibration.load(out).temperature > 0


def test_bad_inputs_exit_2_with_one_line(user, dataset, tmp_path, capsys):
    assert main(["env", "check", "--model", str(user.save(tmp_path / "u.json")), "--data",
                 str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("recsim: error:") and "not a dataset directory" in err and err.count("\n") == 1
