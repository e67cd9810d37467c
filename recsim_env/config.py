"""Frozen configuration of the simulation core: choice, leave, reward, population, candidates.

Every free parameter of the user dynamics that the logs cannot teach the Transformer lives here, with its
default and the reason for it. :func:`recsim_env.offline.calibrate.calibrate` fits the parameters that the
logs *can* pin down (temperature, no-choice logit, end-logit offset, and the patience drain scale when
patience alone ends sessions too early) and returns a :class:`Calibration`, which
:meth:`Calibration.apply` writes into a :class:`SimConfig`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from user_models.errors import InputError

RepeatPolicy = Literal["allow", "penalise", "mask"]
UtilityKind = Literal["log_lift", "logit"]
PopulationKind = Literal["dataset", "generated"]
REPEAT_POLICIES: tuple[str, ...] = ("allow", "penalise", "mask")
UTILITY_KINDS: tuple[str, ...] = ("log_lift", "logit")
ChoiceSource = Literal["auto", "learned", "calibrated"]
CHOICE_SOURCES: tuple[str, ...] = ("auto", "learned", "calibrated")
REPEAT_MASK_BELOW = 0.01
"""Logs that re-consume an item of the recent history less often than this get the ``mask`` repeat
policy by default (MovieLens: a user rates a movie once)."""
POPULATION_KINDS: tuple[str, ...] = ("dataset", "generated")
CALIBRATION_FORMAT_VERSION = 1


@dataclass(frozen=True)
class ChoiceConfig:
    """Multinomial logit over the slate plus a "no choice" option (RecSim's convention).

    ``P(slot i) = e_i exp(u_i) / (sum_j e_j exp(u_j) + exp(no_choice_logit))`` over the shown slots, where

    - ``u_i`` is the item's utility (:func:`recsim_env.choice.choice_utilities`): by default its
      *log-lift*, ``log(n_items * q_i)`` with ``q = softmax(logits / temperature)`` over the whole
      catalogue, so the utility is a normalised preference (the model's raw logits have an arbitrary
      level per user); repeats are then penalised or masked by the repeat policy;
    - ``e_i = position_decay ** i`` is the examination of slot ``i`` relative to the top slot.

    Attributes:
        temperature: Sharpness of preferences: divides the model's logits before normalising; > 1
            makes users less selective. Calibrated (temperature scaling on held-out next items).
        no_choice_logit: Utility of choosing nothing, on the log-lift scale: 0 means nothing is as
            attractive as one item of average (uniform) preference mass. Calibrated (logged
            consumption rate under the logging policy).
        utility: ``log_lift`` (default, normalised preferences) or ``logit`` (raw model logits, whose
            level differs per user; kept to measure the difference).
        position_decay: Examination decay per slot, in (0, 1]. Consumption logs do not show what was
            shown, so they cannot identify it: 1.0 (no position effect) unless set, or fitted on
            impression logs.
        repeat: What happens when a slate holds an item already in the user's recent history:
            ``allow`` (treated like any item: the user model's own view of repeats decides),
            ``penalise`` (its utility also drops by ``repeat_penalty``) or ``mask`` (it cannot be
            chosen, and ``action_masks`` hides it). None (default): decided by the data with
            ``repeat_window`` (:func:`recsim_env.population.data_repeat_rule`): ``mask`` when the training
            logs re-consume within the history less than :data:`REPEAT_MASK_BELOW` of the time
            (MovieLens: never), ``mask`` within the last ``w`` events when they re-consume only older
            items, else ``allow``.
        repeat_window: How far back ``penalise`` and ``mask`` look: an item among the user's last
            ``repeat_window`` consumptions is a repeat. None: the whole history window, and under
            ``mask`` everything the user is known to have consumed. Ignored under ``allow``.
        repeat_penalty: Utility penalty under ``penalise``. Default 2.0: a repeat is ~7x less attractive.
        source: Which slate choice the simulator uses. ``auto`` (default): the user model's choice
            learned from impression logs when it has one (``recsim user-model fit-choice``; then
            ``temperature``, ``no_choice_logit``, ``utility`` and ``position_decay`` play no part), else the
            multinomial logit above. ``learned``: the learned one, an error for a model without it.
            ``calibrated``: the multinomial logit above even when a learned one exists. The repeat
            policy applies to both.
    """

    temperature: float = 1.0
    no_choice_logit: float = 0.0
    utility: UtilityKind = "log_lift"
    position_decay: float = 1.0
    repeat: RepeatPolicy | None = None
    repeat_window: int | None = None
    repeat_penalty: float = 2.0
    source: ChoiceSource = "auto"

    def __post_init__(self) -> None:
        _check(self.source in CHOICE_SOURCES, f"choice source must be one of {CHOICE_SOURCES}, got "
               f"{self.source!r}")
        _check(self.temperature > 0, f"choice temperature must be > 0, got {self.temperature}")
        _check(self.utility in UTILITY_KINDS, f"choice utility must be one of {UTILITY_KINDS}, got "
               f"{self.utility!r}")
        _check(0 < self.position_decay <= 1, f"position_decay must be in (0, 1], got {self.position_decay}")
        _check(self.repeat is None or self.repeat in REPEAT_POLICIES, f"repeat policy must be one of "
               f"{REPEAT_POLICIES} or None (from the data), got {self.repeat!r}")
        _check(self.repeat_window is None or self.repeat_window >= 1,
               f"repeat_window must be >= 1 or None (everything known), got {self.repeat_window}")
        _check(self.repeat_penalty >= 0, f"repeat_penalty must be >= 0, got {self.repeat_penalty}")


@dataclass(frozen=True)
class LeaveConfig:
    """When a simulated user ends the session: the learned end probability, and optional patience.

    **The learned hazard.** The user model's end head gives ``e``, the probability that the last event
    was the session's last (what the logs show: no further consumption before a long gap). With
    ``end_hazard="per_step"`` (default) the user leaves at *every* step, consumption or not, with
    hazard ``h = hazard_scale * sigmoid(logit(e) + end_logit_offset)``, ``e`` taken from the state after
    the user's last event. Why the scale: if a user leaves each step with hazard ``h`` and consumes at
    a fraction ``c`` of steps, the chance that an event is the last one is ``h / (h + c (1 - h))``,
    about ``h / c`` for small ``h``; so ``e = h / c`` at the logged consumption rate ``c``, and
    ``hazard_scale = c`` turns the end head into a per-step hazard. Under a policy whose slates are
    consumed more often, users then make more events before leaving; under one that is ignored, they
    leave after about ``1 / h`` steps instead of staying to the step cap. ``"after_event"`` applies
    ``sigmoid(logit(e) + end_logit_offset)`` only on steps that appended an event (models whose every
    step is an event, like the synthetic world with ``no_choice_event``).

    **Idle hazard.** After ``j`` consecutive steps without a consumption the user also leaves with
    ``1 - exp(-idle_hazard * j)``: unanswered slates wear users out. The logs identify it through their
    time gaps (how often users stay through two or more idle steps between events); calibrated, 0 when
    the logs show no such effect.

    **Session wear** (learned by ``recsim env calibrate``; off by default). A per-session state ``w``
    starts at 0 and after each step becomes ``clip(wear_decay * w + wear_weights[b], *wear_bounds)``,
    ``b`` the step's response (0: nothing chosen, else the behavior id); it is added to the learned
    hazard's logit, which becomes ``end_logit_scale * logit(e) + end_logit_offset + w``. What users did
    with the slates so far in this session (ignored them, glanced, bought) then moves their leaving, as
    satisfaction does: impression logs show every step and its response, so
    :mod:`recsim_env.offline.leave_impressions` fits the weights, the decay and the scale by maximum
    likelihood, and the bounds are the range the logged sessions reached (the wear never extrapolates
    beyond it). Consumption logs do not show unanswered slates; there the steps are rebuilt from the
    time gaps and the slates passed over after a session's last consumption are summed over
    (:func:`~recsim_env.offline.leave_impressions.consumption_steps`). A consumed item
    moves the wear too, by ``wear_item_weights . x_i``, with ``x_i`` the user model's own vector of the
    item standardised over the catalogue (:func:`~recsim_env.core.wear_item_vectors`): the same kind of
    response to two items (a glance at a tempting bait, a glance at a good match) can leave a user in
    a different mood, as item quality moves satisfaction. With the wear comes a **base hazard**
    ``base_hazard``, a per-step leave probability that nothing in the session moves (the phone rings,
    the bus arrives): a logistic hazard alone goes to 0 as the wear falls, so without it a policy that
    keeps the wear low would keep users almost for ever, which no log shows.

    **Patience** (optional, off by default: consumption logs do not identify it). Patience ``p`` in
    [0, 1] starts at ``initial_patience`` and changes each step by ``-no_choice_drain * drain_scale``
    when nothing was chosen, and by ``high_value_refill * v - low_value_drain * drain_scale * (1 - v)``
    after a response of engagement value ``v = (b - 1) / (n_behaviors - 1)`` (1 with one behavior);
    it adds the impatience hazard ``(1 - p) ** sharpness``. The step's leave probability is
    ``1 - (1 - base_hazard) * (1 - h) * (1 - idle) * (1 - (1 - p) ** sharpness)``.
    ``RecSim-LongTerm-v0`` turns patience on.

    Attributes:
        end_hazard: ``per_step`` (default) or ``after_event``, see above.
        hazard_scale: The per-step scale of the learned hazard (``per_step`` only). None: the logged
            consumption rate per step of the training split (1.0 without timestamps, where every step is
            taken as a logged event).
        end_logit_offset: Added to the learned end probability's logit. Calibrated so that simulated
            sessions hold as many events as the logged ones (0 when the end head is calibrated).
        idle_hazard: Rate of the idle hazard (>= 0; 0: off). Calibrated on the logged long-gap share.
        end_logit_scale: Multiplies the learned end probability's logit (>= 0; 1: as learned).
        wear_weights: Session wear added per response ``0..n_behaviors`` (empty: no wear).
        wear_decay: How much of the wear carries to the next step, in [0, 1].
        wear_bounds: ``(low, high)`` the wear is clipped to (empty: unbounded).
        wear_item_weights: Wear added per consumed item along its standardised vector (one weight per
            dimension of the user model's item vectors; empty: the item plays no part).
        base_hazard: Per-step leave probability independent of the session, in [0, 1) (0: off).
        initial_patience: Patience of a new user.
        no_choice_drain: Patience lost on a step where nothing was chosen (0: off).
        low_value_drain: Patience lost on a response of the lowest engagement (0: off).
        high_value_refill: Patience gained on a response of the highest engagement (0: off).
        sharpness: Exponent of the impatience hazard ``(1 - p) ** sharpness``; larger means users
            tolerate a partly drained patience longer.
        drain_scale: Multiplies ``no_choice_drain`` and ``low_value_drain``; calibrated (below 1) only
            when patience is on and alone ends sessions under the logging policy sooner than the logs.
    """

    end_hazard: Literal["per_step", "after_event"] = "per_step"
    hazard_scale: float | None = None
    end_logit_offset: float = 0.0
    idle_hazard: float = 0.0
    end_logit_scale: float = 1.0
    wear_weights: tuple[float, ...] = ()
    wear_decay: float = 1.0
    wear_bounds: tuple[float, ...] = ()
    wear_item_weights: tuple[float, ...] = ()
    base_hazard: float = 0.0
    initial_patience: float = 1.0
    no_choice_drain: float = 0.0
    low_value_drain: float = 0.0
    high_value_refill: float = 0.0
    sharpness: float = 4.0
    drain_scale: float = 1.0

    def __post_init__(self) -> None:
        _check(self.end_hazard in ("per_step", "after_event"), f"end_hazard must be 'per_step' or "
               f"'after_event', got {self.end_hazard!r}")
        _check(self.hazard_scale is None or 0.0 < self.hazard_scale <= 1.0, f"hazard_scale must be in "
               f"(0, 1], got {self.hazard_scale}")
        _check(0.0 <= self.drain_scale <= 1.0, f"drain_scale must be in [0, 1], got {self.drain_scale}")
        _check(self.idle_hazard >= 0.0, f"idle_hazard must be >= 0, got {self.idle_hazard}")
        _check(math.isfinite(self.end_logit_scale) and self.end_logit_scale >= 0.0,
               f"end_logit_scale must be >= 0, got {self.end_logit_scale}")
        _check(all(math.isfinite(w) for w in self.wear_weights), f"wear_weights must be finite, got "
               f"{self.wear_weights}")
        _check(all(math.isfinite(w) for w in self.wear_item_weights), f"wear_item_weights must be finite, "
               f"got {self.wear_item_weights}")
        _check(0.0 <= self.base_hazard < 1.0, f"base_hazard must be in [0, 1), got {self.base_hazard}")
        _check(0.0 <= self.wear_decay <= 1.0, f"wear_decay must be in [0, 1], got {self.wear_decay}")
        _check(len(self.wear_bounds) == 0 or (len(self.wear_bounds) == 2
                                              and self.wear_bounds[0] <= self.wear_bounds[1]),
               f"wear_bounds must be empty or (low, high) with low <= high, got {self.wear_bounds}")
        _check(0.0 <= self.initial_patience <= 1.0, f"initial_patience must be in [0, 1], got "
               f"{self.initial_patience}")
        for name in ("no_choice_drain", "low_value_drain", "high_value_refill"):
            value = getattr(self, name)
            _check(0.0 <= value <= 1.0, f"{name} must be in [0, 1], got {value}")
        _check(self.sharpness > 0, f"sharpness must be > 0, got {self.sharpness}")

    @property
    def patience_on(self) -> bool:
        """Whether patience can change at all (any drain or refill is non-zero)."""
        return self.no_choice_drain > 0 or self.low_value_drain > 0 or self.high_value_refill > 0


@dataclass(frozen=True)
class RewardConfig:
    """The reward of a step: a weight per behavior, plus optional diversity bonus and no-choice penalty.

    ``reward = behavior_weights[b - 1]`` when the user responded with behavior ``b``, ``-no_choice_penalty``
    when nothing was chosen, plus ``diversity_weight`` times the slate's intra-list diversity (mean
    pairwise cosine distance of the shown items' embeddings, in [0, 2]).

    Attributes:
        behavior_weights: One weight per behavior id ``1..n_behaviors``. Default (None): ``b / n_behaviors``,
            so any consumption is worth something and the most engaged behavior is worth 1.
        no_choice_penalty: Subtracted when the user chooses nothing (default 0).
        diversity_weight: Weight of the slate-diversity bonus (default 0: off).
    """

    behavior_weights: tuple[float, ...] | None = None
    no_choice_penalty: float = 0.0
    diversity_weight: float = 0.0

    def __post_init__(self) -> None:
        _check(self.no_choice_penalty >= 0, f"no_choice_penalty must be >= 0, got {self.no_choice_penalty}")
        _check(self.diversity_weight >= 0, f"diversity_weight must be >= 0, got {self.diversity_weight}")

    def weights(self, n_behaviors: int) -> tuple[float, ...]:
        """The weight of each behavior id ``1..n_behaviors``."""
        if self.behavior_weights is None:
            return tuple((b + 1) / n_behaviors for b in range(n_behaviors))
        if len(self.behavior_weights) != n_behaviors:
            raise InputError(
                f"reward behavior_weights has {len(self.behavior_weights)} entries, the model has "
                f"{n_behaviors} behaviors"
            )
        return tuple(float(w) for w in self.behavior_weights)


@dataclass(frozen=True)
class PopulationConfig:
    """Where simulated users come from.

    Attributes:
        kind: ``dataset``: each user starts from a prefix of a real user's *training-split* history
            (validation and test events are never used). ``generated``: the model samples a warm-up
            history itself, item by item, through the user protocol.
        min_prefix: Shortest starting history (events).
        max_prefix: Longest starting history (events); dataset users shorter than this start from their
            whole training history.
    """

    kind: PopulationKind = "dataset"
    min_prefix: int = 1
    max_prefix: int = 50

    def __post_init__(self) -> None:
        _check(self.kind in POPULATION_KINDS, f"population kind must be one of {POPULATION_KINDS}, got "
               f"{self.kind!r}")
        _check(1 <= self.min_prefix <= self.max_prefix, f"population prefix range must satisfy 1 <= min "
               f"<= max, got [{self.min_prefix}, {self.max_prefix}]")


Retrieval = Literal["auto", "exact", "sampled"]
RETRIEVALS: tuple[str, ...] = ("auto", "exact", "sampled")
"""How the candidates' popular and random parts are drawn (:class:`CandidateConfig`)."""


@dataclass(frozen=True)
class CandidateConfig:
    """The candidates the env retrieves each step in the ``candidates`` action mode.

    ``n_candidates`` distinct items: a fraction ``nearest`` of them nearest (by dot product of item
    embeddings) to the mean of the user's recent *visible* history, a fraction ``popular`` sampled by
    training-split popularity, the rest uniformly at random. Retrieval uses only what a real
    recommender sees (the history and the catalogue), never the simulated user's hidden state.

    ``retrieval`` is how the popular and random parts are drawn (:mod:`recsim_env.retrieval`): ``exact``
    (Gumbel-top-k over the catalogue), ``sampled`` (a few dozen draws per row, the same distribution,
    far fewer random numbers) or ``auto`` (sampled on catalogues of at least
    :data:`~recsim_env.retrieval.SAMPLED_MIN_ITEMS` items and four times ``n_candidates`` plus the
    history length; exact below). The two draw differently from the same seed.
    """

    n_candidates: int = 20
    nearest: float = 0.5
    popular: float = 0.25
    retrieval: Retrieval = "auto"

    def __post_init__(self) -> None:
        _check(self.n_candidates >= 1, f"n_candidates must be >= 1, got {self.n_candidates}")
        _check(0 <= self.nearest and 0 <= self.popular and self.nearest + self.popular <= 1,
               f"candidate fractions must be >= 0 and sum to <= 1, got nearest={self.nearest}, "
               f"popular={self.popular}")
        _check(self.retrieval in RETRIEVALS, f"candidate retrieval must be one of {RETRIEVALS}, got "
               f"{self.retrieval!r}")

    def counts(self) -> tuple[int, int, int]:
        """Numbers of (nearest, popular, random) candidates."""
        nearest = round(self.n_candidates * self.nearest)
        popular = min(round(self.n_candidates * self.popular), self.n_candidates - nearest)
        return nearest, popular, self.n_candidates - nearest - popular


@dataclass(frozen=True)
class SimConfig:
    """Everything the simulation core needs besides the user model and the dataset.

    Attributes:
        slate_size: Items shown per step (k).
        max_steps: Steps after which an episode is truncated.
        history_len: Recent events kept per user for observations and repeat detection.
        gap_seconds: Seconds between simulated steps, passed to the model as the event gap. None: the
            dataset's median within-session gap (unknown, -1, without timestamps).
        candidates: Candidate retrieval; None when the action mode does not use candidates.
        no_choice_event: Append a "no response" event (item 0, behavior 0) to the model state on a
            no-choice step, and apply the model's end probability after it. Only for models that define
            behavior 0, like the synthetic world (whose patience it drains); learned models have never
            seen such events in logs, so the default (False) leaves their state untouched.
    """

    slate_size: int = 5
    max_steps: int = 100
    history_len: int = 50
    gap_seconds: float | None = None
    choice: ChoiceConfig = field(default_factory=ChoiceConfig)
    leave: LeaveConfig = field(default_factory=LeaveConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    population: PopulationConfig = field(default_factory=PopulationConfig)
    candidates: CandidateConfig | None = None
    no_choice_event: bool = False

    def __post_init__(self) -> None:
        _check(self.slate_size >= 1, f"slate_size must be >= 1, got {self.slate_size}")
        _check(self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}")
        _check(self.history_len >= 1, f"history_len must be >= 1, got {self.history_len}")
        window = self.choice.repeat_window
        _check(window is None or window <= self.history_len, f"choice.repeat_window ({window}) must not "
               f"exceed history_len ({self.history_len}): older consumptions are not kept")


@dataclass(frozen=True)
class Calibration:
    """The fitted choice and leave parameters, with the before/after report; saved as JSON.

    Attributes:
        temperature: Choice temperature (see :class:`ChoiceConfig`).
        no_choice_logit: Utility of choosing nothing.
        end_logit_offset: Offset of the learned session-end logit (see :class:`LeaveConfig`).
        drain_scale: Strength of patience drains (see :class:`LeaveConfig`).
        idle_hazard: Rate of the idle hazard (see :class:`LeaveConfig`).
        end_logit_scale, wear_weights, wear_decay, wear_bounds, wear_item_weights, base_hazard: The
            session wear, the base hazard and the end logit's scale (see :class:`LeaveConfig`), fitted
            on impression logs; the defaults leave them off.
        dataset_fingerprint: Fingerprint of the dataset the calibration was fitted on.
        report: Logged targets and simulated statistics before and after (free-form, for people).
    """

    temperature: float
    no_choice_logit: float
    end_logit_offset: float
    drain_scale: float = 1.0
    idle_hazard: float = 0.0
    end_logit_scale: float = 1.0
    wear_weights: tuple[float, ...] = ()
    wear_decay: float = 1.0
    wear_bounds: tuple[float, ...] = ()
    wear_item_weights: tuple[float, ...] = ()
    base_hazard: float = 0.0
    dataset_fingerprint: str = ""
    report: dict[str, Any] = field(default_factory=dict)
    format_version: int = CALIBRATION_FORMAT_VERSION

    def apply(self, config: SimConfig) -> SimConfig:
        """``config`` with the calibrated parameters written in."""
        return replace(
            config,
            choice=replace(config.choice, temperature=self.temperature, no_choice_logit=self.no_choice_logit),
            leave=replace(config.leave, end_logit_offset=self.end_logit_offset, drain_scale=self.drain_scale,
                          idle_hazard=self.idle_hazard, end_logit_scale=self.end_logit_scale,
                          wear_weights=self.wear_weights, wear_decay=self.wear_decay,
                          wear_bounds=self.wear_bounds, wear_item_weights=self.wear_item_weights,
                          base_hazard=self.base_hazard),
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the calibration as JSON (temporary file, then rename)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(tmp, target)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Calibration:
        """Read a calibration JSON written by :meth:`save`."""
        source = Path(path)
        try:
            data = json.loads(source.read_text())
        except FileNotFoundError:
            raise InputError(f"{source}: calibration file not found; run `recsim env calibrate`") from None
        except json.JSONDecodeError as exc:
            raise InputError(f"{source}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
        return cls.from_mapping(data, str(source))

    @classmethod
    def from_mapping(cls, data: Any, source: str = "calibration") -> Calibration:
        """A calibration from its JSON mapping (what :meth:`save` writes); errors name ``source``."""
        if not isinstance(data, Mapping):
            raise InputError(f"{source}: a calibration must be a JSON object, got {type(data).__name__}")
        if data.get("format_version") != CALIBRATION_FORMAT_VERSION:
            raise InputError(f"{source}: calibration format version {data.get('format_version')!r}, "
                             f"expected {CALIBRATION_FORMAT_VERSION}")
        try:
            return cls(
                temperature=float(data["temperature"]),
                no_choice_logit=float(data["no_choice_logit"]),
                end_logit_offset=float(data["end_logit_offset"]),
                drain_scale=float(data.get("drain_scale", 1.0)),
                idle_hazard=float(data.get("idle_hazard", 0.0)),
                end_logit_scale=float(data.get("end_logit_scale", 1.0)),
                wear_weights=tuple(float(w) for w in data.get("wear_weights", ())),
                wear_decay=float(data.get("wear_decay", 1.0)),
                wear_bounds=tuple(float(w) for w in data.get("wear_bounds", ())),
                wear_item_weights=tuple(float(w) for w in data.get("wear_item_weights", ())),
                base_hazard=float(data.get("base_hazard", 0.0)),
                dataset_fingerprint=str(data.get("dataset_fingerprint", "")),
                report=dict(data.get("report", {})),
            )
        except KeyError as exc:
            raise InputError(f"{source}: missing key {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise InputError(f"{source}: {exc}") from None


ACTION_MODES: tuple[str, ...] = ("slate", "candidates", "embedding")
OBSERVATION_MODES: tuple[str, ...] = ("history", "state")
MAX_HISTORY_LEN = 4096
"""Longest recent-history window an env keeps per user (each row holds ``[history_len]`` buffers and the
model's cache; 10**7 would be gigabytes for one user)."""
MAX_SLATE_SIZE = 1024
MAX_STEPS_LIMIT = 1_000_000


@dataclass(frozen=True)
class EnvConfig:
    """Every setting of a recsim-env environment: the one place a setting is declared.

    ``gym.make(id, **kwargs)``, ``gym.make_vec``, ``--env-config YAML``, ``--env-kwargs KEY=VALUE`` and the
    ``env_kwargs`` of the hyperparameter YAMLs all go through :meth:`from_mapping`, which names a bad key
    or value. Every env view (single, vector, SB3 adapter, world envs) is built from one of these.

    Attributes:
        slate_size: Items shown per step (k).
        action_mode: ``slate`` (k item ids), ``candidates`` (k positions among the retrieved candidates)
            or ``embedding`` (a vector mapped to the k nearest items).
        observation_mode: ``history`` (what a real recommender sees) or ``state`` (adds the privileged
            user-state vector).
        max_steps: Steps after which an episode is truncated.
        history_len: Recent events kept per user for observations and repeat detection.
        gap_seconds: Seconds between simulated steps, passed to the model as the event gap. None: the
            dataset's median within-session gap.
        reward: The reward of a step (:class:`RewardConfig`).
        population: Where simulated users come from (:class:`PopulationConfig`).
        choice: The choice model's parameters (:class:`ChoiceConfig`).
        leave: When users leave (:class:`LeaveConfig`).
        candidates: Candidate retrieval (:class:`CandidateConfig`); used in the ``candidates`` action mode
            only, where None means the defaults.
        calibration: A calibration JSON written by ``recsim env calibrate`` (or a :class:`Calibration`);
            overrides the choice temperature, no-choice logit, end-logit offset and drain scale.
        no_choice_event: Append a "no response" event (behavior 0) on no-choice steps (models that define
            one, like the synthetic world; see :class:`SimConfig`).
        strict: Raise on an item repeated within one slate instead of showing nothing in its later slot.
        device: Torch device of the simulation (where a model loaded from a path goes).
    """

    slate_size: int = 5
    action_mode: Literal["slate", "candidates", "embedding"] = "slate"
    observation_mode: Literal["history", "state"] = "history"
    max_steps: int = 100
    history_len: int = 50
    gap_seconds: float | None = None
    reward: RewardConfig = field(default_factory=RewardConfig)
    population: PopulationConfig = field(default_factory=PopulationConfig)
    choice: ChoiceConfig = field(default_factory=ChoiceConfig)
    leave: LeaveConfig = field(default_factory=LeaveConfig)
    candidates: CandidateConfig | None = None
    calibration: str | Calibration | None = None
    no_choice_event: bool = False
    strict: bool = False
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name, section in _SECTIONS.items():  # EnvConfig(reward={...}) as from_mapping would read it
            value = getattr(self, name)
            if isinstance(value, Mapping):
                object.__setattr__(self, name, _section(section, value, f"env argument {name!r}"))
        _check(self.action_mode in ACTION_MODES, f"action_mode must be one of {ACTION_MODES}, got "
               f"{self.action_mode!r}")
        _check(self.observation_mode in OBSERVATION_MODES, f"observation_mode must be one of "
               f"{OBSERVATION_MODES}, got {self.observation_mode!r}")
        _check(1 <= self.slate_size <= MAX_SLATE_SIZE, f"slate_size must be in [1, {MAX_SLATE_SIZE}], got "
               f"{self.slate_size}")
        _check(1 <= self.max_steps <= MAX_STEPS_LIMIT, f"max_steps must be in [1, {MAX_STEPS_LIMIT}], got "
               f"{self.max_steps}")
        _check(1 <= self.history_len <= MAX_HISTORY_LEN, f"history_len must be in [1, {MAX_HISTORY_LEN}], "
               f"got {self.history_len}")
        _check(self.gap_seconds is None or self.gap_seconds >= 0, f"gap_seconds must be >= 0, got "
               f"{self.gap_seconds}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "env config",
                     base: EnvConfig | None = None) -> EnvConfig:
        """The config of ``data`` (plain values, or frozen configs for the sections) over ``base``.

        Sections (``reward``, ``population``, ``choice``, ``leave``, ``candidates``) may be plain mappings
        of their fields (YAML, JSON, ``gym.make`` kwargs; lists become tuples); a section given here
        replaces ``base``'s whole section. Values are type-checked: ``slate_size=2.5``, ``True`` or
        ``"abc"`` are errors, not silently converted.

        Raises:
            InputError: an unknown key, a value of the wrong type, or a value a config rejects; the
                message names ``source``, the key and the value.
        """
        if not isinstance(data, Mapping):
            raise InputError(f"{source}: an env config must be a mapping of settings, got "
                             f"{type(data).__name__}")
        values = _typed_fields(cls, data, source)
        try:
            return replace(base, **values) if base is not None else cls(**values)
        except InputError as exc:
            raise InputError(f"{source}: {exc}") from None

    def to_mapping(self) -> dict[str, Any]:
        """The settings as plain JSON-ready values (what :meth:`from_mapping` reads back)."""
        return asdict(self)

    def sim_config(self) -> SimConfig:
        """The simulation core's part of these settings (calibration not yet applied)."""
        candidates = (self.candidates or CandidateConfig()) if self.action_mode == "candidates" else None
        return SimConfig(slate_size=self.slate_size, max_steps=self.max_steps, history_len=self.history_len,
                         gap_seconds=self.gap_seconds, choice=self.choice, leave=self.leave,
                         reward=self.reward, population=self.population, candidates=candidates,
                         no_choice_event=self.no_choice_event)

    def loaded_calibration(self) -> Calibration | None:
        """The calibration to apply (read from its JSON file when given as a path), or None."""
        if self.calibration is None or isinstance(self.calibration, Calibration):
            return self.calibration
        return Calibration.load(self.calibration)


_SECTIONS: dict[str, type] = {
    "reward": RewardConfig,
    "population": PopulationConfig,
    "choice": ChoiceConfig,
    "leave": LeaveConfig,
    "candidates": CandidateConfig,
}


def _typed_fields(cls: type, data: Mapping[str, Any], source: str) -> dict[str, Any]:
    """``data`` checked against the fields of the dataclass ``cls``: known keys, values of the right type."""
    hints = get_type_hints(cls)
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise InputError(f"{source}: unknown setting(s) {unknown} (known: {', '.join(known)})")
    out: dict[str, Any] = {}
    for key, value in data.items():
        where = f"{source}: env argument {key!r}" if cls is EnvConfig else f"{source}: {key}"
        section = _SECTIONS.get(key)
        if section is not None and isinstance(value, Mapping):
            value = _section(section, value, where)
        elif key == "calibration" and isinstance(value, Mapping):
            value = Calibration.from_mapping(value, where)
        elif key == "calibration" and isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not _matches(value, hints[key]):
            raise InputError(f"{where} must be {_type_name(hints[key])}, got {value!r}")
        out[key] = value
    return out


def _section(section: type, value: Mapping[str, Any], where: str) -> Any:
    """A section's frozen config from a plain mapping of its fields (lists become tuples), type-checked."""
    fields_ = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
    checked = _typed_fields(section, fields_, where)  # errors read "...: env argument 'reward': x ..."
    try:
        return section(**checked)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` is of the annotated type (the few shapes config fields use)."""
    origin = get_origin(hint)
    if origin in (Union, UnionType):
        return any(_matches(value, arg) for arg in get_args(hint))
    if origin is Literal:
        return value in get_args(hint)
    if origin is tuple:
        item = get_args(hint)[0]
        return isinstance(value, tuple) and all(_matches(v, item) for v in value)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    origin = get_origin(hint)
    if origin in (Union, UnionType):
        return " or ".join(_type_name(arg) for arg in get_args(hint))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(hint))
    if origin is tuple:
        return f"a list of {_type_name(get_args(hint)[0])}"
    if hint is type(None):
        return "null"
    names = {int: "an integer", float: "a finite number", bool: "true or false", str: "a string"}
    return names.get(hint, f"a {getattr(hint, '__name__', hint)} mapping")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise InputError(message)


WORLD_MODEL = "world"
"""The model argument that names a synthetic dataset's ground-truth world instead of a learned model."""

WORLD_LEAVE = LeaveConfig(end_hazard="after_event")
"""The world has its own patience (drained by no-response and view events, refilled by carts and buys,
and driving its session-end probability) and every step is a world event, so its end probability is the
step's leave hazard as it is; the core's patience stays off."""

WORLD_CHOICE = ChoiceConfig(utility="logit", repeat="allow")
"""The world's slate choice as it was written (raw world logits against a no-choice utility of 0,
repeats left to the world's satiation): frozen, so the ground truth does not move with the simulator."""

WORLD_DEFAULTS: dict[str, Any] = {"leave": WORLD_LEAVE, "choice": WORLD_CHOICE, "no_choice_event": True}
"""Settings of ``RecSim-World-v0`` that differ from the learned simulator's: no-choice steps are world
events (behavior 0, draining the world's patience), the world's end probability is the only hazard, and
its choice is the frozen :data:`WORLD_CHOICE`."""
