"""Can the simulator be trusted? Two checks: against the logs, and against a known ground truth.

**Data fidelity** (any dataset). Each selected user's *last session* is held out as the real
continuation; the simulated user starts from everything before it (the prefix) and is shown slates by a
logging-like policy (items sampled without replacement from the user model's next-item distribution,
as in the calibration) until the simulated session ends. The simulated sessions are measured as the logs
would show them (only consumed events; sessions with no consumption are invisible in logs and left out)
and compared with the real continuations:

- category distribution of consumed items: Jensen-Shannon divergence (base 2, in [0, 1]);
- item popularity: distribution of consumed items over ten popularity bins (each bin holds a tenth of
  the training events), Jensen-Shannon divergence;
- session length (events per session): two-sample Kolmogorov-Smirnov statistic;
- behavior mix: Jensen-Shannon divergence of the behavior distributions;
- repeat rate: share of consumed events whose item the user already had (prefix or earlier in session).

Each divergence comes with a *noise floor*: the same statistic between two random halves of the real
continuations, i.e. what sampling noise alone produces at this size. Caveat: with leave-last-out
training the model has seen the last session except its final two events, so this check measures how
well the simulator reproduces sessions rather than how it generalises to unseen users.

**Ground-truth fidelity** (synthetic datasets). The synthetic world that generated the logs is a
:class:`~user_models.protocol.UserModel` too, so every policy can be run in the world itself and in the
simulator whose Transformer learned from the world's logs, under the same env settings, seeds and
evaluation populations. Both start from the same logged prefixes; the world continues the very users who
wrote them (each one's true initial state, regenerated from the logs' seed, then the prefix replayed:
``History.users``), so the question is how a policy would have done with the people in the logs. The
recommender side (candidate retrieval, embedding features) sees the learned item vectors in both, so a
policy meets the same candidates in the world as in the simulator. For each policy: its mean return in
both, the relative error, and Kendall's tau between the two rankings of the policies, the
session-length KS statistic, and the random policy's pick rate in both. Targets: tau >= 0.9, every
relative error <= 25% (median <= 10%), random-slate pick rate within 20%.

**Held-out-policy fidelity** (any two logs of the same catalogue, e.g. before and after a ranking
change): the simulator fitted to logs A predicts the logged statistics of logs B (session length,
consumption rate, behavior mix, return); target: session length and consumption rate within 20%.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon

from recsim_env.config import WORLD_MODEL, EnvConfig
from recsim_env.factory import load_dataset, load_model
from recsim_env.offline.benchmark import BenchmarkConfig, collect_runs
from recsim_env.offline.calibrate import LoggingSlates, session_stats
from recsim_env.offline.metrics import categories_multi_hot, consumption_rate
from recsim_env.offline.rollout import PolicyRun, Simulator, build_simulator, rollout
from recsim_env.offline.stats import bootstrap_mean_ci
from recsim_env.population import logged_stats
from user_models.data.popularity import item_popularity
from user_models.errors import InputError
from user_models.protocol import History

TAU_TARGET = 0.9
REL_ERROR_TARGET = 0.25
MEDIAN_ERROR_TARGET = 0.10
PICK_RATE_TARGET = 0.20
HELDOUT_TARGET = 0.20
N_POPULARITY_BINS = 10


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) of two non-negative mass vectors (normalised here)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.sum() <= 0 or q.sum() <= 0:
        return float("nan")
    return float(jensenshannon(p / p.sum(), q / q.sum(), base=2) ** 2)


def popularity_bins(popularity: np.ndarray, n_bins: int = N_POPULARITY_BINS) -> np.ndarray:
    """``[n_items + 1]`` bin of each item: items sorted by popularity, cut so each bin holds ~1/n of events.

    Bin 0 holds the most popular items. Items never seen in training fall in the last bin.
    """
    counts = np.asarray(popularity, dtype=np.float64)[1:]
    order = np.argsort(-counts, kind="stable")
    share = np.cumsum(counts[order]) / max(counts.sum(), 1.0)
    bins = np.empty(counts.size, dtype=np.int64)
    bins[order] = np.minimum((share * n_bins - 1e-9).astype(np.int64), n_bins - 1).clip(min=0)
    bins[counts == 0] = n_bins - 1
    return np.concatenate([[0], bins])


@dataclass(frozen=True)
class Sessions:
    """Consumed events of a set of sessions (as logs show them), plus each user's prior items.

    Attributes:
        items: per session, ``[L]`` consumed item ids in order.
        behaviors: per session, ``[L]`` behavior ids.
        prior: per session, the set of items the user had consumed before the session.
    """

    items: list[np.ndarray]
    behaviors: list[np.ndarray]
    prior: list[set[int]]

    def subset(self, idx: np.ndarray) -> Sessions:
        return Sessions(
            [self.items[i] for i in idx], [self.behaviors[i] for i in idx], [self.prior[i] for i in idx]
        )

    def lengths(self) -> np.ndarray:
        return np.array([len(s) for s in self.items])

    def repeat_rate(self) -> float:
        """Share of events whose item was consumed before (in the prefix or earlier in the session)."""
        repeats = total = 0
        for items, prior in zip(self.items, self.prior, strict=True):
            seen = set(prior)
            for item in items.tolist():
                repeats += item in seen
                seen.add(item)
                total += 1
        return repeats / total if total else float("nan")


@dataclass(frozen=True)
class SessionProfile:
    """The distributions compared between real and simulated sessions."""

    categories: np.ndarray
    popularity: np.ndarray
    behaviors: np.ndarray
    lengths: np.ndarray
    repeat_rate: float

    @classmethod
    def of(
        cls, sessions: Sessions, categories: np.ndarray, bins: np.ndarray, n_behaviors: int
    ) -> SessionProfile:
        items = np.concatenate(sessions.items) if sessions.items else np.zeros(0, dtype=np.int64)
        behaviors = np.concatenate(sessions.behaviors) if sessions.behaviors else np.zeros(0, dtype=np.int64)
        rows = categories[items]
        per_item = rows.sum(axis=1, keepdims=True)
        return cls(
            categories=(rows / np.where(per_item > 0, per_item, 1.0)).sum(axis=0),
            popularity=np.bincount(bins[items], minlength=N_POPULARITY_BINS).astype(np.float64),
            behaviors=np.bincount(behaviors, minlength=n_behaviors + 1)[1:].astype(np.float64),
            lengths=sessions.lengths(),
            repeat_rate=sessions.repeat_rate(),
        )


def compare_profiles(a: SessionProfile, b: SessionProfile) -> dict[str, float]:
    """The data-fidelity statistics of ``a`` against ``b``."""
    return {
        "category_js": js_divergence(a.categories, b.categories),
        "popularity_js": js_divergence(a.popularity, b.popularity),
        "behavior_js": js_divergence(a.behaviors, b.behaviors),
        "length_ks": float(sps.ks_2samp(a.lengths, b.lengths).statistic),
        "repeat_rate_diff": a.repeat_rate - b.repeat_rate,
    }


@dataclass(frozen=True)
class HeldOut:
    """Users whose last session is held out: their prefixes (a :class:`History`) and real sessions."""

    users: np.ndarray
    history: History
    sessions: Sessions


def held_out_sessions(
    dataset: Any, n_users: int, rng: np.random.Generator, min_prefix: int = 1, max_prefix: int | None = None
) -> HeldOut:
    """Pick up to ``n_users`` users with a prefix before their last session; split them there.

    The prefix keeps its last ``max_prefix`` events (None: all of them; the user model encodes its own
    window of the latest ones, and the repeat policy needs everything the user consumed).
    """
    inter = dataset.interactions
    seqs = dataset.sequences
    user_col = inter["user"].to_numpy()
    session_col = inter["session"].to_numpy()
    last_session = np.full(dataset.n_users, -1, dtype=np.int64)
    np.maximum.at(last_session, user_col, session_col)
    starts = seqs.offsets[:-1]
    # First event of each user's last session: the prefix length.
    in_last = session_col == last_session[user_col]
    first_last = np.full(dataset.n_users, np.iinfo(np.int64).max)
    np.minimum.at(first_last, user_col[in_last], np.flatnonzero(in_last))
    prefix_len = np.where(first_last < np.iinfo(np.int64).max, first_last - starts, 0)
    eligible = np.flatnonzero((prefix_len >= min_prefix) & (seqs.lengths - prefix_len >= 1))
    if eligible.size == 0:
        raise InputError(
            f"dataset {dataset.meta.name!r}: no user has a session after at least {min_prefix} events"
        )
    users = np.sort(rng.choice(eligible, size=min(n_users, eligible.size), replace=False))
    keep = prefix_len[users] if max_prefix is None else np.minimum(prefix_len[users], max_prefix)
    width = int(keep.max())
    items = np.zeros((users.size, width), dtype=np.int64)
    behaviors = np.zeros_like(items)
    gaps = np.full((users.size, width), -1.0, dtype=np.float32)
    real_items, real_behaviors, prior = [], [], []
    for row, u in enumerate(users):
        u_items, u_behaviors, u_times = seqs.user(int(u))
        cut = int(prefix_len[u])
        lo = cut - int(keep[row])
        items[row, : keep[row]] = u_items[lo:cut]
        behaviors[row, : keep[row]] = u_behaviors[lo:cut]
        if u_times is not None and keep[row] > 1:
            gaps[row, 1 : keep[row]] = np.diff(u_times[lo:cut]).astype(np.float32)
        real_items.append(u_items[cut:].astype(np.int64))
        real_behaviors.append(u_behaviors[cut:].astype(np.int64))
        prior.append(set(u_items[:cut].tolist()))
    history = History(
        torch.as_tensor(items),
        torch.as_tensor(behaviors),
        torch.as_tensor(gaps),
        torch.as_tensor(keep.astype(np.int64)),
        torch.as_tensor(users.astype(np.int64)),
    )
    return HeldOut(users, history, Sessions(real_items, real_behaviors, prior))


class PrefixPopulation:
    """A population that always returns the same users (the held-out prefixes), in row order."""

    def __init__(self, history: History) -> None:
        self.history = history

    def sample(self, n: int, generator: torch.Generator) -> History:
        if n != self.history.batch_size:
            raise ValueError(f"this population holds {self.history.batch_size} users, asked for {n}")
        return self.history


@dataclass(frozen=True)
class DataFidelity:
    """Simulated vs real sessions, with the real-vs-real noise floor of each statistic."""

    n_users: int
    n_simulated_sessions: int
    empty_simulated_sessions: float
    statistics: dict[str, float]
    noise_floor: dict[str, float]
    real: dict[str, Any]
    simulated: dict[str, Any]


def _profile_summary(p: SessionProfile, behavior_names: tuple[str, ...]) -> dict[str, Any]:
    behaviors = p.behaviors / max(p.behaviors.sum(), 1.0)
    return {
        "mean_session_length": float(p.lengths.mean()) if p.lengths.size else float("nan"),
        "behavior_mix": {name: float(x) for name, x in zip(behavior_names, behaviors, strict=True)},
        "repeat_rate": p.repeat_rate,
        "popularity_bins": (p.popularity / max(p.popularity.sum(), 1.0)).round(4).tolist(),
    }


def data_fidelity(
    model: Any, data: Any, settings: EnvConfig, *, n_users: int = 500, seed: int = 0
) -> DataFidelity:
    """Simulate the held-out users from their prefixes under the logging-like policy; compare sessions."""
    settings = replace(settings, action_mode="slate", candidates=None)
    dataset = load_dataset(data)
    user_model = load_model(model, dataset, settings.device)
    rng = np.random.default_rng(seed)
    held = held_out_sessions(dataset, n_users, rng)
    population = PrefixPopulation(held.history.to(user_model.device))
    sim = build_simulator(user_model, dataset, settings, int(held.users.size), population=population)
    popularity = item_popularity(dataset).astype(np.float64)
    logging_like = LoggingSlates(sim.core, "model", seed)
    run = rollout(sim.core, sim.adapter, logging_like, seed, policy_name="logging-like")
    simulated_items, simulated_behaviors, prior = [], [], []
    for ep, real_prior in zip(run.episodes, held.sessions.prior, strict=True):
        chose = ep.chosen > 0
        simulated_items.append(ep.chosen[chose].astype(np.int64))
        simulated_behaviors.append(ep.behaviors[chose].astype(np.int64))
        prior.append(real_prior)
    visible = np.array([len(x) > 0 for x in simulated_items])
    simulated = Sessions(simulated_items, simulated_behaviors, prior).subset(np.flatnonzero(visible))
    categories, _ = categories_multi_hot(dataset.items.sort("item")["category"].to_list())
    bins = popularity_bins(popularity)
    nb = dataset.n_behaviors
    real_profile = SessionProfile.of(held.sessions, categories, bins, nb)
    sim_profile = SessionProfile.of(simulated, categories, bins, nb)
    half = rng.permutation(held.users.size)
    a, b = half[: half.size // 2], half[half.size // 2 :]
    floor = compare_profiles(
        SessionProfile.of(held.sessions.subset(a), categories, bins, nb),
        SessionProfile.of(held.sessions.subset(b), categories, bins, nb),
    )
    names = tuple(dataset.behaviors)
    return DataFidelity(
        n_users=int(held.users.size),
        n_simulated_sessions=int(visible.sum()),
        empty_simulated_sessions=float(1.0 - visible.mean()),
        statistics=compare_profiles(sim_profile, real_profile),
        noise_floor=floor,
        real=_profile_summary(real_profile, names),
        simulated=_profile_summary(sim_profile, names),
    )


@dataclass(frozen=True)
class ItemGroupFidelity:
    """One of the world's hidden item groups (e.g. the cascade world's bait) under one policy, in the
    world and in the learned simulator: how often the policy shows it, how often users consume it, and
    how often a session ends right after consuming it. The simulator never sees the groups; they tell
    whether it reacts to those items as the world does (an item-level cause of a return gap)."""

    group: str
    world_shown: float
    learned_shown: float
    """Share of the shown slots that hold an item of the group."""
    world_consumed: float
    learned_consumed: float
    """Share of the consumptions that are of the group."""
    world_leave_after: float
    learned_leave_after: float
    """Share of the steps with a consumption of the group at which the session ended."""
    world_leave_after_other: float
    learned_leave_after_other: float
    """The same after a consumption of any other item."""

    @classmethod
    def of(cls, group: str, world: tuple[float, ...], learned: tuple[float, ...]) -> ItemGroupFidelity:
        """From each side's :func:`_group_stats` (shown, consumed, leave after, leave after another)."""
        return cls(group, *(value for pair in zip(world, learned, strict=True) for value in pair))

    @property
    def world_lift(self) -> float:
        """How many times its share of the shown slots the group makes of the world's consumptions."""
        return self.world_consumed / self.world_shown if self.world_shown > 0 else float("nan")

    @property
    def learned_lift(self) -> float:
        """The same in the learned simulator."""
        return self.learned_consumed / self.learned_shown if self.learned_shown > 0 else float("nan")


