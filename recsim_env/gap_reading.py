"""A second reading of a consumption log's time gaps: the dwell on what was consumed, then slates passed over.

A consumption log shows when each event happened, not the slates a user passed over between two of
them. The calibration reads each gap in one unit, the median gap (``max(1, round(gap / median))`` steps,
:func:`~recsim_env.population.logged_stats`). But the gap after an event holds the time the user spent
on what they consumed (its *dwell*, longer for a deeper behavior: a purchase takes longer than a glance)
and only then the slates passed over, so the one-unit reading turns a deep behavior's long dwell into
passed-over slates: on the cascade world's logs 2.8 after every buy and 0.015 after a view; on the
organic world's, whose users take a slate at every step and whose gaps are dwell alone, a consumption
rate of 0.54 where the truth is 0.99.

This module reads the gaps with a mixture model fitted by maximum likelihood instead:

``gap = dwell + k * browse``, ``dwell ~ LogNormal(mu_b, sigma_b)`` by the previous event's behavior
``b``, ``P(k) = p (1 - p)^k`` (each slate taken with probability ``p``, the consumption rate), and
``browse`` the seconds a passed-over slate takes.

Gaps of 0 s (several events logged in the same second: one batched submission) hold no slate. The two
extra parameters must pay for themselves by BIC against dwell alone, and a browse time under a second
(the clock's resolution) counts as none: then the gaps show no passed-over slate, and each event reads
as one step.

Why it is reported beside the one-unit reading and does not replace it (measured on the round's
fidelity_eval artifacts): it reads the organic world's gaps as dwell alone (1.000; truth 0.99), but the
cascade world's ignored slates take about 6 s against a view's 20 s dwell, so hardly a gap shows them:
it reads 1.000 (on 50,000 gaps 0.913, 12 s per slate) where the impressions show 0.60, and the one-unit
reading's 0.59 is right there by the very dwell it mistakes for slates. Calibrated on the 0.913 reading
(steps rebuilt from posterior draws of each gap's count) the cascade simulator over-estimated random
slates by 122% (Kendall's tau 0.07). Where the two readings disagree the time gaps do not identify the
consumption rate, and the calibration report says so: give it (``--consumption-rate``) where it is known
from elsewhere (impressions, a click-through rate).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import torch
from scipy.optimize import minimize

from user_models.data.artifact import SequenceDataset

MAX_PASSED_OVER = 64
"""The most slates one gap is read to have passed over (the mixture's sum is cut there)."""
FIT_GAPS = 20_000
"""The mixture is fitted on at most this many evenly spaced gaps (its dozen parameters need no more)."""
CLOCK_RESOLUTION_SECONDS = 1.0
"""A fitted browse time below this means the gaps show no passed-over slate."""
SIGMA_BOUNDS = (0.02, 3.0)
"""Search range of each dwell's log-standard deviation."""


@dataclass(frozen=True)
class GapReading:
    """What a log's time gaps say about the steps between its events.

    Attributes:
        consumption_rate: ``p``, the chance that a step's slate is taken (1.0 where not identified).
        browse_seconds: seconds a passed-over slate takes (0.0 where the gaps show none).
        dwell_median_seconds: per behavior id ``1..n``, the median dwell after it (nan: no gap follows it).
        dwell_sigma: per behavior id, the dwell's log-standard deviation (nan: no gap follows it).
        identified: the gaps show passed-over slates (the browse time is at least the clock's resolution).
        n_gaps: positive within-session gaps of the training split (the mixture is fitted on at most
            :data:`FIT_GAPS` of them, evenly spaced).
    """

    consumption_rate: float
    browse_seconds: float
    dwell_median_seconds: tuple[float, ...]
    dwell_sigma: tuple[float, ...]
    identified: bool
    n_gaps: int

    def to_json(self) -> dict[str, Any]:
        """The fitted figures, for reports (None for a behavior no gap follows)."""
        return {"consumption_rate": self.consumption_rate, "browse_seconds": self.browse_seconds,
                "dwell_median_seconds": _listed(self.dwell_median_seconds),
                "dwell_sigma": _listed(self.dwell_sigma),
                "identified": self.identified, "n_gaps": self.n_gaps}


def _listed(values: tuple[float, ...]) -> list[float | None]:
    """``values`` for JSON, None where a behavior had no gap (nan)."""
    return [None if math.isnan(v) else v for v in values]


READINGS_DISAGREE = 0.1
"""Consumption rates of the two readings further apart than this: the gaps do not identify it."""


def compare_readings(dataset: SequenceDataset, step_seconds: float, unit_rate: float) -> dict[str, Any]:
    """The dwell reading's figures beside the one-unit reading's (``unit_rate``, read with
    ``step_seconds``): its passed-over slates per gap by previous behavior, and whether they disagree."""
    reading = read_gaps(dataset)
    inter = dataset.interactions
    n_behaviors = max(1, len(dataset.meta.behaviors))
    rows = inter.select(pl.col("timestamp").diff().over(["user", "session"]).alias("gap"),
                        pl.col("behavior").shift(1).over(["user", "session"]).alias("previous"))
    rows = rows.filter(pl.col("gap").is_not_null())
    unit = ((rows["gap"].to_numpy() / step_seconds).round().clip(1) - 1).astype(np.float64)
    previous = np.clip(rows["previous"].to_numpy().astype(np.int64), 1, n_behaviors) - 1
    counts = np.bincount(previous, minlength=n_behaviors)
    by_behavior = np.bincount(previous, weights=unit, minlength=n_behaviors) / np.maximum(counts, 1)
    return {**reading.to_json(), "unit_consumption_rate": unit_rate, "unit_step_seconds": step_seconds,
            "unit_passed_over_by_behavior": [float(v) if c else None for v, c in zip(by_behavior, counts,
                                                                                         strict=True)],
            "disagree": abs(reading.consumption_rate - unit_rate) > READINGS_DISAGREE}


def describe(comparison: Mapping[str, Any], behaviors: tuple[str, ...]) -> str:
    """One line for reports, from :func:`compare_readings`."""
    def named(values: list[float | None], fmt: str) -> str:
        return ", ".join(f"{name} {fmt.format(v)}" for name, v in zip(behaviors, values, strict=False)
                         if v is not None)

    unit = named(comparison["unit_passed_over_by_behavior"], "{:.2f}")
    dwell = named(comparison["dwell_median_seconds"], "{:.0f} s")
    line = (f"Steps from the time gaps, in one unit of {comparison['unit_step_seconds']:.0f} s: consumption "
            f"rate {comparison['unit_consumption_rate']:.3f} (slates passed over per gap, by the previous "
            f"behavior: {unit}). Read as dwell (median by previous behavior: {dwell}) ")
    if comparison["identified"]:
        line += (f"plus {comparison['browse_seconds']:.1f} s per passed-over slate: "
                 f"{comparison['consumption_rate']:.3f}.")
    else:
        line += "the gaps show no passed-over slate: 1.000."
    if comparison["disagree"]:
        line += (" The readings disagree: the time gaps do not identify the consumption rate (pass "
                 "--consumption-rate where it is known).")
    return line


_READINGS: weakref.WeakKeyDictionary[SequenceDataset, GapReading] = weakref.WeakKeyDictionary()


def read_gaps(dataset: SequenceDataset) -> GapReading:
    """The mixture reading of ``dataset``'s within-session gaps (module docstring), fitted on the
    training split; computed once per dataset object."""
    cached = _READINGS.get(dataset)
    if cached is not None:
        return cached
    inter = dataset.interactions
    n_behaviors = max(1, len(dataset.meta.behaviors))
    lengths = inter.group_by("user").agg(pl.len().alias("n"))
    rows = inter.join(lengths, on="user", maintain_order="left").select(
        pl.col("timestamp").diff().over(["user", "session"]).alias("gap"),
        pl.col("behavior").shift(1).over(["user", "session"]).alias("previous"),
        (pl.col("position") < pl.col("n") - 2).alias("train"))
    gap = rows["gap"].fill_null(-1).to_numpy().astype(np.float64)
    previous = np.clip(rows["previous"].fill_null(1).to_numpy().astype(np.int64), 1, n_behaviors) - 1
    positive = gap > 0
    fit_rows = np.flatnonzero(positive & rows["train"].to_numpy())
    nan = (float("nan"),) * n_behaviors
    if fit_rows.size == 0:
        reading = GapReading(1.0, 0.0, nan, nan, False, 0)
        _READINGS[dataset] = reading
        return reading
    sample = fit_rows[np.linspace(0, fit_rows.size - 1, min(FIT_GAPS, fit_rows.size)).astype(np.int64)]
    mu, sigma, p, browse = _fit_mixture(gap[sample], previous[sample], n_behaviors)
    seen = np.bincount(previous[fit_rows], minlength=n_behaviors) > 0
    medians = tuple(float(math.exp(m)) if s else float("nan") for m, s in zip(mu, seen, strict=True))
    sigmas = tuple(float(v) if s else float("nan") for v, s in zip(sigma, seen, strict=True))
    identified = browse >= CLOCK_RESOLUTION_SECONDS
    if not identified:
        p, browse = 1.0, 0.0
    reading = GapReading(float(p), float(browse), medians, sigmas, bool(identified), int(fit_rows.size))
    _READINGS[dataset] = reading
    return reading


def _log_weights(gap: torch.Tensor, previous: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor,
                 logit_p: torch.Tensor, log_browse: torch.Tensor) -> torch.Tensor:
    """``[G, K]`` log of ``P(k) * density(gap | k)`` for ``k = 0 .. MAX_PASSED_OVER - 1``."""
    k = torch.arange(MAX_PASSED_OVER, dtype=torch.float64)
    dwell = gap[:, None] - k[None, :] * log_browse.exp()
    ok = dwell > 0
    log_dwell = torch.where(ok, dwell, torch.ones_like(dwell)).log()
    m, s = mu[previous][:, None], log_sigma[previous][:, None]
    density = -log_dwell - s - 0.5 * math.log(2 * math.pi) - 0.5 * ((log_dwell - m) / s.exp()) ** 2
    prior = torch.nn.functional.logsigmoid(logit_p) + k * torch.nn.functional.logsigmoid(-logit_p)
    return torch.where(ok, density + prior[None, :], torch.full_like(density, -math.inf))


def _fit_mixture(gap: np.ndarray, previous: np.ndarray, n_behaviors: int
                 ) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Maximum-likelihood ``(mu, sigma, p, browse)`` of the mixture on positive gaps, best of a few
    starting browse times (a fraction of the median gap, which the likelihood may be flat around);
    ``p = 1, browse = 0`` where dwell alone (log-normal by behavior) explains the gaps as well."""
    g = torch.as_tensor(gap, dtype=torch.float64)
    b = torch.as_tensor(previous, dtype=torch.int64)
    log_gap = np.log(gap)
    mu0 = np.array([log_gap[previous == i].mean() if (previous == i).any() else log_gap.mean()
                    for i in range(n_behaviors)])
    sd0 = np.array([max(log_gap[previous == i].std(), 0.1) if (previous == i).sum() > 1 else 0.5
                    for i in range(n_behaviors)])
    median = float(np.median(gap))
    lo_browse, hi_browse = math.log(0.01), math.log(max(float(gap.max()), 1.0))
    bounds = ([(None, None)] * n_behaviors + [tuple(math.log(v) for v in SIGMA_BOUNDS)] * n_behaviors
              + [(-7.0, 14.0), (lo_browse, hi_browse)])

    def loss(x: np.ndarray) -> tuple[float, np.ndarray]:
        t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        weights = _log_weights(g, b, t[:n_behaviors], t[n_behaviors:2 * n_behaviors], t[-2], t[-1])
        value = -torch.logsumexp(weights, dim=1).mean()
        value.backward()
        assert t.grad is not None
        return float(value.detach()), t.grad.numpy().copy()

    log_sd0 = np.log(np.clip(sd0, *SIGMA_BOUNDS))
    fits = [minimize(loss, np.concatenate([mu0, log_sd0, [0.0, math.log(fraction * median)]]), jac=True,
                     method="L-BFGS-B", bounds=bounds) for fraction in (0.1, 0.5, 1.0)]
    best = min(fits, key=lambda fit: float(fit.fun))
    # dwell alone is the closed-form log-normal fit by behavior (p = 1); the two extra parameters must
    # pay for themselves (BIC): a small browse time with many slates passed over can mimic a slightly
    # shifted, wider dwell, which the likelihood barely tells apart
    null = loss(np.concatenate([mu0, log_sd0, [bounds[-2][1], math.log(median)]]))[0]
    if not best.fun < null - math.log(len(gap)) / len(gap):
        return mu0, np.exp(log_sd0), 1.0, 0.0
    x = best.x
    return (x[:n_behaviors], np.exp(x[n_behaviors:2 * n_behaviors]), float(1 / (1 + math.exp(-x[-2]))),
            float(math.exp(x[-1])))
