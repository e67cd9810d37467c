"""How every command turns ``--env-id``, ``--env-config``, ``--env-kwargs`` and ``--device`` into one
:class:`~recsim_env.config.EnvConfig` (through :func:`recsim_env.registration.env_config_for`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import gymnasium as gym

from recsim_env.config import EnvConfig
from recsim_env.factory import is_world
from recsim_env.registration import env_config_for, is_world_id
from user_models.errors import InputError
from user_models.yamlio import load_yaml_file


def env_overrides(path: str | os.PathLike[str] | None) -> dict[str, Any]:
    """The settings of an ``--env-config`` YAML file (empty without one); not a mapping is an error."""
    if path is None:
        return {}
    data = load_yaml_file(path, "env config file") or {}
    if not isinstance(data, Mapping):
        raise InputError(f"{path}: an env config must be a mapping of settings, got {type(data).__name__}")
    return dict(data)


def env_settings(
    model: Any,
    env_id: str,
    overrides: Mapping[str, Any],
    device: str,
    source: str = "",
    world: bool | None = None,
) -> EnvConfig:
    """The env settings of a command: ``env_id``'s registered ones, ``overrides`` and ``--device``.

    The world's defaults (:data:`recsim_env.config.WORLD_DEFAULTS`) are the base when ``model`` is
    ``world`` (or ``world`` says so); a ground-truth env id needs ``--model world``.
    """
    if env_id not in gym.registry:
        raise InputError(f"--env-id {env_id!r}: no such registered env (recsim ids: "
                         f"{', '.join(k for k in gym.registry if k.startswith('RecSim'))})")
    world = is_world(model) if world is None else world
    if is_world_id(env_id) and not world:
        raise InputError(f"--env-id {env_id!r} is the ground-truth world: use --model world")
    return env_config_for(env_id, {**overrides, "device": device}, source or env_id, world=world)


def check_device(name: str, flag: str = "--device") -> str:
    """``name`` if torch can use that device here; else an :class:`InputError` naming it (one line).

    The CLI runs it on every command's ``--device`` before the command starts (see
    :func:`recsim_env.cli.main`), so ``--device cuda`` on a CPU-only torch fails at once, the same way
    for every command.
    """
    if name == "cpu":
        return name
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise InputError(f"{flag} {name!r}: not a torch device (cpu, cuda, cuda:N, mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"{flag} {name}: no CUDA device is available (this torch build or machine)")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise InputError(f"{flag} {name}: only {count} CUDA device(s) are visible")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise InputError(f"{flag} {name}: the MPS device is not available (this torch build or machine)")
    elif device.type != "cpu":
        try:
            torch.empty(0, device=device)
        except (RuntimeError, ValueError, AssertionError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"{flag} {name}: device not available ({first})") from None
    return name
