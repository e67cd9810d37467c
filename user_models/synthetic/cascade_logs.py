"""Logs of the cascade world under a logging policy, written the way a shop writes them.

A logging policy (the production recommender of the time) shows every user a slate of
``config.slate_size`` items at each step of their sessions; the users respond through
:meth:`CascadeWorld.step`. Two files come out, as a shop's data team would hand them over:

- ``events.csv``: ``user_id, item_id, timestamp, event``, **one row per funnel stage**: a consumption
  that reaches a buy writes a ``view``, a ``click``, a ``cart`` and a ``buy`` row of the same item,
  seconds apart. Slates without a click write nothing. Sessions are separated by gaps of hours.
- ``impressions.parquet``: one row per slate shown: ``user_id, timestamp, session, step, slate`` (the
  item ids, top first), ``position`` clicked (-1 none), ``item_id`` (0 none) and ``event`` (the deepest
  stage, null none).

plus ``items.csv`` (``item_id, title, category``: public catalogue metadata; quality and bait are hidden).

The logging policies see what a real recommender sees: each user's consumed items (a profile vector,
the running mean of consumed item vectors, and the last ``memory_size`` item ids, which they do not
show again) and per-item statistics a shop would have estimated (click appeal and quality). They never
see a user's hidden interest, threshold or satisfaction. Scores get Gumbel noise, so slates vary.

- **A** (click-through): ``0.5 * attractiveness + 0.3 * quality + 3 * profile . v``. It likes bait: on a
  default world users pick from 65% of its slates and stay ~17 steps per session.
- **B** (conversion, exploring): ``0.7 * quality + 3 * profile . v`` with 30% of the slots uniformly random:
  picks from 54% of slates, ~22 steps per session.

The project calibrates a simulator on logs of A and predicts the statistics of B (issue 14, item 5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl
import torch
from tqdm.auto import tqdm

from user_models.data.artifact import PROPENSITY_SLATE, SequenceDataset
from user_models.data.readers import RawLog
from user_models.errors import InputError
from user_models.synthetic.cascade import CascadeState, CascadeWorld, log_seed
from user_models.synthetic.cascade_config import CASCADE_WORLD_VERSION, CascadeConfig
from user_models.synthetic.config import BEHAVIORS
from user_models.synthetic.slate_logs import plackett_luce_probability


@dataclass(frozen=True)
class LoggingPolicy:
    """A logging policy: a noisy linear ranker over what a shop can observe.

    Attributes:
        name: ``A`` or ``B`` (stored in the dataset).
        description: one line for reports.
        ctr_weight: weight of the item's attractiveness (its estimated click-through rate).
        quality_weight: weight of the item's quality (its estimated conversion).
        affinity_weight: weight of ``profile . item_vector``.
        noise: scale of the Gumbel noise added to every score.
        explore_fraction: share of slots replaced by uniformly random items.
        profile_rate: after a consumption the profile moves this fraction of the way to the item vector.
    """

    name: str
    description: str
    ctr_weight: float
    quality_weight: float
    affinity_weight: float
    noise: float
    explore_fraction: float
    profile_rate: float = 0.2

    def slates(self, world: CascadeWorld, profile: torch.Tensor, recent: torch.Tensor, k: int,
               generator: torch.Generator) -> torch.Tensor:
        """``[B, k]`` slates for users with ``[B, dim]`` profiles and ``[B, M]`` recently consumed ids."""
        b = profile.shape[0]
        dev = generator.device
        score = self._scores(world, profile)
        u = torch.rand(score.shape, generator=generator, device=dev).to(score.device).clamp_(1e-12, 1 - 1e-7)
        score -= self.noise * torch.log(-torch.log(u))
        score.scatter_(1, recent, -math.inf)
        score[:, 0] = -math.inf
        slate = score.topk(k, dim=1).indices
        explore = torch.rand(b, k, generator=generator, device=dev).to(score.device) < self.explore_fraction
        random_items = torch.randint(1, world.n_items + 1, (b, k), generator=generator, device=dev)
        return torch.where(explore, random_items.to(score.device), slate)

    def _scores(self, world: CascadeWorld, profile: torch.Tensor) -> torch.Tensor:
        """``[B, n_items + 1]`` the ranker's scores before noise and masking."""
        return torch.addmm(self.ctr_weight * world.item_attract + self.quality_weight * world.item_quality,
                           profile, world.item_vectors.T, alpha=self.affinity_weight)

    def slate_probability(self, world: CascadeWorld, profile: torch.Tensor, recent: torch.Tensor,
                          slates: torch.Tensor) -> torch.Tensor | None:
        """``[B]`` float64 probability that :meth:`slates` shows exactly ``slates`` (in order), or None
        when it cannot be computed (random slots: their items may coincide with ranked ones).

        Top-k of scores plus Gumbel noise of scale ``noise`` is sampling k items without replacement
        from ``softmax(score / noise)`` over the unmasked items (Plackett-Luce), so the slate's
        probability is ``prod_i softmax(score / noise over the items not yet placed)[slate_i]``.
        """
        if self.explore_fraction > 0:
            return None
        logits = self._scores(world, profile) / self.noise
        logits.scatter_(1, recent, -math.inf)
        logits[:, 0] = -math.inf
        return plackett_luce_probability(logits, slates)


