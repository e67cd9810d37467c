"""Impression logs of the organic world: slates a logging policy showed, and what users chose from them.

The organic logs (:mod:`user_models.synthetic.logs`) are browsing of the whole catalogue: nobody showed
those users a slate, so they hold no impressions. ``recsim data synth --impressions`` continues every
user, after their organic history and a between-sessions gap, with **one session of slates** shown by a
logging policy, answered by the world exactly as ``RecSim-World-v0`` answers a slate (the frozen world
settings of ``recsim_env.config``: ``WORLD_CHOICE``, ``WORLD_LEAVE``, no-choice steps as world events):

- **slate**: the logging policy, a popularity ranker a shop could run: ``slate_size`` distinct items,
  the top of ``log(1 + organic count) + Gumbel noise`` (so a Plackett-Luce draw proportional to
  ``1 + count``; its probability is the ``propensity`` of every row of the impression);
- **choice**: a multinomial logit over the slate's raw world logits (``item_logits``, temperature 1)
  plus "none of these" with utility 0, no position effect (the organic world has none);
- **response**: the chosen item's behavior from the world's funnel (``behavior_probs``); no choice is
  behavior 0 (it drains the world's patience and moves nothing else);
- **update and leave**: ``SyntheticWorld.step`` with the event, then the session ends with the world's
  ``end_prob``, or after ``max_steps`` slates;
- **then one more organic session** per user (whole-catalogue browsing, as in the organic logs, until
  ``end_prob`` ends it), after a between-sessions gap. Without it the slate session would be every
  user's last: the leave-last-out test positions would all fall in it, and their session-end labels
  (1 only where the slate session holds a single choice) would measure that layout, not how organic
  sessions end (the world's own end probability scored AUC 0.28 there, 0.71 on organic sessions).

Gaps inside the session are the organic dwell times (after no choice: a view's); times continue from
the user's last organic event. The random numbers come from a stream of their own (a third child of
the world's seed), so the organic events do not change. Nothing here changes the world: it is the
world's own methods, driven by slates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import torch
from tqdm.auto import tqdm

from user_models.data.artifact import SequenceDataset
from user_models.synthetic.config import SyntheticConfig
from user_models.synthetic.logs import (
    SyntheticLogs,
    _sample,
    between_sessions_seconds,
    dataset_from_logs,
    dwell_seconds,
    generate_logs,
    organic_session,
)
from user_models.synthetic.world import SyntheticState, SyntheticWorld

SLATE_SIZE = 5
"""Items per logged slate: the env's default ``slate_size``."""
MAX_STEPS = 100
"""Slates per logged session at most: the env's default ``max_steps``."""
NOISE = 1.0
"""Scale of the logging policy's Gumbel noise."""


@dataclass(frozen=True)
class SlateLogs:
    """The impression table (the artifact's schema) and the chosen items as events.

    Attributes:
        impressions: one row per (impression, slot), columns of
            :data:`~user_models.data.artifact.IMPRESSIONS_SCHEMA`.
        events: ``user, item, behavior, timestamp, session, position``: the choices, then each user's
            closing organic session, continuing the user's organic positions and sessions.
        description: the logging settings, for ``meta.json``.
    """

    impressions: pl.DataFrame
    events: pl.DataFrame
    description: dict[str, Any]


def impression_seed(seed: int) -> int:
    """The impression logs' seed: a third child of ``seed`` (the world and the organic logs use the
    first two, :func:`~user_models.synthetic.world.derived_seeds`)."""
    child = np.random.SeedSequence(seed).spawn(3)[2]
    return int(child.generate_state(1, np.uint64)[0])


