"""Build a :class:`~recsim_env.core.SimulationCore` from a model, a dataset and an :class:`EnvConfig`.

Every env view (single, vector, SB3 adapter, world envs) and every offline tool goes through
:func:`build_env_core`, and every model, whatever form it is given in, through :func:`load_model`, so
they load, check and configure users identically.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from recsim_env.config import WORLD_DEFAULTS, WORLD_MODEL, Calibration, ChoiceConfig, EnvConfig, SimConfig
from recsim_env.core import SimulationCore
from recsim_env.population import (
    Population,
    data_repeat_rule,
    logged_consumption_rate,
    make_population,
    median_session_gap,
)
from recsim_env.spaces import SpaceAdapter
from user_models.checkpoint import load_user_model
from user_models.data.artifact import SequenceDataset
from user_models.data.popularity import item_popularity
from user_models.errors import InputError
from user_models.handwritten import HandwrittenUser
from user_models.protocol import UserModel
from user_models.synthetic import SyntheticWorld
from user_models.synthetic.cascade_users import CascadeUsers

PathLike = str | os.PathLike[str]

def load_dataset(data: PathLike | SequenceDataset) -> SequenceDataset:
    """``data`` itself, or the dataset directory it names."""
    if isinstance(data, SequenceDataset):
        return data
    return SequenceDataset.load(data)


def cascade_dataset(data: PathLike | SequenceDataset) -> SequenceDataset:
    """``data`` loaded, checked to come from the cascade world (``recsim data synth --world cascade``)."""
    dataset = load_dataset(data)
    if "cascade_config" not in dataset.meta.extra:
        raise InputError(f"dataset {dataset.meta.name!r} was not written by the cascade world (no "
                         "cascade_config in its meta.json); make one with "
                         "`recsim data synth --world cascade`")
    return dataset


def is_world(model: Any) -> bool:
    """Whether ``model`` names the synthetic ground-truth world (:data:`WORLD_MODEL`)."""
    return isinstance(model, str | os.PathLike) and os.fspath(model) == WORLD_MODEL


def load_model(model: PathLike | UserModel, dataset: SequenceDataset, device: torch.device | str = "cpu"
               ) -> UserModel:
    """The one model loader: ``model`` itself, the world, a hand-written user or a checkpoint.

    Args:
        model: a :class:`UserModel` (returned as it is), :data:`WORLD_MODEL` (the synthetic dataset's
            ground truth, rebuilt from its metadata: the organic world, or the cascade world for
            ``recsim data synth --world cascade`` data), a ``.json`` hand-written user
            (:class:`~user_models.handwritten.HandwrittenUser`) or a checkpoint directory.
        dataset: the dataset the model simulates (a checkpoint is checked against it).
        device: where a model loaded here goes.

    (The casts: implementations narrow the protocol's state type to their own, which mypy reports as a
    conflict.)
    """
    if not isinstance(model, str | os.PathLike):
        return model
    if is_world(model):  # the ground truth that wrote the dataset: the cascade or the organic world
        if "cascade_config" in dataset.meta.extra:
            return cast(UserModel, CascadeUsers.from_dataset(dataset, torch.device(device)))
        return cast(UserModel, SyntheticWorld.from_dataset(dataset, torch.device(device)))
    if Path(model).suffix == ".json":
        return cast(UserModel, HandwrittenUser.load(model, torch.device(device)))
    return cast(UserModel, load_user_model(Path(model), device=torch.device(device), dataset=dataset))


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
    population: Population | None = None,
    item_embeddings: torch.Tensor | None = None,
) -> SimulationCore:
    """A simulation core of ``n_users`` rows (not yet reset).

    Args:
        model: anything :func:`load_model` takes.
        data: The dataset (or its directory) the model was trained on; the population and the item
            popularity come from its training split.
        config: Dynamics and sizes.
        n_users: Batch size.
        device: Where a model loaded from a path goes (a given model keeps its own device).
        calibration: A :class:`Calibration` or its JSON file; overrides the config's calibrated fields.
        population: Where users come from (default: ``config.population`` over the dataset); e.g. a
            fixed set of held-out prefixes.
        item_embeddings: The item vectors the recommender side sees (see :class:`SimulationCore`);
            None: the model's own.
    """
    dataset = load_dataset(data)
    user_model = load_model(model, dataset, device)
    check_compatible(user_model, dataset)
    if calibration is not None:
        if not isinstance(calibration, Calibration):
            calibration = Calibration.load(calibration)
        config = calibration.apply(config)
    gap = config.gap_seconds if config.gap_seconds is not None else median_session_gap(dataset)
    config = resolve_from_data(config, dataset, gap)
    if population is None:
        population = make_population(config.population, dataset, user_model, gap)
    popularity = torch.as_tensor(item_popularity(dataset).astype(np.float64), device=user_model.device)
    return SimulationCore(user_model, population, config, n_users, popularity, gap, item_embeddings)


def resolve_from_data(config: SimConfig, dataset: SequenceDataset, step_seconds: float) -> SimConfig:
    """``config`` with the settings left to the data decided: the repeat policy and window (from the
    logs' repeat rates, :func:`~recsim_env.population.data_repeat_rule`) and the learned hazard's
    per-step scale (the logged consumption rate, :func:`~recsim_env.population.logged_consumption_rate`)."""
    if config.choice.repeat is None:
        repeat, window = data_repeat_rule(dataset, config.history_len)
        config = replace(config, choice=replace(config.choice, repeat=repeat, repeat_window=window))
    if config.leave.hazard_scale is None:
        scale = logged_consumption_rate(dataset, step_seconds)
        config = replace(config, leave=replace(config.leave, hazard_scale=scale))
    return config


def build_env_core(
    model: PathLike | UserModel,
    data: PathLike | SequenceDataset,
    config: EnvConfig,
    n_users: int = 1,
    population: Population | None = None,
    item_embeddings: torch.Tensor | None = None,
    mask_rule: ChoiceConfig | None = None,
) -> tuple[SimulationCore, SpaceAdapter]:
    """The core and the space adapter behind an env of ``config`` with ``n_users`` rows.

    Shared by every env view and offline tool, so one :class:`EnvConfig` means the same simulator
    everywhere (``population`` and ``item_embeddings`` as for :func:`build_core`; ``mask_rule`` as for
    :class:`~recsim_env.spaces.SpaceAdapter`).
    """
    core = build_core(model, data, config.sim_config(), n_users=n_users, device=config.device,
                      calibration=config.loaded_calibration(), population=population,
                      item_embeddings=item_embeddings)
    return core, SpaceAdapter(core, config.action_mode, config.observation_mode, strict=config.strict,
                              mask_rule=mask_rule)


def world_config(config: EnvConfig | None = None, **settings: Any) -> EnvConfig:
    """The settings of ``RecSim-World-v0``: ``config`` (default: :data:`WORLD_DEFAULTS`) with ``settings``."""
    base = config if config is not None else EnvConfig(**WORLD_DEFAULTS)
    return EnvConfig.from_mapping(settings, "RecSim-World-v0", base)