@dataclass(frozen=True)
class PolicyReturn:
    """One policy in the world and in the learned simulator: mean return (95% bootstrap interval), mean
    session length in steps and consumption rate (to tell *why* returns differ)."""

    policy: str
    world: float
    world_low: float
    world_high: float
    learned: float
    learned_low: float
    learned_high: float
    world_length: float
    learned_length: float
    world_consumption: float
    learned_consumption: float
    length_ks: float = float("nan")
    """Two-sample Kolmogorov-Smirnov statistic of the session lengths (steps), world vs simulator."""
    world_first_pick: float = float("nan")
    learned_first_pick: float = float("nan")
    """Share of users who take an item of the first slate, in the world and in the simulator: the same
    logged users, in the state the logs left them, shown what the policy shows there. It measures the
    choice alone; how far the consumption rates drift apart after it is the session's dynamics."""
    item_groups: tuple[ItemGroupFidelity, ...] = ()
    """The world's hidden item groups under this policy (empty when the world marks none)."""

    @property
    def relative_error(self) -> float:
        return (self.learned - self.world) / abs(self.world) if self.world else float("nan")


@dataclass(frozen=True)
class GroundTruthFidelity:
    """Policy returns in the world and the learned simulator, and whether the targets are met."""

    returns: list[PolicyReturn]
    kendall_tau: float
    max_relative_error: float
    mean_abs_relative_error: float
    median_abs_relative_error: float = float("nan")

    @property
    def random_pick_rate(self) -> tuple[float, float] | None:
        """The random policy's consumption rate (the pick rate of random slates): (world, simulator)."""
        row = next((r for r in self.returns if r.policy == "random"), None)
        return None if row is None else (row.world_consumption, row.learned_consumption)

    @property
    def pick_rate_error(self) -> float:
        rates = self.random_pick_rate
        if rates is None or not rates[0]:
            return float("nan")
        return (rates[1] - rates[0]) / rates[0]

    @property
    def meets_targets(self) -> bool:
        pick = self.pick_rate_error
        return (self.kendall_tau >= TAU_TARGET and self.max_relative_error <= REL_ERROR_TARGET
                and self.median_abs_relative_error <= MEDIAN_ERROR_TARGET
                and (np.isnan(pick) or abs(pick) <= PICK_RATE_TARGET))

    def to_json(self) -> dict[str, Any]:
        return {
            "returns": [{**asdict(r), "relative_error": r.relative_error} for r in self.returns],
            "kendall_tau": self.kendall_tau,
            "max_relative_error": self.max_relative_error,
            "mean_abs_relative_error": self.mean_abs_relative_error,
            "median_abs_relative_error": self.median_abs_relative_error,
            "random_pick_rate": self.random_pick_rate,
            "pick_rate_error": self.pick_rate_error,
            "targets": {"kendall_tau": TAU_TARGET, "relative_error": REL_ERROR_TARGET,
                        "median_relative_error": MEDIAN_ERROR_TARGET, "pick_rate_error": PICK_RATE_TARGET},
            "meets_targets": self.meets_targets,
        }


