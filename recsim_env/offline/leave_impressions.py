"""The leave hazard fitted on impression logs, where every shown slate is a step.

Consumption logs show when sessions end only in events, so the calibration fits the leave hazard by
simulating sessions until their event counts match (:mod:`recsim_env.offline.calibrate`). Impression
logs show the steps themselves: each impression is one step of its session, clicked or not, and the
session's last impression is the step after which the user left. The simulator's per-step leave
probability (:class:`~recsim_env.config.LeaveConfig`, patience off)

``P(leave at step t) = 1 - (1 - s * sigmoid(logit(e_t) + end_logit_offset)) * exp(-idle_hazard * j_t)``

is then a likelihood of those steps: ``e_t`` is the user model's end probability after the user's
consumptions up to this step (this step's click included, as the simulator's state holds it) and
``j_t`` the consecutive unclicked impressions ending at ``t`` (0 after a click); ``s`` is the
``hazard_scale``. Maximising it over ``(end_logit_offset, idle_hazard)`` fits both from what users did,
including how unclicked slates wear them out, which time gaps in consumption logs cannot show.

**With the session wear** (the default of the calibration) the impressions also say how each response
moves leaving. The hazard becomes

``P(leave at step t) = 1 - (1 - h_0) * (1 - s * sigmoid(a * logit(e_t) + end_logit_offset + w_t))``,
``w_t = wear_decay * w_{t-1} + wear_weights[b_t]`` (``w_{-1} = 0`` at the session's start),

``b_t`` the step's response (0: no click, else the click's behavior), ``a`` the ``end_logit_scale``,
``h_0`` the ``base_hazard``:
a per-session state that ignored slates and shallow clicks raise and deep engagement lowers, as
satisfaction or patience would, with weights, decay and scale fitted by maximum likelihood (the idle
hazard is then off: the no-click weight, carried by the decay, takes its place). Why: the end head is
trained on consumptions, which show neither the unanswered slates nor how a slate's answer changed the
user's wish to stay; the wear lowers the held-out negative log-likelihood per step from 0.341 to 0.308
on the organic world's impressions and from 0.255 to 0.233 on the cascade world's (``LeaveFit.heldout``,
BENCHMARKS.md ``fidelity_eval``), and it is what lets a good policy keep users longer than a bad one.
The wear's range is clipped, in the simulator, to what the logged sessions reached. The base hazard
is the leaving that no response moves: a logistic hazard alone falls to 0 as the wear falls, yet on the
cascade world's impressions the tenth of steps with the lowest wear still end 1.25% of the time where
the wear alone predicts 0.17%; without it a policy that keeps the wear low keeps simulated users for
41 steps where the world's leave after 27.

**Consumption logs** give the same likelihood on steps rebuilt from their time gaps
(:func:`consumption_steps`): the consumed events, and the slates passed over between them. What such a
log cannot show is the slates passed over after a session's last consumption, so that step is scored
by :func:`unlogged_tail`, the chance of leaving there or after any number of unlogged passed-over slates;
reading the last consumption as the leave would teach the fit that passed-over slates never end a
session.

A session is the impression table's ``session`` column, or, where it is null, a run of a user's
impressions without a gap of ``session_gap_seconds``. The last impression of the log (the user's last
session) is taken as a real leave: sessions cut off by the end of the logging window (or a logger's step
cap) would bias the offset up, and the fit cannot tell them apart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import polars as pl
import torch
from scipy.optimize import minimize

from user_models.choice_model import consumptions_before, end_probs_after
from user_models.errors import InputError


@dataclass(frozen=True)
class ImpressionSteps:
    """Every usable impression as one step of its session (``[I]`` arrays, in session order).

    Attributes:
        end_prob: the user model's end probability after the user's consumptions up to this step.
        idle: consecutive unclicked impressions ending here (0 where this one was clicked).
        left: this is the session's last impression.
        clicked: this impression was clicked.
        n_sessions: sessions the steps form.
        dropped: impressions left out, by reason (no timestamp).
        response: the step's response: 0 unclicked, else the click's behavior id (a click whose
            behavior is not logged counts as behavior 1, the dataset's first).
        step: the step's index in its session (0 first).
        user: the dataset's user index of each step.
        n_responses: how many responses the model knows (no response plus its behaviors; 0: the
            largest logged response plus one).
        item: the clicked item (0 where this impression was not clicked).
        unlogged_pass: the chance that a slate shown after a session's last logged step was passed over
            without a trace in the logs. 0 for impression logs (every shown slate is logged, so the last
            one is where the user left); for steps rebuilt from consumption logs
            (:func:`consumption_steps`) 1 - the consumption rate: the user may have passed over slates
            after their last consumption before leaving, and the likelihood sums over how many.
    """

    end_prob: np.ndarray
    idle: np.ndarray
    left: np.ndarray
    clicked: np.ndarray
    n_sessions: int
    dropped: dict[str, int] = field(default_factory=dict)
    response: np.ndarray | None = None
    step: np.ndarray | None = None
    user: np.ndarray | None = None
    n_responses: int = 0
    item: np.ndarray | None = None
    unlogged_pass: float = 0.0

    def subset(self, keep: np.ndarray) -> ImpressionSteps:
        """The steps where ``keep`` is set; ``keep`` must hold whole sessions."""
        def take(x: np.ndarray | None) -> np.ndarray | None:
            return None if x is None else x[keep]

        first = self.step == 0 if self.step is not None else np.r_[True, self.left[:-1]]
        return ImpressionSteps(self.end_prob[keep], self.idle[keep], self.left[keep], self.clicked[keep],
                               int((first & keep).sum()), dict(self.dropped), take(self.response),
                               take(self.step), take(self.user), self.n_responses, take(self.item),
                               self.unlogged_pass)


def impression_steps(model: Any, dataset: Any) -> ImpressionSteps:
    """The steps of ``dataset``'s impression sessions, with ``model``'s end probability at each.

    Raises:
        InputError: the dataset has no impressions, or none with a timestamp.
    """
    table = dataset.impressions
    if table is None or table.height == 0:
        raise InputError(f"dataset {dataset.meta.name!r} has no impression table to fit the leave hazard on")
    slates = (table.group_by("impression")
              .agg(pl.col("user").first(), pl.col("timestamp").first(), pl.col("session").first(),
                   (pl.col("clicked").max() > 0).alias("clicked"),
                   pl.col("behavior").filter(pl.col("clicked") > 0).max().alias("behavior"),
                   pl.col("item").filter(pl.col("clicked") > 0).first().alias("clicked_item")))
    untimed = int(slates["timestamp"].is_null().sum())
    slates = slates.filter(pl.col("timestamp").is_not_null()).sort(["user", "timestamp", "impression"])
    if slates.height == 0:
        raise InputError(f"dataset {dataset.meta.name!r}: no impression has a timestamp")
    user = slates["user"].to_numpy().astype(np.int64)
    stamp = slates["timestamp"].to_numpy().astype(np.int64)
    clicked = slates["clicked"].to_numpy().astype(bool)
    new_user = np.r_[True, user[1:] != user[:-1]]
    if slates["session"].null_count() == 0:
        session = slates["session"].to_numpy().astype(np.int64)
        starts = new_user | np.r_[True, session[1:] != session[:-1]]
    else:
        starts = new_user | np.r_[True, np.diff(stamp) >= dataset.meta.session_gap_seconds]
    left = np.r_[starts[1:], True]
    index = np.arange(len(user))
    last_reset = np.maximum.accumulate(np.where(clicked, index, np.where(starts, index - 1, -1)))
    idle = (index - last_reset).astype(np.float64)
    seqs = dataset.sequences
    counts = np.maximum(consumptions_before(seqs, user, stamp), 0) + clicked
    counts = np.minimum(counts, seqs.lengths[user])
    end_prob = end_probs_after(model, dataset, user, counts.astype(np.int64))
    logged = slates["behavior"].fill_null(0).to_numpy().astype(np.int64)
    response = np.where(clicked, np.maximum(logged, 1), 0)
    step = index - np.maximum.accumulate(np.where(starts, index, 0))
    item = np.where(clicked, slates["clicked_item"].fill_null(0).to_numpy().astype(np.int64), 0)
    return ImpressionSteps(end_prob, idle, left, clicked, int(starts.sum()), {"no timestamp": untimed},
                           response, step, user, len(model.behaviors) + 1, item)


def consumption_steps(model: Any, dataset: Any, step_seconds: float, consumption_rate: float,
                      max_users: int | None = None) -> ImpressionSteps:
    """The steps of ``dataset``'s training-split consumption sessions, rebuilt from their time gaps as the
    calibration reads them (:func:`~recsim_env.population.logged_stats`), with ``model``'s end
    probability at each.

    An event ``g`` seconds after the previous one of its session took ``max(1, round(g /
    step_seconds))`` steps: the last of them is the consumption (its behavior the response), the ones
    before it slates passed over (response 0). A session starts at its first event (slates passed over
    before it, and sessions without any consumption, leave no trace). After its last event the user may
    have passed over more slates before leaving: ``unlogged_pass`` is ``1 - consumption_rate``, the
    chance of each. Sessions holding one of a user's last two events (the validation and test split) are
    left out: the split cuts them, so their last training event is not where the user left. ``max_users``:
    only every ``ceil(n_users / max_users)``-th user's sessions (the rest counted in ``dropped``), since
    every step costs one user-model prefill for its end probability and a few dozen parameters need no
    more than some hundred users.

    Raises:
        InputError: the dataset has no timestamps, ``step_seconds`` is not positive, or
            ``consumption_rate`` is outside (0, 1].
    """
    if not dataset.meta.has_timestamps or step_seconds <= 0:
        raise InputError(f"dataset {dataset.meta.name!r}: steps cannot be rebuilt from time gaps without "
                         f"timestamps and a positive step length (got {step_seconds} s)")
    if not 0 < consumption_rate <= 1:
        raise InputError(f"consumption rate must be in (0, 1], got {consumption_rate}")
    inter = dataset.interactions
    every = -(-dataset.n_users // max_users) if max_users else 1
    skipped = int((inter["user"] % every != 0).sum())
    inter = inter.filter(pl.col("user") % every == 0)
    lengths = inter.group_by("user").agg(pl.len().alias("n"))
    marked = inter.join(lengths, on="user").with_columns(
        (pl.col("position") >= pl.col("n") - 2).any().over(["user", "session"]).alias("cut"))
    cut_sessions = int(marked.filter(pl.col("cut")).select(pl.struct("user", "session").n_unique()).item())
    events = marked.filter(~pl.col("cut")).sort(["user", "position"])
    if events.height == 0:
        raise InputError(f"dataset {dataset.meta.name!r}: no training session to fit the leave hazard on")
    user = events["user"].to_numpy().astype(np.int64)
    session = events["session"].to_numpy().astype(np.int64)
    stamp = events["timestamp"].to_numpy().astype(np.int64)
    first = np.r_[True, (user[1:] != user[:-1]) | (session[1:] != session[:-1])]
    gap = np.r_[0, np.diff(stamp)].astype(np.float64)
    taken = np.where(first, 1, np.maximum(1, np.rint(gap / step_seconds))).astype(np.int64)
    event = np.repeat(np.arange(len(user)), taken)  # the event each step leads up to
    index = np.arange(len(event))
    ends = np.cumsum(taken)  # one past each event's own (consumption) step
    consumed = np.zeros(len(event), dtype=bool)
    consumed[ends - 1] = True
    within = index - (ends - taken)[event]  # 0 .. taken - 1 along each event's steps
    starts = consumed & first[event]
    left = np.r_[starts[1:], True]
    position = events["position"].to_numpy().astype(np.int64)[event]
    end_prob = end_probs_after(model, dataset, user[event], position + consumed)
    behavior = np.maximum(events["behavior"].to_numpy().astype(np.int64), 1)[event]
    item = events["item"].to_numpy().astype(np.int64)[event]
    return ImpressionSteps(end_prob, np.where(consumed, 0, within + 1).astype(np.float64), left, consumed,
                           int(starts.sum()), {"sessions holding validation or test events": cut_sessions,
                                               "events of users not sampled": skipped},
                           np.where(consumed, behavior, 0),
                           index - np.maximum.accumulate(np.where(starts, index, 0)),
                           user[event], len(model.behaviors) + 1, np.where(consumed, item, 0),
                           1.0 - consumption_rate)


SCALE_BOUNDS = (0.0, 5.0)
"""Search range of the end logit's scale (0: the learned end head plays no part)."""
WEAR_WEIGHT_BOUNDS = (-3.0, 3.0)
"""Search range of each response's wear weight (a step moves the leave odds at most 20-fold)."""
DECAY_BOUNDS = (0.0, 1.0)
"""Search range of the wear's decay (0: only this step's response counts; 1: the whole session alike)."""
BASE_HAZARD_BOUNDS = (0.0, 0.5)
"""Search range of the base hazard (per-step leave probability that no response moves)."""
WEAR_BLOCK = 64
"""Steps per block of :func:`session_wear`'s matrix products."""
TAIL_STEPS = 64
"""The most unlogged slates :func:`unlogged_tail` sums over after a session's last logged step."""
ITEM_WEIGHT_BOUNDS = (-10.0, 10.0)
"""Search range of each item-wear weight (the standard-normal prior keeps them near a unit size)."""
HELDOUT_EVERY = 5
"""The held-out comparison scores every 5th of the users the steps hold (in dataset order), fitted on the
others."""


@dataclass(frozen=True)
class LeaveFit:
    """The maximum-likelihood leave parameters on impression steps, and what they explain.

    Attributes:
        end_logit_offset, idle_hazard: the fit.
        end_logit_scale, wear_weights, wear_decay, wear_bounds: the session wear's fit (``wear_weights``
            empty: fitted without it); ``wear_bounds`` is the range the logged sessions' wear reached.
        base_hazard: the per-step leave probability no response moves (0 without the wear).
        wear_item_weights: the consumed item's part of the wear (empty: fitted without it), on
            :func:`~recsim_env.core.wear_item_vectors`; ``item_wear_spread`` is the standard deviation of
            the wear it adds across the catalogue.
        nll, nll_at_zero: mean negative log-likelihood per step at the fit and at its start.
        steps, sessions: what it was fitted on.
        expected_leaves: the fitted hazard's summed leave probabilities over the logged steps, against
            the ``sessions`` that ended there (calibration in the large).
        at_bound: the parameters that ended at a bound of their range, with what that means.
        heldout: mean negative log-likelihood per step on every :data:`HELDOUT_EVERY`-th user, fitted
            on the others, with the wear (``with_wear``), without it (``without_wear``) and, when the
            items' part was fitted, with the wear by response only (``response_wear``); empty when the
            wear was not fitted.
        unlogged_pass: the steps' :attr:`ImpressionSteps.unlogged_pass` (0: impression steps; else steps
            rebuilt from consumption logs).
    """

    end_logit_offset: float
    idle_hazard: float
    nll: float
    nll_at_zero: float
    steps: int
    sessions: int
    expected_leaves: float
    at_bound: dict[str, str]
    end_logit_scale: float = 1.0
    wear_weights: tuple[float, ...] = ()
    wear_decay: float = 1.0
    wear_bounds: tuple[float, ...] = ()
    wear_item_weights: tuple[float, ...] = ()
    item_wear_spread: float = 0.0
    base_hazard: float = 0.0
    heldout: dict[str, float] = field(default_factory=dict)
    unlogged_pass: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The fields as JSON holds them (tuples as lists, so a saved report reads back equal)."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in ((k, getattr(self, k)) for k in self.__dataclass_fields__)}


def session_wear(steps: ImpressionSteps, weights: torch.Tensor, decay: torch.Tensor,
                 item_wear: torch.Tensor | None = None) -> torch.Tensor:
    """``[I]`` float64 the session wear after each step (see the module docstring), differentiable in
    ``weights``, ``decay`` and ``item_wear``: ``w_t = sum over the session's steps u <= t of
    decay ** (t - u) * (weights[b_u] + item_wear[i_u])`` (``item_wear``: ``[n_items + 1]``, the wear a
    consumed item adds, 0 at item 0; None: none), as matrix products over blocks of
    :data:`WEAR_BLOCK` steps with the wear carried from block to block."""
    if steps.response is None or steps.step is None:
        raise InputError("these impression steps carry no responses: read them with impression_steps")
    contribution = weights.to(torch.float64)[torch.as_tensor(steps.response)]
    if item_wear is not None:
        if steps.item is None:
            raise InputError("these impression steps carry no clicked items: read them with impression_steps")
        contribution = contribution + item_wear.to(torch.float64)[torch.as_tensor(steps.item)]
    if len(contribution) == 0:
        return contribution
    step = torch.as_tensor(steps.step)
    session = torch.cumsum((step == 0).long(), 0) - 1
    n_steps = int(step.max()) + 1
    padded = torch.zeros(int(session[-1]) + 1, n_steps, dtype=torch.float64).index_put((session, step),
                                                                                        contribution)
    block = min(n_steps, WEAR_BLOCK)
    log_decay = torch.log(torch.as_tensor(decay, dtype=torch.float64).clamp_min(1e-12))
    lag = torch.arange(block)[:, None] - torch.arange(block)[None, :]
    carry_by_lag = torch.where(lag >= 0, torch.exp(lag.clamp(min=0) * log_decay), 0.0)  # [t, u]
    carry_in = torch.exp(torch.arange(1, block + 1) * log_decay)  # decay ** (t + 1) within a block
    blocks, carried = [], torch.zeros(padded.shape[0], dtype=torch.float64)
    for first in range(0, n_steps, block):
        part = padded[:, first:first + block]
        width = part.shape[1]
        wear = part @ carry_by_lag[:width, :width].T + carried[:, None] * carry_in[:width]
        blocks.append(wear)
        carried = wear[:, -1]
    return torch.cat(blocks, dim=1)[session, step]


def leave_probability(steps: ImpressionSteps, hazard_scale: float, offset: torch.Tensor,
                      idle_hazard: torch.Tensor, scale: torch.Tensor | float = 1.0,
                      wear: torch.Tensor | float = 0.0, base: torch.Tensor | float = 0.0) -> torch.Tensor:
    """``[I]`` the simulator's per-step leave probability at each impression step (patience off), with
    the end logit's ``scale``, the session ``wear`` (``[I]``, from :func:`session_wear`) and the
    ``base`` hazard."""
    return _hazard(_end_logit(steps), torch.as_tensor(steps.idle, dtype=torch.float64), hazard_scale,
                   offset, idle_hazard, scale, wear, base)


def unlogged_tail(steps: ImpressionSteps, hazard_scale: float, offset: torch.Tensor,
                  idle_hazard: torch.Tensor, scale: torch.Tensor | float = 1.0,
                  wear: torch.Tensor | float = 0.0, base: torch.Tensor | float = 0.0,
                  none_weight: torch.Tensor | float = 0.0, decay: torch.Tensor | float = 1.0) -> torch.Tensor:
    """``[L]`` at each session's last logged step, the probability that the user left there or after
    passing over ``k >= 1`` unlogged slates: ``sum_k q^k h_k prod_{j < k} (1 - h_j)`` with ``q`` the
    steps' ``unlogged_pass`` and ``h_k`` the hazard after ``k`` more unanswered steps (the wear moving by
    ``w <- decay * w + none_weight`` and the idle run growing by one each), summed until passing over
    that many slates has a chance below 1e-9 (at most :data:`TAIL_STEPS` slates). With ``q = 0`` it is
    the last step's own leave probability."""
    return _tail(steps, hazard_scale, offset, idle_hazard, scale, wear, base, none_weight, decay)[0]


def _tail(steps: ImpressionSteps, hazard_scale: float, offset: torch.Tensor, idle_hazard: torch.Tensor,
          scale: torch.Tensor | float, wear: torch.Tensor | float, base: torch.Tensor | float,
          none_weight: torch.Tensor | float, decay: torch.Tensor | float
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`unlogged_tail`, and ``[L]`` the hazards summed over the steps the user was there for, from
    the last logged one on, in expectation given the logs (what :func:`_expected_leaves` counts)."""
    last = torch.as_tensor(steps.left)
    end_logit = _end_logit(steps)[last]
    idle = torch.as_tensor(steps.idle, dtype=torch.float64)[last]
    w = wear[last] if isinstance(wear, torch.Tensor) and wear.dim() > 0 else torch.as_tensor(wear)
    q = steps.unlogged_pass
    hazards, masses = [], []
    reach = torch.ones_like(end_logit)  # P(the user is still there, k slates after the last logged one)
    # the slates that matter: until the chance of passing over all of them falls below 1e-9
    for _ in range(min(TAIL_STEPS, math.ceil(math.log(1e-9) / math.log(q))) if 0 < q < 1 else 1):
        h = _hazard(end_logit, idle, hazard_scale, offset, idle_hazard, scale, w, base)
        hazards.append(h)
        masses.append(reach * h)
        reach = reach * (1.0 - h) * q
        w, idle = decay * w + none_weight, idle + 1.0
    mass = torch.stack(masses)
    total = mass.sum(0) + reach  # what is left: leaving later still, with no consumption seen
    there = torch.flip(torch.cumsum(torch.flip(mass, [0]), 0), [0]) + reach  # P(there at k, logs as seen)
    return total, (torch.stack(hazards) * there).sum(0) / total.clamp_min(1e-300)


def _end_logit(steps: ImpressionSteps) -> torch.Tensor:
    e = torch.as_tensor(steps.end_prob, dtype=torch.float64).clamp(1e-6, 1 - 1e-6)
    return torch.log(e) - torch.log1p(-e)


def _hazard(end_logit: torch.Tensor, idle: torch.Tensor, hazard_scale: float, offset: torch.Tensor,
            idle_hazard: torch.Tensor, scale: torch.Tensor | float, wear: torch.Tensor | float,
            base: torch.Tensor | float) -> torch.Tensor:
    learned = hazard_scale * torch.sigmoid(scale * end_logit + offset + wear)
    return 1.0 - (1.0 - base) * (1.0 - learned) * torch.exp(-idle_hazard * idle)


def fit_leave(steps: ImpressionSteps, hazard_scale: float, offset_bounds: tuple[float, float],
              idle_bounds: tuple[float, float], wear: bool = False,
              item_vectors: torch.Tensor | None = None) -> LeaveFit:
    """Maximum likelihood of the leave parameters on ``steps``, L-BFGS-B inside the bounds: without
    ``wear`` ``(end_logit_offset, idle_hazard)`` from (0, 0) clipped into the bounds; with it
    ``(end_logit_offset, end_logit_scale, wear_decay, base_hazard, wear_weights)`` from
    (0, 1, 0.5, 0.001, 0), the idle hazard off, and the held-out comparison with and without the
    wear. With ``item_vectors`` (``[n_items + 1, d]``, :func:`~recsim_env.core.wear_item_vectors`)
    the wear also fits the consumed item's part, ``wear_item_weights`` from 0 under a standard-normal
    prior (maximum a posteriori: ``d`` weights on a few thousand leaves would otherwise fit noise),
    and the held-out comparison adds the wear by response only; the items' part is kept only when it
    lowers the held-out NLL (it has ``d`` weights, and on some logs they fit the training users'
    noise)."""
    if not 0.0 < hazard_scale <= 1.0:
        raise InputError(f"hazard_scale must be in (0, 1], got {hazard_scale}")
    if not wear:
        return _fit_offset_and_idle(steps, hazard_scale, offset_bounds, idle_bounds)
    if steps.user is None:
        raise InputError("these impression steps carry no users: read them with impression_steps")
    held = np.unique(steps.user, return_inverse=True)[1] % HELDOUT_EVERY == 0
    heldout: dict[str, float] = {}
    if held.any() and (~held).any():
        train, test = steps.subset(~held), steps.subset(held)
        with_wear = _fit_wear(train, hazard_scale, offset_bounds, item_vectors)
        without = _fit_offset_and_idle(train, hazard_scale, offset_bounds, idle_bounds)
        heldout = {"with_wear": _nll_of(test, hazard_scale, with_wear, item_vectors),
                   "without_wear": _nll_of(test, hazard_scale, without), "users_heldout": float(
                       len(np.unique(steps.user[held]))), "steps_heldout": float(len(test.left))}
        if item_vectors is not None:
            by_response = _fit_wear(train, hazard_scale, offset_bounds)
            heldout["response_wear"] = _nll_of(test, hazard_scale, by_response)
            if heldout["response_wear"] < heldout["with_wear"]:
                item_vectors = None  # the items' part fits noise: it scores worse on unseen users
    return replace(_fit_wear(steps, hazard_scale, offset_bounds, item_vectors), heldout=heldout)


def _terms(steps: ImpressionSteps, hazard_scale: float, offset: torch.Tensor, idle_hazard: torch.Tensor,
           scale: torch.Tensor | float = 1.0, wear: torch.Tensor | float = 0.0,
           base: torch.Tensor | float = 0.0, none_weight: torch.Tensor | float = 0.0,
           decay: torch.Tensor | float = 1.0
           ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
    """``[I]`` the leave probability at each step and, where slates after a session's last logged step go
    unlogged (``unlogged_pass > 0``), :func:`_tail` at those steps (else None)."""
    p = leave_probability(steps, hazard_scale, offset, idle_hazard, scale, wear, base)
    if steps.unlogged_pass <= 0:
        return p, None
    return p, _tail(steps, hazard_scale, offset, idle_hazard, scale, wear, base, none_weight, decay)


def _nll(steps: ImpressionSteps, p: torch.Tensor,
         tail: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Mean negative log-likelihood per step of staying or leaving as logged; a session's last logged
    step scores the tail's probability (leaving there or after unlogged slates) where given."""
    left = torch.as_tensor(steps.left)
    p = p.clamp(1e-12, 1 - 1e-12)
    log_p = torch.where(left, torch.log(p), torch.log1p(-p))
    if tail is not None:
        log_p = log_p.index_put((torch.nonzero(left)[:, 0],), torch.log(tail[0].clamp(1e-12, 1.0)))
    return -log_p.mean()


def _expected_leaves(steps: ImpressionSteps, p: torch.Tensor,
                     tail: tuple[torch.Tensor, torch.Tensor] | None) -> float:
    """The fitted hazard summed over the steps users were there for (calibration in the large: it
    should come out near the number of sessions): the logged steps, and where slates after the last
    one go unlogged, the unlogged ones in expectation given the logs."""
    if tail is None:
        return float(p.sum())
    return float(p[~torch.as_tensor(steps.left)].sum() + tail[1].sum())


def _item_wear(item_vectors: torch.Tensor | None, weights: tuple[float, ...]) -> torch.Tensor | None:
    """``[n_items + 1]`` the wear each consumed item adds, or None without an item part."""
    if item_vectors is None or not weights:
        return None
    return item_vectors.to(torch.float64) @ torch.tensor(weights, dtype=torch.float64)


def _fit_terms(steps: ImpressionSteps, hazard_scale: float, fit: LeaveFit,
               item_vectors: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
    """:func:`_terms` of ``fit`` on ``steps`` (the wear unclipped, as fitted)."""
    with torch.no_grad():
        wear = (session_wear(steps, torch.tensor(fit.wear_weights), torch.tensor(fit.wear_decay),
                             _item_wear(item_vectors, fit.wear_item_weights))
                if fit.wear_weights else 0.0)
        return _terms(steps, hazard_scale, torch.tensor(fit.end_logit_offset), torch.tensor(fit.idle_hazard),
                      fit.end_logit_scale, wear, fit.base_hazard,
                      fit.wear_weights[0] if fit.wear_weights else 0.0, fit.wear_decay)


def _nll_of(steps: ImpressionSteps, hazard_scale: float, fit: LeaveFit,
            item_vectors: torch.Tensor | None = None) -> float:
    """Mean negative log-likelihood per step of ``fit`` on ``steps``."""
    return float(_nll(steps, *_fit_terms(steps, hazard_scale, fit, item_vectors)))


def _minimise(loss_of: Any, start: np.ndarray, bounds: list[tuple[float, float]]) -> tuple[np.ndarray, float]:
    """L-BFGS-B of the torch loss ``loss_of(params)`` from ``start`` inside ``bounds``."""
    def nll(x: np.ndarray) -> tuple[float, np.ndarray]:
        params = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        loss = loss_of(params)
        loss.backward()
        assert params.grad is not None
        return float(loss.detach()), params.grad.numpy().copy()

    result = minimize(nll, start, jac=True, method="L-BFGS-B", bounds=bounds)
    return result.x, nll(start)[0]


def _fit_offset_and_idle(steps: ImpressionSteps, hazard_scale: float, offset_bounds: tuple[float, float],
                         idle_bounds: tuple[float, float]) -> LeaveFit:
    bounds = [offset_bounds, idle_bounds]
    start = np.clip(np.zeros(2), [offset_bounds[0], idle_bounds[0]], [offset_bounds[1], idle_bounds[1]])
    x, at_start = _minimise(lambda q: _nll(steps, *_terms(steps, hazard_scale, q[0], q[1])), start, bounds)
    offset, idle = (float(v) for v in x)
    fit = LeaveFit(end_logit_offset=offset, idle_hazard=idle, nll=0.0, nll_at_zero=at_start,
                   steps=len(steps.left), sessions=steps.n_sessions, expected_leaves=0.0,
                   at_bound=_at_bounds({
                       **_offset_check(offset, offset_bounds, "the learned end head"),
                       "idle_hazard": (idle, idle_bounds, "at its bound 0: the impressions show no more "
                                       "leaving after unclicked slates than the learned end already gives",
                                       f"at its bound {idle:g}: users leave after almost every unclicked "
                                       "slate")}))
    return _scored(steps, hazard_scale, fit)


def _fit_wear(steps: ImpressionSteps, hazard_scale: float, offset_bounds: tuple[float, float],
              item_vectors: torch.Tensor | None = None) -> LeaveFit:
    assert steps.response is not None
    n_responses = max(steps.n_responses, int(steps.response.max()) + 1 if len(steps.response) else 1)
    vectors = None if item_vectors is None else item_vectors.to(torch.float64)
    n_item = 0 if vectors is None else vectors.shape[1]
    split = 4 + n_responses

    def loss(q: torch.Tensor) -> torch.Tensor:
        item_wear = None if vectors is None else vectors @ q[split:]
        wear = session_wear(steps, q[4:split], q[2], item_wear)
        nll = _nll(steps, *_terms(steps, hazard_scale, q[0], torch.tensor(0.0), q[1], wear, q[3], q[4], q[2]))
        return nll + 0.5 * (q[split:] ** 2).sum() / max(len(steps.left), 1)  # the prior, per step

    bounds = ([offset_bounds, SCALE_BOUNDS, DECAY_BOUNDS, BASE_HAZARD_BOUNDS]
              + [WEAR_WEIGHT_BOUNDS] * n_responses + [ITEM_WEIGHT_BOUNDS] * n_item)
    low, high = zip(*bounds, strict=True)
    start = np.clip(np.r_[0.0, 1.0, 0.5, 1e-3, np.zeros(n_responses + n_item)], low, high)
    x, at_start = _minimise(loss, start, bounds)
    offset, scale, decay, base = float(x[0]), float(x[1]), float(x[2]), float(x[3])
    weights = tuple(float(w) for w in x[4:split])
    item_weights = tuple(float(w) for w in x[split:])
    item_wear = _item_wear(vectors, item_weights)
    with torch.no_grad():
        wear = session_wear(steps, torch.tensor(weights), torch.tensor(decay), item_wear)
    fit = LeaveFit(end_logit_offset=offset, idle_hazard=0.0, nll=0.0, nll_at_zero=at_start,
                   steps=len(steps.left), sessions=steps.n_sessions, expected_leaves=0.0,
                   at_bound=_wear_at_bound(offset, scale, decay, base, weights, offset_bounds,
                                           np.bincount(steps.response, minlength=n_responses)),
                   end_logit_scale=scale, wear_weights=weights, wear_decay=decay,
                   wear_bounds=(float(wear.min()), float(wear.max())), wear_item_weights=item_weights,
                   item_wear_spread=float(item_wear[1:].std()) if item_wear is not None else 0.0,
                   base_hazard=base)
    return _scored(steps, hazard_scale, fit, vectors)


def _scored(steps: ImpressionSteps, hazard_scale: float, fit: LeaveFit,
            item_vectors: torch.Tensor | None = None) -> LeaveFit:
    """``fit`` with its negative log-likelihood and expected leaves on ``steps``."""
    p, tail = _fit_terms(steps, hazard_scale, fit, item_vectors)
    return replace(fit, nll=float(_nll(steps, p, tail)), expected_leaves=_expected_leaves(steps, p, tail),
                   unlogged_pass=steps.unlogged_pass)


Checks = dict[str, tuple[float, tuple[float, float], str, str]]
"""Per parameter: its fitted value, its search range, what ending at the low and at the high bound means."""


def _at_bounds(checks: Checks) -> dict[str, str]:
    """The parameters of ``checks`` that ended at a bound of their search range, with what that means."""
    tol = 1e-3
    out = {}
    for name, (value, (low, high), at_low, at_high) in checks.items():
        if value <= low + tol:
            out[name] = at_low
        elif value >= high - tol:
            out[name] = at_high
    return out


def _offset_check(offset: float, bounds: tuple[float, float], what: str) -> Checks:
    note = f"at its bound {offset:g}: {what} cannot make the per-step leave rate the impressions show"
    return {"end_logit_offset": (offset, bounds, note, note)}


def _wear_at_bound(offset: float, scale: float, decay: float, base: float, weights: tuple[float, ...],
                   offset_bounds: tuple[float, float], logged: np.ndarray) -> dict[str, str]:
    checks: Checks = {
        **_offset_check(offset, offset_bounds, "the learned end head and the wear"),
        "end_logit_scale": (scale, SCALE_BOUNDS, "at its bound 0: the learned end head adds nothing the "
                            "session wear does not already say about leaving", f"at its bound {scale:g}"),
        "wear_decay": (decay, DECAY_BOUNDS, "at its bound 0: only the step's own response moves leaving",
                       "at its bound 1: every step of the session counts alike, however long ago"),
    }
    checks.update({f"wear_weights[{b}]": (w, WEAR_WEIGHT_BOUNDS, f"at its bound {w:g}", f"at its bound {w:g}")
                   for b, w in enumerate(weights) if logged[b] > 0})
    never = {f"wear_weights[{b}]": "0: this response never occurs in the impressions"
             for b in range(len(weights)) if logged[b] == 0}
    # a base hazard of 0 is an answer (no leaving beyond what the wear explains), not a bound reached
    top = {"base_hazard": f"at its bound {base:g}"} if base >= BASE_HAZARD_BOUNDS[1] - 1e-3 else {}
    return {**_at_bounds(checks), **top, **never}


def describe(fit: Mapping[str, Any]) -> str:
    """One line for reports, from a fit's :meth:`LeaveFit.to_json` (what a calibration report keeps)."""
    if fit.get("wear_weights"):
        weights = ", ".join(f"{w:+.2f}" for w in fit["wear_weights"])
        low, high = fit["wear_bounds"]
        how = (f", end-logit scale {fit['end_logit_scale']:.3f}, session wear per response (none first) "
               f"[{weights}] with decay {fit['wear_decay']:.3f}, range [{low:.2f}, {high:.2f}], base "
               f"hazard {fit.get('base_hazard', 0.0):.4f}")
        if fit.get("wear_item_weights"):
            how += (f", plus the consumed item's part (spread {fit['item_wear_spread']:.2f} across the "
                    "catalogue)")
        if fit.get("heldout"):
            held = fit["heldout"]
            how += f"; held-out NLL per step {held['with_wear']:.4f} with the wear"
            if "response_wear" in held:
                how += f", {held['response_wear']:.4f} with the wear by response only"
                if not fit.get("wear_item_weights"):
                    how += " (so the consumed item's part is left out)"
            how += f", {held['without_wear']:.4f} without"
    else:
        how = f", idle hazard {fit['idle_hazard']:.3f}"
    at_bound = fit.get("at_bound") or {}
    unlogged = fit.get("unlogged_pass", 0.0)
    what = ("impression steps" if not unlogged else "steps rebuilt from the consumption gaps (a slate after "
            f"a session's last consumption passed over unlogged with probability {unlogged:.2f})")
    return (f"Leave fitted on {fit['steps']} {what} of {fit['sessions']} sessions: end-logit "
            f"offset {fit['end_logit_offset']:.3f}{how} (NLL per step {fit['nll']:.4f}, "
            f"{fit['nll_at_zero']:.4f} at the start; {fit['expected_leaves']:.0f} leaves expected, "
            f"{fit['sessions']} logged)" + (f"; not identified: {at_bound}" if at_bound else ""))
