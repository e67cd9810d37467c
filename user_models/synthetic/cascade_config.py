"""The cascade world's parameters: one frozen dataclass, every field documented.

The world is described in :mod:`user_models.synthetic.cascade`. It is a ground truth: its defaults were
set once, from first principles and for plausible logs, before any simulator was fitted to its logs, and
are frozen; a change that makes the same config build a different world bumps
:data:`CASCADE_WORLD_VERSION`. On the default world (2,000 fresh users, slates of 10) mean session
lengths in steps and pick rates (slates with a click) are: random slates 6.8 / 0.31; most attractive
items (bait-heavy) 4.7 / 0.94; logging policy A 16.5 / 0.64; logging policy B 21.5 / 0.54; an oracle
that reads the hidden state and avoids bait 50 / 0.68. Every session ends; none needs a step cap.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from user_models.errors import DatasetError, InputError

CASCADE_WORLD_VERSION = 1
"""Bumped whenever the same config would build a different world (stored in cascade datasets)."""


@dataclass(frozen=True)
class CascadeConfig:
    """Parameters of the cascade world and of the logs it writes.

    Tuples indexed by behavior hold one value per behavior id ``1..4`` (view, click, cart, buy).
    """

    # --- size and seed ------------------------------------------------------------------------------
    n_users: int = 5000
    """Users in the generated logs (``sample_users`` draws any number)."""
    n_items: int = 2000
    """Catalogue size; item ids are ``1..n_items``."""
    n_categories: int = 20
    """Item categories; each has a centroid direction in the latent space."""
    dim: int = 16
    """Dimension of the latent space of item vectors and user interests."""
    seed: int = 0
    """Seeds the catalogue and the logs; the same seed gives the same world and the same logs."""

    # --- items --------------------------------------------------------------------------------------
    category_zipf: float = 1.0
    """Category sizes and favourite-category odds fall off as ``1 / rank ** category_zipf``."""
    item_spread: float = 1.2
    """Spread of item vectors around their category centroid (before normalising to unit length)."""
    bait_fraction: float = 0.1
    """Share of items that are *bait*: eye-catching (high attractiveness) but of low quality, so they
    are clicked often, rarely go deep in the funnel and lower satisfaction when consumed."""
    attract_sd: float = 0.5
    """Standard deviation of an ordinary item's attractiveness (its click appeal, whoever looks)."""
    attract_quality: float = 0.3
    """An ordinary item's attractiveness grows by this per unit of quality (good items look good)."""
    bait_attract: float = 1.2
    """Mean attractiveness of a bait item (ordinary items have mean 0)."""
    bait_quality: float = -1.5
    """Mean quality of a bait item (ordinary items: standard normal)."""
    bait_quality_sd: float = 0.5
    """Standard deviation of a bait item's quality."""

    # --- users --------------------------------------------------------------------------------------
    interest_scale: float = 1.0
    """A new user's interest is this times a favourite category's centroid, plus noise."""
    interest_noise: float = 0.5
    """Norm (in expectation) of the Gaussian noise added to a new user's interest."""
    affinity_weight: float = 3.0
    """Weight of the affinity ``interest . item_vector`` in the attractiveness."""
    threshold_mean: float = 2.2
    """Mean of the user's click threshold: an examined item is clicked when its attractiveness clears
    it (probabilistically; see ``click_temperature``)."""
    threshold_sd: float = 0.5
    """Spread of the click threshold across users (picky and easy users)."""
    drift_rates: tuple[float, float, float, float] = (0.02, 0.04, 0.06, 0.08)
    """Per behavior (view..buy): after a consumption the interest moves this fraction of the way to the
    item's vector."""

    # --- cascade scan -------------------------------------------------------------------------------
    examine_first: float = 0.95
    """Probability that the user looks at the slate's first position at all."""
    scan_continue: float = 0.75
    """After examining a position without clicking, the probability of going on to the next one:
    position ``i`` is reached with probability ``examine_first * scan_continue ** i``."""
    click_temperature: float = 0.4
    """An examined item is clicked with ``sigmoid((attractiveness - threshold) / click_temperature)``."""
    memory_size: int = 20
    """The user remembers the last this many items they consumed."""
    repeat_penalty: float = 3.0
    """An item in the user's memory loses this much attractiveness (seen it, done it)."""

    # --- funnel -------------------------------------------------------------------------------------
    click_bias: float = -0.8
    """Logit of P(click | viewed) for an average-quality item at zero affinity."""
    click_quality: float = 1.0
    """Weight of quality in the click logit."""
    click_affinity: float = 1.5
    """Weight of the affinity in the click logit."""
    cart_bias: float = -1.5
    """Logit of P(cart | clicked) for an average-quality item at zero affinity."""
    cart_quality: float = 1.0
    """Weight of quality in the cart logit."""
    cart_affinity: float = 1.0
    """Weight of the affinity in the cart logit."""
    buy_bias: float = -1.0
    """Logit of P(buy | carted) for an average-quality item."""
    buy_quality: float = 1.2
    """Weight of quality in the buy logit."""

    # --- satisfaction and leaving -------------------------------------------------------------------
    satisfaction_init: float = 1.0
    """Satisfaction at every session start."""
    satisfaction_min: float = -3.0
    """Satisfaction is clipped to ``[satisfaction_min, satisfaction_max]``."""
    satisfaction_max: float = 2.5
    """Upper clip: even a perfect recommender leaves a positive leave probability."""
    fatigue: float = 0.04
    """Satisfaction lost at every step, whatever happens: sessions end even when every slate pleases."""
    no_click_delta: float = -0.3
    """Satisfaction change after a slate with no click."""
    stage_gains: tuple[float, float, float, float] = (0.05, 0.2, 0.4, 0.6)
    """Satisfaction change after a consumption, by its deepest behavior (view..buy)."""
    quality_gain: float = 0.2
    """Plus this times the consumed item's quality."""
    bait_penalty: float = -0.5
    """Plus this when the consumed item is bait (the feeling of having been tricked)."""
    leave_bias: float = -2.0
    """Leave logit at zero satisfaction: after each step the user leaves with
    ``sigmoid(leave_bias - leave_slope * satisfaction)``."""
    leave_slope: float = 1.0
    """How much each unit of satisfaction lowers the leave logit."""

    # --- logs ---------------------------------------------------------------------------------------
    slate_size: int = 10
    """Items per slate shown by the logging policy."""
    sessions_per_user: float = 4.0
    """Mean sessions per user in the logs (``1 + Poisson(sessions_per_user - 1)``)."""
    session_gap_seconds: float = 1800.0
    """The dataset's session gap; a gap at least this long in a replayed history starts a session."""
    start_time: int = 1_700_000_000
    """Unix seconds of the earliest possible first event."""
    start_spread_days: float = 30.0
    """Users' first sessions start uniformly over this many days after ``start_time``."""
    browse_median_seconds: float = 6.0
    """Median time spent on a slate with no click (log-normal)."""
    stage_median_seconds: tuple[float, float, float] = (15.0, 40.0, 60.0)
    """Median gap from view to click, click to cart, cart to buy (the funnel rows, seconds apart)."""
    dwell_median_seconds: tuple[float, float, float, float] = (20.0, 40.0, 40.0, 60.0)
    """Median time after a consumption's last row before the next slate, by deepest behavior."""
    gap_sigma: float = 0.6
    """Standard deviation of every log-normal gap within a session."""
    gap_max_seconds: float = 300.0
    """Every gap within a session is clipped to at most this (well below the session gap)."""
    between_sessions_median_hours: float = 20.0
    """Median gap between sessions."""
    between_sessions_sigma: float = 1.0
    """Standard deviation of log gap between sessions."""
    between_sessions_min_seconds: float = 7200.0
    """Gaps between sessions are clipped to at least this (above ``session_gap_seconds``)."""

    def __post_init__(self) -> None:
        for name in ("n_users", "n_items", "n_categories", "dim", "memory_size", "slate_size"):
            if getattr(self, name) < 1:
                raise InputError(f"CascadeConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.n_categories > self.n_items:
            raise InputError(f"CascadeConfig.n_categories ({self.n_categories}) exceeds n_items "
                             f"({self.n_items})")
        for name in ("bait_fraction", "examine_first", "scan_continue"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(f"CascadeConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("click_temperature", "session_gap_seconds", "browse_median_seconds", "leave_slope"):
            if not getattr(self, name) > 0:
                raise InputError(f"CascadeConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.sessions_per_user < 1:
            raise InputError(f"CascadeConfig.sessions_per_user must be >= 1, got {self.sessions_per_user}")
        if not self.satisfaction_min <= self.satisfaction_init <= self.satisfaction_max:
            raise InputError("CascadeConfig needs satisfaction_min <= satisfaction_init <= satisfaction_max")
        for name, n in (("drift_rates", 4), ("stage_gains", 4), ("stage_median_seconds", 3),
                        ("dwell_median_seconds", 4)):
            if len(getattr(self, name)) != n:
                raise InputError(f"CascadeConfig.{name} must have {n} values, got {getattr(self, name)}")
        if not all(0.0 <= r <= 1.0 for r in self.drift_rates):
            raise InputError(f"CascadeConfig.drift_rates must be in [0, 1], got {self.drift_rates}")
        if min(self.stage_median_seconds) <= 0 or min(self.dwell_median_seconds) <= 0:
            raise InputError("CascadeConfig: stage and dwell medians must be positive")
        if not 1 <= self.gap_max_seconds * 4 < self.session_gap_seconds <= self.between_sessions_min_seconds:
            raise InputError(
                "CascadeConfig needs 4 * gap_max_seconds < session_gap_seconds <= "
                f"between_sessions_min_seconds, got {self.gap_max_seconds}, {self.session_gap_seconds}, "
                f"{self.between_sessions_min_seconds}"
            )
        for name in ("threshold_sd", "attract_sd", "bait_quality_sd", "interest_noise", "item_spread",
                     "gap_sigma", "between_sessions_sigma", "start_spread_days", "fatigue"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise InputError(f"CascadeConfig.{name} must be finite and >= 0, got {value}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (tuples become lists), as stored in a cascade dataset's meta."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CascadeConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`DatasetError` (another version's world)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DatasetError(f"cascade config: unknown key(s) {unknown}; made by another recsim-env "
                               "version")
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        try:
            return cls(**values)
        except TypeError as exc:
            raise DatasetError(f"cascade config: {exc}") from None
