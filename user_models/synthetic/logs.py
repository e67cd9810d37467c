"""Organic logs of the synthetic world and the dataset artifact built from them.

Organic browsing runs through the world's own protocol methods, batched over all users: at each step
every active user picks the next item from ``softmax(item_logits / browse_temperature)`` over the whole
catalogue, its behavior from ``behavior_probs``, and after ``step`` whether the session ends from
``end_prob``. Gaps within a session are log-normal around a per-behavior dwell time (tens of seconds to
minutes); gaps between sessions are log-normal around ``between_sessions_median_hours``.

Users are processed longest first, so the active users at step ``t`` are a prefix of the batch and the
work is proportional to the number of events, not to ``n_users * max_events``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import torch
from tqdm.auto import tqdm

from user_models.data.artifact import PROPENSITY_SLATE, CleaningStep, DatasetMeta, SequenceDataset
from user_models.synthetic.config import BEHAVIORS, WORLD_VERSION, SyntheticConfig
from user_models.synthetic.world import SyntheticState, SyntheticWorld, derived_seeds, first_log_draws


@dataclass(frozen=True)
class SyntheticLogs:
    """Events of the organic logs, sorted by ``(user, position)``; numpy arrays of equal length.

    Attributes:
        user: int32 user ids ``0..n_users-1``.
        item: int32 item ids ``1..n_items``.
        behavior: int8 behavior ids ``1..4``.
        timestamp: int64 unix seconds.
        session: int32 per-user session index from 0 (the world's true sessions).
        position: int32 per-user event index from 0.
    """

    user: np.ndarray
    item: np.ndarray
    behavior: np.ndarray
    timestamp: np.ndarray
    session: np.ndarray
    position: np.ndarray
    final_state: SyntheticState | None = None
    """Each user's true state after their last event, rows in user-id order (where impression logs
    continue from, :mod:`user_models.synthetic.slate_logs`); not part of the logs themselves."""

    def __len__(self) -> int:
        return len(self.user)


def generate_logs(
    config: SyntheticConfig, device: torch.device | str = "cpu", progress: bool = False
) -> SyntheticLogs:
    """Run organic browsing for ``config.n_users`` fresh users; deterministic by ``config.seed``.

    Args:
        config: the world and log parameters.
        device: where to simulate (results are reproducible per device type, not across them).
        progress: show a progress bar over steps.
    """
    c = config
    world = SyntheticWorld(c, device)
    dev = world.device
    g = torch.Generator(device=dev).manual_seed(derived_seeds(c.seed)[1])

    lengths, users = first_log_draws(world, g)
    order = torch.argsort(lengths, descending=True, stable=True)
    lengths = lengths[order]
    state = SyntheticState(users.interest[order], users.satiation[order], users.patience[order])
    start = c.start_time + torch.rand(c.n_users, generator=g, device=dev, dtype=torch.float64) * (
        c.start_spread_days * 86400.0
    )
    clock = start.round().to(torch.int64)

    n_steps = int(lengths[0])
    active_counts = (lengths[None, :] > torch.arange(n_steps, device=dev)[:, None]).sum(1).tolist()
    items = torch.zeros(c.n_users, n_steps, dtype=torch.int64, device=dev)
    behaviors = torch.zeros_like(items)
    stamps = torch.zeros_like(items)
    sessions = torch.zeros_like(items)
    session = torch.zeros(c.n_users, dtype=torch.int64, device=dev)
    ended = torch.zeros(c.n_users, dtype=torch.bool, device=dev)

    for t in tqdm(range(n_steps), desc="synthetic logs", unit="step", disable=not progress):
        m = active_counts[t]
        rows = state.rows(m)
        item, behavior = browse(world, rows, g)
        if t == 0:
            gap = torch.full((m,), -1.0, dtype=torch.float64, device=dev)
        else:
            z = torch.randn(m, generator=g, device=dev, dtype=torch.float64)
            gap = torch.where(ended[:m], between_sessions_seconds(c, z),
                              dwell_seconds(c, behaviors[:m, t - 1], z)).round()
            clock[:m] += gap.to(torch.int64)
            session[:m] += ended[:m].to(torch.int64)
        world.step(rows, item, behavior, gap.float(), torch.ones(m, dtype=torch.bool, device=dev))
        ended[:m] = torch.rand(m, generator=g, device=dev) < world.end_prob(rows)
        items[:m, t] = item
        behaviors[:m, t] = behavior
        stamps[:m, t] = clock[:m]
        sessions[:m, t] = session[:m]

    mask = torch.arange(n_steps, device=dev)[None, :] < lengths[:, None]
    unsort = torch.argsort(order)  # row of each user id in the sorted batch
    final = SyntheticState(state.interest[unsort], state.satiation[unsort], state.patience[unsort])
    mask, items, behaviors, stamps, sessions = (x[unsort] for x in (mask, items, behaviors, stamps, sessions))
    user_ids = torch.arange(c.n_users, device=dev)[:, None].expand(-1, n_steps)
    positions = torch.arange(n_steps, device=dev)[None, :].expand(c.n_users, -1)

    def flat(x: torch.Tensor, dtype: type[np.generic]) -> np.ndarray:
        return x[mask].cpu().numpy().astype(dtype)

    return SyntheticLogs(
        user=flat(user_ids, np.int32),
        item=flat(items, np.int32),
        behavior=flat(behaviors, np.int8),
        timestamp=flat(stamps, np.int64),
        session=flat(sessions, np.int32),
        position=flat(positions, np.int32),
        final_state=final,
    )


def organic_session(
    world: SyntheticWorld, state: SyntheticState, after: torch.Tensor, session: torch.Tensor,
    position: torch.Tensor, max_events: int, generator: torch.Generator,
) -> tuple[pl.DataFrame, int]:
    """One more organic browsing session for every row of ``state`` (row ``i`` is user ``i``), a
    between-sessions gap after each user's time ``after``: events until the world's ``end_prob`` ends
    the session, at most ``max_events``. Returns the events (``user, item, behavior, timestamp,
    session, position``, with the given per-user ``session`` index and positions from ``position``)
    and how many sessions ``max_events`` cut."""
    c, dev = world.config, world.device
    state = SyntheticState(state.interest.clone(), state.satiation.clone(), state.patience.clone())
    z = torch.randn(state.batch_size, generator=generator, device=dev, dtype=torch.float64)
    gap = between_sessions_seconds(c, z).round()
    clock, position = after + gap.long(), position.clone()
    user = torch.arange(state.batch_size, device=dev)
    rows: list[tuple[torch.Tensor, ...]] = []
    for _ in range(max_events):
        b = user.numel()
        if b == 0:
            break
        item, behavior = browse(world, state, generator)
        world.step(state, item, behavior, gap.float(), torch.ones(b, dtype=torch.bool, device=dev))
        rows.append((user, item, behavior, clock.clone(), session[user], position.clone()))
        ended = torch.rand(b, generator=generator, device=dev) < world.end_prob(state)
        z = torch.randn(b, generator=generator, device=dev, dtype=torch.float64)
        gap = dwell_seconds(c, behavior, z).round()
        clock, position = clock + gap.long(), position + 1
        keep = ~ended
        user, clock, position, gap = (x[keep] for x in (user, clock, position, gap))
        state = SyntheticState(state.interest[keep], state.satiation[keep], state.patience[keep])
    names = ("user", "item", "behavior", "timestamp", "session", "position")
    columns = [torch.cat([r[i] for r in rows]).cpu().numpy() if rows else np.zeros(0, np.int64)
               for i in range(len(names))]
    return pl.DataFrame(dict(zip(names, columns, strict=True))), int(user.numel())


def browse(world: SyntheticWorld, state: SyntheticState, generator: torch.Generator
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of organic browsing for every row of ``state``: the next item from
    ``softmax(item_logits / browse_temperature)`` over the whole catalogue, then its behavior (ids
    ``1..4``) from the world's funnel."""
    logits = world.all_item_logits(state)
    if world.config.browse_temperature != 1.0:
        logits.div_(world.config.browse_temperature)
    item = _sample(torch.softmax(logits, dim=-1), generator)
    behavior = _sample(world.behavior_probs(state, item[:, None])[:, 0], generator) + 1
    return item, behavior


