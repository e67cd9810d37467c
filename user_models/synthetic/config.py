"""The synthetic world's parameters: one frozen dataclass, every field documented.

The world is described in :mod:`user_models.synthetic.world`; the numbers below are what a user of the
project may want to turn (size, seed, how strongly interests drift, how patient users are). The defaults
give 5k users x 2k items x ~100 events per user (~505k events), a behavior mix of about 60% view, 24%
click, 8% cart and 8% buy, and sessions of about 9.6 events. Next-item HR@10 is ~0.15 for the world's
own logits and ~0.06 for popularity, so a sequence model has room to show what it learns
(``scripts/bench_synth.py`` prints these figures).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from user_models.errors import DatasetError, InputError

BEHAVIORS: tuple[str, ...] = ("view", "click", "cart", "buy")
"""The world's behavior vocabulary, lowest engagement first (behavior id ``i + 1`` is ``BEHAVIORS[i]``)."""

WORLD_VERSION = 1
"""Bumped whenever the same config would build a different world (stored in synthetic datasets)."""


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the synthetic world and of its organic logs.

    Tuples indexed by behavior hold one value per behavior id ``1..4`` (view, click, cart, buy); tuples
    that also cover "no response" (behavior id 0) hold five values, id 0 first.
    """

    # --- size and seed ------------------------------------------------------------------------------
    n_users: int = 5000
    """Users in the generated logs (``sample_users`` can draw any number more)."""
    n_items: int = 2000
    """Catalogue size; item ids are ``1..n_items``."""
    n_categories: int = 20
    """Item categories; each has a centroid direction in the latent space."""
    dim: int = 16
    """Dimension of the latent space shared by item vectors and user interests."""
    seed: int = 0
    """Seeds the world (items, categories) and the logs; the same seed gives the same dataset."""

    # --- items --------------------------------------------------------------------------------------
    category_zipf: float = 0.8
    """Category sizes and favourite-category odds fall off as ``1 / rank ** category_zipf``."""
    item_spread: float = 1.5
    """Spread of item vectors around their category centroid (before normalising to unit length)."""
    appeal_quality_corr: float = -0.4
    """Correlation of an item's *appeal* (what drives the choice) with its *quality* (what drives the
    funnel and satisfaction). Negative: some items are clickbait, chosen often but rarely bought, so a
    recommender that only maximises the immediate choice probability shortens sessions."""
    price_median: float = 25.0
    """Median item price; prices are log-normal around it."""
    price_sigma: float = 0.8
    """Standard deviation of log price."""

    # --- users and preference -----------------------------------------------------------------------
    interest_init_scale: float = 0.8
    """A new user's interest is this times the centroid of a favourite category, plus noise."""
    interest_init_noise: float = 0.4
    """Norm (in expectation) of the Gaussian noise added to a new user's interest."""
    affinity_scale: float = 12.0
    """Weight of the affinity ``interest . item_vector`` in the preference logit."""
    appeal_weight: float = 0.7
    """Weight of the item's appeal in the preference logit."""
    browse_temperature: float = 1.0
    """Organic logs sample the next item from ``softmax(item_logits / browse_temperature)`` over the
    whole catalogue; higher is more exploratory."""

    # --- interest drift -----------------------------------------------------------------------------
    drift_rates: tuple[float, float, float, float] = (0.05, 0.1, 0.15, 0.2)
    """Per behavior (view, click, cart, buy): after an event the interest moves this fraction of the way
    to the consumed item's vector, ``u <- u + rate * (v_item - u)``. Deeper engagement moves it more."""

    # --- satiation ----------------------------------------------------------------------------------
    satiation_rate: float = 0.4
    """After each consumed item the session's satiation vector moves this fraction of the way to the
    item's vector, ``s <- s + rate * (v_item - s)``; it resets to zero at every session start."""
    satiation_weight: float = 2.0
    """Weight of ``-(satiation . item_vector)`` in the preference logit: more of the same within a session
    is less attractive, a short-term counterweight to the drift that pulls interests toward it."""

    # --- behavior funnel ----------------------------------------------------------------------------
    click_bias: float = -0.9
    """Logit of P(click | viewed) at zero affinity and average quality."""
    click_affinity: float = 2.5
    """Weight of the affinity in the click logit."""
    click_satiation: float = 1.0
    """Weight of ``-(satiation . item_vector)`` in the click logit: more of the same is clicked less."""
    click_quality: float = 0.8
    """Weight of the item's quality in the click logit."""
    cart_bias: float = -1.2
    """Logit of P(cart | clicked) at zero affinity and average quality."""
    cart_affinity: float = 1.5
    """Weight of the affinity in the cart logit."""
    cart_quality: float = 0.8
    """Weight of the item's quality in the cart logit."""
    buy_bias: float = -0.5
    """Logit of P(buy | carted) for an average-quality item at the median price."""
    buy_quality: float = 1.0
    """Weight of the item's quality in the buy logit."""
    buy_price: float = 0.5
    """Price sensitivity: the buy logit falls by this per unit of ``log(price / price_median)``."""

    # --- patience and session end -------------------------------------------------------------------
    patience_init: float = 1.0
    """Patience at the start of every session."""
    patience_max: float = 1.0
    """Patience is clipped to ``[0, patience_max]``. At the default (``= patience_init``) good events only
    refill what bad ones drained, so even a perfect recommender leaves a per-event end probability of
    ``sigmoid(end_bias - end_slope * patience_max)`` (about 1.3%): sessions stay finite."""
    patience_deltas: tuple[float, float, float, float, float] = (-0.3, -0.2, -0.05, 0.1, 0.3)
    """Change of patience after an event, per behavior id 0..4 (no response, view, click, cart, buy):
    low-value events drain it, high-value ones refill it."""
    end_bias: float = -1.3
    """Session-end logit at zero patience; ``end_prob = sigmoid(end_bias - end_slope * patience)``."""
    end_slope: float = 3.0
    """How much each unit of patience lowers the session-end logit."""

    # --- log length and time ------------------------------------------------------------------------
    mean_events_per_user: float = 100.0
    """Mean number of events per user in the logs (log-normal around it)."""
    events_per_user_sigma: float = 0.5
    """Standard deviation of log events per user."""
    min_events_per_user: int = 10
    """Every user has at least this many events (so leave-last-out splits have history)."""
    max_events_per_user: int = 400
    """No user has more events than this (bounds generation time)."""
    start_time: int = 1_700_000_000
    """Unix seconds of the earliest possible first event (2023-11-14)."""
    start_spread_days: float = 30.0
    """Users' first events are spread uniformly over this many days after ``start_time``."""
    dwell_median_seconds: tuple[float, float, float, float] = (20.0, 60.0, 90.0, 120.0)
    """Median gap after an event within a session, per behavior (view, click, cart, buy): deeper
    engagement takes longer."""
    dwell_sigma: float = 0.7
    """Standard deviation of log gap within a session."""
    dwell_max_seconds: float = 1200.0
    """Gaps within a session are clipped to at most this (below ``session_gap_seconds``)."""
    session_gap_seconds: float = 1800.0
    """A gap at least this long starts a new session (patience refills); also the dataset's session gap."""
    between_sessions_median_hours: float = 20.0
    """Median gap between sessions."""
    between_sessions_sigma: float = 1.0
    """Standard deviation of log gap between sessions."""
    between_sessions_min_seconds: float = 3600.0
    """Gaps between sessions are clipped to at least this (above ``session_gap_seconds``)."""

    def __post_init__(self) -> None:
        positive_ints = ("n_users", "n_items", "n_categories", "dim", "min_events_per_user")
        for name in positive_ints:
            if getattr(self, name) < 1:
                raise InputError(f"SyntheticConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.n_categories > self.n_items:
            raise InputError(
                f"SyntheticConfig.n_categories ({self.n_categories}) exceeds n_items ({self.n_items})"
            )
        if self.max_events_per_user < self.min_events_per_user:
            raise InputError(
                f"SyntheticConfig.max_events_per_user ({self.max_events_per_user}) is below "
                f"min_events_per_user ({self.min_events_per_user})"
            )
        positive = ("browse_temperature", "price_median", "mean_events_per_user", "patience_max",
                    "session_gap_seconds")
        for name in positive:
            if not getattr(self, name) > 0:
                raise InputError(f"SyntheticConfig.{name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.patience_init <= self.patience_max:
            raise InputError(f"SyntheticConfig needs 0 <= patience_init <= patience_max, got "
                             f"{self.patience_init}, {self.patience_max}")
        if not 0 <= self.satiation_rate <= 1:
            raise InputError(f"SyntheticConfig.satiation_rate must be in [0, 1], got {self.satiation_rate}")
        if not -1.0 <= self.appeal_quality_corr <= 1.0:
            raise InputError(f"SyntheticConfig.appeal_quality_corr must be in [-1, 1], got "
                             f"{self.appeal_quality_corr}")
        if len(self.drift_rates) != len(BEHAVIORS) or not all(0 <= r <= 1 for r in self.drift_rates):
            raise InputError(f"SyntheticConfig.drift_rates must be {len(BEHAVIORS)} values in [0, 1], "
                             f"got {self.drift_rates}")
        if len(self.patience_deltas) != len(BEHAVIORS) + 1:
            raise InputError(f"SyntheticConfig.patience_deltas must have {len(BEHAVIORS) + 1} values "
                             f"(no response first), got {self.patience_deltas}")
        if len(self.dwell_median_seconds) != len(BEHAVIORS) or min(self.dwell_median_seconds) <= 0:
            raise InputError(f"SyntheticConfig.dwell_median_seconds must be {len(BEHAVIORS)} positive "
                             f"values, got {self.dwell_median_seconds}")
        if not 1 <= self.dwell_max_seconds < self.session_gap_seconds <= self.between_sessions_min_seconds:
            raise InputError(
                "SyntheticConfig needs 1 <= dwell_max_seconds < session_gap_seconds <= "
                f"between_sessions_min_seconds, got {self.dwell_max_seconds}, {self.session_gap_seconds}, "
                f"{self.between_sessions_min_seconds}"
            )
        for name in ("start_time", "start_spread_days", "dwell_sigma", "between_sessions_sigma",
                     "events_per_user_sigma", "price_sigma", "item_spread", "interest_init_noise"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise InputError(f"SyntheticConfig.{name} must be finite and >= 0, got {value}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (tuples become lists), as stored in a synthetic dataset's meta."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SyntheticConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`DatasetError` (another version's world)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DatasetError(
                f"synthetic config: unknown key(s) {unknown}; made by another recsim-env version"
            )
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        try:
            return cls(**values)
        except TypeError as exc:  # a value of the wrong type, e.g. a string where a number belongs
            raise DatasetError(f"synthetic config: {exc}") from None


def category_names(n_categories: int) -> tuple[str, ...]:
    """``cat_00``, ``cat_01``, ...: the names the synthetic worlds give their categories in datasets."""
    width = max(2, len(str(n_categories - 1)))
    return tuple(f"cat_{k:0{width}d}" for k in range(n_categories))