def _policy_stats(
    sim: Simulator, config: BenchmarkConfig, greedy_model: Path, progress: bool, desc: str,
    groups: dict[str, np.ndarray],
) -> dict[str, tuple[float, float, float, float, float, np.ndarray, float, dict[str, tuple[float, ...]]]]:
    """Per policy: mean return with its interval, mean session length (steps), consumption rate, every
    session's length, the share of users who took an item of their first slate, and per item group
    (``groups``: ``[n_items + 1]`` bool by name) :func:`_group_stats`."""
    runs = collect_runs(sim, config, greedy_model=greedy_model, progress=progress, desc=desc)
    rng = np.random.default_rng(config.base_seed)
    out = {}
    for label, policy_runs in runs.items():
        episodes = [ep for run in policy_runs for ep in run.episodes]
        returns = np.array([ep.rewards.sum() for ep in episodes])
        ci = bootstrap_mean_ci(returns, rng, n_resamples=config.n_resamples)
        lengths = np.array([ep.length for ep in episodes], dtype=np.float64)
        consumption = float(np.mean([consumption_rate(ep.chosen) for ep in episodes]))
        first_pick = float(np.mean([run.steps["item"][0] > 0 for run in policy_runs]))
        by_group = {name: _group_stats(policy_runs, flags) for name, flags in groups.items()}
        out[label] = (ci.estimate, ci.low, ci.high, float(lengths.mean()), consumption, lengths, first_pick,
                      by_group)
    return out