LOGGING_POLICIES: dict[str, LoggingPolicy] = {
    "A": LoggingPolicy("A", "click-through ranker: attractiveness, some quality, profile affinity; noisy",
                       ctr_weight=0.5, quality_weight=0.3, affinity_weight=3.0, noise=0.5,
                       explore_fraction=0.0),
    "B": LoggingPolicy("B", "conversion ranker: quality + profile affinity, noisy, 30% random slots",
                       ctr_weight=0.0, quality_weight=0.7, affinity_weight=3.0, noise=0.5,
                       explore_fraction=0.3),
}
"""The selectable logging policies, by name."""


def resolve_logging_policy(name: str | LoggingPolicy) -> LoggingPolicy:
    """The policy called ``name`` (``A`` or ``B``), or ``name`` itself when it already is one."""
    if isinstance(name, LoggingPolicy):
        return name
    if name not in LOGGING_POLICIES:
        raise InputError(f"unknown logging policy {name!r}; choose one of {', '.join(LOGGING_POLICIES)}")
    return LOGGING_POLICIES[name]


@dataclass(frozen=True)
class CascadeLogs:
    """The raw logs: ``events`` (one row per funnel stage) and ``impressions`` (one row per slate)."""

    events: pl.DataFrame
    impressions: pl.DataFrame


