"""The synthetic ground-truth world: users whose interests drift with what they consume.

The world is a :class:`~user_models.protocol.UserModel`, so the simulation core can run any policy in it
exactly as in the learned simulator, and the organic logs that train the learned simulator are produced
through the same methods (:mod:`user_models.synthetic.logs`).

The model, with ``sigmoid`` the logistic function and every constant a field of
:class:`~user_models.synthetic.config.SyntheticConfig`:

- **Items** have a category, a unit vector ``v`` near their category's centroid, a *quality* ``q``
  (standard normal), an *appeal* ``a`` correlated with quality by ``appeal_quality_corr`` and a price.
- **Users** have a long-term interest vector ``u`` in the same space (a new user: a favourite category's
  centroid scaled by ``interest_init_scale`` plus noise), a short-term *satiation* vector ``s`` (what
  they consumed in this session) and a *patience* ``p``.
- **Preference**: ``item_logit = affinity_scale * (u . v) - satiation_weight * (s . v) + appeal_weight * a``:
  users like what matches their interests, tire of more of the same within a session, and are drawn
  by appeal.
- **Funnel**: a chosen item is viewed; it is clicked with ``sigmoid(click_bias + click_affinity * u.v -
  click_satiation * s.v + click_quality * q)``, carted given a click with ``sigmoid(cart_bias +
  cart_affinity * u.v + cart_quality * q)`` and bought given a cart with ``sigmoid(buy_bias +
  buy_quality * q - buy_price * log(price / price_median))``.
- **Drift**: after an event with behavior ``b`` on item ``v``, ``u <- u + drift_rates[b] * (v - u)`` and
  ``s <- s + satiation_rate * (v - s)``.
- **Sessions**: a gap of at least ``session_gap_seconds`` starts a new session: patience refills to
  ``patience_init`` and satiation resets to zero. Each event adds ``patience_deltas[b]`` to patience
  (negative for views and no response, positive for carts and buys), clipped to ``[0, patience_max]``.
  After each event the session ends with ``end_prob = sigmoid(end_bias - end_slope * p)``: users who
  get nothing they value leave.

The state update is deterministic given the events, so :meth:`SyntheticWorld.encode` rebuilds a user's
state by replaying their history. For the users who wrote the world's logs (a history whose ``users``
names them, in a world rebuilt by :meth:`SyntheticWorld.from_dataset`) the replay starts from that user's
true initial interest, regenerated from the logs' seed: the state is then exactly the logged user's, so
running a policy in the world continues the very people the logs came from. Any other history replays
from the population's prior mean interest, which is exact except for the unknown initial interest: its
weight in ``u`` after the history is ``prod(1 - drift_rates[b_t])``, decaying geometrically with the
number of events. Satiation and patience are exact either way: both restart with every session and
depend only on the events.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from user_models.data.artifact import SequenceDataset
from user_models.errors import DatasetError
from user_models.protocol import History
from user_models.synthetic.config import BEHAVIORS, WORLD_VERSION, SyntheticConfig, category_names


@dataclass
class SyntheticState:
    """Mutable per-row state of synthetic users (``step`` and ``reset_rows`` update it in place).

    Attributes:
        interest: ``[B, dim]`` float32 long-term interest vectors.
        satiation: ``[B, dim]`` float32 short-term satiation vectors (zero at a session start).
        patience: ``[B]`` float32 patience, in ``[0, patience_max]``.
    """

    interest: torch.Tensor
    satiation: torch.Tensor
    patience: torch.Tensor

    @property
    def batch_size(self) -> int:
        return int(self.interest.shape[0])

    def rows(self, stop: int) -> SyntheticState:
        """A view of the first ``stop`` rows; updates through it change this state."""
        return SyntheticState(self.interest[:stop], self.satiation[:stop], self.patience[:stop])


def derived_seeds(seed: int) -> tuple[int, int]:
    """Independent seeds for the world's construction and for its logs, both derived from ``seed``."""
    world, logs = np.random.SeedSequence(seed).spawn(2)
    return int(world.generate_state(1, np.uint64)[0]), int(logs.generate_state(1, np.uint64)[0])