def _group_stats(runs: list[PolicyRun], flags: np.ndarray) -> tuple[float, ...]:
    """(share of shown slots in the group, share of consumptions in it, P(session ends | a consumption
    in it), P(session ends | another consumption)) over every live step of ``runs``."""
    shown, consumed, after, after_other = [], [], [], []
    for run in runs:
        live = run.steps["active"].astype(bool)
        slates, items = run.steps["slate"][live], run.steps["item"][live]
        ended = run.steps["terminated"][live]
        shown.append(flags[slates[slates > 0]])
        took = items > 0
        in_group = flags[items] & took
        consumed.append(in_group[took])
        after.append(ended[in_group])
        after_other.append(ended[took & ~in_group])

    def mean(parts: list[np.ndarray]) -> float:
        values = np.concatenate(parts)
        return float(values.mean()) if len(values) else float("nan")

    return mean(shown), mean(consumed), mean(after), mean(after_other)


def ground_truth_fidelity(
    model: Any,
    data: Any,
    config: BenchmarkConfig,
    settings: EnvConfig,
    world_settings: EnvConfig,
    work_dir: Path,
    *,
    progress: bool = True,
) -> GroundTruthFidelity:
    """Run ``config``'s policies in the ground-truth world and in the learned simulator; compare them."""
    if len(config.policies) < 2:
        raise InputError(
            "ground-truth fidelity needs at least two policies to rank (the issue asks for five)"
        )
    learned = build_simulator(model, data, settings, config.episodes)
    # The recommender side is the same in both: the same item vectors (the learned ones: the world's own
    # are its hidden state) and the simulator's repeat rule behind the action masks, so every policy
    # meets the same candidates, features and masks in the world as in the simulator; only the users
    # differ.
    world = build_simulator(WORLD_MODEL, data, world_settings, config.episodes,
                            item_embeddings=learned.core.model.item_embeddings(),
                            mask_rule=learned.core.config.choice)
    greedy = work_dir / "greedy_recommender"
    groups = hidden_item_groups(world.core.model)
    truth = _policy_stats(world, config, greedy, progress, "world", groups)
    sim = _policy_stats(learned, config, greedy, progress, "learned simulator", groups)
    returns = [
        PolicyReturn(p, *truth[p][:3], *sim[p][:3], truth[p][3], sim[p][3], truth[p][4], sim[p][4],
                     float(sps.ks_2samp(truth[p][5], sim[p][5]).statistic), truth[p][6], sim[p][6],
                     tuple(ItemGroupFidelity.of(g, truth[p][7][g], sim[p][7][g]) for g in groups))
        for p in truth
    ]
    tau = float(sps.kendalltau([r.world for r in returns], [r.learned for r in returns]).statistic)
    errors = np.array([abs(r.relative_error) for r in returns])
    return GroundTruthFidelity(returns, tau, float(errors.max()), float(errors.mean()),
                               float(np.median(errors)))


