"""Training configuration: RL-Zoo-style YAML hyperparameters, CLI overrides, one frozen dataclass.

A hyperparameter file (``agents/hyperparams/<algo>.yml`` by default) has one section per env id. Inside a
section, the recsim-env keys (:data:`RECSIM_KEYS`) configure the run and everything else is passed to the
SB3 algorithm's constructor, after checking that the constructor takes it (a typo is an error naming the
file and the key, not a silently ignored setting). Overrides (``--hyperparams key=value``, values parsed
as YAML, dotted keys reach into mappings: ``env_kwargs.slate_size=3``) apply on top of the file.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from user_models.errors import InputError
from user_models.yamlio import load_yaml_file, parse_yaml

TORCH_PPO = "torch_ppo"
"""The on-device PPO (:mod:`agents.torch_ppo`): it drives the vector env's tensor path, not an SB3 VecEnv."""
ALGOS = ("ppo", "a2c", "maskable_ppo", "dqn", "sac", "td3", TORCH_PPO)
"""Algorithms ``recsim agent train`` supports."""

ACTION_MODES = {
    "ppo": ("slate", "candidates"),
    "a2c": ("slate", "candidates"),
    "maskable_ppo": ("slate", "candidates"),
    "dqn": ("candidates",),
    "sac": ("embedding",),
    "td3": ("embedding",),
    TORCH_PPO: ("candidates",),
}
"""The env action modes each algorithm can act in (DQN needs ``Discrete``: candidates with k = 1)."""

SLATE_POLICY = "SlateRankingPolicy"
"""``policy`` name of :class:`agents.slate_policy.SlateRankingPolicy` (MaskablePPO, candidates mode)."""
POOLED_SLATE_POLICY = "PooledSlatePolicy"
"""``policy`` name of :class:`agents.torch_ppo.SlateActorCritic` (the same slate policy over a pooled
history encoder; ``torch_ppo`` only)."""

RECSIM_KEYS = (
    "n_timesteps",
    "n_envs",
    "policy",
    "env_kwargs",
    "features",
    "eval_freq",
    "n_eval_episodes",
    "checkpoint_freq",
)


def algo_class(algo: str) -> type:
    """The SB3 (or sb3-contrib) class of ``algo`` (:class:`agents.torch_ppo.TorchPPO` for ``torch_ppo``)."""
    if algo == TORCH_PPO:
        from agents.torch_ppo import TorchPPO

        return TorchPPO
    if algo == "maskable_ppo":
        from sb3_contrib import MaskablePPO

        return MaskablePPO
    import stable_baselines3 as sb3

    names = {"ppo": "PPO", "a2c": "A2C", "dqn": "DQN", "sac": "SAC", "td3": "TD3"}
    if algo not in names:
        raise InputError(f"unknown algorithm {algo!r}; choose one of {', '.join(ALGOS)}")
    return getattr(sb3, names[algo])


@dataclass(frozen=True)
class FeaturesConfig:
    """Arguments of :class:`agents.features.HistoryExtractor`.

    Attributes:
        item_dim: item and behavior embedding size.
        hidden_dim: GRU state size.
        init_item_embeddings: initialise the item embeddings from the training logs' co-occurrence
            (:func:`agents.item_features.log_item_embeddings`; see that module for what it leaks).
    """

    item_dim: int = 32
    hidden_dim: int = 64
    init_item_embeddings: bool = False


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs besides the model, the data and the output directory.

    Attributes:
        algo: one of :data:`ALGOS`.
        env_id: the registered env id (a section of the hyperparameter file).
        n_timesteps: total env steps (summed over parallel users).
        n_envs: parallel simulated users.
        policy: SB3 policy name (``MultiInputPolicy`` for the ``history`` observation), or
            :data:`SLATE_POLICY` (a shared candidate scorer with Plackett-Luce slates; MaskablePPO).
        env_kwargs: settings of the env over ``env_id``'s (action mode, slate size, ...): plain values,
            the fields of ``recsim_env.config.EnvConfig``, which validates them when the env is built
            (agents never import the env).
        features: the history features extractor's settings.
        eval_freq: evaluate every this many env steps (summed over users); 0 disables.
        n_eval_episodes: episodes per evaluation (a fixed population: the same seed every time).
        checkpoint_freq: save a checkpoint every this many env steps; 0 disables.
        algo_kwargs: the remaining keys, passed to the algorithm's constructor.
        source: where the settings came from (the YAML path and the overrides), for the record.
    """

    algo: str
    env_id: str
    n_timesteps: int
    n_envs: int
    policy: str
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    eval_freq: int = 0
    n_eval_episodes: int = 32
    checkpoint_freq: int = 0
    algo_kwargs: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def action_mode(self) -> str:
        return str(self.env_kwargs.get("action_mode", "slate"))

    def to_json(self) -> dict[str, Any]:
        return {
            "algo": self.algo,
            "env_id": self.env_id,
            "n_timesteps": self.n_timesteps,
            "n_envs": self.n_envs,
            "policy": self.policy,
            "env_kwargs": dict(self.env_kwargs),
            "features": {
                "item_dim": self.features.item_dim,
                "hidden_dim": self.features.hidden_dim,
                "init_item_embeddings": self.features.init_item_embeddings,
            },
            "eval_freq": self.eval_freq,
            "n_eval_episodes": self.n_eval_episodes,
            "checkpoint_freq": self.checkpoint_freq,
            "algo_kwargs": dict(self.algo_kwargs),
            "source": self.source,
        }


def default_hyperparams_path(algo: str) -> Path:
    """The shipped ``agents/hyperparams/<algo>.yml``."""
    return Path(str(resources.files("agents") / "hyperparams" / f"{algo}.yml"))


def parse_overrides(pairs: Sequence[str], flag: str = "--hyperparams") -> dict[str, Any]:
    """``["a=1", "env_kwargs.slate_size=3"]`` -> ``{"a": 1, "env_kwargs": {"slate_size": 3}}``.

    Values are YAML (:func:`user_models.yamlio.parse_yaml`, so ``1e-4`` is a float); errors name
    ``flag`` and the pair.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise InputError(f"{flag} {pair!r}: expected KEY=VALUE")
        value = parse_yaml(raw, f"{flag} {pair!r}")
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InputError(f"{flag} {pair!r}: {part!r} is not a mapping")
        node[leaf] = value
    return out