def dwell_seconds(config: SyntheticConfig, previous: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Float64 gaps within a session after events of behavior ``previous`` (0: a slate without a
    choice, which takes a view's dwell): log-normal around the behavior's dwell median, for the standard
    normal draws ``z``, clipped to ``[1, dwell_max_seconds]``."""
    medians = torch.tensor((config.dwell_median_seconds[0], *config.dwell_median_seconds),
                           dtype=torch.float64, device=z.device)
    gap = torch.exp(torch.log(medians)[previous] + config.dwell_sigma * z)
    return gap.clamp(1.0, config.dwell_max_seconds)


def between_sessions_seconds(config: SyntheticConfig, z: torch.Tensor) -> torch.Tensor:
    """Float64 gaps between sessions: log-normal around ``between_sessions_median_hours`` for the
    standard normal draws ``z``, at least ``between_sessions_min_seconds``."""
    median = math.log(config.between_sessions_median_hours * 3600.0)
    gap = torch.exp(median + config.between_sessions_sigma * z)
    return gap.clamp(min=config.between_sessions_min_seconds)


def _sample(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One column index per row of ``[B, n]`` probabilities, by inverse CDF: much faster than
    ``torch.multinomial`` on a large catalogue. Probability-0 columns are never drawn. Overwrites
    ``probs``.

    Generation is a few full-catalogue passes per step (logits, softmax, cumsum), each one parallel
    operation: few enough that thread synchronisation stays cheap on a busy machine.
    """
    cdf = probs.cumsum_(dim=-1)
    u = torch.rand(cdf.shape[0], 1, generator=generator, device=cdf.device, dtype=cdf.dtype) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True)[:, 0].clamp_(max=probs.shape[-1] - 1)


def synthesize_dataset(
    config: SyntheticConfig, device: torch.device | str = "cpu", progress: bool = False
) -> SequenceDataset:
    """Generate the synthetic world's organic logs and package them as a :class:`SequenceDataset`.

    Ids are clean by construction (items ``1..n``, users ``0..m-1``, sessions and positions known), so
    nothing is cleaned away; the config is stored in ``meta.extra`` so that
    :meth:`SyntheticWorld.from_dataset` rebuilds the world. The temporal cutoff is the 90th percentile
    timestamp. With impression logs:
    :func:`~user_models.synthetic.slate_logs.synthesize_impression_dataset`.
    """
    return dataset_from_logs(config, generate_logs(config, device=device, progress=progress))


def dataset_from_logs(
    config: SyntheticConfig, logs: SyntheticLogs, more_events: pl.DataFrame | None = None,
    impressions: pl.DataFrame | None = None, impression_notes: dict[str, Any] | None = None,
) -> SequenceDataset:
    """The dataset of organic ``logs``, optionally followed by ``more_events`` (same columns as the
    interactions, continuing users' positions) and with an ``impressions`` table (the artifact's
    schema) described by ``impression_notes`` in ``meta.extra``."""
    world = SyntheticWorld(config)
    interactions = pl.DataFrame({"user": logs.user, "item": logs.item, "behavior": logs.behavior,
                                 "timestamp": logs.timestamp, "session": logs.session,
                                 "position": logs.position})
    if more_events is not None:
        interactions = pl.concat([interactions, more_events.select(interactions.columns)]).sort(
            ["user", "position"])
    impression_steps: tuple[CleaningStep, ...] = ()
    if impressions is not None:
        rows = impressions.height
        impression_steps = (CleaningStep("synthetic: generated", rows, rows,
                                         f"seed {config.seed}; clean by construction"),)
    extra = ({"impression_logging": impression_notes, "propensity_kind": PROPENSITY_SLATE}
             if impression_notes else {})
    ids = np.arange(1, config.n_items + 1)
    items = pl.DataFrame(
        {
            "item": ids,
            "raw_id": [str(i) for i in ids],
            "title": [f"Item {i}" for i in ids],
            "category": np.array(world.category_names)[world.item_category[1:].numpy()],
            "price": world.item_price[1:].double().numpy(),
        }
    )
    users = pl.DataFrame(
        {"user": np.arange(config.n_users), "user_key": [f"synth-{u:06d}" for u in range(config.n_users)]}
    )
    n = interactions.height
    meta = DatasetMeta(
        name="synthetic",
        behaviors=BEHAVIORS,
        n_users=config.n_users,
        n_items=config.n_items,
        n_interactions=n,
        n_sessions=0,  # counted by from_frames
        has_timestamps=True,
        behavior_source="events",
        session_gap_seconds=config.session_gap_seconds,
        temporal_cutoff=int(np.percentile(interactions["timestamp"].to_numpy(), 90, method="higher")),
        cleaning=(CleaningStep("synthetic: generated", n, n, f"seed {config.seed}; clean by construction"),),
        impression_cleaning=impression_steps,
        extra={"synthetic_config": config.to_dict(), "synthetic_world_version": WORLD_VERSION, **extra},
    )
    return SequenceDataset.from_frames(interactions, items, users, meta, impressions)
