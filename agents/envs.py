"""Building the simulator's envs for agents: one place that knows how ``recsim_env`` is constructed.

The user model is loaded once per :class:`SimulatorSpec` and shared by every env built from it (a
checkpoint is read once, not once per env row).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from agents.policy import ActionLayout
from user_models.data.artifact import SequenceDataset


@dataclass(frozen=True)
class SimulatorSpec:
    """What to simulate: a user model (checkpoint directory or loaded model) over a dataset.

    Attributes:
        model: a user-model checkpoint directory, or an already loaded model (anything implementing
            :class:`user_models.protocol.UserModel`).
        data: the dataset (or its directory) the population is drawn from (training split only).
        device: torch device of the simulation.
    """

    model: Any
    data: str | Path | SequenceDataset
    device: str = "cpu"

    @cached_property
    def user_model(self) -> Any:
        """The loaded user model (loaded on first use, then shared)."""
        if isinstance(self.model, str | Path):
            from user_models.checkpoint import load_user_model

            return load_user_model(self.model, device=self.device)
        return self.model

    @cached_property
    def dataset(self) -> SequenceDataset:
        """The dataset (read on first use, then shared)."""
        return self.data if isinstance(self.data, SequenceDataset) else SequenceDataset.load(self.data)

    def describe(self) -> dict[str, str]:
        """Where the simulation came from, for run records."""
        model = str(self.model) if isinstance(self.model, str | Path) else type(self.model).__name__
        data = self.data.meta.name if isinstance(self.data, SequenceDataset) else str(self.data)
        return {"model": model, "data": data, "device": self.device}


def make_vec_env(
    spec: SimulatorSpec, env_id: str, env_kwargs: Mapping[str, Any], n_envs: int, seed: int
) -> Any:
    """An SB3 ``VecEnv`` of ``n_envs`` simulated users on one batched core, seeded with ``seed``.

    ``gym.make_vec`` builds the native vector env (so the env id's registered arguments apply, e.g.
    ``RecSim-LongTerm-v0``'s impatient users); :class:`recsim_env.sb3.RecSimVecEnv` adapts it to SB3 and
    ``VecMonitor`` records episode returns. ``env_kwargs`` may be plain (YAML/JSON) values:
    the env turns mappings into its frozen configs (:func:`recsim_env.config.section_config`).
    """
    import gymnasium as gym
    from stable_baselines3.common.vec_env import VecMonitor

    import recsim_env  # noqa: F401  (registers the env ids)
    from recsim_env.sb3 import RecSimVecEnv

    vector = gym.make_vec(
        env_id,
        num_envs=n_envs,
        vectorization_mode="vector_entry_point",
        model=spec.user_model,
        data=spec.dataset,
        device=spec.device,
        **env_kwargs,
    )
    venv = RecSimVecEnv(vector)  # type: ignore[arg-type]
    venv.seed(seed)
    return VecMonitor(venv)


def action_layout(venv: Any, action_mode: str) -> ActionLayout:
    """The :class:`ActionLayout` of a VecEnv's action space in ``action_mode``."""
    from gymnasium import spaces

    space = venv.action_space
    if isinstance(space, spaces.Discrete):
        return ActionLayout(action_mode, 1, int(space.n), discrete=True)  # type: ignore[arg-type]
    if isinstance(space, spaces.MultiDiscrete):
        nvec = np.asarray(space.nvec).ravel()  # slate mode: choice = item id, 0 an empty slot
        return ActionLayout(action_mode, len(nvec), int(nvec[0]))  # type: ignore[arg-type]
    return ActionLayout(action_mode, 1, 1)  # type: ignore[arg-type]  # embedding mode: ActionLayout raises


class CoreOracle:
    """The simulator's own choice utilities for the current users of a VecEnv (privileged access).

    Reads each env's simulation core (``core`` attribute): the user model's logits for the items,
    divided by the choice temperature and lowered by the repeat penalty, exactly the utilities the
    simulated user chooses by. Rows are in the VecEnv's order; a core that serves several rows (the
    batched adapter) is asked once.
    """

    def __init__(self, venv: Any) -> None:
        self.venv = venv

    def item_logits(self, items: np.ndarray) -> np.ndarray:
        import torch

        cores = list({id(core): core for core in self.venv.get_attr("core")}.values())
        parts = []
        for core in cores:
            catalogue = torch.arange(1, core.n_items + 1, device=core.device).expand(core.n_users, -1)
            choice = core.config.choice
            utility = core.catalogue_logits() / choice.temperature
            if choice.repeat == "penalise":
                utility = utility - choice.repeat_penalty * core.repeated(catalogue).float()
            parts.append(torch.nn.functional.pad(utility, (1, 0)).cpu().numpy())  # column 0: padding
        full = np.concatenate(parts, axis=0)
        return np.take_along_axis(full, items, axis=1)


def simulator_scorer(venv: Any) -> CoreOracle:
    """The privileged scorer :class:`~agents.baselines.OracleGreedy` ranks by."""
    return CoreOracle(venv)
