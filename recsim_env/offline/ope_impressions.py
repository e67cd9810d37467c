"""Off-policy evaluation on a logged impression log, side by side with the simulator's estimate.

The estimand is a target policy's expected reward on one slate, ``V(pi) = E_x E_{A ~ pi(x)} r(x, A)``,
where the contexts ``x`` are the logged impressions' users just before each impression (their
consumptions with an earlier timestamp, as :func:`user_models.choice_model.impression_features`
places them). Two answers:

- **from the log itself** (needs the logging propensities): every estimator of
  :mod:`recsim_env.offline.ope` (IPS, SNIPS, DM, DR, IIPS, PI) with slot rewards ``r_ij`` = the reward
  weight of the clicked slot's behavior, slot propensities ``mu_j(a_ij | x_i)`` = the log's
  ``propensity`` column (the logging probability of the shown item in that slot: the Open Bandit
  Dataset's ``action_prob``) and ``pi_j(a_ij | x_i)`` from the target. Full-slate IPS/SNIPS/DR treat the
  logging policy as a product of its slot marginals (exact for slot-independent loggers, an
  approximation otherwise; IIPS and PI use the marginals only).
- **from the simulator**: the same contexts, a slate drawn from the target per context, and the
  simulator's expected reward of it: ``sum_s P(slot s) sum_b w_b P(b | item_s)`` with the simulator's
  choice (the learned one when the model carries it, else the calibrated multinomial logit) and the
  user model's behavior head. The one-step estimate ignores the repeat policy (no repeat masking).

Targets are product policies over the catalogue (each slot drawn independently; a slot repeating an
earlier one's item shows nothing): ``uniform``, and ``model`` (the user model's next-item softmax at
``target_temperature``: a personalised recommender).

A log without propensities cannot be evaluated from itself: :func:`impression_ope` says so
(:class:`InputError`), naming how many shown slots lack one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import torch

from recsim_env.choice import (
    choice_probabilities,
    choice_utilities,
    learned_choice_of,
    learned_utilities,
    log_normaliser,
)
from recsim_env.config import ChoiceConfig, RewardConfig
from recsim_env.offline.ope import SlateLog, effective_sample_size, estimate_all
from recsim_env.offline.ope_simulator import item_reward_model
from recsim_env.offline.stats import bootstrap_mean_ci
from user_models.choice_model import impression_features
from user_models.data.artifact import PROPENSITY_SLATE, SequenceDataset
from user_models.errors import InputError

IMPRESSION_TARGETS = ("uniform", "model")


@dataclass(frozen=True)
class ImpressionOPERow:
    """One target: the log's estimates and the simulator's, with the simulator's 95% interval."""

    target: str
    estimates: dict[str, float]
    ess: float
    simulator: float
    simulator_low: float
    simulator_high: float
    logged_value: float
    """The logging policy's own mean reward per impression (the on-policy value of the log)."""
    impressions: int


