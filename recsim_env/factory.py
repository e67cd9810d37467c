"""Build a :class:`~recsim_env.core.SimulationCore` from a model and a dataset, given as objects or paths.

Every env view (single, vector, SB3) goes through :func:`build_core`, so they load, check and configure
users identically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import torch

from recsim_env.config import (
    Calibration,
    CandidateConfig,
    ChoiceConfig,
    LeaveConfig,
    PopulationConfig,
    RewardConfig,
    SimConfig,
    section_config,
)
from recsim_env.core import SimulationCore
from recsim_env.population import item_popularity, make_population, median_session_gap
from recsim_env.spaces import ACTION_MODES, SpaceAdapter
from user_models.data.artifact import SequenceDataset
from user_models.errors import InputError
from user_models.protocol import UserModel

PathLike = str | os.PathLike[str]


def load_dataset(data: PathLike | SequenceDataset) -> SequenceDataset:
    """``data`` itself, or the dataset directory it names."""
    if isinstance(data, SequenceDataset):
        return data
    return SequenceDataset.load(data)


def load_model(model: PathLike | UserModel, device: torch.device, dataset: SequenceDataset) -> UserModel:
    """``model`` itself, or the checkpoint directory it names (loaded onto ``device``).

    A ``.json`` file is read as a hand-written user (:class:`~user_models.handwritten.HandwrittenUser`).
    (The casts: implementations narrow the protocol's state type to their own, which mypy reports as a
    conflict.)
    """
    if not isinstance(model, str | os.PathLike):
        return model
    if Path(model).suffix == ".json":
        from user_models.handwritten import HandwrittenUser

        return cast(UserModel, HandwrittenUser.load(model, device))
    from user_models.checkpoint import load_user_model

    return cast(UserModel, load_user_model(Path(model), device=device, dataset=dataset))


def check_compatible(model: UserModel, dataset: SequenceDataset) -> None:
    """Raise InputError unless the model and the dataset share the catalogue and behavior vocabulary."""
    if model.n_items != dataset.n_items:
        raise InputError(f"model has {model.n_items} items, dataset {dataset.meta.name!r} has "
                         f"{dataset.n_items}; use the dataset the model was trained on")
    if tuple(model.behaviors) != tuple(dataset.behaviors):
        raise InputError(f"model behaviors {tuple(model.behaviors)} differ from dataset "
                         f"{dataset.meta.name!r} behaviors {tuple(dataset.behaviors)}")


def build_core(
    model: PathLike | UserModel,
    data: PathLike | SequenceDataset,
    config: SimConfig,
    n_users: int = 1,
    device: torch.device | str = "cpu",
    calibration: PathLike | Calibration | None = None,
) -> SimulationCore:
    """A simulation core of ``n_users`` rows (not yet reset).

    Args:
        model: A :class:`UserModel` or a checkpoint directory.
        data: The dataset (or its directory) the model was trained on; the population and the item
            popularity come from its training split.
        config: Dynamics and sizes.
        n_users: Batch size.
        device: Where a model loaded from a path goes (a given model keeps its own device).
        calibration: A :class:`Calibration` or its JSON file; overrides the config's calibrated fields.
    """
    dataset = load_dataset(data)
    user_model = load_model(model, torch.device(device), dataset)
    check_compatible(user_model, dataset)
    if calibration is not None:
        if not isinstance(calibration, Calibration):
            calibration = Calibration.load(calibration)
        config = calibration.apply(config)
    gap = config.gap_seconds if config.gap_seconds is not None else median_session_gap(dataset)
    population = make_population(config.population, dataset, user_model, gap)
    popularity = torch.as_tensor(item_popularity(dataset), device=user_model.device)
    return SimulationCore(user_model, population, config, n_users, popularity, gap)


def build_env_core(
    model: PathLike | UserModel,
    data: PathLike | SequenceDataset,
    *,
    n_users: int = 1,
    slate_size: int = 5,
    action_mode: str = "slate",
    observation_mode: str = "history",
    max_steps: int = 100,
    history_len: int = 50,
    reward: RewardConfig | Mapping[str, Any] | None = None,
    population: PopulationConfig | Mapping[str, Any] | None = None,
    choice: ChoiceConfig | Mapping[str, Any] | None = None,
    leave: LeaveConfig | Mapping[str, Any] | None = None,
    candidates: CandidateConfig | Mapping[str, Any] | None = None,
    calibration: PathLike | Calibration | None = None,
    no_choice_event: bool = False,
    strict: bool = False,
    device: torch.device | str = "cpu",
) -> tuple[SimulationCore, SpaceAdapter]:
    """The core and the space adapter behind an env with the given arguments (see :class:`RecSimEnv`).

    Shared by the single env and the vector views, so one set of keyword arguments means the same
    simulator everywhere. ``reward``, ``population``, ``choice``, ``leave`` and ``candidates`` take
    their frozen config or a plain mapping of its fields (:func:`recsim_env.config.section_config`).
    """
    if action_mode not in ACTION_MODES:
        raise ValueError(f"action_mode must be one of {ACTION_MODES}, got {action_mode!r}")
    candidate_config: CandidateConfig | None = section_config("candidates", candidates)
    if action_mode == "candidates" and candidate_config is None:
        candidate_config = CandidateConfig()
    config = SimConfig(
        slate_size=slate_size,
        max_steps=max_steps,
        history_len=history_len,
        choice=section_config("choice", choice) or ChoiceConfig(),
        leave=section_config("leave", leave) or LeaveConfig(),
        reward=section_config("reward", reward) or RewardConfig(),
        population=section_config("population", population) or PopulationConfig(),
        candidates=candidate_config if action_mode == "candidates" else None,
        no_choice_event=no_choice_event,
    )
    core = build_core(model, data, config, n_users=n_users, device=device, calibration=calibration)
    return core, SpaceAdapter(core, action_mode, observation_mode, strict=strict)
