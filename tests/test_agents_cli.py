"""``recsim agent train|eval`` end to end on a tiny learned user model, and hyperparameter files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from agents.config import ALGOS, default_hyperparams_path, load_train_config, parse_overrides
from recsim_env.cli import main
from tests._user_model_data import cyclic_dataset
from user_models.errors import InputError

TINY_MODEL = [
    "--dim",
    "16",
    "--layers",
    "1",
    "--heads",
    "2",
    "--max-len",
    "8",
    "--batch-size",
    "16",
    "--no-progress",
]
TINY_AGENT = [
    "n_steps=16",
    "batch_size=32",
    "eval_freq=32",
    "checkpoint_freq=32",
    "n_eval_episodes=4",
    "env_kwargs.max_steps=5",
    "env_kwargs.candidates.n_candidates=5",
    "features.item_dim=8",
    "features.hidden_dim=8",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("agent_cli")
    cyclic_dataset().save(root / "data")
    assert (
        main(
            [
                "user-model",
                "train",
                "--data",
                str(root / "data"),
                "--out",
                str(root / "model"),
                "--epochs",
                "2",
                "--seed",
                "1",
                *TINY_MODEL,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "agent",
                "train",
                "--algo",
                "ppo",
                "--model",
                str(root / "model"),
                "--data",
                str(root / "data"),
                "--out",
                str(root / "agent"),
                "--timesteps",
                "64",
                "--num-envs",
                "4",
                "--seed",
                "0",
                "--init-item-embeddings",
                "--no-progress",
                "--hyperparams",
                *TINY_AGENT,
            ]
        )
        == 0
    )
    return root


def test_train_writes_agent_checkpoints_logs_and_record(trained: Path) -> None:
    out = trained / "agent"
    assert (out / "final" / "policy.safetensors").is_file() and (out / "best" / "agent.json").is_file()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_32", "step_64"]
    assert any((out / "tensorboard").rglob("events.out.tfevents.*"))
    record = json.loads((out / "train.json").read_text())
    assert record["timesteps"] == 64 and record["config"]["features"]["init_item_embeddings"] is True
    assert record["final_eval"]["return"]["n"] == 4


def _eval(trained: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    code = main(
        [
            "agent",
            "eval",
            "--model",
            str(trained / "model"),
            "--data",
            str(trained / "data"),
            "--episodes",
            "6",
            "--num-envs",
            "3",
            "--json",
            *argv,
        ]
    )
    assert code == 0
    return json.loads(capsys.readouterr().out)


def test_eval_a_trained_agent_uses_its_env_settings(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = _eval(trained, capsys, "--policy", str(trained / "agent"))
    assert result["env_kwargs"]["action_mode"] == "candidates" and result["return"]["n"] == 6


@pytest.mark.parametrize("policy", ["random", "popular", "oracle", "linucb", "mmr"])
def test_eval_baselines(trained: Path, capsys: pytest.CaptureFixture[str], policy: str) -> None:
    argv = ["--policy", policy, "--env-kwargs", "slate_size=2", "max_steps=5"]
    if policy == "mmr":
        argv += ["--greedy-model", str(trained / "greedy")]
    result = _eval(trained, capsys, *argv)
    assert result["return"]["n"] == 6 and result["return"]["mean"] >= 0
    assert result["length"]["mean"] <= 5


def test_same_seed_same_evaluation(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--policy", "random", "--env-kwargs", "max_steps=5", "--seed", "3"]
    assert _eval(trained, capsys, *argv) == _eval(trained, capsys, *argv)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "--policy", "{root}/nowhere"], "not an agent directory"),
        (["train", "--algo", "ppo", "--out", "{root}/x", "--hyperparams", "n_stepz=3"], "takes no argument"),
        (
            ["train", "--algo", "dqn", "--out", "{root}/x", "--hyperparams", "env_kwargs.slate_size=3"],
            "slate_size = 1",
        ),
        (
            ["train", "--algo", "sac", "--out", "{root}/x", "--hyperparams", "env_kwargs.action_mode=slate"],
            "cannot act in action_mode",
        ),
        (["train", "--algo", "ppo", "--out", "{root}/x", "--hyperparams", "gamma"], "expected KEY=VALUE"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    trained: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    command, *rest = [a.format(root=trained) for a in argv]
    code = main(["agent", command, "--model", str(trained / "model"), "--data", str(trained / "data"), *rest])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("algo", ALGOS)
def test_shipped_hyperparameters_load_for_every_algo_and_env_id(algo: str) -> None:
    policies = {"maskable_ppo": "SlateRankingPolicy", "torch_ppo": "PooledSlatePolicy"}
    expected = policies.get(algo, "MultiInputPolicy")
    for env_id in ("RecSim-v0", "RecSim-LongTerm-v0"):
        config = load_train_config(algo, env_id=env_id)
        assert config.policy == expected and config.n_timesteps > 0
    assert default_hyperparams_path(algo).is_file()


def test_overrides_reach_into_mappings_and_parse_yaml_values() -> None:
    overrides = parse_overrides(
        ["learning_rate=1e-4", "env_kwargs.slate_size=3", "policy_kwargs.net_arch=[8, 8]"]
    )
    config = load_train_config("ppo", overrides=overrides)
    assert config.algo_kwargs["learning_rate"] == pytest.approx(1e-4)
    assert config.env_kwargs == {"action_mode": "candidates", "observation_mode": "history", "slate_size": 3}
    assert config.algo_kwargs["policy_kwargs"] == {"net_arch": [8, 8]}


def test_missing_section_names_the_file(tmp_path: Path) -> None:
    file = tmp_path / "ppo.yml"
    file.write_text("Other-v0:\n  n_timesteps: 10\n")
    with pytest.raises(InputError, match=r"ppo\.yml: no section 'RecSim-v0' \(sections: Other-v0\)"):
        load_train_config("ppo", file)