def plackett_luce_probability(logits: torch.Tensor, slates: torch.Tensor) -> torch.Tensor:
    """``[B]`` float64 probability of drawing the ordered ``[B, k]`` slates without replacement from
    ``softmax(logits)`` (``[B, n]``; ``-inf`` never drawn): what top-k of ``logits`` plus standard
    Gumbel noise shows."""
    logits = logits.double()
    weights = torch.exp(logits - logits.max(dim=1, keepdim=True).values)
    picked = weights.gather(1, slates)
    left = weights.sum(dim=1, keepdim=True) - torch.cumsum(picked, dim=1) + picked
    return torch.exp(torch.log(picked).sum(dim=1) - torch.log(left.clamp_min(1e-300)).sum(dim=1))


def synthesize_impression_dataset(
    config: SyntheticConfig, device: torch.device | str = "cpu", progress: bool = False
) -> SequenceDataset:
    """The organic dataset (:func:`~user_models.synthetic.logs.synthesize_dataset`) continued by one
    logged slate session and one closing organic session per user: the slates are the impression table,
    the choices and the closing session are appended to the users' events. The organic events are those
    of ``synthesize_dataset(config)``, unchanged."""
    logs = generate_logs(config, device=device, progress=progress)
    slates = generate_slate_logs(config, logs, device=device, progress=progress)
    return dataset_from_logs(config, logs, slates.events, slates.impressions, slates.description)


def generate_slate_logs(
    config: SyntheticConfig, logs: SyntheticLogs, slate_size: int = SLATE_SIZE,
    max_steps: int = MAX_STEPS, device: torch.device | str = "cpu", progress: bool = False,
) -> SlateLogs:
    """One logged slate session, then one closing organic session, per user of ``logs`` (with its
    ``final_state``); deterministic by ``config.seed``. ``events`` holds the slates' choices and the
    closing sessions' events."""
    if logs.final_state is None:
        raise ValueError("the organic logs carry no final state; make them with generate_logs")
    c = config
    world = SyntheticWorld(c, device)
    dev = world.device
    g = torch.Generator(device=dev).manual_seed(impression_seed(c.seed))
    n = c.n_users
    users = torch.from_numpy(logs.user.astype(np.int64))
    last = torch.zeros(n, dtype=torch.long).scatter_reduce(0, users, torch.arange(len(users)), "amax")
    clock = torch.from_numpy(logs.timestamp)[last].to(dev)
    session = torch.from_numpy(logs.session.astype(np.int64))[last].to(dev) + 1
    session_after = session + 1
    position = torch.from_numpy(logs.position.astype(np.int64))[last].to(dev) + 1
    fs = logs.final_state
    state = SyntheticState(fs.interest.to(dev).clone(), fs.satiation.to(dev).clone(),
                           fs.patience.to(dev).clone())
    after = SyntheticState(state.interest.clone(), state.satiation.clone(), state.patience.clone())
    counts = np.bincount(logs.item, minlength=c.n_items + 1).astype(np.float64)
    popularity = torch.log1p(torch.from_numpy(counts)).float().to(dev) / NOISE
    popularity[0] = -math.inf
    z = torch.randn(n, generator=g, device=dev, dtype=torch.float64)
    gap = between_sessions_seconds(c, z).round()
    clock = clock + gap.long()
    user = torch.arange(n, device=dev)
    end_clock, end_position = clock.clone(), position.clone()

    shown: list[tuple[torch.Tensor, ...]] = []
    for _ in tqdm(range(max_steps), desc="slate logs", unit="step", disable=not progress):
        b = user.numel()
        if b == 0:
            break
        u = torch.rand(b, c.n_items + 1, generator=g, device=dev).clamp_(1e-12, 1 - 1e-7)
        slates = (popularity - NOISE * torch.log(-torch.log(u))).topk(slate_size, dim=1).indices
        propensity = plackett_luce_probability(popularity.expand(b, -1), slates)
        utility = torch.cat([world.item_logits(state, slates), torch.zeros(b, 1, device=dev)], dim=1)
        pick = _sample(torch.softmax(utility, dim=1), g)
        chose = pick < slate_size
        item = torch.where(chose, slates.gather(1, pick.clamp(max=slate_size - 1)[:, None])[:, 0], 0)
        funnel = world.behavior_probs(state, item.clamp(min=1)[:, None])[:, 0]
        behavior = torch.where(chose, _sample(funnel, g) + 1, 0)
        world.step(state, item, behavior, gap.float(), torch.ones(b, dtype=torch.bool, device=dev))
        ended = torch.rand(b, generator=g, device=dev) < world.end_prob(state)
        shown.append((user, clock.clone(), session, slates, pick, behavior, propensity, position.clone()))
        position = position + chose.long()
        end_clock[user], end_position[user] = clock, position
        for name in ("interest", "satiation", "patience"):
            getattr(after, name)[user] = getattr(state, name)
        gap = dwell_seconds(c, behavior, torch.randn(b, generator=g, device=dev, dtype=torch.float64)).round()
        clock = clock + gap.long()
        keep = ~ended
        user, clock, session, position, gap = (x[keep] for x in (user, clock, session, position, gap))
        state = SyntheticState(state.interest[keep], state.satiation[keep], state.patience[keep])
    tables = _tables(shown, slate_size, max_steps)
    closing, cut = organic_session(world, after, end_clock, session_after, end_position, max_steps, g)
    events = pl.concat([tables.events, closing.select(tables.events.columns).cast(tables.events.schema)]
                       ).sort(["user", "position"])
    description = {**tables.description, "closing_session": (
        "then one organic session per user (browsing the whole catalogue, as in the organic logs), so "
        "that no user's last session is the slate session"), "closing_sessions_cut": cut}
    return SlateLogs(tables.impressions, events, description)