def generate_cascade_logs(
    config: CascadeConfig, policy: str | LoggingPolicy = "A", device: torch.device | str = "cpu",
    progress: bool = False, propensities: bool = False,
) -> CascadeLogs:
    """Run ``config.n_users`` fresh users through their sessions under ``policy``; deterministic by
    ``config.seed`` (and the policy).

    ``propensities`` adds an impression column ``propensity``: the probability of the slate under the
    policy (:meth:`LoggingPolicy.slate_probability`; null for policy B, whose random slots make it
    intractable). It draws no random numbers, so the logs are the same with or without it.

    Each user has ``1 + Poisson(sessions_per_user - 1)`` sessions; a session lasts until the world says
    the user leaves. Finished users are dropped from the batch as it goes, so the work is proportional
    to the number of slates shown.
    """
    c = config
    pol = resolve_logging_policy(policy)
    world = CascadeWorld(c, device)
    dev = world.device
    g = torch.Generator(device=dev).manual_seed(log_seed(c.seed, pol.name))
    n = c.n_users
    state = world.sample_users(n, g)
    sessions_left = torch.poisson(torch.full((n,), c.sessions_per_user - 1.0, device=dev), generator=g)
    sessions_left = sessions_left.long() + 1
    clock = c.start_time + (torch.rand(n, generator=g, device=dev, dtype=torch.float64)
                            * c.start_spread_days * 86400.0).round().long()
    user = torch.arange(n, device=dev)
    session = torch.zeros(n, dtype=torch.int64, device=dev)
    profile = torch.zeros(n, c.dim, device=dev)
    recent = torch.zeros(n, c.memory_size, dtype=torch.int64, device=dev)
    stage_log = torch.log(torch.tensor(c.stage_median_seconds, dtype=torch.float64, device=dev))
    dwell_log = torch.log(torch.tensor((c.browse_median_seconds, *c.dwell_median_seconds),
                                       dtype=torch.float64, device=dev))
    between_log = math.log(c.between_sessions_median_hours * 3600.0)

    impressions: list[tuple[torch.Tensor, ...]] = []
    events: list[tuple[torch.Tensor, ...]] = []
    slate_probs: list[torch.Tensor] = []
    bar = tqdm(total=int(sessions_left.sum()), desc="cascade logs", unit="session", disable=not progress)
    while user.numel():
        b = user.numel()
        slates = pol.slates(world, profile, recent, c.slate_size, g)
        if propensities:
            prob = pol.slate_probability(world, profile, recent, slates)
            slate_probs.append(prob if prob is not None else torch.full((b,), math.nan, device=dev,
                                                                         dtype=torch.float64))
        res = world.step(state, slates, g)
        z = torch.randn(b, 5, generator=g, device=dev, dtype=torch.float64)
        # Funnel rows: stage s (view=0, ..., buy=3) at the view time plus the first s stage gaps.
        stage_gaps = torch.exp(stage_log + c.gap_sigma * z[:, :3]).clamp(1.0, c.gap_max_seconds).round()
        offsets = torch.cat([torch.zeros(b, 1, dtype=torch.float64, device=dev), stage_gaps.cumsum(1)], 1)
        chose = res.behavior > 0
        impressions.append((user, clock.clone(), session.clone(), state.steps - 1, slates, res.position,
                            res.item, res.behavior))
        for s in range(4):
            rows = res.behavior > s
            events.append((user[rows], res.item[rows], clock[rows] + offsets[rows, s].long(),
                           torch.full((int(rows.sum()),), s + 1, dtype=torch.int64, device=dev)))
        last = offsets.gather(1, (res.behavior - 1).clamp(min=0)[:, None])[:, 0]
        dwell = torch.exp(dwell_log[res.behavior] + c.gap_sigma * z[:, 3]).clamp(1.0, c.gap_max_seconds)
        clock += torch.where(chose, last, 0.0).long() + dwell.round().long()
        vectors = world.item_vectors[res.item]
        profile += (pol.profile_rate * chose)[:, None] * (vectors - profile)
        recent = torch.where(chose[:, None], torch.cat([res.item[:, None], recent[:, :-1]], 1), recent)

        ended = res.left
        sessions_left -= ended.long()
        bar.update(int(ended.sum()))
        again = ended & (sessions_left > 0)
        between = torch.exp(between_log + c.between_sessions_sigma * z[:, 4])
        clock += torch.where(again, between.clamp(min=c.between_sessions_min_seconds), 0.0).round().long()
        session += again.long()
        world.start_session(state, again)
        keep = ~(ended & (sessions_left == 0))
        if not bool(keep.all()):
            state = _take(state, keep)
            user, clock, session, profile, recent, sessions_left = (
                x[keep] for x in (user, clock, session, profile, recent, sessions_left))
    bar.close()

    def cat(parts: list[tuple[torch.Tensor, ...]], i: int) -> np.ndarray:
        return torch.cat([p[i] for p in parts]).cpu().numpy() if parts else np.zeros(0, np.int64)

    names = pl.Series([None, *BEHAVIORS], dtype=pl.String)  # indexed by behavior id
    ev = pl.DataFrame({"user_id": cat(events, 0), "item_id": cat(events, 1), "timestamp": cat(events, 2),
                       "behavior": cat(events, 3)}).sort(["user_id", "timestamp", "behavior"])
    ev = ev.select("user_id", "item_id", "timestamp", names.gather(ev["behavior"]).alias("event"))
    behavior = cat(impressions, 7)
    imp = pl.DataFrame({
        "user_id": cat(impressions, 0), "timestamp": cat(impressions, 1), "session": cat(impressions, 2),
        "step": cat(impressions, 3),
        "slate": torch.cat([p[4] for p in impressions]).cpu().numpy() if impressions else np.zeros((0, 1)),
        "position": cat(impressions, 5), "item_id": cat(impressions, 6),
        "event": names.gather(behavior),
        **({"propensity": pl.Series(torch.cat(slate_probs).cpu().numpy() if slate_probs else np.zeros(0),
                                    nan_to_null=True)} if propensities else {}),
    }).sort(["user_id", "timestamp", "step"])
    return CascadeLogs(events=ev, impressions=imp)


def _take(state: CascadeState, keep: torch.Tensor) -> CascadeState:
    return CascadeState(state.interest[keep], state.threshold[keep], state.satisfaction[keep],
                        state.memory[keep], state.steps[keep], state.left[keep])


@dataclass(frozen=True)
class CascadeLogFiles:
    """Paths of the raw files written by :func:`write_cascade_logs`."""

    events: Path
    impressions: Path
    items: Path


