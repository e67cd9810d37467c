"""Reading a consumption log's time gaps as steps: the dwell on what was consumed, then slates passed over.

A consumption log shows when each event happened, not the slates a user passed over between two of
them. The gap after an event holds the time the user spent on what they consumed (its *dwell*, longer
for a deeper behavior: a purchase takes longer than a glance) and then the slates they passed over
before the next consumption. Reading every gap in one unit (``round(gap / median gap)``) turns a deep
behavior's long dwell into passed-over slates: on the cascade world's logs that put 2.8 passed-over
slates after every buy and 0.015 after a view, so the leave fit credited buys with surviving idle steps;
on the organic world's logs, whose users take a slate at every step and whose gaps are dwell alone, it
read a consumption rate of 0.54 where the truth is 0.99.

So the gaps are read with a mixture model fitted to them by maximum likelihood:

``gap = dwell + k * browse``, ``dwell ~ LogNormal(mu_b, sigma_b)`` by the previous event's behavior
``b``, ``P(k) = p (1 - p)^k`` (each slate taken with probability ``p``, the consumption rate), and
``browse`` the seconds a passed-over slate takes.

Each gap's passed-over count ``k`` is then drawn from its posterior (seeded: the same logs read the
same). Gaps of 0 s (several events logged in the same second: one batched submission) hold no slate.
Where the fitted browse time is under one second (the clock's resolution) the gaps show no passed-over
slates at all: they do not identify ``p``, each event is read as one step (``p = 1``) and the reading
says so. What no gap can show is a passed-over slate much shorter than the dwell's own spread: the
cascade world's ignored slates take about 6 s against a view's 20 s dwell, so its gaps read ``p`` near
0.9 where its impressions show 0.60 (BENCHMARKS.md ``fidelity_eval``); give the consumption rate
(``--consumption-rate``) where it is known from elsewhere.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch
from scipy.optimize import minimize

from user_models.data.artifact import SequenceDataset

MAX_PASSED_OVER = 64
"""The most slates one gap is read to have passed over (the mixture's sum is cut there)."""
FIT_GAPS = 50_000
"""The mixture is fitted on at most this many evenly spaced gaps (its dozen parameters need no more)."""
CLOCK_RESOLUTION_SECONDS = 1.0
"""A fitted browse time below this means the gaps show no passed-over slate."""
SIGMA_BOUNDS = (0.02, 3.0)
"""Search range of each dwell's log-standard deviation."""
READING_SEED = 0
"""Seed of the posterior draws of the passed-over counts."""


@dataclass(frozen=True)
class GapReading:
    """What a log's time gaps say about the steps between its events.

    Attributes:
        consumption_rate: ``p``, the chance that a step's slate is taken (1.0 where not identified).
        browse_seconds: seconds a passed-over slate takes (0.0 where the gaps show none).
        dwell_median_seconds: per behavior id ``1..n``, the median dwell after it (nan: no gap follows it).
        dwell_sigma: per behavior id, the dwell's log-standard deviation (nan: no gap follows it).
        identified: the gaps show passed-over slates (the browse time is at least the clock's resolution).
        n_gaps: positive within-session gaps of the training split the mixture was fitted on.
        passed_over: per row of the dataset's interactions (in their order), the slates passed over
            just before it (0 for a session's first event and for 0 s gaps).
    """

    consumption_rate: float
    browse_seconds: float
    dwell_median_seconds: tuple[float, ...]
    dwell_sigma: tuple[float, ...]
    identified: bool
    n_gaps: int
    passed_over: np.ndarray

    def describe(self) -> str:
        """One line for reports."""
        dwell = ", ".join(f"{m:.0f} s" for m in self.dwell_median_seconds if not math.isnan(m))
        if not self.identified:
            return (f"the time gaps are dwell alone (median by behavior {dwell}; no passed-over slate "
                    f"shows in {self.n_gaps} gaps): each event read as one step")
        return (f"time gaps read as dwell (median by behavior {dwell}) plus {self.browse_seconds:.1f} s per "
                f"passed-over slate: consumption rate {self.consumption_rate:.3f} ({self.n_gaps} gaps)")


_READINGS: weakref.WeakKeyDictionary[SequenceDataset, GapReading] = weakref.WeakKeyDictionary()


def read_gaps(dataset: SequenceDataset) -> GapReading:
    """The mixture reading of ``dataset``'s within-session gaps (module docstring), fitted on the
    training split and applied to every row; computed once per dataset object."""
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
    passed_over = np.zeros(len(gap), dtype=np.int64)
    nan = (float("nan"),) * n_behaviors
    if fit_rows.size == 0:
        reading = GapReading(1.0, 0.0, nan, nan, False, 0, passed_over)
        _READINGS[dataset] = reading
        return reading
    sample = fit_rows[np.linspace(0, fit_rows.size - 1, min(FIT_GAPS, fit_rows.size)).astype(np.int64)]
    mu, sigma, p, browse = _fit_mixture(gap[sample], previous[sample], n_behaviors)
    seen = np.bincount(previous[fit_rows], minlength=n_behaviors) > 0
    medians = tuple(float(math.exp(m)) if s else float("nan") for m, s in zip(mu, seen, strict=True))
    sigmas = tuple(float(v) if s else float("nan") for v, s in zip(sigma, seen, strict=True))
    identified = browse >= CLOCK_RESOLUTION_SECONDS
    if identified:
        where = np.flatnonzero(positive)
        passed_over[where] = _draw_counts(gap[where], previous[where], mu, sigma, p, browse)
    else:
        p, browse = 1.0, 0.0
    reading = GapReading(float(p), float(browse), medians, sigmas, bool(identified), int(fit_rows.size),
                         passed_over)
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
    starting browse times (a fraction of the median gap, which the likelihood may be flat around)."""
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

    best: tuple[float, np.ndarray] | None = None
    for fraction in (0.1, 0.5, 1.0):
        start = np.concatenate([mu0, np.log(np.clip(sd0, *SIGMA_BOUNDS)), [0.0, math.log(fraction * median)]])
        result = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds)
        if best is None or result.fun < best[0]:
            best = (float(result.fun), result.x)
    assert best is not None
    x = best[1]
    return (x[:n_behaviors], np.exp(x[n_behaviors:2 * n_behaviors]), float(1 / (1 + math.exp(-x[-2]))),
            float(math.exp(x[-1])))


def _draw_counts(gap: np.ndarray, previous: np.ndarray, mu: np.ndarray, sigma: np.ndarray, p: float,
                 browse: float, chunk: int = 65_536) -> np.ndarray:
    """One draw of each gap's passed-over count from its posterior under the fitted mixture."""
    rng = np.random.default_rng(READING_SEED)
    mu_t = torch.as_tensor(mu, dtype=torch.float64)
    log_sigma = torch.as_tensor(np.log(sigma), dtype=torch.float64)
    logit_p = torch.tensor(math.log(p / (1 - p)) if p < 1 else 30.0, dtype=torch.float64)
    log_browse = torch.tensor(math.log(browse), dtype=torch.float64)
    counts = np.empty(len(gap), dtype=np.int64)
    for start in range(0, len(gap), chunk):
        part = slice(start, start + chunk)
        weights = _log_weights(torch.as_tensor(gap[part], dtype=torch.float64),
                               torch.as_tensor(previous[part]), mu_t, log_sigma, logit_p, log_browse)
        posterior = torch.softmax(weights, dim=1).cumsum(dim=1).numpy()
        u = rng.random((posterior.shape[0], 1))
        counts[part] = np.minimum((posterior < u * posterior[:, -1:]).sum(axis=1), MAX_PASSED_OVER - 1)
    return counts