def _merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_train_config(
    algo: str,
    path: str | Path | None = None,
    env_id: str = "RecSim-v0",
    overrides: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """Read the ``env_id`` section of a hyperparameter file, apply overrides, validate, freeze.

    Raises:
        InputError: unreadable file, missing section, unknown key, wrong type or an action mode the
            algorithm cannot act in.
    """
    if algo not in ALGOS:
        raise InputError(f"unknown algorithm {algo!r}; choose one of {', '.join(ALGOS)}")
    file = Path(path) if path is not None else default_hyperparams_path(algo)
    document = load_yaml_file(file, "hyperparameter file")
    if not isinstance(document, dict) or env_id not in document:
        sections = ", ".join(document) if isinstance(document, dict) else "none"
        raise InputError(f"{file}: no section {env_id!r} (sections: {sections})")
    section = _merge(document[env_id] or {}, overrides or {})
    return _freeze(
        algo, env_id, section, f"{file}" + (f" + overrides {dict(overrides)}" if overrides else "")
    )


def _freeze(algo: str, env_id: str, section: dict[str, Any], source: str) -> TrainConfig:
    def number(key: str, default: int) -> int:
        value = section.get(key, default)
        try:
            return int(float(value))  # 1e5 is a float; steps are whole numbers
        except (TypeError, ValueError):
            raise InputError(f"{source}: {key} must be a number, got {value!r}") from None

    features = section.get("features") or {}
    unknown = set(features) - {"item_dim", "hidden_dim", "init_item_embeddings"}
    if unknown:
        raise InputError(f"{source}: unknown features key(s) {sorted(unknown)}")
    cls = algo_class(algo)
    accepted = set(inspect.signature(cls).parameters) - {"self", "policy", "env"}
    if algo == TORCH_PPO:  # set from the run's settings, not from the YAML's algorithm keys
        accepted -= {"observation_space", "action_space", "item_dim", "hidden_dim", "item_init", "seed",
                     "device"}
    algo_kwargs = {k: v for k, v in section.items() if k not in RECSIM_KEYS}
    bad = sorted(set(algo_kwargs) - accepted)
    if bad:
        raise InputError(f"{source}: {cls.__name__} takes no argument(s) {bad}")
    config = TrainConfig(
        algo=algo,
        env_id=env_id,
        n_timesteps=number("n_timesteps", 100_000),
        n_envs=number("n_envs", 8),
        policy=str(section.get("policy", "MultiInputPolicy")),
        env_kwargs=dict(section.get("env_kwargs") or {}),
        features=FeaturesConfig(
            item_dim=int(features.get("item_dim", 32)),
            hidden_dim=int(features.get("hidden_dim", 64)),
            init_item_embeddings=bool(features.get("init_item_embeddings", False)),
        ),
        eval_freq=number("eval_freq", 0),
        n_eval_episodes=number("n_eval_episodes", 32),
        checkpoint_freq=number("checkpoint_freq", 0),
        algo_kwargs=algo_kwargs,
        source=source,
    )
    if config.action_mode not in ACTION_MODES[algo]:
        raise InputError(
            f"{source}: {algo} cannot act in action_mode {config.action_mode!r}; "
            f"use {' or '.join(ACTION_MODES[algo])}"
        )
    if (algo == TORCH_PPO) != (config.policy == POOLED_SLATE_POLICY):
        raise InputError(f"{source}: algo {TORCH_PPO} goes with policy {POOLED_SLATE_POLICY} (and only it)")
    if config.policy == SLATE_POLICY and (algo != "maskable_ppo" or config.action_mode != "candidates"):
        raise InputError(
            f"{source}: policy {SLATE_POLICY} needs algo maskable_ppo and env_kwargs.action_mode candidates"
        )
    if algo == "dqn" and config.env_kwargs.get("slate_size") != 1:
        raise InputError(
            f"{source}: dqn needs env_kwargs.slate_size = 1 (a Discrete action over the candidates)"
        )
    if config.n_timesteps < 1 or config.n_envs < 1:
        raise InputError(f"{source}: n_timesteps and n_envs must be positive")
    return config
