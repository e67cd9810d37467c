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
    # Indexed by the previous event's behavior id (0 never occurs; its entry is padding).
    dwell_medians = torch.tensor((1.0, *c.dwell_median_seconds), dtype=torch.float64, device=dev)
    dwell_log_median = torch.log(dwell_medians)
    between_log_median = math.log(c.between_sessions_median_hours * 3600.0)

    for t in tqdm(range(n_steps), desc="synthetic logs", unit="step", disable=not progress):
        m = active_counts[t]
        rows = state.rows(m)
        logits = world.all_item_logits(rows)
        if c.browse_temperature != 1.0:
            logits.div_(c.browse_temperature)
        item = _sample(torch.softmax(logits, dim=-1), g)
        behavior = _sample(world.behavior_probs(rows, item[:, None])[:, 0], g) + 1
        if t == 0:
            gap = torch.full((m,), -1.0, dtype=torch.float64, device=dev)
        else:
            z = torch.randn(m, generator=g, device=dev, dtype=torch.float64)
            within = torch.exp(dwell_log_median[behaviors[:m, t - 1]] + c.dwell_sigma * z)
            within = within.clamp(1.0, c.dwell_max_seconds)
            between = torch.exp(between_log_median + c.between_sessions_sigma * z)
            between = between.clamp(min=c.between_sessions_min_seconds)
            gap = torch.where(ended[:m], between, within).round()
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
