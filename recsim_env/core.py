"""The one batched simulation core: all user dynamics, for N users at once, on any torch device.

Every environment view (the single :class:`~recsim_env.env.RecSimEnv`, the vector env, the SB3 adapter)
drives this class; none re-implements a step. A step follows RecSim's order:

1. **slate**: ``[N, k]`` item ids; 0 is an empty slot, and a repeated item within one slate shows nothing
   in its later slots (a wasted position).
2. **choice**: multinomial logit over the shown items' normalised preferences (log-lift of the model's
   tempered next-item distribution over the catalogue) plus "no choice", with examination decaying by
   slot (:func:`~recsim_env.choice.choice_probabilities`); when the user model carries a choice learned
   from impression logs (:class:`~user_models.choice_model.LearnedChoice`), its fitted item, position
   and no-choice terms instead (``ChoiceConfig.source`` forces either). *Repeats* (items in the user's
   recent history of
   ``history_len`` events) follow the repeat policy: allowed, penalised or masked.
3. **response**: the chosen item's behavior is sampled from :meth:`UserModel.behavior_probs`.
4. **state update**: the chosen item, behavior and gap are appended to the user model's state
   (a KV-cache step). A *no-choice step appends nothing*: logs only hold consumptions, so the model has
   never seen a "non-event"; the time that passes is carried into the next event's gap instead.
   (``SimConfig.no_choice_event`` appends a behavior-0 event for models that define one, like the
   synthetic world.)
5. **reward**: per-behavior weight, diversity bonus, no-choice penalty (:class:`RewardConfig`).
6. **leave**: patience update, then the hazard of :class:`LeaveConfig`; leaving terminates the episode,
   reaching ``max_steps`` truncates it.
7. **observation**: the recent-history buffer is updated and, in the candidates mode, new candidates are
   retrieved.

Randomness comes only from :attr:`SimulationCore.generator`; per step it draws, in this order, N
uniforms for the choice, N for the behavior, N for leaving, then the candidates' noise, so equal seeds
give equal trajectories on CPU. :meth:`SimulationCore.draw_noise` draws them all up front (the same
numbers in the same order) and :meth:`SimulationCore.step` takes them as an argument, so that the step
itself holds no generator call and no host read of a tensor: it compiles as one graph
(``torch.compile(..., fullgraph=True)``; see :meth:`SimulationCore.step`). There is no Python loop
over users. :meth:`SimulationCore.reset` can reset only some rows (a reset is a Transformer prefill,
so finished rows alone pay for it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from recsim_env.choice import (
    catalogue_logits,
    categorical_from_uniform,
    choice_probabilities,
    choice_utilities,
    item_logits_and_log_normaliser,
    learned_choice_of,
    learned_utilities,
)
from recsim_env.config import SimConfig
from recsim_env.numerics import check_finite
from recsim_env.population import DatasetPopulation, Population
from recsim_env.retrieval import CandidateRetriever, resolve_retrieval
from user_models.errors import InputError
from user_models.protocol import History, SlateResponder, UserModel, UserState


@dataclass(frozen=True)
class StepRecord:
    """Everything that happened in one batched step; ``[N]`` or ``[N, ...]`` tensors on the device.

    Inactive rows (see :meth:`SimulationCore.step`) have no choice, zero reward and no change.
    """

    slate: torch.Tensor
    """``[N, k]`` items actually shown (0 = empty slot, including repeated items within the slate)."""
    choice_probs: torch.Tensor
    """``[N, k + 1]`` choice probabilities of each slot; the last column is "no choice"."""
    position: torch.Tensor
    """``[N]`` chosen slot, -1 for no choice."""
    item: torch.Tensor
    """``[N]`` chosen item, 0 for no choice."""
    behavior: torch.Tensor
    """``[N]`` behavior id of the response, 0 for no choice."""
    behavior_probs: torch.Tensor
    """``[N, n_behaviors]`` response distribution of the chosen item (zeros for no choice)."""
    reward: torch.Tensor
    """``[N]`` float reward."""
    end_prob: torch.Tensor
    """``[N]`` the user model's learned session-end probability after the state update."""
    leave_prob: torch.Tensor
    """``[N]`` the leave hazard actually applied (learned end probability combined with patience)."""
    patience: torch.Tensor
    """``[N]`` patience after this step's update."""
    wear: torch.Tensor
    """``[N]`` the session wear after this step's update (0 without it; the world's own users: 0)."""
    terminated: torch.Tensor
    """``[N]`` bool: the user left."""
    truncated: torch.Tensor
    """``[N]`` bool: the episode reached ``max_steps`` without the user leaving."""
    active: torch.Tensor
    """``[N]`` bool: the row was stepped."""
    step: torch.Tensor
    """``[N]`` steps taken in the episode, this one included."""
    episode_return: torch.Tensor
    """``[N]`` sum of the episode's rewards so far."""
    history_items: torch.Tensor
    """``[N, H]`` recent items after the step, right-aligned (most recent last, 0 = padding)."""
    history_behaviors: torch.Tensor
    """``[N, H]`` behaviors of ``history_items``."""

    def row(self, i: int) -> StepSnapshot:
        """Row ``i`` copied to the host: what a renderer or an ``info`` dict needs, frozen in time."""
        values: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)[i].detach().cpu().numpy()
            values[f.name] = value.item() if value.ndim == 0 else value
        return StepSnapshot(**values)