def write_cascade_logs(
    config: CascadeConfig, out_dir: str | Path, logging_policy: str | LoggingPolicy = "A",
    progress: bool = False, device: torch.device | str = "cpu", propensities: bool = False,
) -> CascadeLogFiles:
    """Generate the logs of ``config`` under ``logging_policy`` and write ``events.csv``,
    ``impressions.parquet`` (with a ``propensity`` column when ``propensities``) and ``items.csv`` into
    ``out_dir`` (created if missing)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    logs = generate_cascade_logs(config, logging_policy, device=device, progress=progress,
                                 propensities=propensities)
    world = CascadeWorld(config)
    files = CascadeLogFiles(out / "events.csv", out / "impressions.parquet", out / "items.csv")
    logs.events.write_csv(files.events)
    logs.impressions.write_parquet(files.impressions)
    ids = np.arange(1, config.n_items + 1)
    pl.DataFrame({"item_id": ids, "title": [f"Item {i}" for i in ids],
                  "category": world.item_categories()}).write_csv(files.items)
    return files


def synthesize_cascade_dataset(
    config: CascadeConfig, raw_dir: str | Path, logging_policy: str | LoggingPolicy = "A",
    progress: bool = False, device: torch.device | str = "cpu", impressions: bool = False,
) -> SequenceDataset:
    """Write the raw logs into ``raw_dir`` and ingest them like any shop log (``recsim data prepare``
    with its defaults: funnel collapsing, k-core 5, the session gap of ``config``), then record the
    world in ``meta.extra`` so :meth:`CascadeWorld.from_dataset` rebuilds it as ground truth.

    ``impressions`` also ingests ``impressions.parquet`` (with the slates' propensities) as the dataset's
    impression table (:func:`cascade_impressions_log`); the interactions are the same events, though
    items only ever shown (not kept by the k-core) then get ids too, which renumbers the catalogue.
    """
    from user_models.data.prepare import PrepareConfig, prepare
    from user_models.data.readers import read_items, read_log

    pol = resolve_logging_policy(logging_policy)
    files = write_cascade_logs(config, raw_dir, pol, progress=progress, device=device,
                               propensities=impressions)
    prep = PrepareConfig(name=f"cascade-{pol.name}", behaviors=BEHAVIORS, keep_raw_ids=True,
                         session_gap_seconds=config.session_gap_seconds)
    shown = cascade_impressions_log(files.impressions) if impressions else None
    ds = prepare(read_log(files.events, "csv"), prep, read_items(files.items, "csv"), progress=progress,
                 impressions=shown)
    notes = {}
    if impressions:
        computable = pol.explore_fraction == 0
        notes = {"impression_propensity": (
            f"the probability of the whole ordered slate under logging policy {pol.name} (Plackett-Luce: "
            "top-k of its scores plus Gumbel noise), the same on every row of an impression" if computable
            else f"null: policy {pol.name}'s random slots make the slate probability intractable")}
    if impressions and computable:
        notes["propensity_kind"] = PROPENSITY_SLATE
    extra = {**ds.meta.extra, **notes, "world": "cascade", "cascade_config": config.to_dict(),
             "cascade_world_version": CASCADE_WORLD_VERSION, "logging_policy": pol.name,
             "logging_policy_description": pol.description,
             "raw_files": {"events": files.events.name, "impressions": files.impressions.name,
                           "items": files.items.name}}
    ds.meta = replace(ds.meta, extra=extra)
    return ds


def cascade_impressions_log(path: str | Path) -> RawLog:
    """``impressions.parquet`` (one row per slate) as the generic impression table (one row per shown
    slot) for :func:`~user_models.data.prepare.prepare`: a slot is clicked when it is the slate's
    ``position``, with the slate's ``event`` as its behavior; errors name the parquet row."""
    path = Path(path)
    slates = pl.read_parquet(path)
    inner = slates.schema["slate"].inner  # type: ignore[attr-defined]
    slates = slates.with_columns(pl.col("slate").cast(pl.List(inner)))
    rows = slates.with_row_index("origin")
    rows = rows.with_columns(pl.int_ranges(pl.col("slate").list.len()).alias("slot")).explode("slate", "slot")
    has_propensity = "propensity" in rows.columns
    frame = rows.with_row_index("row").select(
        pl.col("row").cast(pl.Int64), pl.col("user_id").alias("user"), "timestamp",
        pl.col("origin").cast(pl.Int64).alias("impression"), pl.col("slate").alias("item"), "slot",
        (pl.col("slot") == pl.col("position")).cast(pl.Int8).alias("clicked"),
        pl.when(pl.col("slot") == pl.col("position")).then(pl.col("event")).alias("behavior"),
        *((pl.col("propensity"),) if has_propensity else ()),
    )
    columns = {"user": "user_id", "timestamp": "timestamp", "impression": "(row)", "item": "slate",
               "slot": "slate", "clicked": "position", "behavior": "event",
               **({"propensity": "propensity"} if has_propensity else {})}
    return RawLog(frame.lazy(), path, columns, None, (path,), "parquet", rows["origin"].to_numpy())
