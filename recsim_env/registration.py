"""Gymnasium registration of the recsim-env ids (run on ``import recsim_env``).

- ``RecSim-v0``: the learned simulator with default dynamics.
- ``RecSim-LongTerm-v0``: the same with impatient users (:data:`LONG_TERM_KWARGS`), where the myopic
  policy that maximises the immediate choice probability is not optimal (tested).
- ``RecSim-World-v0``: the synthetic ground-truth world that wrote ``data`` as the users (the organic
  world, or the cascade world for cascade data).
- ``RecSim-CascadeWorld-v0``: the cascade world (``recsim data synth --world cascade``): cascade choice,
  position decay, satisfaction-driven leaving and bait items, sharing no code with the simulator's
  choice or leave models.

Each id also has a ``vector_entry_point`` (:class:`~recsim_env.vector.RecSimVectorEnv`), so
``gym.make_vec(id, num_envs=N, vectorization_mode="vector_entry_point", ...)`` steps N users in one core.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import register, registry

from recsim_env.config import WORLD_DEFAULTS, ChoiceConfig, EnvConfig, LeaveConfig
from user_models.errors import InputError

NAMESPACE = "recsim"
"""Every id is registered under this namespace (``recsim/RecSim-v0``, as third-party packages do, e.g.
``ALE/Pong-v5``) and, for compatibility, without it (``RecSim-v0``). With Gymnasium 1.x,
``gym.make("recsim_env:recsim/RecSim-v0", ...)`` imports the package itself."""

ENV_ENTRY_POINT = "recsim_env.env:RecSimEnv"
VECTOR_ENTRY_POINT = "recsim_env.vector:RecSimVectorEnv"
WORLD_ENTRY_POINT = "recsim_env.env:make_world_env"
CASCADE_WORLD_ENTRY_POINT = "recsim_env.env:make_cascade_world_env"
WORLD_ENTRY_POINTS = (WORLD_ENTRY_POINT, CASCADE_WORLD_ENTRY_POINT)

LONG_TERM_KWARGS: dict[str, Any] = {
    "max_steps": 200,
    "leave": LeaveConfig(no_choice_drain=0.2, low_value_drain=0.15, high_value_refill=0.1, sharpness=2.0),
    "choice": ChoiceConfig(no_choice_logit=-1.0),
}
"""Impatient users: a low-engagement response costs 0.15 patience, a high-engagement one refills 0.1,
choosing nothing costs 0.2, and the impatience hazard ``(1 - p) ** 2`` bites early. Sessions are long
only for users who keep getting what they value, so engagement, not clicks, pays. Choosing nothing is
worth ``e^-1`` of an item of average preference mass, so a slate of three items the user likes less than
average is still chosen from about two times in three: slates of valued items are not refused outright."""


def register_envs() -> None:
    """Register the ids above (idempotent)."""
    specs: dict[str, dict[str, Any]] = {
        "RecSim-v0": {"entry_point": ENV_ENTRY_POINT, "vector_entry_point": VECTOR_ENTRY_POINT},
        "RecSim-LongTerm-v0": {"entry_point": ENV_ENTRY_POINT, "vector_entry_point": VECTOR_ENTRY_POINT,
                               "kwargs": LONG_TERM_KWARGS},
        "RecSim-CascadeWorld-v0": {"entry_point": CASCADE_WORLD_ENTRY_POINT,
                                   "vector_entry_point": "recsim_env.vector:make_cascade_world_vector_env"},
        "RecSim-World-v0": {"entry_point": WORLD_ENTRY_POINT,
                            "vector_entry_point": "recsim_env.vector:make_world_vector_env"},
    }
    for env_id, spec in specs.items():
        for name in (f"{NAMESPACE}/{env_id}", env_id):  # the namespaced id, and the plain alias
            if name not in registry:
                register(id=name, disable_env_checker=False, **spec)


def is_world_id(env_id: str) -> bool:
    """Whether ``env_id`` is registered as the synthetic ground-truth world."""
    return _spec(env_id).entry_point in WORLD_ENTRY_POINTS


def env_config_for(
    env_id: str, overrides: Mapping[str, Any] | None = None, source: str = "", world: bool = False
) -> EnvConfig:
    """The :class:`EnvConfig` of the registered ``env_id`` (its registered kwargs), with ``overrides``.

    This is what ``gym.make(env_id, **overrides)`` builds, as a config: tools that build their env views
    themselves (the benchmark, training, evaluation) resolve ids through it. A section given in
    ``overrides`` replaces the id's whole section. ``world`` (implied by a world id) starts from the
    world's defaults (:data:`~recsim_env.config.WORLD_DEFAULTS`) instead of the learned simulator's.
    """
    spec = _spec(env_id)
    world = world or spec.entry_point in WORLD_ENTRY_POINTS
    base = EnvConfig(**WORLD_DEFAULTS) if world else EnvConfig()
    registered = EnvConfig.from_mapping(
        {k: v for k, v in spec.kwargs.items() if k not in ("model", "data")}, env_id, base
    )
    return EnvConfig.from_mapping(overrides or {}, source or env_id, registered)


def _spec(env_id: str) -> Any:
    register_envs()
    try:
        return gym.spec(env_id)
    except gym.error.Error as exc:
        raise InputError(f"env id {env_id!r}: {exc}") from None
