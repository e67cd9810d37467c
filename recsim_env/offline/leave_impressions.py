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

A session is the impression table's ``session`` column, or, where it is null, a run of a user's
impressions without a gap of ``session_gap_seconds``. The last impression of the log (the user's last
session) is taken as a real leave: sessions cut off by the end of the logging window (or a logger's step
cap) would bias the offset up, and the fit cannot tell them apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    """

    end_prob: np.ndarray
    idle: np.ndarray
    left: np.ndarray
    clicked: np.ndarray
    n_sessions: int
    dropped: dict[str, int] = field(default_factory=dict)


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
                   (pl.col("clicked").max() > 0).alias("clicked")))
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
    return ImpressionSteps(end_prob, idle, left, clicked, int(starts.sum()), {"no timestamp": untimed})


@dataclass(frozen=True)
class LeaveFit:
    """The maximum-likelihood leave parameters on impression steps, and what they explain.

    Attributes:
        end_logit_offset, idle_hazard: the fit.
        nll, nll_at_zero: mean negative log-likelihood per step at the fit and at (0, 0).
        steps, sessions: what it was fitted on.
        expected_leaves: the fitted hazard's summed leave probabilities over the logged steps, against
            the ``sessions`` that ended there (calibration in the large).
        at_bound: the parameters that ended at a bound of their range, with what that means.
    """

    end_logit_offset: float
    idle_hazard: float
    nll: float
    nll_at_zero: float
    steps: int
    sessions: int
    expected_leaves: float
    at_bound: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def leave_probability(steps: ImpressionSteps, hazard_scale: float, offset: torch.Tensor,
                      idle_hazard: torch.Tensor) -> torch.Tensor:
    """``[I]`` the simulator's per-step leave probability at each impression step (patience off)."""
    e = torch.as_tensor(steps.end_prob, dtype=torch.float64).clamp(1e-6, 1 - 1e-6)
    learned = hazard_scale * torch.sigmoid(torch.log(e) - torch.log1p(-e) + offset)
    stay_idle = torch.exp(-idle_hazard * torch.as_tensor(steps.idle, dtype=torch.float64))
    return 1.0 - (1.0 - learned) * stay_idle


def fit_leave(steps: ImpressionSteps, hazard_scale: float, offset_bounds: tuple[float, float],
              idle_bounds: tuple[float, float]) -> LeaveFit:
    """Maximum likelihood of ``(end_logit_offset, idle_hazard)`` on ``steps``, L-BFGS-B inside the
    bounds, from (0, 0) clipped into them."""
    if not 0.0 < hazard_scale <= 1.0:
        raise InputError(f"hazard_scale must be in (0, 1], got {hazard_scale}")
    left = torch.as_tensor(steps.left, dtype=torch.float64)

    def nll(x: np.ndarray) -> tuple[float, np.ndarray]:
        params = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        p = leave_probability(steps, hazard_scale, params[0], params[1]).clamp(1e-12, 1 - 1e-12)
        loss = -(left * torch.log(p) + (1 - left) * torch.log1p(-p)).mean()
        loss.backward()
        assert params.grad is not None
        return float(loss.detach()), params.grad.numpy().copy()

    start = np.clip(np.zeros(2), [offset_bounds[0], idle_bounds[0]], [offset_bounds[1], idle_bounds[1]])
    result = minimize(nll, start, jac=True, method="L-BFGS-B", bounds=[offset_bounds, idle_bounds])
    offset, idle = (float(v) for v in result.x)
    with torch.no_grad():
        p = leave_probability(steps, hazard_scale, torch.tensor(offset), torch.tensor(idle))
    return LeaveFit(
        end_logit_offset=offset, idle_hazard=idle, nll=float(result.fun), nll_at_zero=nll(start)[0],
        steps=len(steps.left), sessions=steps.n_sessions, expected_leaves=float(p.sum()),
        at_bound=_at_bound(offset, idle, offset_bounds, idle_bounds),
    )


def _at_bound(offset: float, idle: float, offset_bounds: tuple[float, float],
              idle_bounds: tuple[float, float]) -> dict[str, str]:
    out = {}
    tol = 1e-3
    if min(abs(offset - b) for b in offset_bounds) < tol:
        out["end_logit_offset"] = (f"at its bound {offset:g}: the learned end head cannot make the per-step "
                                   "leave rate the impressions show")
    if idle <= idle_bounds[0] + tol:
        out["idle_hazard"] = ("at its bound 0: the impressions show no more leaving after unclicked slates "
                              "than the learned end already gives")
    elif idle >= idle_bounds[1] - tol:
        out["idle_hazard"] = f"at its bound {idle:g}: users leave after almost every unclicked slate"
    return out


def describe(fit: LeaveFit) -> str:
    """One line for reports."""
    return (f"leave fitted on {fit.steps} impression steps of {fit.sessions} sessions: end-logit offset "
            f"{fit.end_logit_offset:.3f}, idle hazard {fit.idle_hazard:.3f} (NLL per step {fit.nll:.4f}, "
            f"{fit.nll_at_zero:.4f} at the start; {fit.expected_leaves:.0f} leaves expected, "
            f"{fit.sessions} logged)" + (f"; not identified: {fit.at_bound}" if fit.at_bound else ""))