def hidden_item_groups(world_model: Any) -> dict[str, np.ndarray]:
    """The world's hidden item groups (``[n_items + 1]`` bool per name, by the env's item ids), from its
    ``hidden_item_groups()`` when it has one (the cascade world: its bait); empty otherwise."""
    groups = getattr(world_model, "hidden_item_groups", None)
    if groups is None:
        return {}
    return {name: flags.cpu().numpy().astype(bool) for name, flags in groups().items()}


@dataclass(frozen=True)
class HeldOutPolicy:
    """The simulator fitted to logs of one policy (A) predicting the logs of another (B).

    Each statistic is the logs' ``logged`` value, the simulator's ``simulated`` one under a logging-like
    policy fitted to B's logs (:func:`heldout_policy_fidelity`), and the relative ``errors``
    (Jensen-Shannon divergence for the behavior mix).
    """

    logged: dict[str, Any]
    simulated: dict[str, Any]
    errors: dict[str, float]
    n_users: int
    unmatched_items: int

    @property
    def meets_targets(self) -> bool:
        return all(abs(self.errors[k]) <= HELDOUT_TARGET for k in ("events_per_session", "consumption_rate"))

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "target": HELDOUT_TARGET, "meets_targets": self.meets_targets}


def heldout_policy_fidelity(
    model: Any, data: Any, heldout: Any, settings: EnvConfig, *, n_users: int = 500, seed: int = 0
) -> HeldOutPolicy:
    """Predict the logged statistics of ``heldout`` (logs of another policy on the same catalogue).

    The simulator (``model`` over ``data``, with ``settings``: calibrate it on ``data``'s logs first) runs
    ``n_users`` users under slates drawn like the held-out logs' (the user model's next-item distribution,
    which stands in for the policy of ``data``'s logs, tilted by ``log(1 + count in B) - log(1 + count
    in A)`` per item, matched by raw id); its sessions, measured as logs would show them, are
    compared with the held-out logs' sessions: events per session, consumption rate per step, behavior
    mix and return per session.
    """
    settings = replace(settings, action_mode="slate", candidates=None)
    dataset, target = load_dataset(data), load_dataset(heldout)
    if tuple(target.behaviors) != tuple(dataset.behaviors):
        raise InputError(f"--heldout-logs: behaviors {tuple(target.behaviors)} differ from the model's "
                         f"dataset's {tuple(dataset.behaviors)}")
    popularity, unmatched = _popularity_in(dataset, target)
    sim = build_simulator(model, dataset, settings, n_users)
    step_seconds = sim.core.gap_seconds
    weights = np.array(sim.core.config.reward.weights(dataset.n_behaviors))
    logged_sessions = logged_stats(target, step_seconds)
    logged = {**asdict(logged_sessions), **_mix_and_return(target, weights)}
    # B's logs relative to A's: the model's next-item distribution (what A's logs taught it), tilted by
    # how much more B's logs consumed each item than A's did.
    shift = torch.log1p(torch.as_tensor(popularity)) - torch.log1p(torch.as_tensor(
        item_popularity(dataset).astype(np.float64)))
    policy = LoggingSlates(sim.core, "model", seed, shift.float())
    run = rollout(sim.core, sim.adapter, policy, seed, policy_name="held-out logging-like")
    simulated = {**asdict(session_stats(run)), **_run_mix_and_return(run, dataset.n_behaviors)}
    errors = {
        key: (simulated[key] - logged[key]) / logged[key] if logged[key] else float("nan")
        for key in ("events_per_session", "consumption_rate", "steps_per_session", "return_per_session")
    }
    errors["behavior_mix_js"] = js_divergence(np.array(logged["behavior_mix"]),
                                              np.array(simulated["behavior_mix"]))
    return HeldOutPolicy(logged, simulated, errors, n_users, unmatched)


