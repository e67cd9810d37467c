"""One oracle: the core's choice utilities, the same through every env view and every tool."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recsim_env.cli import main
from recsim_env.config import EnvConfig
from recsim_env.env import RecSimEnv
from recsim_env.offline.rollout import build_policy, build_simulator, rollout
from recsim_env.sb3 import RecSimVecEnv
from recsim_env.testing import logged_dataset
from recsim_env.vector import RecSimVectorEnv
from user_models.handwritten import clickbait_user

REPEATS = ("allow", "penalise", "mask")


@pytest.mark.parametrize("repeat", REPEATS)
def test_every_view_serves_the_cores_choice_utilities(user, dataset, repeat: str) -> None:
    config = EnvConfig(slate_size=3, history_len=6, choice={"repeat": repeat, "temperature": 0.7})
    items = np.tile(np.arange(0, user.n_items + 1), (4, 1))
    vector = RecSimVectorEnv(4, user, dataset, config)
    vector.reset(seed=3)
    expected = vector.core.choice_utilities(vector.core.catalogue()).numpy()
    scores = vector.oracle_scores(items)
    np.testing.assert_array_equal(scores[:, 1:], expected)
    assert np.isneginf(scores[:, 0]).all()  # id 0 is an empty slot
    adapter = RecSimVecEnv(RecSimVectorEnv(4, user, dataset, config))
    adapter.seed(3)
    adapter.reset()
    np.testing.assert_array_equal(adapter.oracle_scores(items), scores)
    single = RecSimEnv(user, dataset, config)
    single.reset(seed=3)
    row = single.core.choice_utilities(single.core.catalogue()).numpy()[0]
    np.testing.assert_array_equal(single.oracle_scores(items[0])[1:], row)
    if repeat == "penalise":  # the penalty is in the oracle's view, as it is in the users' choice
        allow = RecSimVectorEnv(4, user, dataset, EnvConfig(slate_size=3, history_len=6,
                                                            choice={"repeat": "allow", "temperature": 0.7}))
        allow.reset(seed=3)
        free = allow.core.choice_utilities(allow.core.catalogue()).numpy()
        seen = vector.core.repeated(vector.core.catalogue()).numpy()
        assert seen.any()
        np.testing.assert_allclose(expected, np.where(seen, free - 2.0, free), rtol=1e-6)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("oracle")
    user = clickbait_user()
    logged_dataset(user, n_users=12).save(root / "data")
    user.save(root / "user.json")
    return root


@pytest.mark.parametrize("repeat", REPEATS)
def test_agent_eval_and_benchmark_oracles_pick_identical_slates(files, capsys, repeat: str) -> None:
    """``recsim agent eval --policy oracle`` and ``recsim benchmark`` run the same harness on the same
    users: equal returns, and the slates of the API's rollout equal the benchmark's trajectories."""
    (files / f"{repeat}.yaml").write_text(f"slate_size: 2\nmax_steps: 8\nchoice: {{repeat: {repeat}}}\n")
    common = ["--model", str(files / "user.json"), "--data", str(files / "data")]
    out = files / f"bench_{repeat}"
    assert main(["benchmark", *common, "--env-config", str(files / f"{repeat}.yaml"), "--policies", "oracle",
                 "--episodes", "6", "--seeds", "1", "--resamples", "50", "--save-trajectories", "6",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["agent", "eval", *common, "--policy", "oracle", "--episodes", "6", "--json",
                 "--env-kwargs", "slate_size=2", "max_steps=8", f"choice.repeat={repeat}"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    benchmarked = json.loads((out / "results.json").read_text())
    ret = next(m for m in benchmarked["metrics"] if m["policy"] == "oracle" and m["metric"] == "return")
    assert evaluated["return"]["mean"] == pytest.approx(ret["estimate"], rel=0, abs=1e-12)

    sim = build_simulator(str(files / "user.json"), files / "data",
                          EnvConfig(slate_size=2, max_steps=8, choice={"repeat": repeat}), 6)
    run = rollout(sim.core, sim.adapter, build_policy("oracle", sim, 0), seed=0)
    lines = (out / "trajectories" / "oracle.jsonl").read_text().splitlines()[1:]  # after the header
    frames = [json.loads(line) for line in lines]
    shown = [[slot["item"] for slot in f["slate"]] for f in frames if f["step"] >= 1]  # after each step
    expected = [slate.tolist() for episode in run.episodes for slate in episode.slates]
    assert shown == expected and len(expected) > 6
