"""Fixtures shared by the test files: small hand-written users and their logs (no training needed).

- ``user`` / ``dataset``: the clickbait user (10 items) and 30 users of its logs; a test file that needs
  other sizes overrides them with its own fixture of the same name (pytest's usual override).
- ``identity``: SB3's identity-env idea for recommendation: six items, and only item 6 is ever worth
  choosing (picked with probability e^3 / (e^3 + 1) = 0.95 when shown, and liked; the others are
  rarely chosen and never liked). Always showing item 6 earns about 7.7 per session of at most 10
  steps; a random slate of one about 1.3. Agents must learn it.
- ``identity_config``: builds the training config of an algorithm on the identity user.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from agents.config import TrainConfig, load_train_config
from recsim_env.config import EnvConfig
from recsim_env.registration import env_config_for
from recsim_env.testing import logged_dataset
from user_models.data.artifact import SequenceDataset
from user_models.handwritten import HandwrittenConfig, HandwrittenUser, clickbait_user

IDENTITY_ENV = {
    "slate_size": 1,
    "max_steps": 10,
    "reward": {"behavior_weights": [0.0, 1.0]},
    "choice": {"repeat": "allow"},
}
"""Env settings of the identity user: slates of one, sessions of at most 10 steps, likes pay."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test runs on one torch thread unless it says otherwise (2-core CI, determinism)."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def user() -> HandwrittenUser:
    return clickbait_user(10)


@pytest.fixture(scope="session")
def dataset(user: HandwrittenUser) -> SequenceDataset:
    return logged_dataset(user, n_users=30, seed=0)


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Per test module, a folder for the CLI: the clickbait user as ``user.json``, 12 users of its logs
    as ``data/`` and ``env.yaml`` (slates of 2, 8 steps, 6 candidates)."""
    root = tmp_path_factory.mktemp("cli")
    user = clickbait_user()
    logged_dataset(user, n_users=12).save(root / "data")
    user.save(root / "user.json")
    (root / "env.yaml").write_text("slate_size: 2\nmax_steps: 8\ncandidates: {n_candidates: 6}\n")
    return root


@dataclass(frozen=True)
class Identity:
    """The identity user and its logs, and the env settings of a training config for it."""

    user: HandwrittenUser
    dataset: SequenceDataset

    def env_config(self, config: TrainConfig) -> EnvConfig:
        return env_config_for(config.env_id, config.env_kwargs)


@pytest.fixture(scope="session")
def identity() -> Identity:
    user = HandwrittenUser(
        HandwrittenConfig(
            behaviors=("view", "like"),
            base_logits=(-2.0,) * 5 + (3.0,),
            genres=(0, 0, 0, 1, 1, 1),
            behavior_table=((1.0, 0.0),) * 5 + ((0.0, 1.0),),
            end_prob_after=(0.1, 0.1, 0.1),
        )
    )
    return Identity(user, logged_dataset(user, n_users=10, n_sessions=1))


@pytest.fixture(scope="session")
def identity_config() -> Callable[..., TrainConfig]:
    """``identity_config(algo, action_mode, timesteps, env_extra=None, **hyperparameters)``."""

    def build(algo: str, action_mode: str, timesteps: int, env_extra: dict[str, Any] | None = None,
              **extra: Any) -> TrainConfig:
        overrides = {
            "n_timesteps": timesteps,
            "n_envs": 8,
            "eval_freq": 0,
            "checkpoint_freq": 0,
            "n_eval_episodes": 40,
            "env_kwargs": {**IDENTITY_ENV, "action_mode": action_mode, **(env_extra or {})},
            "features": {"item_dim": 8, "hidden_dim": 8},
            **extra,
        }
        return load_train_config(algo, overrides=overrides)

    return build
