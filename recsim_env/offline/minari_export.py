"""Write simulated sessions as a Minari dataset, for offline RL libraries.

Minari's ``DataCollector`` wrapper needs jax; this module builds Minari's ``EpisodeBuffer`` objects
directly from the benchmark loop's :class:`~recsim_env.offline.benchmark.Transitions` and hands them to
``minari.create_dataset_from_buffers``. The dataset is stored in Minari's ``arrow`` format (pyarrow is
already a dependency; no h5py needed) under ``$MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``),
and ``minari.load_dataset(dataset_id)`` reads it back.

Infos: the numeric entries present in every step's info (and in the reset info) are kept, one value per
observation (Minari stores ``T + 1`` infos); others (strings, ragged values) are left out and listed in
the dataset description.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from recsim_env.config import EnvConfig
from recsim_env.factory import is_world
from recsim_env.offline.benchmark import policy_label
from recsim_env.offline.rollout import Transitions, build_policy, build_simulator, rollout
from recsim_env.registration import register_envs
from user_models.errors import InputError


def _require_minari() -> Any:
    try:
        import minari
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise InputError("Minari export needs minari: pip install 'recsim-env[minari]'") from exc
    return minari


def _stack(space: gym.Space, values: Sequence[Any]) -> Any:
    """Stack per-step values of ``space`` into what Minari's buffers hold (dicts of arrays)."""
    if isinstance(space, gym.spaces.Dict):
        return {key: _stack(sub, [v[key] for v in values]) for key, sub in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(_stack(sub, [v[i] for v in values]) for i, sub in enumerate(space.spaces))
    return np.stack([np.asarray(v, dtype=space.dtype) for v in values])


def common_numeric_infos(infos: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """Info entries present in every dict with one numeric shape, stacked; and the dropped keys.

    Scalars become a list of Python numbers (Minari 0.5.4's arrow reader cannot decode stacked 0-d
    arrays); arrays become one stacked array.
    """
    keys = set().union(*(info.keys() for info in infos))
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    for key in sorted(keys):
        values = [info.get(key) for info in infos]
        arrays = [np.asarray(v) for v in values if v is not None]
        numeric = len(arrays) == len(values) and all(
            a.dtype.kind in "biuf" and a.shape == arrays[0].shape for a in arrays
        )
        if numeric:
            kept[key] = [a.item() for a in arrays] if arrays[0].ndim == 0 else np.stack(arrays)
        else:
            dropped.append(key)
    return kept, dropped


def episode_buffers(
    episodes: Sequence[Transitions], observation_space: gym.Space, action_space: gym.Space
) -> tuple[list[Any], list[str]]:
    """Minari ``EpisodeBuffer`` objects for ``episodes`` and the info keys that could not be stored."""
    from minari.data_collector.episode_buffer import EpisodeBuffer

    buffers = []
    dropped: set[str] = set()
    for i, ep in enumerate(episodes):
        infos, lost = common_numeric_infos(ep.infos)
        dropped.update(lost)
        buffers.append(
            EpisodeBuffer(
                id=i,
                options={"population_seed": ep.seed, "row": ep.row},
                observations=_stack(observation_space, ep.observations),
                actions=_stack(action_space, ep.actions),
                rewards=ep.rewards.tolist(),
                terminations=ep.terminations.tolist(),
                truncations=ep.truncations.tolist(),
                infos=infos or None,
            )
        )
    return buffers, sorted(dropped)


def write_minari_dataset(
    episodes: Sequence[Transitions],
    dataset_id: str,
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    env_spec: gym.envs.registration.EnvSpec | None = None,
    algorithm_name: str,
    description: str,
    overwrite: bool = False,
) -> Any:
    """Write ``episodes`` as the Minari dataset ``dataset_id``; returns the ``MinariDataset``.

    Args:
        episodes: rollouts of one policy.
        dataset_id: Minari id, ``(namespace/)name-vN``.
        observation_space: the env's observation space.
        action_space: the env's action space.
        env_spec: stored so ``dataset.recover_environment()`` works; its kwargs must be JSON values
            (see :func:`env_spec_for`); None stores the spaces alone.
        algorithm_name: the policy's name, stored in the metadata.
        description: free text stored in the metadata.
        overwrite: replace an existing local dataset of that id instead of failing.

    Raises:
        InputError: no episodes, a malformed id, or an existing dataset without ``overwrite``.
    """
    minari = _require_minari()
    if not episodes:
        raise InputError("Minari export needs at least one episode")
    if check_minari_target(dataset_id, overwrite):
        minari.delete_dataset(dataset_id)
    buffers, dropped = episode_buffers(episodes, observation_space, action_space)
    if dropped:
        description = f"{description} Info keys not stored (non-numeric or ragged): {', '.join(dropped)}."
    with warnings.catch_warnings():
        # Minari nags about publishing metadata (code permalink, e-mail, eval env) that a local,
        # simulator-generated dataset does not have.
        warnings.filterwarnings(
            "ignore", message=r"`(code_permalink|author_email|eval_env)`", category=UserWarning
        )
        return minari.create_dataset_from_buffers(
            dataset_id=dataset_id,
            buffer=buffers,
            env=env_spec,
            algorithm_name=algorithm_name,
            author="recsim-env",
            observation_space=observation_space,
            action_space=action_space,
            description=description,
            data_format="arrow",
        )


def env_spec_for(model: str, data: str, settings: EnvConfig) -> gym.envs.registration.EnvSpec:
    """The env id's spec with the run's arguments, so ``dataset.recover_environment()`` rebuilds it.

    ``RecSim-v0`` for a learned model, ``RecSim-World-v0`` for ``--model world`` (the ground truth).
    """
    register_envs()
    kwargs = {"data": data, **settings.to_mapping()}  # plain JSON values
    if is_world(model):
        return dataclasses.replace(gym.spec("RecSim-World-v0"), kwargs=kwargs)
    return dataclasses.replace(gym.spec("RecSim-v0"), kwargs={"model": model, **kwargs})


def check_minari_target(dataset_id: str, overwrite: bool) -> bool:
    """Validate ``dataset_id`` before any work; return whether a local dataset of that id exists.

    Minari owns its storage (``$MINARI_DATASETS_PATH``), so its own rule applies: an existing id is
    replaced only with ``overwrite``, by :func:`minari.delete_dataset`, right before the new one is
    written.

    Raises:
        InputError: a malformed id, or an existing dataset without ``overwrite``.
    """
    minari = _require_minari()
    from minari.dataset.minari_dataset import parse_dataset_id
    from minari.storage.datasets_root_dir import get_dataset_path

    try:
        parse_dataset_id(dataset_id)
    except Exception as exc:  # minari raises bare errors on malformed ids
        raise InputError(
            f"--dataset-id {dataset_id!r}: not a Minari id ((namespace/)name-vN): {exc}"
        ) from exc
    exists = dataset_id in minari.list_local_datasets()
    if exists and not overwrite:
        raise InputError(
            f"Minari dataset {dataset_id!r} already exists at {get_dataset_path(dataset_id)}; "
            "pass --overwrite to replace it"
        )
    return exists


def export_minari(
    model: str,
    data: str,
    policy: str,
    n_episodes: int,
    dataset_id: str,
    settings: EnvConfig,
    *,
    seed: int = 0,
    overwrite: bool = False,
) -> Any:
    """Run ``policy`` on ``n_episodes`` users of the population of ``seed`` and write a Minari dataset.

    The episodes come from the rollout harness (:func:`recsim_env.offline.rollout.rollout`), so they are
    the same users, random streams and actions as a benchmark run with that seed. Each episode's
    metadata holds ``options = {"population_seed", "row"}``, which identify its user.
    """
    check_minari_target(dataset_id, overwrite)  # before the rollout: fail fast on an existing id
    sim = build_simulator(model, data, settings, n_episodes)
    run = rollout(
        sim.core,
        sim.adapter,
        build_policy(policy, sim, seed, None),
        seed,
        policy_name=policy_label(policy),
        record_observations=True,
    )
    description = (
        f"recsim-env sessions of policy {policy_label(policy)!r} on model {model!r}, data {data!r}, "
        f"population seed {seed}; env settings {json.dumps(settings.to_mapping())}."
    )
    return write_minari_dataset(
        run.transitions(),
        dataset_id,
        sim.adapter.observation_space,
        sim.adapter.action_space,
        env_spec=env_spec_for(model, data, settings),
        algorithm_name=policy_label(policy),
        description=description,
        overwrite=overwrite,
    )
