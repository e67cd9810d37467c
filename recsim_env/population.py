"""Where simulated users come from: prefixes of real training histories, or histories the model samples.

A population turns "give me ``n`` new users" into a :class:`~user_models.protocol.History` batch that
the user model prefills into a state. Sampling runs on the model's device with an explicit generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import polars as pl
import torch

from recsim_env.choice import catalogue_logits, sample_categorical
from recsim_env.config import REPEAT_MASK_BELOW, PopulationConfig, RepeatPolicy
from user_models.data.artifact import SequenceDataset
from user_models.errors import InputError
from user_models.protocol import History, UserModel


class Population(Protocol):
    """A source of new simulated users."""

    def sample(self, n: int, generator: torch.Generator) -> History:
        """``n`` starting histories (right-padded, on the model's device)."""
        ...


class DatasetPopulation:
    """Users start from a prefix of a real user's training-split history.

    Only :meth:`SequenceDataset.train_sequences` is read, so validation and test events never reach
    the simulator. A user is drawn uniformly among those with at least ``min_prefix`` training events;
    the prefix length is uniform in ``[min_prefix, min(max_prefix, training length)]``.
    """

    def __init__(self, dataset: SequenceDataset, config: PopulationConfig, device: torch.device) -> None:
        train = dataset.train_sequences()
        lengths = train.lengths
        eligible = np.flatnonzero(lengths >= config.min_prefix)
        if eligible.size == 0:
            raise InputError(
                f"dataset {dataset.meta.name!r}: no user has {config.min_prefix} training events "
                f"(longest: {int(lengths.max(initial=0))}); lower the population's min_prefix"
            )
        self.config = config
        self.device = device
        self._users = torch.as_tensor(eligible, dtype=torch.long, device=device)
        self._starts = torch.as_tensor(train.offsets[:-1], dtype=torch.long, device=device)
        self._lengths = torch.as_tensor(lengths, dtype=torch.long, device=device)
        self._items = torch.as_tensor(train.items.astype(np.int64), device=device)
        self._behaviors = torch.as_tensor(train.behaviors.astype(np.int64), device=device)
        self._gaps = torch.as_tensor(_gaps(train.timestamps, train.offsets), device=device)

    def sample(self, n: int, generator: torch.Generator) -> History:
        return self.histories(*self.draw(n, generator))

    def draw(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` random (sequence index, prefix length) pairs; :meth:`sample` is their histories."""
        cfg = self.config
        pick = torch.randint(len(self._users), (n,), generator=generator, device=self.device)
        users = self._users[pick]
        longest = self._lengths[users].clamp(max=cfg.max_prefix)
        u = torch.rand(n, generator=generator, device=self.device)
        span = (longest - cfg.min_prefix + 1).float()
        lengths = cfg.min_prefix + (u * span).long().clamp(max=(longest - cfg.min_prefix))
        return users, lengths

    def histories(self, users: torch.Tensor, lengths: torch.Tensor) -> History:
        """The first ``lengths`` training events of sequences ``users`` (``[n]`` each)."""
        pos = torch.arange(self.config.max_prefix, device=self.device)
        valid = pos[None, :] < lengths[:, None]
        index = (self._starts[users][:, None] + pos[None, :]).clamp(max=len(self._items) - 1)
        items = torch.where(valid, self._items[index], 0)
        behaviors = torch.where(valid, self._behaviors[index], 0)
        gaps = torch.where(valid, self._gaps[index], -1.0)
        return History(items, behaviors, gaps, lengths, users)

    def all_prefixes(self) -> History:
        """Every training sequence's first ``max_prefix`` events (row ``u`` is sequence index ``u``)."""
        users = torch.arange(len(self._lengths), device=self.device)
        return self.histories(users, self._lengths.clamp(max=self.config.max_prefix))


class GeneratedPopulation:
    """Users whose warm-up history the model samples itself, event by event, through the protocol.

    Starting from an empty history, each event's item is drawn from the softmax of the model's logits
    over the whole catalogue and its behavior from :meth:`UserModel.behavior_probs`; the warm-up length
    is uniform in ``[min_prefix, max_prefix]``. Costs ``max_prefix`` full-catalogue steps per reset.
    """

    def __init__(self, model: UserModel, config: PopulationConfig, gap_seconds: float) -> None:
        self.model = model
        self.config = config
        self.gap_seconds = gap_seconds

    def sample(self, n: int, generator: torch.Generator) -> History:
        cfg, model, device = self.config, self.model, self.model.device
        u = torch.rand(n, generator=generator, device=device)
        lengths = cfg.min_prefix + (u * (cfg.max_prefix - cfg.min_prefix + 1)).long().clamp(
            max=cfg.max_prefix - cfg.min_prefix)
        empty = torch.zeros(n, cfg.max_prefix, dtype=torch.long, device=device)
        gaps = torch.full((n, cfg.max_prefix), -1.0, device=device)
        state = model.encode(History(empty, empty, gaps, torch.zeros(n, dtype=torch.long, device=device)))
        items, behaviors = empty.clone(), empty.clone()
        for t in range(cfg.max_prefix):
            probs = torch.softmax(catalogue_logits(model, state), dim=1)
            item = sample_categorical(probs, generator) + 1
            behavior = sample_categorical(model.behavior_probs(state, item[:, None])[:, 0].float(),
                                          generator) + 1
            active = t < lengths
            gap = torch.full((n,), self.gap_seconds if t > 0 else -1.0, device=device)
            state = model.step(state, item, behavior, gap, active)
            items[:, t] = torch.where(active, item, 0)
            behaviors[:, t] = torch.where(active, behavior, 0)
            gaps[:, t] = torch.where(active, gap, -1.0)
        return History(items, behaviors, gaps, lengths)


def make_population(
    config: PopulationConfig, dataset: SequenceDataset, model: UserModel, gap_seconds: float
) -> Population:
    """The population ``config.kind`` names."""
    if config.kind == "dataset":
        return DatasetPopulation(dataset, config, model.device)
    return GeneratedPopulation(model, config, gap_seconds)


def median_session_gap(dataset: SequenceDataset) -> float:
    """Median seconds between consecutive events of one session (training split); -1 without times.

    Zero gaps are left out: several events logged in the same second are one batched submission (half
    of MovieLens-100k's within-session gaps are 0), not a step's worth of time.
    """
    seqs = dataset.train_sequences()
    if seqs.timestamps is None:
        return -1.0
    gaps = _gaps(seqs.timestamps, seqs.offsets)
    inside = gaps[(gaps > 0) & (gaps < dataset.meta.session_gap_seconds)]
    return float(np.median(inside)) if inside.size else -1.0


def _gaps(timestamps: np.ndarray | None, offsets: np.ndarray) -> np.ndarray:
    """Seconds since each event's predecessor of the same user; -1 for first events or without times."""
    n = int(offsets[-1])
    if timestamps is None:
        return np.full(n, -1.0, dtype=np.float32)
    gaps = np.empty(n, dtype=np.float32)
    gaps[1:] = np.diff(timestamps).astype(np.float32)
    gaps[offsets[:-1][offsets[:-1] < n]] = -1.0
    return gaps


def repeat_lags(dataset: SequenceDataset, window: int) -> np.ndarray:
    """Per training-split event, how many events back the same user last had its item (1 = the event
    just before), or 0 when not among their previous ``window`` events."""
    seqs = dataset.train_sequences()
    items = seqs.items.astype(np.int64)
    lags = np.zeros(items.size, dtype=np.int64)
    user = np.repeat(np.arange(seqs.n_users), seqs.lengths)
    for lag in range(min(window, items.size - 1), 0, -1):  # nearest last, so it wins
        same = (items[lag:] == items[:-lag]) & (user[lag:] == user[:-lag])
        lags[lag:][same] = lag
    return lags


def repeat_rate(dataset: SequenceDataset, window: int) -> float:
    """Share of training-split events whose item is among the same user's previous ``window`` events.

    What the logs say about re-consumption: it decides the default repeat policy
    (:func:`data_repeat_rule`) and is what the simulated repeat rate is checked against. 0.0 for logs
    without two events of one user.
    """
    lags = repeat_lags(dataset, window)
    return float((lags > 0).mean()) if lags.size else 0.0


def data_repeat_rule(dataset: SequenceDataset, window: int) -> tuple[RepeatPolicy, int | None]:
    """The repeat policy and window the logs show: ``("mask", None)`` when they (almost) never
    re-consume within ``window`` events (MovieLens: a user rates a movie once); ``("mask", w)`` when they
    re-consume, but (almost) never within the last ``w`` events (a shop whose users do not buy again
    what they just bought, but come back to it later); ``("allow", None)`` when they re-consume even the
    item just before. "Almost never" is a rate below :data:`~recsim_env.config.REPEAT_MASK_BELOW`.
    """
    lags = repeat_lags(dataset, window)
    if lags.size == 0:
        return "mask", None
    within = np.cumsum(np.bincount(lags, minlength=window + 1)[1:]) / lags.size  # rate within 1..window
    quiet = int((within < REPEAT_MASK_BELOW).sum())  # the rate grows with the window: a prefix
    if quiet == window:
        return "mask", None
    return ("allow", None) if quiet == 0 else ("mask", quiet)


@dataclass(frozen=True)
class SessionStats:
    """Sessions as logs show them (only sessions with at least one event).

    Attributes:
        events_per_session: Mean consumed events per session.
        consumption_rate: Events per step between a session's first and last event.
        steps_per_session: Mean steps from a session's first to its last event.
        n_sessions: Sessions measured.
        raw_consumption_rate: Simulation only: consumptions per step over all steps (None for logs).
        empty_sessions: Simulation only: fraction of users who left without consuming anything.
        truncated: Simulation only: fraction of sessions cut by the step cap.
        long_gap_share: Share of within-session gaps between consecutive events of at least
            :data:`LONG_GAP_STEPS` steps: how often users stay through idle steps (identifies the idle
            hazard of :class:`~recsim_env.config.LeaveConfig`).
    """

    events_per_session: float
    consumption_rate: float
    steps_per_session: float
    n_sessions: int
    long_gap_share: float = float("nan")
    raw_consumption_rate: float | None = None
    empty_sessions: float | None = None
    truncated: float | None = None


LONG_GAP_STEPS = 3
"""A within-session gap of at least this many steps (two idle steps or more) counts as long."""


def logged_stats(dataset: SequenceDataset, step_seconds: float,
                 consumption_rate: float | None = None) -> SessionStats:
    """Session statistics of the training split (see the module docstring for the step reconstruction)."""
    inter = dataset.interactions
    lengths = inter.group_by("user").agg(pl.len().alias("n"))
    train = (inter.join(lengths, on="user").filter(pl.col("position") < pl.col("n") - 2)
             .sort(["user", "position"]))
    if train.height == 0:
        raise InputError(f"dataset {dataset.meta.name!r}: no training events to calibrate on")
    gap = pl.col("timestamp").diff().over(["user", "session"])
    if dataset.meta.has_timestamps and step_seconds > 0 and consumption_rate is None:
        steps_taken = (gap / step_seconds).round().clip(lower_bound=1)
        step_count = pl.when(gap.is_null()).then(1).otherwise(steps_taken)
        train = train.with_columns(step_count.alias("steps"))
    else:
        if consumption_rate is None:
            raise InputError(f"dataset {dataset.meta.name!r} has no usable timestamps (step length "
                             f"{step_seconds} s): the logged consumption rate cannot be reconstructed; pass "
                             "a target consumption rate")
        train = train.with_columns(pl.lit(1.0 / consumption_rate).alias("steps"))
    sessions = train.group_by(["user", "session"]).agg(pl.len().alias("events"),
                                                       (pl.col("steps").sum() - pl.col("steps").first()
                                                        + 1).alias("steps"))
    events = sessions["events"].to_numpy().astype(np.float64)
    steps = sessions["steps"].to_numpy().astype(np.float64)
    long_gaps = float("nan")
    if consumption_rate is not None:
        steps = 1 + (events - 1) / consumption_rate
    else:
        within = train.filter(gap.is_not_null())["steps"].to_numpy()
        long_gaps = float((within >= LONG_GAP_STEPS).mean()) if within.size else float("nan")
    return SessionStats(
        events_per_session=float(events.mean()),
        consumption_rate=float(events.sum() / steps.sum()),
        steps_per_session=float(steps.mean()),
        n_sessions=len(events),
        long_gap_share=long_gaps,
    )


def logged_consumption_rate(dataset: SequenceDataset, step_seconds: float) -> float:
    """Events per simulated step in the training split's sessions (:func:`logged_stats`); 1.0 when the
    data has no usable timestamps (each step is taken as one logged event)."""
    if not dataset.meta.has_timestamps or step_seconds <= 0:
        return 1.0
    return min(1.0, logged_stats(dataset, step_seconds).consumption_rate)