def _popularity_in(dataset: Any, target: Any) -> tuple[np.ndarray, int]:
    """``[n_items + 1]`` event counts of ``target``'s training split over ``dataset``'s item ids (matched
    by raw id), and how many of ``target``'s items ``dataset`` lacks."""
    ids = dict(zip(dataset.items["raw_id"].to_list(), dataset.items["item"].to_list(), strict=True))
    theirs = target.items.sort("item")["raw_id"].to_list()
    mapping = np.array([0] + [ids.get(raw, 0) for raw in theirs], dtype=np.int64)
    counts = item_popularity(target)
    out = np.zeros(dataset.n_items + 1, dtype=np.float64)
    np.add.at(out, mapping, counts)
    out[0] = 0.0
    return out, int((mapping[1:] == 0).sum())


def _mix_and_return(dataset: Any, weights: np.ndarray) -> dict[str, Any]:
    """Behavior mix and mean return per session of a dataset's training split (reward weights)."""
    seqs = dataset.train_sequences()
    behaviors = seqs.behaviors.astype(np.int64)
    mix = np.bincount(behaviors, minlength=dataset.n_behaviors + 1)[1:].astype(np.float64)
    n_sessions = logged_stats(dataset, 1.0).n_sessions if dataset.meta.has_timestamps else seqs.n_users
    total = float(weights[behaviors - 1].sum())
    return {"behavior_mix": (mix / mix.sum()).tolist(), "return_per_session": total / max(n_sessions, 1)}


def _run_mix_and_return(run: PolicyRun, n_behaviors: int) -> dict[str, Any]:
    """Behavior mix and mean return per visible session (one with a consumption) of a simulated run."""
    episodes = [ep for ep in run.episodes if (ep.chosen > 0).any()]
    behaviors = np.concatenate([ep.behaviors[ep.chosen > 0] for ep in episodes]).astype(np.int64)
    mix = np.bincount(behaviors, minlength=n_behaviors + 1)[1:].astype(np.float64)
    returns = [ep.rewards.sum() for ep in episodes]
    return {"behavior_mix": (mix / max(mix.sum(), 1.0)).tolist(),
            "return_per_session": float(np.mean(returns)) if returns else 0.0}


