"""Off-policy evaluation against the simulator's ground truth.

The estimand is a target policy's expected reward on a session's **first** slate,
``V(pi) = E_{user ~ population} E_{A ~ pi(user)} [r(user, A)]`` (a contextual slate bandit: the context is
what the policy observes at reset). The simulator makes the truth measurable: run the target on a large
population of the same distribution and average its first-step rewards.

Protocol, per seed:

1. **Log**: ``n`` users of the population (seed ``s``) each see one slate drawn from the logging policy
   ``mu`` and respond; we keep rewards, the chosen slot and ``mu``'s propensities.
2. **Estimate**: every estimator of :mod:`recsim_env.offline.ope` for every target from that log alone.
3. **Compare**: bias and RMSE of the estimates over seeds against the truth.

The env runs in the ``candidates`` action mode (each slot picks one of ``C`` retrieved candidates): the
logging policy then covers every slate with a usable probability. ``mu`` draws each slot independently
(a product policy; a slot repeating an earlier slot's item shows nothing, as in the env) from
``(1 - eps) softmax(log(1 + popularity) / temperature) + eps / C`` over the candidates.

Targets: ``uniform`` and ``softpop`` (a sharper popularity softmax) are stochastic product policies;
any other name is a deterministic policy (a baseline of :mod:`agents.factory` or ``oracle``) whose slot
probabilities are one-hot at its chosen positions.

Reward model for DM and DR: a context-free additive model fitted on the log, ``q(A) = sum_j q(a_j)``,
with ``q(item)`` the item's mean slot reward shrunk towards the global mean (deliberately simple: DR's job
is to correct it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from agents.factory import check_policy_name
from agents.policy import act
from recsim_env.config import CandidateConfig, EnvConfig
from recsim_env.factory import load_dataset, load_model
from recsim_env.offline.ope import (
    SlateLog,
    effective_sample_size,
    estimate_all,
    estimator_errors,
    gather_slot_probs,
    sample_product_slates,
    softmax,
)
from recsim_env.offline.rollout import (
    FunctionPolicy,
    PolicyRun,
    Simulator,
    build_policy,
    build_simulator,
    rollout,
)
from recsim_env.offline.stats import bootstrap_mean_ci
from user_models.data.popularity import item_popularity
from user_models.errors import InputError

STOCHASTIC_TARGETS = ("uniform", "softpop")
SHRINKAGE = 5.0
"""Pseudo-observations of the global mean in the item reward model."""


@dataclass(frozen=True)
class OPEConfig:
    """An off-policy evaluation study.

    Attributes:
        targets: target policy names (``uniform``, ``softpop``, baselines, ``oracle``).
        n_logged: logged first steps per seed.
        seeds: number of independent logs (bias and RMSE are over these).
        n_truth: users on which each target's true value is measured.
        logging_temperature: temperature of the logging softmax over log-popularity.
        logging_epsilon: uniform mixing weight of the logging policy (keeps every slate covered).
        target_temperature: temperature of the ``softpop`` target.
        base_seed: first seed; the truth uses ``base_seed + 10_000``.
    """

    targets: tuple[str, ...] = ("uniform", "softpop", "popular", "oracle")
    n_logged: int = 2000
    seeds: int = 10
    n_truth: int = 20000
    logging_temperature: float = 2.0
    logging_epsilon: float = 0.2
    target_temperature: float = 0.5
    base_seed: int = 0

    def __post_init__(self) -> None:
        if not self.targets:
            raise InputError("--targets: give one or more comma-separated target names")
        for name in self.targets:
            if name not in STOCHASTIC_TARGETS:
                check_policy_name(name)
        if self.n_logged < 1 or self.seeds < 1 or self.n_truth < 1:
            raise InputError("n_logged, seeds and n_truth must be >= 1")
        if not 0 < self.logging_epsilon <= 1:
            raise InputError(f"logging_epsilon must be in (0, 1], got {self.logging_epsilon}")
        if self.logging_temperature <= 0 or self.target_temperature <= 0:
            raise InputError("temperatures must be > 0")


@dataclass(frozen=True)
class OPERow:
    """One (target, estimator) cell of the comparison table."""

    target: str
    estimator: str
    truth: float
    truth_low: float
    truth_high: float
    mean_estimate: float
    bias: float
    rmse: float
    relative_bias: float
    n_seeds: int
    mean_ess: float
    """Mean effective sample size of the full-slate weights (out of ``n_logged``)."""


def candidate_settings(settings: EnvConfig) -> EnvConfig:
    """``settings`` in the candidates action mode (20 candidates unless configured)."""
    return replace(settings, action_mode="candidates", candidates=settings.candidates or CandidateConfig())


class TargetPolicy:
    """A target's per-slot distribution over candidate positions, ``[N, k, C]``, for the current users."""

    def __init__(
        self, name: str, sim: Simulator, popularity: np.ndarray, config: OPEConfig, seed: int
    ) -> None:
        self.name = name
        self.popularity = popularity
        self.config = config
        self.sim = sim
        self.policy = None if name in STOCHASTIC_TARGETS else build_policy(name, sim, seed, None)

    def slot_probs(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        candidates = obs["candidates"]
        n, c = candidates.shape
        k = self.sim.core.slate_size
        if self.name == "uniform":
            return np.full((n, k, c), 1.0 / c)
        if self.name == "softpop":
            logits = np.log1p(self.popularity[candidates])
            return np.repeat(softmax(logits, self.config.target_temperature)[:, None, :], k, axis=1)
        assert self.policy is not None
        masks = self.sim.adapter.action_masks().cpu().numpy()
        actions, _ = act(
            self.policy, obs, None, np.ones(n, dtype=bool), deterministic=True, action_masks=masks
        )
        positions = np.asarray(actions).reshape(n, k)
        probs = np.zeros((n, k, c))
        np.put_along_axis(probs, positions[..., None], 1.0, axis=-1)
        return probs


def logging_probs(
    obs: dict[str, np.ndarray], popularity: np.ndarray, k: int, config: OPEConfig
) -> np.ndarray:
    """``[N, k, C]`` the logging policy's slot distributions over candidate positions."""
    candidates = obs["candidates"]
    soft = softmax(np.log1p(popularity[candidates]), config.logging_temperature)
    mixed = (1 - config.logging_epsilon) * soft + config.logging_epsilon / candidates.shape[1]
    return np.repeat(mixed[:, None, :], k, axis=1)


def _first_step(sim: Simulator, seed: int, choose: Any) -> PolicyRun:
    """The first step of ``seed``'s population with the ``[N, k]`` positions ``choose(obs)`` returns."""
    discrete = sim.adapter.action_space.shape == ()  # Discrete when k = 1

    def action(obs: Any) -> np.ndarray:
        positions = np.asarray(choose(obs), dtype=np.int64)
        return positions[:, 0] if discrete else positions

    return rollout(sim.core, sim.adapter, FunctionPolicy(action), seed, max_steps=1, record_observations=True)


def true_value(sim: Simulator, target: TargetPolicy, seed: int) -> tuple[float, float, float]:
    """The target's mean first-step reward on ``sim``'s population of ``seed``, with a 95% interval."""
    rng = np.random.default_rng(seed)
    run = _first_step(sim, seed, lambda obs: sample_product_slates(target.slot_probs(obs), rng))
    ci = bootstrap_mean_ci(run.steps["reward"][0].astype(np.float64), np.random.default_rng(seed))
    return ci.estimate, ci.low, ci.high


def item_reward_model(items: np.ndarray, slot_rewards: np.ndarray, n_items: int) -> np.ndarray:
    """``[n_items + 1]`` shrunk mean slot reward per item (index 0: empty slot, reward 0)."""
    flat_items, flat_rewards = items.reshape(-1), slot_rewards.reshape(-1)
    prior = float(flat_rewards.mean())
    sums = np.bincount(flat_items, weights=flat_rewards, minlength=n_items + 1)
    counts = np.bincount(flat_items, minlength=n_items + 1)
    q = (sums + SHRINKAGE * prior) / (counts + SHRINKAGE)
    q[0] = 0.0
    return q


def expected_additive_reward(slot_probs: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``[N]`` expected ``sum`` of ``q`` over the *shown* items of a slate drawn from a product policy.

    A slot repeating an earlier slot's choice shows nothing (as in the env), so slot ``j`` contributes
    ``q(c)`` only when no earlier slot chose ``c``: ``sum_j sum_c pi_j(c) prod_{l<j} (1 - pi_l(c)) q(c)``.

    Args:
        slot_probs: ``[N, k, C]`` per-slot distributions over the ``C`` choices.
        q: ``[N, C]`` the reward model's value of each choice.
    """
    not_before = np.cumprod(1.0 - slot_probs, axis=1)
    first = slot_probs.copy()
    first[:, 1:] *= not_before[:, :-1]
    return (first * q[:, None, :]).sum(axis=(1, 2))


def log_and_estimate(
    sim: Simulator, targets: list[TargetPolicy], popularity: np.ndarray, config: OPEConfig, seed: int
) -> dict[str, tuple[dict[str, float], float]]:
    """Log one first step per user of ``seed``'s population under ``mu``.

    Returns:
        Per target: every estimate, and the effective sample size of its full-slate weights.
    """
    rng = np.random.default_rng(seed)
    k = sim.core.slate_size
    seen: dict[str, Any] = {}

    def choose(obs: dict[str, np.ndarray]) -> np.ndarray:
        mu = logging_probs(obs, popularity, k, config)
        seen["mu"] = mu
        seen["pi"] = {t.name: t.slot_probs(obs) for t in targets}
        seen["positions"] = sample_product_slates(mu, rng)
        return seen["positions"]

    run = _first_step(sim, seed, choose)
    obs = run.observations[0]
    positions = seen["positions"]
    rewards = run.steps["reward"][0].astype(np.float64)
    chosen = run.steps["position"][0]
    slot_rewards = np.zeros((rewards.size, k))
    hit = chosen >= 0
    slot_rewards[np.flatnonzero(hit), chosen[hit]] = rewards[hit]
    shown = run.steps["slate"][0]  # [N, k] item ids; a repeated slot is already emptied (0)
    q_item = item_reward_model(shown, slot_rewards, sim.core.n_items)
    q_candidates = q_item[obs["candidates"]]  # [N, C]
    q_logged = q_item[shown].sum(axis=1)
    out = {}
    for target in targets:
        pi = seen["pi"][target.name]
        log = SlateLog(
            rewards=rewards,
            slot_rewards=slot_rewards,
            logging_slot_probs=gather_slot_probs(seen["mu"], positions),
            target_slot_probs=gather_slot_probs(pi, positions),
            q_logged=q_logged,
            q_target=expected_additive_reward(pi, q_candidates),
        )
        out[target.name] = (estimate_all(log), effective_sample_size(log))
    return out


def run_ope(
    model: Any,
    data: Any,
    settings: EnvConfig,
    config: OPEConfig,
    *,
    progress: bool = True,
) -> list[OPERow]:
    """The full study: truths on a large population, then estimates over ``seeds`` independent logs."""
    settings = candidate_settings(settings)
    dataset = load_dataset(data)
    user_model = load_model(model, dataset, settings.device)
    log_sim = build_simulator(user_model, dataset, settings, config.n_logged)
    truth_sim = build_simulator(user_model, dataset, settings, config.n_truth)
    popularity = item_popularity(dataset).astype(np.float64)
    truth_seed = config.base_seed + 10_000
    truths = {}
    for name in config.targets:
        target = TargetPolicy(name, truth_sim, popularity, config, truth_seed)
        truths[name] = true_value(truth_sim, target, truth_seed)
    targets = [TargetPolicy(name, log_sim, popularity, config, config.base_seed) for name in config.targets]
    estimates: dict[str, dict[str, list[float]]] = {name: {} for name in config.targets}
    ess: dict[str, list[float]] = {name: [] for name in config.targets}
    for s in tqdm(range(config.seeds), desc="off-policy logs", disable=not progress):
        logged = log_and_estimate(log_sim, targets, popularity, config, config.base_seed + s)
        for name, (by_estimator, size) in logged.items():
            ess[name].append(size)
            for estimator, value in by_estimator.items():
                estimates[name].setdefault(estimator, []).append(value)
    rows = []
    for name in config.targets:
        truth, low, high = truths[name]
        for e in estimator_errors(estimates[name], truth):
            rows.append(
                OPERow(
                    name,
                    e.estimator,
                    truth,
                    low,
                    high,
                    e.mean_estimate,
                    e.bias,
                    e.rmse,
                    e.relative_bias,
                    e.n_replicates,
                    float(np.mean(ess[name])),
                )
            )
    return rows


def ope_markdown(rows: list[OPERow], config: OPEConfig) -> str:
    """The comparison table: per target, the truth and each estimator's mean, bias and RMSE over seeds."""
    lines = [
        "# Off-policy evaluation vs the simulator's ground truth",
        "",
        f"First-step value of each target. Logging: per-slot (1 - {config.logging_epsilon}) softmax(log "
        f"popularity / {config.logging_temperature}) + uniform over the candidates; {config.n_logged} logged "
        f"users per seed, {config.seeds} seeds; truth on {config.n_truth} users (95% CI).",
        "",
        "| target | truth [95% CI] | slate ESS | estimator | mean estimate | bias | relative bias | RMSE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.target} | {r.truth:.4f} [{r.truth_low:.4f}, {r.truth_high:.4f}] | {r.mean_ess:.1f} | "
            f"{r.estimator} | {_cell(r.mean_estimate, '.4f')} | {_cell(r.bias, '+.4f')} | "
            f"{_cell(r.relative_bias, '+.1%')} | {_cell(r.rmse, '.4f')} |"
        )
    if any(not np.isfinite(r.mean_estimate) for r in rows):
        lines += [
            "",
            "undefined: no logged slate equals the target's (slate ESS 0, as for deterministic targets), so "
            "every whole-slate IPS weight is 0 and SNIPS divides 0 by 0. The per-slot estimators (iips, pi) "
            "and the model-based ones (dm, dr) still answer.",
        ]
    return "\n".join(lines) + "\n"


def _cell(value: float, spec: str) -> str:
    return format(value, spec) if np.isfinite(value) else "undefined"


def ope_json(rows: list[OPERow], config: OPEConfig, settings: EnvConfig) -> dict[str, Any]:
    return {"config": asdict(config), "env": settings.to_mapping(), "rows": [asdict(r) for r in rows]}