def first_log_draws(world: SyntheticWorld, generator: torch.Generator) -> tuple[torch.Tensor, SyntheticState]:
    """The organic logs' first random draws, in order: each user's event budget (``[n_users]`` int64),
    then the users themselves (:meth:`SyntheticWorld.sample_users`, row ``u`` is user id ``u``).

    :func:`~user_models.synthetic.logs.generate_logs` starts with these; :meth:`SyntheticWorld.from_dataset`
    repeats them to know the logged users' true initial interests.
    """
    c = world.config
    dev = generator.device
    mu = math.log(c.mean_events_per_user) - c.events_per_user_sigma**2 / 2
    z = torch.randn(c.n_users, generator=generator, device=dev)
    lengths = torch.exp(mu + c.events_per_user_sigma * z)
    lengths = lengths.round().long().clamp(c.min_events_per_user, c.max_events_per_user)
    return lengths.to(world.device), world.sample_users(c.n_users, generator)


class SyntheticWorld:
    """The ground-truth world as a batched :class:`~user_models.protocol.UserModel` on any torch device.

    The world's items are built on the CPU from ``config.seed`` (so they are identical on every device)
    and then moved to ``device``. All users' randomness comes from generators passed in.

    Args:
        config: the world's parameters; see :class:`SyntheticConfig`.
        device: where the world's tensors live and its methods compute.

    Attributes:
        config: the parameters it was built from.
        category_weights: ``[n_categories]`` share of items in each category, and the odds of it being a
            new user's favourite.
        centroids: ``[n_categories, dim]`` unit centroid of each category.
        item_category: ``[n_items + 1]`` category index of each item (-1 for padding).
        item_vectors: ``[n_items + 1, dim]`` unit item vectors (row 0, padding, is zero).
        item_quality: ``[n_items + 1]`` quality (standard normal): drives the funnel, so satisfaction.
        item_appeal: ``[n_items + 1]`` appeal: drives the choice; correlated with quality by
            ``appeal_quality_corr``.
        item_price: ``[n_items + 1]`` price (0 for padding).
        prior_mean: ``[dim]`` the population's mean initial interest, where :meth:`encode` starts for
            users it does not know.
        logged_interest: ``[n_dataset_users, dim]`` the true initial interest of each user of the dataset
            the world was rebuilt from (:meth:`from_dataset`), by dataset user index; None otherwise.
    """

    def __init__(self, config: SyntheticConfig, device: torch.device | str = "cpu") -> None:
        self.config = config
        self._device = torch.device(device)
        c = config
        g = torch.Generator().manual_seed(derived_seeds(c.seed)[0])
        zipf = torch.arange(1, c.n_categories + 1, dtype=torch.float64) ** -c.category_zipf
        weights = (zipf / zipf.sum()).float()
        centroids = _unit(torch.randn(c.n_categories, c.dim, generator=g))
        # Every category gets at least one item; the rest follow the category weights; ids are shuffled.
        extra = torch.multinomial(weights, c.n_items - c.n_categories, replacement=True, generator=g)
        cats = torch.cat([torch.arange(c.n_categories), extra])[torch.randperm(c.n_items, generator=g)]
        noise = torch.randn(c.n_items, c.dim, generator=g) * (c.item_spread / math.sqrt(c.dim))
        vectors = _unit(centroids[cats] + noise)
        quality = torch.randn(c.n_items, generator=g)
        rho = c.appeal_quality_corr
        appeal = rho * quality + math.sqrt(1.0 - rho * rho) * torch.randn(c.n_items, generator=g)
        price = torch.exp(math.log(c.price_median) + c.price_sigma * torch.randn(c.n_items, generator=g))
        price = torch.clamp(torch.round(price * 100) / 100, min=0.01)

        def padded(values: torch.Tensor, pad: float) -> torch.Tensor:
            row = torch.full((1, *values.shape[1:]), pad, dtype=values.dtype)
            return torch.cat([row, values]).to(self._device)

        self.item_category = padded(cats, -1)
        self.item_vectors = padded(vectors, 0.0)
        self.item_quality = padded(quality, 0.0)
        self.item_appeal = padded(appeal, 0.0)
        self.item_price = padded(price, 0.0)
        self._log_price_rel = padded(torch.log(price / c.price_median), 0.0)
        self.centroids = centroids.to(self._device)
        self.category_weights = weights.to(self._device)
        self.prior_mean = c.interest_init_scale * (self.category_weights @ self.centroids)
        # Item part of the preference logit; the padding item's is -inf so that it is never preferred.
        self._logit_bias = c.appeal_weight * self.item_appeal
        self._logit_bias[0] = -math.inf
        self._drift = torch.tensor((0.0, *c.drift_rates), device=self._device)
        self._patience_delta = torch.tensor(c.patience_deltas, device=self._device)
        self.logged_interest: torch.Tensor | None = None

    # --- protocol properties ------------------------------------------------------------------------
    @property
    def n_items(self) -> int:
        return self.config.n_items

    @property
    def behaviors(self) -> tuple[str, ...]:
        return BEHAVIORS

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def category_names(self) -> tuple[str, ...]:
        """``cat_00``, ``cat_01``, ...: category ``k``'s name in datasets."""
        return category_names(self.config.n_categories)

    # --- users --------------------------------------------------------------------------------------
    def sample_users(self, n: int, generator: torch.Generator) -> SyntheticState:
        """``n`` fresh users from the prior, with their true random initial interests, at a session start.

        Draws on ``generator``'s device, then moves the state to the world's device.
        """
        c = self.config
        dev = generator.device
        favourite = torch.multinomial(self.category_weights.to(dev), n, replacement=True, generator=generator)
        noise = torch.randn(n, c.dim, generator=generator, device=dev)
        noise *= c.interest_init_noise / math.sqrt(c.dim)
        interest = c.interest_init_scale * self.centroids.to(dev)[favourite] + noise
        return self._session_start(interest.to(self._device))

    def prior_state(self, n: int) -> SyntheticState:
        """``n`` users at the population's mean interest and a session start (what :meth:`encode` replays
        from)."""
        return self._session_start(self.prior_mean.expand(n, -1).clone())

    def _session_start(self, interest: torch.Tensor) -> SyntheticState:
        n = interest.shape[0]
        patience = torch.full((n,), self.config.patience_init, device=self._device)
        return SyntheticState(interest, torch.zeros_like(interest), patience)

    # --- protocol methods ---------------------------------------------------------------------------
    def encode(self, history: History) -> SyntheticState:
        """Replay each row's events (a loop over positions, not users) from the row's true initial state
        when ``history.users`` names logged users and the world knows them (:attr:`logged_interest`),
        from :meth:`prior_state` otherwise (exact except for the unknown initial interest, whose weight
        decays geometrically; see the module docstring). Rows of length 0 get the start state.
        """
        history = history.to(self._device)
        if history.users is not None and self.logged_interest is not None:
            rows = history.user_rows(self.logged_interest.shape[0], self._device)
            state = self._session_start(self.logged_interest[rows])
        else:
            state = self.prior_state(history.batch_size)
        positions = torch.arange(history.items.shape[1], device=self._device)
        active = positions[None, :] < history.lengths[:, None]
        for t in range(int(history.lengths.max()) if history.batch_size else 0):
            self.step(state, history.items[:, t], history.behaviors[:, t], history.gaps[:, t], active[:, t])
        return state

    def step(
        self,
        state: SyntheticState,
        items: torch.Tensor,
        behaviors: torch.Tensor,
        gaps: torch.Tensor,
        active: torch.Tensor,
    ) -> SyntheticState:
        """Apply one event per active row, in place: session restart, patience, satiation, interest drift.

        A gap of at least ``session_gap_seconds`` first restarts the session (patience back to
        ``patience_init``, satiation to zero); a negative (unknown) gap continues it. Behavior 0 ("no
        response": the user was shown ``items`` and took none) drains patience by ``patience_deltas[0]``
        and moves neither interest nor satiation.
        """
        c = self.config
        new_session = gaps >= c.session_gap_seconds
        patience = torch.where(new_session, torch.full_like(state.patience, c.patience_init), state.patience)
        patience = torch.clamp(patience + self._patience_delta[behaviors], 0.0, c.patience_max)
        vectors = self.item_vectors[items]
        satiation = torch.where(new_session[:, None], 0.0, state.satiation)
        satiation = satiation + (c.satiation_rate * (behaviors > 0))[:, None] * (vectors - satiation)
        interest = state.interest + self._drift[behaviors][:, None] * (vectors - state.interest)
        state.patience.copy_(torch.where(active, patience, state.patience))
        state.satiation.copy_(torch.where(active[:, None], satiation, state.satiation))
        state.interest.copy_(torch.where(active[:, None], interest, state.interest))
        return state

    def reset_rows(self, state: SyntheticState, rows: torch.Tensor, history: History) -> SyntheticState:
        """Replace the rows where ``rows`` is set by users encoded from ``history`` (in row order)."""
        fresh = self.encode(history)
        state.interest[rows] = fresh.interest
        state.satiation[rows] = fresh.satiation
        state.patience[rows] = fresh.patience
        return state

    def item_logits(self, state: SyntheticState, items: torch.Tensor) -> torch.Tensor:
        """``[B, k]`` true preference logits; item 0 (padding, no item) gets ``-inf``."""
        taste = torch.einsum("bd,bkd->bk", self._taste(state), self.item_vectors[items])
        return taste + self._logit_bias[items]

    def all_item_logits(self, state: SyntheticState) -> torch.Tensor:
        """``[B, n_items + 1]`` :meth:`item_logits` of every item (column = item id, column 0 ``-inf``).

        The same numbers as ``item_logits(state, all ids)`` but one matrix product instead of a
        ``[B, n_items, dim]`` gather; organic browsing samples from it. The name and layout are the
        full-catalogue fast path that the learned user model also offers and the simulation core uses.
        """
        return torch.addmm(self._logit_bias, self._taste(state), self.item_vectors.T)

    def _taste(self, state: SyntheticState) -> torch.Tensor:
        """``[B, dim]`` the vector whose dot product with an item vector is the logit's user part."""
        c = self.config
        return c.affinity_scale * state.interest - c.satiation_weight * state.satiation

    def behavior_probs(self, state: SyntheticState, items: torch.Tensor) -> torch.Tensor:
        """``[B, k, 4]`` the funnel: P(view only), P(click, no cart), P(cart, no buy), P(buy)."""
        c = self.config
        vectors = self.item_vectors[items]
        affinity = torch.einsum("bd,bkd->bk", state.interest, vectors)
        satiety = torch.einsum("bd,bkd->bk", state.satiation, vectors)
        quality = self.item_quality[items]
        click_logit = c.click_bias + c.click_affinity * affinity + c.click_quality * quality
        p_click = torch.sigmoid(click_logit - c.click_satiation * satiety)
        p_cart = torch.sigmoid(c.cart_bias + c.cart_affinity * affinity + c.cart_quality * quality)
        p_buy = torch.sigmoid(c.buy_bias + c.buy_quality * quality - c.buy_price * self._log_price_rel[items])
        return torch.stack(
            [1 - p_click, p_click * (1 - p_cart), p_click * p_cart * (1 - p_buy), p_click * p_cart * p_buy],
            dim=-1,
        )

    def end_prob(self, state: SyntheticState) -> torch.Tensor:
        """``[B]`` P(the session ends after the last event) ``= sigmoid(end_bias - end_slope * patience)``."""
        return torch.sigmoid(self.config.end_bias - self.config.end_slope * state.patience)

    def item_embeddings(self) -> torch.Tensor:
        """``[n_items + 1, dim]`` the true item vectors (row 0 = padding = zero)."""
        return self.item_vectors

    # --- datasets -----------------------------------------------------------------------------------
    @classmethod
    def from_dataset(cls, ds: SequenceDataset, device: torch.device | str = "cpu") -> SyntheticWorld:
        """Rebuild the exact world that generated a synthetic dataset (from ``meta.extra``).

        Raises:
            DatasetError: the dataset was not made by :func:`~user_models.synthetic.synthesize_dataset`,
                by another world version, or its items do not match the rebuilt world.
        """
        where = ds.path or ds.meta.name
        extra = ds.meta.extra
        if "synthetic_config" not in extra:
            raise DatasetError(f"{where}: not a synthetic dataset (no synthetic_config in meta.json extra)")
        version = extra.get("synthetic_world_version")
        if version != WORLD_VERSION:
            raise DatasetError(
                f"{where}: synthetic world version {version!r}, this recsim-env builds version "
                f"{WORLD_VERSION}; run `recsim data synth` again"
            )
        world = cls(SyntheticConfig.from_dict(extra["synthetic_config"]), device)
        names = np.array(world.category_names)[world.item_category[1:].cpu().numpy()]
        if ds.n_items != world.n_items or not np.array_equal(ds.items["category"].to_numpy(), names):
            raise DatasetError(f"{where}: items do not match the synthetic world rebuilt from its config")
        log_ids = _synthetic_user_ids(ds.users["user_key"].to_list(), world.config.n_users)
        if log_ids is not None:
            logs_generator = torch.Generator().manual_seed(derived_seeds(world.config.seed)[1])
            _, users = first_log_draws(world, logs_generator)
            world.logged_interest = users.interest[torch.as_tensor(log_ids, device=world.device)]
        return world


def _synthetic_user_ids(keys: list[str], n_users: int) -> list[int] | None:
    """The log's user id of each dataset user (keys ``synth-000042``), or None when the keys are not the
    synthetic logs' (a re-ingested copy with hashed ids: its users cannot be told apart)."""
    try:
        ids = [int(k.removeprefix("synth-")) for k in keys]
    except ValueError:
        return None
    return ids if all(k.startswith("synth-") for k in keys) and all(0 <= i < n_users for i in ids) else None


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)