@dataclass(frozen=True)
class StepSnapshot:
    """One row of a :class:`StepRecord` on the host (numpy arrays and Python scalars)."""

    slate: np.ndarray
    choice_probs: np.ndarray
    position: int
    item: int
    behavior: int
    behavior_probs: np.ndarray
    reward: float
    end_prob: float
    leave_prob: float
    patience: float
    wear: float
    terminated: bool
    truncated: bool
    active: bool
    step: int
    episode_return: float
    history_items: np.ndarray
    history_behaviors: np.ndarray

    def as_info(self) -> dict[str, Any]:
        """The response as a Gymnasium ``info`` dict (the full step, history included)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


PREFIX_TABLE_MIN_USERS = 64
"""Cores with fewer rows encode new users directly: a few prefills cost less than building a table."""
PREFIX_TABLE_MAX_BYTES = 512 * 2**20
"""Largest prefix table a core builds (ml-100k with the default model: ~60 MiB)."""


@runtime_checkable
class PrefixReuse(Protocol):
    """Optional user-model capability: start users from encodings of dataset prefixes by a copy.

    With a dataset population whose prefixes fit the model's window, every new user's state is a prefix
    of one encoding per training sequence, so :meth:`SimulationCore.reset` copies it instead of running a
    prefill (which would otherwise cost more than the step itself). Same users, same random draws.
    """

    def encode_prefixes(self, history: History, max_bytes: int) -> Any | None:
        """A table for :meth:`reset_rows_from_prefixes`, or None if it would exceed ``max_bytes`` or
        the rows are longer than the model's window (prefixes would then be re-windowed)."""
        ...

    def reset_rows_from_prefixes(self, state: UserState, rows: torch.Tensor, table: Any,
                                 sources: torch.Tensor, lengths: torch.Tensor) -> UserState:
        """:meth:`UserModel.reset_rows` with the first ``lengths`` events of table rows ``sources``."""
        ...


CONSUMED_BITS_MAX = 2**27
"""Largest ``n_users * (n_items + 1)`` for which the core keeps a per-row bitmap of consumed items
(128 MiB of bools)."""


@dataclass(frozen=True)
class StepNoise:
    """Every random number of one :meth:`SimulationCore.step` of the simulator's own users, drawn up front
    by :meth:`SimulationCore.draw_noise` in the order the step uses them."""

    choice: torch.Tensor
    """``[N, 1]`` uniforms of the choice."""
    behavior: torch.Tensor
    """``[N, 1]`` uniforms of the response."""
    leave: torch.Tensor
    """``[N]`` uniforms of leaving."""
    candidates: tuple[torch.Tensor, ...]
    """``[N, draws]`` uniforms per random part of candidate retrieval (popular, random; see
    :meth:`~recsim_env.retrieval.CandidateRetriever.noise`)."""


@dataclass(frozen=True)
class _Answer:
    """The users' answer to one slate, however it was produced (``[N]`` tensors unless noted)."""

    choice_probs: torch.Tensor  # [N, k + 1]
    position: torch.Tensor
    chose: torch.Tensor
    item: torch.Tensor
    behavior: torch.Tensor
    behavior_probs: torch.Tensor  # [N, n_behaviors]
    end_prob: torch.Tensor
    leave_prob: torch.Tensor
    terminated: torch.Tensor


def wear_item_vectors(embeddings: torch.Tensor) -> torch.Tensor:
    """``[n_items + 1, d]`` the item vectors the session wear reads (see
    :class:`~recsim_env.config.LeaveConfig`): each dimension of a model's ``[n_items + 1, d]`` item
    embeddings standardised over the catalogue (row 0, padding, left out and set to 0) and divided by
    ``sqrt(d)``, so that weights of unit size move the wear by about one logit whatever the embedding's
    scale and width."""
    items = embeddings[1:].double()
    spread = items.std(dim=0).clamp_min(1e-8) if items.shape[0] > 1 else torch.ones_like(items[0])
    scaled = (items - items.mean(dim=0)) / (spread * math.sqrt(items.shape[1]))
    return torch.cat([torch.zeros_like(scaled[:1]), scaled]).to(embeddings.dtype)