def target_probabilities(name: str, logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``[s, n_items]`` a target's per-slot distribution over the catalogue for states with these
    catalogue logits."""
    if name == "uniform":
        return torch.full_like(logits, 1.0 / logits.shape[1])
    if name == "model":
        return torch.softmax(logits / temperature, dim=1)
    raise InputError(f"unknown impression OPE target {name!r}; choose from {', '.join(IMPRESSION_TARGETS)}")


def slate_choice(logits: torch.Tensor, slate: torch.Tensor, choice: ChoiceConfig, learned: Any | None
                 ) -> torch.Tensor:
    """``[b, k + 1]`` the simulator's choice probabilities of ``[b, k]`` slates (0: empty) for states of
    ``[b, n_items]`` catalogue logits: the learned choice when given, else the multinomial logit of
    ``choice`` (no repeats: see the module docstring)."""
    shown, safe = slate > 0, slate.clamp(min=1)
    no_repeat = torch.zeros_like(shown)
    picked = logits.float().gather(1, safe - 1)
    if learned is not None:
        utility = learned_utilities(learned, picked, log_normaliser(logits, 1.0), safe, no_repeat, no_repeat,
                                    choice, logits.shape[1])
        return learned.probabilities(utility, shown)
    utility = choice_utilities(picked, no_repeat, choice, log_normaliser(logits, choice.temperature),
                               logits.shape[1])
    return choice_probabilities(utility, shown, choice.no_choice_logit, choice.position_decay)


def impression_ope(
    model: Any, dataset: SequenceDataset, impressions: pl.DataFrame,
    targets: tuple[str, ...] = IMPRESSION_TARGETS, choice: ChoiceConfig | None = None,
    reward: RewardConfig | None = None, target_temperature: float = 1.0, seed: int = 0,
) -> list[ImpressionOPERow]:
    """Estimate each target's value from the impression log and in the simulator (see the module).

    Args:
        model: the user model (a :class:`~user_models.transformer.UserTransformer`, with or without a
            learned choice).
        dataset: the dataset it was trained on.
        impressions: the contract's impressions table (with propensities).
        targets: names from :data:`IMPRESSION_TARGETS`.
        choice: the simulator's choice settings (calibrated temperature and no-choice; ``source``
            decides between the learned and the calibrated choice); default ``ChoiceConfig()``.
        reward: the reward of a behavior (default ``RewardConfig()``).
        target_temperature: temperature of the ``model`` target.
        seed: seed of the simulator's target slates.

    Raises:
        InputError: the log has no propensities, or no impression could be placed.
    """
    choice = choice or ChoiceConfig(repeat="allow")
    weights = np.array([0.0, *(reward or RewardConfig()).weights(dataset.n_behaviors)])
    missing = int(impressions["propensity"].is_null().sum())
    if missing:
        raise InputError(f"dataset {dataset.meta.name!r}: {missing} of {impressions.height} shown slots have "
                         "no logging propensity; off-policy evaluation on the logged impressions needs the "
                         "logging policy's probability of every shown slot (the simulator's estimate needs "
                         "none)")
    if dataset.meta.extra.get("propensity_kind") == PROPENSITY_SLATE:
        raise InputError(f"dataset {dataset.meta.name!r}: its propensities are probabilities of whole "
                         "ordered slates, not of each shown slot; the slot-level estimators here need the "
                         "logging probability of every shown slot")
    learned = learned_choice_of(model, choice)
    gen = torch.Generator(device=model.device).manual_seed(seed)
    Part = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    collected: dict[str, list[Part]] = {t: [] for t in targets}

    def on_batch(rows: np.ndarray, local: torch.Tensor, logits: torch.Tensor, state: Any,
                 items: torch.Tensor) -> None:
        shown = items > 0
        k = items.shape[1]
        for name in targets:
            probs = target_probabilities(name, logits, target_temperature)  # [s, n] per state
            row_probs = probs[local]
            pi = torch.where(shown, row_probs.gather(1, items.clamp(min=1) - 1), 1.0)
            covered = 1.0 - (1.0 - row_probs) ** shown.sum(1, keepdim=True)  # P(item shown) in k_i draws
            q_target = (covered * q_items[None, 1:]).sum(1)
            # the simulator: one target slate of the log's width per impression
            slate = torch.multinomial(row_probs, k, replacement=True, generator=gen) + 1
            earlier = torch.ones(k, k, dtype=torch.bool, device=slate.device).tril(-1)
            repeated = ((slate[:, :, None] == slate[:, None, :]) & earlier).any(2)
            slate = slate.masked_fill(repeated, 0)  # a repeated item shows nothing, as in the env
            p = slate_choice(logits[local], slate, choice, learned)
            reward_of_item = _per_row(model, state, local, slate.clamp(min=1)) @ w_t[1:]
            value = (p[:, :k] * reward_of_item * (slate > 0)).sum(1)
            collected[name].append((rows, pi.double().cpu().numpy(), q_target.double().cpu().numpy(),
                                    value.double().cpu().numpy()))

    # The context-free item reward model of DM/DR, from every shown slot of the log.
    clicked = impressions["clicked"].to_numpy().astype(bool)
    behavior = impressions["behavior"].fill_null(0).to_numpy().astype(np.int64)
    slot_reward = np.where(clicked, weights[np.clip(behavior, 0, len(weights) - 1)], 0.0)
    q_np = item_reward_model(impressions["item"].to_numpy().astype(np.int64)[:, None], slot_reward[:, None],
                             dataset.n_items)
    q_items = torch.as_tensor(q_np, dtype=torch.float32, device=model.device)
    w_t = torch.as_tensor(weights, dtype=torch.float32, device=model.device)
    features = impression_features(model, dataset, impressions, (1.0,), on_batch=on_batch)
    if features.n == 0:
        raise InputError(f"dataset {dataset.meta.name!r}: no impression could be placed in a user's history")
    assert features.propensity is not None and features.behavior is not None
    k = features.items.shape[1]
    shown = features.shown.cpu().numpy()
    chosen = features.choice.cpu().numpy()
    slot_rewards = np.zeros((features.n, k))
    hit = chosen < k
    slot_rewards[np.flatnonzero(hit), chosen[hit]] = weights[features.behavior[hit]]
    rewards = slot_rewards.sum(1)
    mu = np.where(shown, features.propensity, 1.0)
    q_logged = (q_np[features.items.cpu().numpy()] * shown).sum(1)
    out = []
    for name in targets:
        parts = collected[name]
        order = np.concatenate([p[0] for p in parts])
        pi, q_target, value = (np.empty((features.n, k)), np.empty(features.n), np.empty(features.n))
        pi[order] = np.concatenate([p[1] for p in parts])
        q_target[order] = np.concatenate([p[2] for p in parts])
        value[order] = np.concatenate([p[3] for p in parts])
        log = SlateLog(rewards=rewards, slot_rewards=slot_rewards, logging_slot_probs=mu,
                       target_slot_probs=pi, q_logged=q_logged, q_target=q_target)
        ci = bootstrap_mean_ci(value, np.random.default_rng(seed))
        out.append(ImpressionOPERow(name, estimate_all(log), effective_sample_size(log), ci.estimate, ci.low,
                                    ci.high, float(rewards.mean()), features.n))
    return out


def _per_row(model: Any, state: Any, local: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """``[b, k, n_behaviors]`` behavior probabilities of each row's ``[b, k]`` items at the row's state
    (``local``: its index among the ``s`` states), in one batched call: the rows of a state are laid
    side by side in that state's item list."""
    b, k = items.shape
    order = torch.argsort(local, stable=True)
    sorted_local = local[order]
    first = torch.searchsorted(sorted_local, sorted_local, right=False)
    rank = torch.empty_like(local)
    rank[order] = torch.arange(b, device=local.device) - first
    width = int(rank.max()) + 1 if b else 1
    grid = torch.ones(state.batch_size, width * k, dtype=torch.long, device=items.device)
    columns = rank[:, None] * k + torch.arange(k, device=items.device)[None, :]
    grid[local[:, None], columns] = items
    probs = model.behavior_probs(state, grid).float()
    return probs[local[:, None], columns]


def ope_markdown(rows: list[ImpressionOPERow]) -> str:
    """The estimates side by side as a Markdown table."""
    names = ("ips", "snips", "dm", "dr", "iips", "pi")
    lines = ["| target | impressions | logged value | " + " | ".join(n.upper() for n in names)
             + " | ESS | simulator [95% CI] |", "|---" * (len(names) + 5) + "|"]
    for r in rows:
        cells = " | ".join(f"{r.estimates.get(n, float('nan')):.4f}" for n in names)
        lines.append(f"| {r.target} | {r.impressions} | {r.logged_value:.4f} | {cells} | {r.ess:.0f} | "
                     f"{r.simulator:.4f} [{r.simulator_low:.4f}, {r.simulator_high:.4f}] |")
    return "\n".join(lines)