def fidelity_markdown(
    data_result: DataFidelity | None,
    truth_result: GroundTruthFidelity | None,
    context: dict[str, Any],
    heldout_result: HeldOutPolicy | None = None,
) -> str:
    """The fidelity report: the data table with its noise floor, the world-vs-simulator table and the
    held-out-policy table (each when measured)."""
    lines = [
        "# Simulator fidelity",
        "",
        "Settings: " + ", ".join(f"`{k}={v}`" for k, v in context.items()),
        "",
    ]
    if data_result is not None:
        d = data_result
        lines += [
            "## Data fidelity: simulated vs real held-out sessions",
            "",
            f"{d.n_users} users; their last session is the real continuation, the simulated user starts "
            "from the events before it under a logging-like policy (slates sampled from the user model's "
            "next-item distribution, as in the calibration). "
            f"{d.n_simulated_sessions} simulated sessions had a consumption "
            f"({d.empty_simulated_sessions:.1%} had none and would not appear in logs). "
            "Caveat: leave-last-out training has seen these sessions except their last two events.",
            "",
            "| statistic | simulated vs real | real vs real (noise floor) |",
            "|---|---|---|",
        ]
        for key, value in d.statistics.items():
            lines.append(f"| {key} | {value:.4f} | {d.noise_floor[key]:.4f} |")
        lines += ["", "| | real | simulated |", "|---|---|---|"]
        for key in ("mean_session_length", "repeat_rate"):
            lines.append(f"| {key} | {d.real[key]:.3f} | {d.simulated[key]:.3f} |")
        for name in d.real["behavior_mix"]:
            lines.append(
                f"| behavior {name} | {d.real['behavior_mix'][name]:.3f} | "
                f"{d.simulated['behavior_mix'][name]:.3f} |"
            )
        lines.append(
            f"| popularity bins (top first) | {d.real['popularity_bins']} | "
            f"{d.simulated['popularity_bins']} |"
        )
        lines.append("")
    if truth_result is not None:
        t = truth_result
        verdict = "MET" if t.meets_targets else "MISSED"
        lines += [
            "## Ground-truth fidelity: the synthetic world vs the simulator learned from its logs",
            "",
            "| policy | return in world [95% CI] | return in learned simulator [95% CI] | relative error "
            "| length world / learned | length KS | consumption world / learned "
            "| first-slate pick world / learned |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in t.returns:
            lines.append(
                f"| {r.policy} | {r.world:.3f} [{r.world_low:.3f}, {r.world_high:.3f}] | {r.learned:.3f} "
                f"[{r.learned_low:.3f}, {r.learned_high:.3f}] | {r.relative_error:+.1%} | "
                f"{r.world_length:.1f} / {r.learned_length:.1f} | {r.length_ks:.2f} | "
                f"{r.world_consumption:.2f} / {r.learned_consumption:.2f} | "
                f"{r.world_first_pick:.2f} / {r.learned_first_pick:.2f} |"
            )
        lines += item_group_table([(r.policy, r.item_groups) for r in t.returns])
        pick = t.random_pick_rate
        pick_text = ("" if pick is None else f" Random-slate pick rate {pick[0]:.2f} in the world, "
                     f"{pick[1]:.2f} in the simulator ({t.pick_rate_error:+.0%}; target within "
                     f"{PICK_RATE_TARGET:.0%}).")
        lines += [
            "",
            f"Kendall's tau between the rankings: **{t.kendall_tau:.3f}** (target >= {TAU_TARGET}); "
            f"largest relative error **{t.max_relative_error:.1%}** (target <= {REL_ERROR_TARGET:.0%}), "
            f"median {t.median_abs_relative_error:.1%} (target <= {MEDIAN_ERROR_TARGET:.0%}).{pick_text} "
            f"Targets **{verdict}**.",
            "",
        ]
        if not t.meets_targets:
            lines += [explain_miss(t), ""]
    if heldout_result is not None:
        h = heldout_result
        lines += [
            "## Held-out policy: logs of another policy, predicted",
            "",
            f"The simulator fitted to these logs runs {h.n_users} users under slates drawn like the held-out "
            "logs' (the user model's next-item distribution tilted per item by log(1 + count there) - "
            f"log(1 + count here); {h.unmatched_items} of their items are not in this catalogue).",
            "",
            "| statistic | held-out logs | simulator | error |",
            "|---|---|---|---|",
        ]
        for key in ("events_per_session", "consumption_rate", "steps_per_session", "return_per_session"):
            lines.append(f"| {key} | {h.logged[key]:.3f} | {h.simulated[key]:.3f} | {h.errors[key]:+.1%} |")
        mix_logged = [round(x, 3) for x in h.logged["behavior_mix"]]
        mix_simulated = [round(x, 3) for x in h.simulated["behavior_mix"]]
        lines.append(f"| behavior mix (JS divergence) | {mix_logged} | {mix_simulated} | "
                     f"{h.errors['behavior_mix_js']:.3f} |")
        verdict = "MET" if h.meets_targets else "MISSED"
        lines += ["", f"Target (session length and consumption rate within {HELDOUT_TARGET:.0%}): "
                  f"**{verdict}**.", ""]
    return "\n".join(lines)


def item_group_table(rows: list[tuple[str, tuple[ItemGroupFidelity, ...]]], simulator: str = "simulator"
                     ) -> list[str]:
    """The world's hidden item groups per policy (``rows``: the policy's name and its groups), world /
    ``simulator``; no lines when there are none."""
    if not any(groups for _, groups in rows):
        return []
    lines = ["", f"The world's hidden item groups (the simulator never sees them), world / {simulator}:", "",
             "| policy | group | share of shown slots | share of consumptions | taken per share shown "
             "| session ends after one | ... after another item |", "|---|---|---|---|---|---|---|"]
    for policy, groups in rows:
        for g in groups:
            lines.append(f"| {policy} | {g.group} | {g.world_shown:.3f} / {g.learned_shown:.3f} | "
                         f"{g.world_consumed:.3f} / {g.learned_consumed:.3f} | {g.world_lift:.2f} / "
                         f"{g.learned_lift:.2f} | {g.world_leave_after:.3f} / {g.learned_leave_after:.3f} | "
                         f"{g.world_leave_after_other:.3f} / {g.learned_leave_after_other:.3f} |")
    return lines


def group_gap(policy: str, g: ItemGroupFidelity) -> str:
    """One sentence on a hidden group under ``policy``, world vs simulator, and which side of the
    simulator the gap points at: the choice (users take the group at another rate per share shown,
    while the leave after it is close) or not only the choice."""
    text = (f"under `{policy}` the world's hidden {g.group} items fill {g.world_shown:.0%} of the shown "
            f"slots in the world and {g.learned_shown:.0%} in the simulator, and make {g.world_consumed:.0%} "
            f"vs {g.learned_consumed:.0%} of the consumptions (a session ends after one "
            f"{g.world_leave_after:.0%} vs {g.learned_leave_after:.0%} of the time, after another item "
            f"{g.world_leave_after_other:.0%} vs {g.learned_leave_after_other:.0%}): users take them "
            f"{g.world_lift:.1f}x their share of the slots in the world, {g.learned_lift:.1f}x in the "
            "simulator")
    leave = g.learned_leave_after / g.world_leave_after if g.world_leave_after > 0 else float("nan")
    if abs(g.learned_lift - g.world_lift) > 0.25 * g.world_lift and 0.67 <= leave <= 1.5:
        text += ", while the leave after them is close: the gap is in the choice"
    return text


def _first_slate_share(r: PolicyReturn) -> str:
    """What the first slate says about a policy's consumption-rate gap: how much of it the choice alone
    already shows, before the session's dynamics play a part."""
    gap, first = r.learned_consumption - r.world_consumption, r.learned_first_pick - r.world_first_pick
    if abs(gap) < 0.01:
        return "the consumption rates agree"
    if np.sign(first) != np.sign(gap):
        return "the choice errs the other way there, so the gap builds up during the session"
    return f"{first / gap:.0%} of the consumption gap is there before the session's dynamics play a part"


def explain_miss(t: GroundTruthFidelity) -> str:
    """Why the targets were missed, read off the numbers (which policy, which direction, which mechanism)."""
    reasons = []
    worst = max(t.returns, key=lambda r: abs(r.relative_error))
    if t.max_relative_error > REL_ERROR_TARGET:
        direction = "over" if worst.relative_error > 0 else "under"
        reasons.append(
            f"the learned simulator {direction}-estimates `{worst.policy}` by "
            f"{abs(worst.relative_error):.0%} (session length {worst.world_length:.1f} -> "
            f"{worst.learned_length:.1f} steps, consumption rate "
            f"{worst.world_consumption:.2f} -> {worst.learned_consumption:.2f}; on the first slate, the "
            f"same users shown the same policy's slate, {worst.world_first_pick:.2f} -> "
            f"{worst.learned_first_pick:.2f}: {_first_slate_share(worst)})"
        )
        reasons += [group_gap(worst.policy, g) for g in worst.item_groups]
        signs = {np.sign(r.relative_error) for r in t.returns if abs(r.relative_error) > REL_ERROR_TARGET}
        if len(signs) == 1 and all(abs(r.relative_error) > REL_ERROR_TARGET for r in t.returns):
            reasons.append(
                "every policy is off in the same direction, which points at the session mechanism (leave, "
                "no-choice, calibration) rather than at item preferences"
            )
    if t.kendall_tau < TAU_TARGET:
        world_spread = max(r.world for r in t.returns) - min(r.world for r in t.returns)
        learned_spread = max(r.learned for r in t.returns) - min(r.learned for r in t.returns)
        overlapping = sum(
            1
            for i, a in enumerate(t.returns)
            for b in t.returns[i + 1 :]
            if a.world_low <= b.world_high and b.world_low <= a.world_high
        )
        pairs = len(t.returns) * (len(t.returns) - 1) // 2
        reasons.append(
            f"the rankings disagree (tau {t.kendall_tau:.2f}): the policies' returns spread over "
            f"{world_spread:.3f} in the world but {learned_spread:.3f} in the learned simulator, and "
            f"{overlapping} of {pairs} policy pairs have overlapping world intervals: the two simulators "
            "react differently to what is recommended"
        )
    return "Why the targets were missed: " + "; ".join(reasons) + "."