class SimulationCore:
    """N simulated users as tensors on the user model's device; see the module docstring for a step.

    Args:
        model: The user model (any :class:`~user_models.protocol.UserModel`).
        population: Source of new users' starting histories.
        config: Dynamics, reward and sizes.
        n_users: Batch size N.
        popularity: ``[n_items + 1]`` training-split event counts (candidate retrieval).
        gap_seconds: Seconds between simulated steps (negative: unknown).
        item_embeddings: ``[n_items + 1, d]`` the item vectors the recommender side sees (candidate
            retrieval, ``embedding`` observations and actions, slate diversity); None: the model's own.
            A ground-truth world's own vectors are its hidden state: to compare it with a learned
            simulator, give both the learned ones, so policies meet the same candidates and features.
    """

    def __init__(
        self,
        model: UserModel,
        population: Population,
        config: SimConfig,
        n_users: int,
        popularity: torch.Tensor,
        gap_seconds: float,
        item_embeddings: torch.Tensor | None = None,
    ) -> None:
        if n_users < 1:
            raise InputError(f"n_users must be >= 1, got {n_users}")
        n_items, k = model.n_items, config.slate_size
        if k > n_items:
            raise InputError(f"slate_size {k} exceeds the catalogue ({n_items} items)")
        if config.choice.repeat is None or config.leave.hazard_scale is None:
            raise InputError("the repeat policy and the hazard scale must be resolved before building a "
                             "core (build_core decides them from the data)")
        if config.candidates is not None and not k <= config.candidates.n_candidates <= n_items:
            raise InputError(f"n_candidates must be in [slate_size={k}, n_items={n_items}], got "
                             f"{config.candidates.n_candidates}")
        self.model = model
        self.learned_choice = learned_choice_of(model, config.choice)
        """The slate choice learned from impressions (None: the calibrated multinomial logit)."""
        if self.learned_choice is not None:
            self.learned_choice = self.learned_choice.to(model.device)
            if self.learned_choice.n_items != n_items:
                raise InputError(f"the learned choice has {self.learned_choice.n_items} items, the model "
                                 f"{n_items}")
        self.population = population
        self.config = config
        self.n_users = n_users
        self.device = model.device
        self.gap_seconds = gap_seconds
        self.generator = torch.Generator(device=self.device)
        self.behavior_names = tuple(model.behaviors)
        self._world = isinstance(model, SlateResponder)  # decided once: the step must not ask each call
        nb = len(self.behavior_names)
        weights = config.reward.weights(nb)
        self._reward_of = torch.tensor([0.0 - config.reward.no_choice_penalty, *weights], device=self.device)
        value = torch.arange(nb + 1, device=self.device, dtype=torch.float32)
        value = (value - 1) / (nb - 1) if nb > 1 else torch.ones(nb + 1, device=self.device)
        leave = config.leave
        drain = leave.drain_scale
        gain = leave.high_value_refill * value - leave.low_value_drain * drain * (1 - value)
        gain[0] = -leave.no_choice_drain * drain
        self._patience_gain = gain
        if leave.wear_weights and len(leave.wear_weights) != nb + 1:
            raise InputError(f"leave.wear_weights has {len(leave.wear_weights)} entries; the model's "
                             f"{nb} behaviors need {nb + 1} (no response first)")
        self._wear_of = torch.tensor(leave.wear_weights or (0.0,) * (nb + 1), device=self.device)
        self._wear_item = torch.zeros(n_items + 1, device=self.device)
        """``[n_items + 1]`` the wear a consumption of each item adds (0 for item 0, "nothing")."""
        if leave.wear_item_weights:
            own = wear_item_vectors(model.item_embeddings().detach().float().to(self.device))
            if own.shape[1] != len(leave.wear_item_weights):
                raise InputError(f"leave.wear_item_weights has {len(leave.wear_item_weights)} entries; the "
                                 f"user model's item vectors have {own.shape[1]} dimensions")
            self._wear_item = own @ torch.tensor(leave.wear_item_weights, device=self.device)
        embeddings = (model.item_embeddings() if item_embeddings is None else item_embeddings)
        embeddings = embeddings.detach().float().to(self.device)
        if embeddings.shape[0] != n_items + 1:
            raise InputError(f"item_embeddings has {embeddings.shape[0]} rows, the catalogue {n_items} items "
                             "plus padding")
        self._embeddings = embeddings
        self._unit_embeddings = torch.nn.functional.normalize(embeddings, dim=1)
        self._log_popularity = torch.log1p(popularity.float().to(self.device))
        self._retriever: CandidateRetriever | None = None
        if config.candidates is not None:
            cands = config.candidates
            retrieval = resolve_retrieval(cands.retrieval, n_items, cands.n_candidates, config.history_len)
            self._retriever = CandidateRetriever(cands.counts(), self._log_popularity, embeddings, retrieval,
                                                 exclude_history=config.choice.repeat != "allow",
                                                 fallback_len=cands.n_candidates + config.history_len)
        k_range = torch.arange(k, device=self.device)
        self._earlier_slot = k_range[None, :] < k_range[:, None]
        """``[k, k]``: slot ``j`` comes before slot ``i``."""
        self.user_state: UserState | None = None
        H = config.history_len
        zeros = torch.zeros(n_users, device=self.device)
        self.patience = zeros.clone()
        self.wear = zeros.clone()
        """``[N]`` the session wear of :class:`~recsim_env.config.LeaveConfig` (0 without it)."""
        self.steps = torch.zeros(n_users, dtype=torch.long, device=self.device)
        self.episode_return = zeros.clone()
        self.since_event = torch.ones(n_users, device=self.device)
        self.history_items = torch.zeros(n_users, H, dtype=torch.long, device=self.device)
        self.history_behaviors = torch.zeros_like(self.history_items)
        self.history_lengths = torch.zeros(n_users, dtype=torch.long, device=self.device)
        self.candidates: torch.Tensor | None = None
        # Under the mask repeat policy a user never consumes again what they ever consumed (MovieLens:
        # one rating per movie), not only what is in the history window: one bit per row and item, within
        # a memory budget (beyond it, the window decides).
        mask_all = (config.choice.repeat == "mask" and config.choice.repeat_window is None
                    and n_users * (n_items + 1) <= CONSUMED_BITS_MAX)
        self.consumed: torch.Tensor | None = (
            torch.zeros(n_users, n_items + 1, dtype=torch.bool, device=self.device) if mask_all else None)
        self._table: Any | None = None
        self._table_checked = False
        self.last_record: StepRecord | None = None
        self._compiled_step: Any | None = None

    # --- sizes ------------------------------------------------------------------------------------
    @property
    def n_items(self) -> int:
        return self.model.n_items

    @property
    def n_behaviors(self) -> int:
        return len(self.behavior_names)

    @property
    def slate_size(self) -> int:
        return self.config.slate_size

    @property
    def embedding_dim(self) -> int:
        return int(self._embeddings.shape[1])

    @property
    def reward_range(self) -> tuple[float, float]:
        """Bounds of any step's reward under the reward config."""
        cfg = self.config.reward
        weights = self._reward_of.tolist()
        return min(0.0, *weights), max(0.0, *weights) + 2.0 * cfg.diversity_weight

    @property
    def log_popularity(self) -> torch.Tensor:
        """``[n_items + 1]`` ``log(1 + training-split event count)`` per item (index 0: padding)."""
        return self._log_popularity

    def manual_seed(self, seed: int) -> None:
        """Re-seed the core's generator (all randomness of resets and steps flows from it)."""
        self.generator.manual_seed(seed)

    # --- reset ------------------------------------------------------------------------------------
    def reset(self, rows: torch.Tensor | None = None) -> None:
        """Start new users in every row, or only where ``rows`` (``[N]`` bool) is set.

        The first call must reset every row. Rows not selected keep their users untouched.
        """
        full = rows is None
        if rows is None:
            rows = torch.ones(self.n_users, dtype=torch.bool, device=self.device)
        elif self.user_state is None:
            raise RuntimeError("reset every row (rows=None) before resetting some")
        # A reset is compacted to the rows that finished (their prefills are the cost): the one place
        # the step loop needs a count from the device (the size of `index`; on an accelerator, a sync).
        index = (rows.nonzero()[:, 0],)
        n = index[0].shape[0]
        if n == 0:
            return
        table = self._prefix_table()
        if table is not None:
            assert isinstance(self.population, DatasetPopulation) and isinstance(self.model, PrefixReuse)
            sources, lengths = self.population.draw(n, self.generator)
            history = self.population.histories(sources, lengths)
            if self.user_state is None:
                empty = torch.zeros(self.n_users, 0, dtype=torch.long, device=self.device)
                no_events = torch.zeros(self.n_users, dtype=torch.long, device=self.device)
                self.user_state = self.model.encode(History(empty, empty, empty.float(), no_events))
            self.user_state = self.model.reset_rows_from_prefixes(self.user_state, rows, table, sources,
                                                                  lengths)
        else:
            history = self.population.sample(n, self.generator)
            self.user_state = (self.model.encode(history) if full or self.user_state is None
                               else self.model.reset_rows(self.user_state, rows, history))
        # Out of place (index_put, not []=): step records handed out earlier keep their values.
        items, behaviors = _right_align(history, self.config.history_len)
        if self.consumed is not None:
            known = torch.zeros(len(index[0]), self.n_items + 1, dtype=torch.bool, device=self.device)
            known.scatter_(1, history.items.to(self.device), True)
            known[:, 0] = False
            self.consumed[index] = known
        self.history_items = self.history_items.index_put(index, items)
        self.history_behaviors = self.history_behaviors.index_put(index, behaviors)
        self.history_lengths = self.history_lengths.index_put(
            index, history.lengths.clamp(max=self.config.history_len))
        self.patience = self.patience.index_put(index, torch.tensor(self.config.leave.initial_patience,
                                                                    device=self.device))
        self.wear = self.wear.index_put(index, torch.tensor(0.0, device=self.device))
        self.steps = self.steps.index_put(index, torch.tensor(0, device=self.device))
        self.episode_return = self.episode_return.index_put(index, torch.tensor(0.0, device=self.device))
        self.since_event = self.since_event.index_put(index, torch.tensor(1.0, device=self.device))
        if self.config.candidates is not None:
            fresh = self._retrieve_candidates(index[0])
            self.candidates = fresh if self.candidates is None else self.candidates.index_put(index, fresh)

    def _prefix_table(self) -> Any | None:
        """The model's prefix table for this population (built on first use), or None (see PrefixReuse)."""
        if not self._table_checked:
            self._table_checked = True
            if (self.n_users >= PREFIX_TABLE_MIN_USERS and isinstance(self.population, DatasetPopulation)
                    and isinstance(self.model, PrefixReuse)):
                prefixes = self.population.all_prefixes()
                self._table = self.model.encode_prefixes(prefixes, PREFIX_TABLE_MAX_BYTES)
        return self._table

    # --- step -------------------------------------------------------------------------------------
    def draw_noise(self) -> StepNoise:
        """The random numbers of the next :meth:`step` (simulator's own users), from :attr:`generator`.

        ``step(slate, noise=core.draw_noise())`` equals ``step(slate)`` draw for draw; drawing apart lets
        the step run as one compiled graph (a generator cannot be traced). A world that answers slates
        itself (:class:`~user_models.protocol.SlateResponder`) draws its own numbers: it has no noise.
        """
        if self._world:
            raise RuntimeError(f"{type(self.model).__name__} answers slates with its own draws; step it "
                               "without noise")
        n, gen = self.n_users, self.generator
        choice = torch.rand(n, 1, generator=gen, device=self.device)
        behavior = torch.rand(n, 1, generator=gen, device=self.device)
        leave = torch.rand(n, generator=gen, device=self.device)
        return StepNoise(choice, behavior, leave, self._candidate_noise(n))

    def compile_step(self, **options: Any) -> None:
        """Run every later :meth:`step` as one graph compiled by ``torch.compile(fullgraph=True)``.

        ``options`` go to ``torch.compile`` (e.g. ``mode="reduce-overhead"``: CUDA graphs where the
        shapes allow). The noise is still drawn eagerly (the same draws), so trajectories equal the
        eager ones up to floating-point rounding. Turns on dynamo's
        ``capture_dynamic_output_shape_ops`` for the process (the rows whose window slides have a
        data-dependent count).

        Raises:
            InputError: the model answers slates itself (a SlateResponder world draws inside its step).
        """
        if self._world:
            raise InputError(f"{type(self.model).__name__} answers slates with its own draws: its step "
                             "cannot be compiled as one graph")
        torch._dynamo.config.capture_dynamic_output_shape_ops = True
        self._compiled_step = torch.compile(self.step, fullgraph=True, **options)

    def step(self, slate: torch.Tensor, active: torch.Tensor | None = None,
             noise: StepNoise | None = None) -> StepRecord:
        """Show ``slate`` (``[N, k]`` int64 item ids, 0 = empty slot) to every row where ``active``.

        Item ids must lie in ``[0, n_items]`` (the env adapters validate user input). Inactive rows (for
        vector envs that reset finished rows on the next call) are left unchanged. ``noise``: the step's
        random numbers (:meth:`draw_noise`; drawn here when None). With it, the step calls no generator
        and reads no tensor on the host (the model's window slide included), so
        ``torch.compile(core.step, fullgraph=True)`` compiles it without a graph break (needs
        ``torch._dynamo.config.capture_dynamic_output_shape_ops`` for the rows that slide). After
        :meth:`compile_step`, each call runs that compiled graph.
        """
        if self.user_state is None:
            raise RuntimeError("call reset() before step()")
        if self._compiled_step is not None and not torch.compiler.is_compiling():
            return self._compiled_step(slate, active, self.draw_noise() if noise is None else noise)
        cfg = self.config
        if active is None:
            active = torch.ones(self.n_users, dtype=torch.bool, device=self.device)
        slate = self.dedupe(slate.to(self.device, torch.long))
        if self._world:
            if noise is not None:
                raise RuntimeError(f"{type(self.model).__name__} answers slates with its own draws; step "
                                   "it without noise")
            answer = self._world_answer(slate, active)
            candidate_noise = self._candidate_noise(self.n_users)
        else:
            noise = self.draw_noise() if noise is None else noise
            answer = self._choice_model_answer(slate, active, noise)
            candidate_noise = noise.candidates
        chose, item, behavior = answer.chose, answer.item, answer.behavior
        self._append_history(item, behavior, chose)

        # reward
        reward = self._reward_of[behavior] * active
        if cfg.reward.diversity_weight > 0:
            reward = reward + cfg.reward.diversity_weight * self.slate_diversity(slate) * active

        # leave (decided in the answer: the world's own, or the learned hazard and patience)
        terminated = answer.terminated
        self.steps = self.steps + active.long()
        truncated = active & ~terminated & (self.steps >= cfg.max_steps)
        self.episode_return = self.episode_return + reward

        # observation
        if cfg.candidates is not None:
            assert self.candidates is not None
            fresh = self._retrieve_candidates(noise=candidate_noise)
            self.candidates = torch.where(active[:, None], fresh, self.candidates)
        record = StepRecord(
            slate=slate, choice_probs=answer.choice_probs, position=torch.where(chose, answer.position, -1),
            item=item, behavior=behavior, behavior_probs=answer.behavior_probs, reward=reward,
            end_prob=answer.end_prob, leave_prob=torch.where(active, answer.leave_prob, 0.0),
            patience=self.patience, wear=self.wear, terminated=terminated,
            truncated=truncated, active=active, step=self.steps, episode_return=self.episode_return,
            history_items=self.history_items, history_behaviors=self.history_behaviors,
        )
        self.last_record = record
        return record

    def _choice_model_answer(self, slate: torch.Tensor, active: torch.Tensor, noise: StepNoise) -> _Answer:
        """The simulator's own users: multinomial-logit choice, sampled response, state update, and the
        leave hazard of :class:`~recsim_env.config.LeaveConfig` (draws: choice, behavior, leave)."""
        cfg, model = self.config, self.model
        k = cfg.slate_size
        shown = slate > 0
        safe = torch.where(shown, slate, 1)
        # choice
        probs = self.slate_choice_probabilities(safe, shown)
        check_finite("choice utilities", probs, active)
        pick = categorical_from_uniform(probs, noise.choice.to(probs.dtype))
        chose = (pick < k) & active
        slot = pick.clamp(max=k - 1)
        item = torch.where(chose, safe.gather(1, slot[:, None])[:, 0], 0)
        # response
        behavior_probs = model.behavior_probs(self.user_state, torch.where(chose, item, 1)[:, None])[:, 0]
        check_finite("behavior probabilities", behavior_probs, chose)
        behavior_probs = behavior_probs.float() * chose[:, None]
        sampled = categorical_from_uniform(behavior_probs + (~chose)[:, None].float(), noise.behavior) + 1
        behavior = torch.where(chose, sampled, 0)
        # state update
        gap = self.since_event * self.gap_seconds if self.gap_seconds >= 0 else -self.since_event
        event = chose | (active & cfg.no_choice_event)
        self.user_state = model.step(self.user_state, item, behavior, gap, event)
        self.since_event = torch.where(chose, 1.0, self.since_event + active.float())
        # leave
        self.patience = torch.where(active, (self.patience + self._patience_gain[behavior]).clamp(0.0, 1.0),
                                    self.patience)
        self.wear = torch.where(active, self.next_wear(self.wear, behavior, item), self.wear)
        end_prob = model.end_prob(self.user_state).float()
        check_finite("session-end probabilities", end_prob, active)
        leave_prob = self.leave_probability(end_prob, self.patience, event, self.since_event - 1, self.wear)
        terminated = active & (noise.leave < leave_prob)
        return _Answer(probs, torch.where(chose, pick, -1), chose, item, behavior, behavior_probs, end_prob,
                       leave_prob, terminated)

    def _world_answer(self, slate: torch.Tensor, active: torch.Tensor) -> _Answer:
        """A :class:`~user_models.protocol.SlateResponder` world answers the slate with its own choice,
        response and leave mechanics; the core's choice and leave configs play no part."""
        assert isinstance(self.model, SlateResponder) and self.user_state is not None
        out = self.model.respond(self.user_state, slate, active, self.generator)
        chose = (out.position >= 0) & active
        leave_prob = out.leave_prob.float()
        check_finite("session-end probabilities", leave_prob, active)
        return _Answer(out.choice_probs.float(), out.position, chose, torch.where(chose, out.item, 0),
                       torch.where(chose, out.behavior, 0), out.behavior_probs.float() * chose[:, None],
                       leave_prob, leave_prob, out.left & active)

    def next_wear(self, wear: torch.Tensor, behavior: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """``[N]`` the session wear after a step with response ``behavior`` to ``item`` (both 0: nothing
        chosen)."""
        leave = self.config.leave
        wear = leave.wear_decay * wear + self._wear_of[behavior] + self._wear_item[item]
        return wear.clamp(*leave.wear_bounds) if leave.wear_bounds else wear

    def leave_probability(self, end_prob: torch.Tensor, patience: torch.Tensor, event: torch.Tensor,
                          idle: torch.Tensor, wear: torch.Tensor) -> torch.Tensor:
        """The leave hazard of :class:`~recsim_env.config.LeaveConfig` (``[N]``): the learned end
        probability, its logit scaled and moved by the offset and the session ``wear``, as a per-step
        hazard (or, ``after_event``, only where an event was appended), combined with the idle hazard
        (``idle``: consecutive steps without a consumption, this one included) and the impatience
        hazard."""
        leave = self.config.leave
        eps = 1e-6
        p = end_prob.clamp(eps, 1 - eps)
        logit = leave.end_logit_scale * (torch.log(p) - torch.log1p(-p))
        learned = torch.sigmoid(logit + leave.end_logit_offset + wear)
        if leave.end_hazard == "per_step":
            assert leave.hazard_scale is not None  # resolved by build_core
            learned = learned * leave.hazard_scale
        else:
            learned = learned * event
        impatience = (1.0 - patience).clamp(0.0, 1.0) ** leave.sharpness
        stay_idle = torch.exp(-leave.idle_hazard * idle.clamp(min=0.0))
        return 1.0 - (1.0 - leave.base_hazard) * (1.0 - learned) * stay_idle * (1.0 - impatience)

    # --- helpers shared by the env views -----------------------------------------------------------
    def dedupe(self, slate: torch.Tensor) -> torch.Tensor:
        """``slate`` with every repeat of an item in a later slot replaced by 0 (an empty slot)."""
        same = slate[:, :, None] == slate[:, None, :]
        duplicate = (same & self._earlier_slot).any(dim=2) & (slate > 0)
        return slate.masked_fill(duplicate, 0)

    def repeated(self, items: torch.Tensor) -> torch.Tensor:
        """``[N, m]`` bool: each item (``[N, m]``) is in the row's recent history (the whole window)."""
        return self.repeated_within(items, None)

    def repeated_within(self, items: torch.Tensor, window: int | None) -> torch.Tensor:
        """``[N, m]`` bool: each item (``[N, m]``) is among the row's last ``window`` consumptions (None:
        the whole history window, or everything the user is known to have consumed when the core keeps
        that, see :attr:`consumed`)."""
        if window is None and self.consumed is not None:
            return self.consumed.gather(1, items) & (items > 0)
        recent = self.history_items if window is None else self.history_items[:, -window:]
        return ((items[:, :, None] == recent[:, None, :]) & (items[:, :, None] > 0)).any(dim=2)

    def barred_repeats(self, items: torch.Tensor) -> torch.Tensor:
        """``[N, m]`` bool: the items the repeat policy penalises or masks (within
        ``choice.repeat_window``); all False under ``allow``."""
        choice = self.config.choice
        if choice.repeat == "allow":
            return torch.zeros_like(items, dtype=torch.bool)
        return self.repeated_within(items, choice.repeat_window)

    @property
    def history_mask(self) -> torch.Tensor:
        """``[N, H]`` bool: which history slots hold a real event (right-aligned)."""
        H = self.config.history_len
        return torch.arange(H, device=self.device)[None, :] >= (H - self.history_lengths)[:, None]

    def choice_utilities(self, items: torch.Tensor) -> torch.Tensor:
        """``[N, m]`` each row's choice utility for ``[N, m]`` items (ids >= 1): the normalised, tempered
        preference of :func:`recsim_env.choice.choice_utilities` (or, with a learned choice, its
        slot-free utility, :func:`recsim_env.choice.learned_utilities`), adjusted by the repeat policy
        (privileged: the one oracle; every env view's ``oracle_scores`` serves it)."""
        assert self.user_state is not None
        choice = self.config.choice
        normaliser: torch.Tensor | None
        if self.learned_choice is not None:
            logits, normaliser = item_logits_and_log_normaliser(self.model, self.user_state, items, 1.0)
            return learned_utilities(self.learned_choice, logits, normaliser, items, self.repeated(items),
                                     self.barred_repeats(items), choice, self.n_items)
        if choice.utility == "log_lift":
            logits, normaliser = item_logits_and_log_normaliser(self.model, self.user_state, items,
                                                                choice.temperature)
        else:
            logits, normaliser = self.model.item_logits(self.user_state, items), None
        return choice_utilities(logits, self.barred_repeats(items), choice, normaliser, self.n_items)

    def slate_choice_probabilities(self, slate: torch.Tensor, shown: torch.Tensor) -> torch.Tensor:
        """``[N, k + 1]`` P(each slot), then P(no choice), for ``[N, k]`` slates (ids >= 1; ``shown``
        False for empty slots): the learned choice when the core has one, else the multinomial logit of
        :class:`~recsim_env.config.ChoiceConfig`."""
        utility = self.choice_utilities(slate)
        if self.learned_choice is not None:
            return self.learned_choice.probabilities(utility, shown)
        choice = self.config.choice
        return choice_probabilities(utility, shown, choice.no_choice_logit, choice.position_decay)

    def catalogue(self) -> torch.Tensor:
        """``[N, n_items]`` every item id ``1..n_items`` for every row (an expanded view)."""
        return torch.arange(1, self.n_items + 1, device=self.device).expand(self.n_users, -1)

    def catalogue_logits(self) -> torch.Tensor:
        """``[N, n_items]`` the user model's logits for every item ``1..n_items`` (privileged)."""
        assert self.user_state is not None
        return catalogue_logits(self.model, self.user_state)

    def user_state_vector(self) -> torch.Tensor:
        """``[N, d + 2]`` the privileged user state: expected next-item embedding, patience, end prob.

        The expected embedding is the mean of the item embeddings weighted by the user model's
        next-item distribution over the whole catalogue; it summarises the hidden preferences in a
        model-independent way (any :class:`UserModel` provides logits and embeddings).
        """
        assert self.user_state is not None
        weights = torch.softmax(self.catalogue_logits(), dim=1)
        expected = weights @ self._embeddings[1:]
        end = self.model.end_prob(self.user_state).float()
        return torch.cat([expected, self.patience[:, None], end[:, None]], dim=1)

    def user_state_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Elementwise bounds of :meth:`user_state_vector` (a convex mix of embeddings, two probabilities)."""
        low = self._embeddings[1:].min(dim=0).values.cpu().numpy()
        high = self._embeddings[1:].max(dim=0).values.cpu().numpy()
        return np.concatenate([low, [0.0, 0.0]]), np.concatenate([high, [1.0, 1.0]])

    def nearest_items(self, vectors: torch.Tensor, k: int) -> torch.Tensor:
        """``[N, k]`` the items whose embeddings have the largest dot product with each ``[N, d]`` row."""
        scores = vectors.float() @ self._embeddings[1:].T
        return scores.topk(k, dim=1).indices + 1

    def slate_diversity(self, slate: torch.Tensor) -> torch.Tensor:
        """``[N]`` mean pairwise cosine distance of the shown items (0 with fewer than two)."""
        e = self._unit_embeddings[slate]
        shown = (slate > 0).float()
        pair = shown[:, :, None] * shown[:, None, :]
        pair = pair * (1 - torch.eye(slate.shape[1], device=self.device))
        distance = (1.0 - e @ e.transpose(1, 2)) * pair
        return distance.sum(dim=(1, 2)) / pair.sum(dim=(1, 2)).clamp(min=1.0)

    # --- internals --------------------------------------------------------------------------------
    def _append_history(self, item: torch.Tensor, behavior: torch.Tensor, chose: torch.Tensor) -> None:
        if self.consumed is not None:
            rows = torch.arange(self.n_users, device=self.device)
            self.consumed[rows, item] |= chose  # item 0 where nothing was chosen: reset below
            self.consumed[:, 0] = False
        shifted_items = torch.cat([self.history_items[:, 1:], item[:, None]], dim=1)
        shifted_behaviors = torch.cat([self.history_behaviors[:, 1:], behavior[:, None]], dim=1)
        self.history_items = torch.where(chose[:, None], shifted_items, self.history_items)
        self.history_behaviors = torch.where(chose[:, None], shifted_behaviors, self.history_behaviors)
        self.history_lengths = (self.history_lengths + chose.long()).clamp(max=self.config.history_len)

    def _candidate_noise(self, n: int) -> tuple[torch.Tensor, ...]:
        """The uniforms of each random part of :meth:`_retrieve_candidates` for ``n`` rows."""
        return () if self._retriever is None else self._retriever.noise(n, self.generator)

    def _retrieve_candidates(self, rows: torch.Tensor | None = None,
                             noise: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        """``[N, C]`` distinct candidates: nearest to the visible history, popular, random
        (:class:`~recsim_env.retrieval.CandidateRetriever`).

        With ``rows`` (row indices), only those rows' candidates (a reset retrieves for its new users
        only). ``noise``: :meth:`_candidate_noise` of the rows, drawn here when None.
        """
        assert self._retriever is not None
        history = self.history_items if rows is None else self.history_items[rows]
        mask = self.history_mask if rows is None else self.history_mask[rows]
        return self._retriever.retrieve(history, mask, self._candidate_noise(len(history)) if noise is None
                                        else noise)


def _right_align(history: History, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The last ``width`` events of each row, right-aligned (most recent last, zeros before)."""
    lengths = history.lengths
    index = lengths[:, None] - width + torch.arange(width, device=lengths.device)[None, :]
    valid = index >= 0
    index = index.clamp(min=0, max=max(history.items.shape[1] - 1, 0))
    if history.items.shape[1] == 0:
        zeros = torch.zeros(len(lengths), width, dtype=torch.long, device=lengths.device)
        return zeros, zeros.clone()
    items = torch.where(valid, history.items.gather(1, index), 0)
    behaviors = torch.where(valid, history.behaviors.gather(1, index), 0)
    return items, behaviors