def _tables(shown: list[tuple[torch.Tensor, ...]], k: int, max_steps: int) -> SlateLogs:
    def cat(i: int) -> np.ndarray:
        return torch.cat([s[i] for s in shown]).cpu().numpy()

    user, time, session, slates, pick, behavior, propensity, position = (cat(i) for i in range(8))
    order = np.lexsort((time, user))  # impressions in (user, time) order; times rise within a user
    user, time, session, slates, pick, behavior, propensity, position = (
        x[order] for x in (user, time, session, slates, pick, behavior, propensity, position))
    m = len(user)
    slot = np.tile(np.arange(k), m)
    clicked = (slot == np.repeat(pick, k)).astype(np.int8)
    impressions = pl.DataFrame({
        "user": np.repeat(user, k).astype(np.int32),
        "impression": np.repeat(np.arange(m), k).astype(np.int64),
        "timestamp": np.repeat(time, k),
        "session": np.repeat(session, k).astype(np.int32),
        "slot": slot.astype(np.int16),
        "item": slates.reshape(-1).astype(np.int32),
        "clicked": clicked,
        "behavior": pl.Series(np.where(clicked == 1, np.repeat(behavior, k), 0), dtype=pl.Int8),
        "propensity": np.repeat(propensity, k),
    }).with_columns(pl.when(pl.col("clicked") == 1).then(pl.col("behavior")).alias("behavior"))
    chose = pick < k
    events = pl.DataFrame({
        "user": user[chose].astype(np.int32),
        "item": slates[np.flatnonzero(chose), pick[chose]].astype(np.int32),
        "behavior": behavior[chose].astype(np.int8),
        "timestamp": time[chose],
        "session": session[chose].astype(np.int32),
        "position": position[chose].astype(np.int32),
    })
    description = {
        "sessions": "one logged slate session per user, after their organic history",
        "logging_policy": f"popularity ranker: top-{k} of log(1 + organic count) + Gumbel noise (scale "
                          f"{NOISE:g})",
        "choice": "multinomial logit over the raw world logits of the slate plus none (utility 0): "
                  "RecSim-World-v0's WORLD_CHOICE",
        "propensity": "the probability of the whole ordered slate under the logging policy "
                      "(Plackett-Luce), the same on every row of an impression",
        "slate_size": k,
        "max_steps": max_steps,
        "no_choice_share": float(1 - chose.mean()) if m else 0.0,
    }
    return SlateLogs(impressions, events, description)
