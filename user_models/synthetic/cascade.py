"""The cascade world: a second ground truth, built unlike the simulator it is meant to test.

It shares no code with ``recsim_env``'s choice (multinomial logit plus a no-choice option) or leave
(patience) machinery and never imports ``recsim_env``: a world that reuses the simulator's mechanisms can
only agree with it. Every constant is a field of :class:`CascadeConfig`; ``sigmoid`` is the logistic
function.

- **Items** have a category, a unit vector ``v`` near their category's centroid, a *quality* ``q`` and an
  *attractiveness* ``a`` (click appeal). Ordinary items: ``q ~ N(0, 1)``, ``a = attract_quality * q +
  N(0, attract_sd)``. A ``bait_fraction`` of items are **bait**: ``a`` around ``bait_attract`` (eye-catching)
  but ``q`` around ``bait_quality`` (poor): clicked often, rarely carted or bought, and consuming one
  lowers satisfaction.
- **Users** have an interest vector ``u`` (a favourite category's centroid times ``interest_scale`` plus
  noise), a click threshold ``tau ~ N(threshold_mean, threshold_sd)``, a memory of the last
  ``memory_size`` consumed items and a *satisfaction* ``S``.
- **Cascade choice.** For item ``j`` the user's attractiveness is ``A = affinity_weight * (u . v_j) + a_j
  - repeat_penalty * [j in memory]``. The user scans the slate top-down: position 0 is examined with
  probability ``examine_first``, and after each examined position without a click the scan goes on with
  probability ``scan_continue``. An examined item is clicked with ``sigmoid((A - tau) /
  click_temperature)``; the first click ends the scan and is the step's choice. Empty slots (item 0) are
  passed over (they still cost a position). No click anywhere: no choice. There is no softmax over the
  slate: what is below a click is never looked at, whatever its appeal.
- **Funnel** after a choice: the item is *viewed*; it is *clicked* with ``sigmoid(click_bias +
  click_quality * q + click_affinity * (u . v))``, *carted* given a click with ``sigmoid(cart_bias +
  cart_quality * q + cart_affinity * (u . v))`` and *bought* given a cart with ``sigmoid(buy_bias +
  buy_quality * q)``. The behavior is the deepest stage (ids 1..4: view, click, cart, buy).
- **Satisfaction** starts each session at ``satisfaction_init`` and after each step changes by
  ``-fatigue``, plus ``no_click_delta`` for a slate without a click, or ``stage_gains[b] + quality_gain *
  q + bait_penalty * [bait]`` for a consumption with behavior ``b``; clipped to ``[satisfaction_min,
  satisfaction_max]``.
- **Leaving**: after each step the user leaves with ``sigmoid(leave_bias - leave_slope * S)``. Good
  slates keep ``S`` up, so sessions last tens of steps; unclicked slates and bait drain it, so users
  under a bad policy leave within a few steps. Fatigue and the clip of ``S`` keep every session finite
  without a step cap.
- **Drift and memory**: a consumption with behavior ``b`` moves ``u`` by ``drift_rates[b]`` toward ``v``
  and pushes the item into the memory.

The state update is deterministic given the consumptions, so :meth:`CascadeWorld.encode` rebuilds a
user from a logged history by replaying it (:meth:`CascadeWorld.replay` applies a history to any state).
For the users who wrote the world's logs (a history whose ``users`` names them, in a world rebuilt by
:meth:`CascadeWorld.from_dataset`) the replay starts from that user's true interest and click threshold,
regenerated from the logs' seed, so a policy run in the world meets the very people the logs came from;
any other history starts from the population's mean interest and mean threshold. Histories are one event
per consumption (funnel rows collapsed, as ingestion does by default); behavior 0 in a history is a slate
without a click.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from user_models.data.artifact import SequenceDataset
from user_models.errors import DatasetError, InputError
from user_models.protocol import History
from user_models.synthetic.cascade_config import CASCADE_WORLD_VERSION, CascadeConfig
from user_models.synthetic.config import BEHAVIORS, category_names

__all__ = ["CASCADE_WORLD_VERSION", "CascadeConfig", "CascadeState", "CascadeStep", "CascadeWorld"]


@dataclass
class CascadeState:
    """Mutable per-row state of cascade users (``step``, ``replay``, ``reset_rows`` update it in place).

    Attributes:
        interest: ``[B, dim]`` float32 interest vectors.
        threshold: ``[B]`` float32 click thresholds.
        satisfaction: ``[B]`` float32 satisfaction in the current session.
        memory: ``[B, memory_size]`` int64 last consumed item ids, newest first (0 = empty).
        steps: ``[B]`` int64 steps taken in the current session.
        left: ``[B]`` bool, the user has left (until :meth:`CascadeWorld.start_session` or
            :meth:`CascadeWorld.reset_rows`).
    """

    interest: torch.Tensor
    threshold: torch.Tensor
    satisfaction: torch.Tensor
    memory: torch.Tensor
    steps: torch.Tensor
    left: torch.Tensor

    @property
    def batch_size(self) -> int:
        return int(self.interest.shape[0])


@dataclass(frozen=True)
class CascadeStep:
    """What happened at one step, per row (all ``[B]`` unless noted; tensors on the world's device).

    Attributes:
        position: slate position chosen, -1 for none (also for rows that were not active).
        item: item chosen, 0 for none.
        behavior: deepest funnel stage, 1..4 (view, click, cart, buy); 0 for none.
        left: the user has left (at this step or before); ``active & left`` is "left at this step".
        active: the row took this step (it had not left before it).
        satisfaction: satisfaction after the step.
        leave_prob: the probability with which the row left at this step (0 where not active).
        examined: positions the user looked at (including the chosen one).
        bait: the chosen item is bait.
        click_probs: ``[B, k]`` P(click | examined) of each slate position (0 for empty slots).
    """

    position: torch.Tensor
    item: torch.Tensor
    behavior: torch.Tensor
    left: torch.Tensor
    active: torch.Tensor
    satisfaction: torch.Tensor
    leave_prob: torch.Tensor
    examined: torch.Tensor
    bait: torch.Tensor
    click_probs: torch.Tensor


def cascade_seeds(seed: int) -> tuple[int, int]:
    """Independent seeds for the catalogue and for the logs, both derived from ``seed``."""
    world, logs = np.random.SeedSequence([seed, 0xCA5CADE]).spawn(2)
    return int(world.generate_state(1, np.uint64)[0]), int(logs.generate_state(1, np.uint64)[0])


def log_seed(seed: int, policy_name: str) -> int:
    """The seed of the logs written under logging policy ``policy_name``; their first draw is the users
    (:meth:`CascadeWorld.sample_users` of ``n_users``, row ``r`` is raw user id ``r``)."""
    return cascade_seeds(seed)[1] + ord(policy_name[0])


class CascadeWorld:
    """The cascade ground-truth world, batched over rows on any torch device.

    The catalogue is built on the CPU from ``config.seed`` (identical on every device), then moved to
    ``device``. All user randomness comes from the generators passed in; the same generator seed gives
    the same users and trajectories (per device type).

    Args:
        config: the world's parameters; see :class:`CascadeConfig`.
        device: where the world's tensors live and its methods compute.

    Attributes:
        config: the parameters it was built from.
        item_category: ``[n_items + 1]`` category index of each item (-1 for padding).
        item_vectors: ``[n_items + 1, dim]`` unit item vectors (row 0 zero).
        item_quality: ``[n_items + 1]`` quality (drives the funnel and satisfaction).
        item_attract: ``[n_items + 1]`` attractiveness (drives the click).
        item_bait: ``[n_items + 1]`` bool, bait items.
        world_item_ids: ``[n_items + 1]`` the id of each item in the full catalogue of ``config`` (the
            identity unless the world was restricted to a dataset's items by :meth:`from_dataset`).
        logged_users: the true interest and threshold of each user of the dataset the world was rebuilt
            from (:meth:`from_dataset`), rows by dataset user index, at a session start; None otherwise.
    """

    def __init__(self, config: CascadeConfig, device: torch.device | str = "cpu") -> None:
        self.config = config
        self._device = torch.device(device)
        c = config
        g = torch.Generator().manual_seed(cascade_seeds(c.seed)[0])
        zipf = torch.arange(1, c.n_categories + 1, dtype=torch.float64) ** -c.category_zipf
        weights = (zipf / zipf.sum()).float()
        centroids = _unit(torch.randn(c.n_categories, c.dim, generator=g))
        extra = torch.multinomial(weights, c.n_items - c.n_categories, replacement=True, generator=g)
        cats = torch.cat([torch.arange(c.n_categories), extra])[torch.randperm(c.n_items, generator=g)]
        noise = torch.randn(c.n_items, c.dim, generator=g) * (c.item_spread / math.sqrt(c.dim))
        vectors = _unit(centroids[cats] + noise)
        bait = torch.rand(c.n_items, generator=g) < c.bait_fraction
        quality = torch.where(bait, c.bait_quality + c.bait_quality_sd * torch.randn(c.n_items, generator=g),
                              torch.randn(c.n_items, generator=g))
        attract_noise = c.attract_sd * torch.randn(c.n_items, generator=g)
        attract = torch.where(bait, c.bait_attract, c.attract_quality * quality) + attract_noise

        def padded(values: torch.Tensor, pad: float | bool) -> torch.Tensor:
            row = torch.full((1, *values.shape[1:]), pad, dtype=values.dtype)
            return torch.cat([row, values]).to(self._device)

        self.item_category = padded(cats, -1)
        self.item_vectors = padded(vectors, 0.0)
        self.item_quality = padded(quality, 0.0)
        self.item_attract = padded(attract, 0.0)
        self.item_bait = padded(bait, False)
        self.world_item_ids = torch.arange(c.n_items + 1, device=self._device)
        self.logged_users: CascadeState | None = None
        self.centroids = centroids.to(self._device)
        self.category_weights = weights.to(self._device)
        self.prior_interest = c.interest_scale * (self.category_weights @ self.centroids)
        self._drift = torch.tensor((0.0, *c.drift_rates), device=self._device)
        self._gain = torch.tensor((c.no_click_delta, *c.stage_gains), device=self._device)

    # --- catalogue ----------------------------------------------------------------------------------
    @property
    def n_items(self) -> int:
        """Catalogue size; item ids are ``1..n_items``."""
        return int(self.item_vectors.shape[0]) - 1

    @property
    def behaviors(self) -> tuple[str, ...]:
        """``view, click, cart, buy`` (ids 1..4), the organic world's vocabulary."""
        return BEHAVIORS

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def category_names(self) -> tuple[str, ...]:
        """``cat_00``, ``cat_01``, ...: category ``k``'s name in datasets."""
        return category_names(self.config.n_categories)

    def item_categories(self) -> list[str]:
        """Category name of items ``1..n_items`` (the catalogue metadata a dataset stores)."""
        names = np.array(self.category_names)
        return names[self.item_category[1:].cpu().numpy()].tolist()

    def item_embeddings(self) -> torch.Tensor:
        """``[n_items + 1, dim]`` item vectors (row 0 = padding, zero)."""
        return self.item_vectors

    # --- users --------------------------------------------------------------------------------------
    def sample_users(self, n: int, generator: torch.Generator) -> CascadeState:
        """``n`` fresh users with their true random interests and thresholds, at a session start.

        Draws on ``generator``'s device, then moves the state to the world's device.
        """
        c = self.config
        dev = generator.device
        favourite = torch.multinomial(self.category_weights.to(dev), n, replacement=True, generator=generator)
        noise = torch.randn(n, c.dim, generator=generator, device=dev) * (c.interest_noise / math.sqrt(c.dim))
        interest = c.interest_scale * self.centroids.to(dev)[favourite] + noise
        threshold = c.threshold_mean + c.threshold_sd * torch.randn(n, generator=generator, device=dev)
        return self._new_state(interest.to(self._device), threshold.to(self._device))

    def prior_state(self, n: int) -> CascadeState:
        """``n`` users at the population's mean interest and mean threshold, at a session start."""
        threshold = torch.full((n,), self.config.threshold_mean, device=self._device)
        return self._new_state(self.prior_interest.expand(n, -1).clone(), threshold)

    def _new_state(self, interest: torch.Tensor, threshold: torch.Tensor) -> CascadeState:
        n = interest.shape[0]
        dev = self._device
        return CascadeState(
            interest=interest.float(),
            threshold=threshold.float(),
            satisfaction=torch.full((n,), self.config.satisfaction_init, device=dev),
            memory=torch.zeros(n, self.config.memory_size, dtype=torch.int64, device=dev),
            steps=torch.zeros(n, dtype=torch.int64, device=dev),
            left=torch.zeros(n, dtype=torch.bool, device=dev),
        )

    def start_session(self, state: CascadeState, rows: torch.Tensor) -> CascadeState:
        """The same users come back (rows where ``rows`` is set): satisfaction restarts, the step count
        is zero and they are present again; interest and memory are kept."""
        state.satisfaction[rows] = self.config.satisfaction_init
        state.steps[rows] = 0
        state.left[rows] = False
        return state

    def reset_rows(
        self,
        state: CascadeState,
        rows: torch.Tensor,
        generator: torch.Generator | None = None,
        history: History | None = None,
    ) -> CascadeState:
        """Replace the rows where ``rows`` (``[B]`` bool) is set by new users, in row order.

        With ``history`` (exactly ``rows.sum()`` rows) the new users are :meth:`encode` of it (logged
        users continuing their history); otherwise they are fresh users drawn with ``generator``.
        """
        n = int(rows.sum())
        if history is not None:
            if history.batch_size != n:
                raise InputError(f"reset_rows: {n} rows to reset but a history of {history.batch_size}")
            fresh = self.encode(history)
        elif generator is not None:
            fresh = self.sample_users(n, generator)
        else:
            raise InputError("reset_rows needs a generator (fresh users) or a history (logged users)")
        for name in ("interest", "threshold", "satisfaction", "memory", "steps", "left"):
            getattr(state, name)[rows] = getattr(fresh, name)
        return state

    # --- histories ----------------------------------------------------------------------------------
    def encode(self, history: History) -> CascadeState:
        """Users rebuilt from logged histories: :meth:`replay` from each row's true initial state when
        ``history.users`` names logged users the world knows (:attr:`logged_users`), from
        :meth:`prior_state` otherwise."""
        known = self.logged_users
        if history.users is None or known is None:
            return self.replay(self.prior_state(history.batch_size), history)
        users = history.user_rows(known.batch_size, self._device)
        return self.replay(self._new_state(known.interest[users], known.threshold[users]), history)

    def replay(self, state: CascadeState, history: History) -> CascadeState:
        """Apply each row's logged events to ``state`` in place (a loop over positions, not users).

        An event with a gap of at least ``session_gap_seconds`` first starts a new session (a negative,
        unknown gap continues it). An event with behavior ``b > 0`` is a consumption of its item (the
        update of :meth:`step`: satisfaction, drift, memory); behavior 0 is a slate without a click. The
        rows are present afterwards (``left`` is False).
        """
        history = history.to(self._device)
        positions = torch.arange(history.items.shape[1], device=self._device)
        active = positions[None, :] < history.lengths[:, None]
        for t in range(int(history.lengths.max()) if history.batch_size else 0):
            self.apply_event(state, history.items[:, t], history.behaviors[:, t].long(), history.gaps[:, t],
                             active[:, t])
        state.left.zero_()
        return state

    def apply_event(self, state: CascadeState, items: torch.Tensor, behaviors: torch.Tensor,
                    gaps: torch.Tensor, active: torch.Tensor) -> CascadeState:
        """One logged event per active row (``[B]`` each), in place: a gap of at least
        ``session_gap_seconds`` first starts a new session; then the consumption update of :meth:`step`
        (behavior 0: a slate without a click)."""
        self.start_session(state, active & (gaps >= self.config.session_gap_seconds))
        self._respond(state, items, behaviors, active)
        return state

    # --- dynamics -----------------------------------------------------------------------------------
    def attractiveness(self, state: CascadeState, items: torch.Tensor) -> torch.Tensor:
        """``[B, k]`` attractiveness of the ``[B, k]`` items for each row; item 0 gets ``-inf``."""
        c = self.config
        vectors = self.item_vectors[items]
        affinity = torch.einsum("bd,bkd->bk", state.interest, vectors)
        seen = (state.memory[:, None, :] == items[:, :, None]).any(-1)
        value = c.affinity_weight * affinity + self.item_attract[items] - c.repeat_penalty * seen.float()
        return value.masked_fill(items == 0, -math.inf)

    def all_attractiveness(self, state: CascadeState) -> torch.Tensor:
        """``[B, n_items + 1]`` :meth:`attractiveness` of every item (column = item id, column 0 ``-inf``)."""
        c = self.config
        value = torch.addmm(self.item_attract, state.interest, self.item_vectors.T, alpha=c.affinity_weight)
        penalty = torch.zeros_like(value).scatter_(1, state.memory, c.repeat_penalty)
        value = value - penalty
        value[:, 0] = -math.inf
        return value

    def click_probs(self, state: CascadeState, items: torch.Tensor) -> torch.Tensor:
        """``[B, k]`` P(click | the position is examined); 0 for empty slots."""
        c = self.config
        margin = self.attractiveness(state, items) - state.threshold[:, None]
        return torch.sigmoid(margin / c.click_temperature)

    def funnel_probs(self, state: CascadeState, items: torch.Tensor) -> torch.Tensor:
        """``[B, k, 3]`` P(click | viewed), P(cart | clicked), P(buy | carted) of each item."""
        c = self.config
        q = self.item_quality[items]
        affinity = torch.einsum("bd,bkd->bk", state.interest, self.item_vectors[items])
        return torch.stack([
            torch.sigmoid(c.click_bias + c.click_quality * q + c.click_affinity * affinity),
            torch.sigmoid(c.cart_bias + c.cart_quality * q + c.cart_affinity * affinity),
            torch.sigmoid(c.buy_bias + c.buy_quality * q),
        ], dim=-1)

    def choice_probs(self, state: CascadeState, slates: torch.Tensor) -> torch.Tensor:
        """``[B, k + 1]`` the probability that :meth:`step` picks each position of ``slates``, and (last
        column) no position: the cascade's own arithmetic, ``P(i) = examine_first * scan_continue ** i *
        c_i * prod_{j < i} (1 - c_j)`` with ``c = click_probs`` (zero for rows that have left)."""
        c = self.config
        click = self.click_probs(state, slates.to(self._device).long()) * (~state.left)[:, None]
        k = click.shape[1]
        reach = c.examine_first * c.scan_continue ** torch.arange(k, device=self._device, dtype=click.dtype)
        missed = torch.cat([torch.ones_like(click[:, :1]), 1 - click[:, :-1]], dim=1)
        not_before = torch.cumprod(missed, dim=1)
        picked = reach[None, :] * click * not_before
        return torch.cat([picked, (1 - picked.sum(dim=1, keepdim=True)).clamp(min=0.0)], dim=1)

    def behavior_probs(self, state: CascadeState, items: torch.Tensor) -> torch.Tensor:
        """``[B, k, 4]`` P(deepest stage = view, click, cart, buy | the item is chosen): the funnel of
        :meth:`funnel_probs` as a distribution over behavior ids 1..4."""
        click, cart, buy = self.funnel_probs(state, items).unbind(-1)
        stages = [1 - click, click * (1 - cart), click * cart * (1 - buy), click * cart * buy]
        return torch.stack(stages, dim=-1)

    def leave_prob(self, state: CascadeState) -> torch.Tensor:
        """``[B]`` probability of leaving after a step that ends at the current satisfaction."""
        c = self.config
        return torch.sigmoid(c.leave_bias - c.leave_slope * state.satisfaction)

    def step(self, state: CascadeState, slates: torch.Tensor, generator: torch.Generator) -> CascadeStep:
        """Show each row a slate: cascade scan, funnel, satisfaction, leave. Updates ``state`` in place.

        Args:
            state: the users; rows that have left do nothing (``active`` False) and stay left.
            slates: ``[B, k]`` item ids, position 0 on top; 0 is an empty slot.
            generator: every random draw (the same number of draws whatever the state, so trajectories
                are reproducible from the generator's seed).
        """
        c = self.config
        slates = slates.to(self._device).long()
        b, k = slates.shape
        dev = generator.device

        def uniform(*shape: int) -> torch.Tensor:
            return torch.rand(*shape, generator=generator, device=dev).to(self._device)

        scan, click_u, funnel_u, leave_u = uniform(b, k), uniform(b, k), uniform(b, 3), uniform(b)
        active = ~state.left
        p_click = self.click_probs(state, slates)
        # Position 0 is reached with examine_first; each next one only if the scan went on past the last.
        go_on = torch.cat([scan[:, :1] < c.examine_first, scan[:, 1:] < c.scan_continue], dim=1)
        reached = torch.cumprod(go_on.to(torch.int64), dim=1).bool()
        clicked = reached & (click_u < p_click) & active[:, None]
        chose = clicked.any(dim=1)
        first = torch.argmax(clicked.to(torch.int64), dim=1)
        position = torch.where(chose, first, -1)
        item = torch.where(chose, slates.gather(1, first[:, None])[:, 0], 0)
        examined = torch.where(chose, first + 1, reached.sum(dim=1)) * active

        stages = self.funnel_probs(state, item[:, None])[:, 0]  # [B, 3]
        deeper = torch.cumprod((funnel_u < stages).to(torch.int64), dim=1).sum(dim=1)
        behavior = torch.where(chose, 1 + deeper, 0)

        self._respond(state, item, behavior, active)
        leave_prob = self.leave_prob(state) * active
        state.left |= active & (leave_u < leave_prob)
        return CascadeStep(
            position=position, item=item, behavior=behavior, left=state.left.clone(), active=active,
            satisfaction=state.satisfaction.clone(), leave_prob=leave_prob, examined=examined,
            bait=self.item_bait[item] & chose, click_probs=p_click,
        )

    def _respond(self, state: CascadeState, item: torch.Tensor, behavior: torch.Tensor,
                 active: torch.Tensor) -> None:
        """The deterministic update after a step: satisfaction, drift, memory, step count (active rows)."""
        c = self.config
        consumed = behavior > 0
        delta = -c.fatigue + self._gain[behavior]
        delta = delta + consumed * (c.quality_gain * self.item_quality[item]
                                    + c.bait_penalty * self.item_bait[item].float())
        satisfaction = (state.satisfaction + delta).clamp(c.satisfaction_min, c.satisfaction_max)
        state.satisfaction.copy_(torch.where(active, satisfaction, state.satisfaction))
        moved = state.interest + self._drift[behavior][:, None] * (self.item_vectors[item] - state.interest)
        state.interest.copy_(torch.where(active[:, None], moved, state.interest))
        push = active & consumed
        shifted = torch.cat([item[:, None], state.memory[:, :-1]], dim=1)
        state.memory.copy_(torch.where(push[:, None], shifted, state.memory))
        state.steps += active

    # --- datasets -----------------------------------------------------------------------------------
    def restrict(self, world_ids: torch.Tensor) -> CascadeWorld:
        """This world with its catalogue cut down and renumbered: item ``i`` (1-based) of the result is
        item ``world_ids[i - 1]`` of this one. Users are unchanged (they never depend on the catalogue).
        """
        index = torch.cat([torch.zeros(1, dtype=torch.int64), world_ids.cpu().long()]).to(self._device)
        if int(index[1:].min()) < 1 or int(index.max()) > self.n_items:
            raise InputError(f"restrict: item ids must be in 1..{self.n_items}")
        out = object.__new__(CascadeWorld)
        out.__dict__.update(self.__dict__)
        for name in ("item_category", "item_vectors", "item_quality", "item_attract", "item_bait",
                     "world_item_ids"):
            setattr(out, name, getattr(self, name)[index])
        return out

    @classmethod
    def from_dataset(cls, ds: SequenceDataset, device: torch.device | str = "cpu") -> CascadeWorld:
        """Rebuild the world that wrote a cascade dataset (from ``meta.extra``), numbered like the dataset.

        Ingestion may drop items (k-core) and renumbers the rest; the dataset's ``raw_id`` is the world's
        item id, so the world is restricted to the dataset's items in the dataset's order
        (:meth:`restrict`): a policy acting on dataset item ids acts on the same items in the world.

        Raises:
            DatasetError: not a cascade dataset, another world version, or items that do not match.
        """
        where = ds.path or ds.meta.name
        extra = ds.meta.extra
        if "cascade_config" not in extra:
            raise DatasetError(f"{where}: not a cascade dataset (no cascade_config in meta.json extra)")
        version = extra.get("cascade_world_version")
        if version != CASCADE_WORLD_VERSION:
            raise DatasetError(f"{where}: cascade world version {version!r}, this recsim-env builds version "
                               f"{CASCADE_WORLD_VERSION}; run `recsim data synth --world cascade` again")
        full = cls(CascadeConfig.from_dict(extra["cascade_config"]), device)
        try:
            ids = torch.tensor([int(r) for r in ds.items["raw_id"].to_list()], dtype=torch.int64)
        except ValueError:
            raise DatasetError(f"{where}: item raw ids are not the cascade world's integer ids") from None
        if len(ids) == 0 or int(ids.min()) < 1 or int(ids.max()) > full.n_items:
            raise DatasetError(f"{where}: item ids outside the cascade world's 1..{full.n_items}")
        world = full.restrict(ids)
        if ds.items["category"].to_list() != world.item_categories():
            raise DatasetError(f"{where}: items do not match the cascade world rebuilt from its config")
        rows = _raw_user_rows(ds.users["user_key"].to_list(), world.config.n_users)
        policy = extra.get("logging_policy")
        if rows is not None and isinstance(policy, str) and policy:
            c = world.config
            users = world.sample_users(c.n_users, torch.Generator().manual_seed(log_seed(c.seed, policy)))
            index = torch.as_tensor(rows, device=world.device)
            world.logged_users = world._new_state(users.interest[index], users.threshold[index])
        return world


def _raw_user_rows(keys: list[str], n_users: int) -> list[int] | None:
    """The logs' user id of each dataset user (raw ids kept by ingestion), or None when the keys are not
    those ids (hashed pseudonyms: the users cannot be told apart)."""
    try:
        rows = [int(k) for k in keys]
    except ValueError:
        return None
    return rows if all(0 <= r < n_users for r in rows) else None


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)
