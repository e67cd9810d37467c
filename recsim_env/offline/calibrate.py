"""Calibration: fit the choice temperature, the no-choice logit and the end-logit offset to the logs.

What the logs say, and which parameter answers to it:

1. **How sharply preferences decide the pick** -> ``temperature``. Temperature scaling (Guo et al.,
   2017) of the model's next-item softmax over the whole catalogue on held-out (validation) events: the
   temperature that maximises the likelihood of the logged next items (golden-section search on
   ``log temperature``). The slate choice divides the same logits by it. (Scaling on slates with
   negatives from a logging policy instead would be confounded by the negatives' distribution.)
2. **How often a step leads to a consumption** -> ``no_choice_logit``. Logs hold consumptions, not
   impressions, so a step is reconstructed from time: with ``delta`` the median positive within-session
   gap (the simulator's step length), an event ``g`` seconds after the previous one of its session took
   ``max(1, round(g / delta))`` steps. The logged *consumption rate* is events per step over the span
   from a session's first to its last event. Without timestamps it must be given. The gaps alone do
   not identify it: a deep behavior's long dwell reads as passed-over slates, and slates passed over
   faster than the dwell's spread leave no trace. The report sets beside it the gaps read as dwell by
   the previous behavior plus passed-over slates (:mod:`recsim_env.gap_reading`) and says where the two
   readings disagree; pass the rate where it is known from elsewhere.
   When the user model carries a choice learned from impression logs (``recsim user-model
   fit-choice``), the impressions already say how often a shown slate is taken: the no-choice logit
   (and the temperature) are then not used and not fitted; only (3) and the idle hazard are, and with
   the impressions in the dataset (patience off) both by maximum likelihood on the impression steps
   themselves (:mod:`recsim_env.offline.leave_impressions`): every shown slate is a step and the
   session's last one is where the user left, so no simulation search is needed.
3. **How many events a session holds, and how each response moves leaving** -> the leave hazard. By
   default (patience off, timestamps in the logs) by maximum likelihood on the steps rebuilt from the
   time gaps as in (2) (:func:`~recsim_env.offline.leave_impressions.consumption_steps`): the consumed
   events and the slates passed over between them, with the session wear of
   :mod:`recsim_env.offline.leave_impressions` (how a response, the consumed item and a passed-over
   slate move the wish to leave) and the end head's logit scaled and offset. What a consumption log
   cannot show, the slates passed over after a session's last consumption, is summed over (each passed
   over with probability 1 - the logged consumption rate), so a session's last event is not read as the
   leave itself. Why: the end head alone, offset to the logged session length, makes sessions about as
   long under every policy; with the wear a policy whose slates are taken, and taken deeply, keeps users
   longer, as the logs show. ``session_wear=False`` (``--no-session-wear``), or logs without
   timestamps, fall back to the simulated search: ``end_logit_offset`` (the learned end probability's
   offset in the leave hazard; 0 when the end head is calibrated and the per-step hazard reproduces it)
   and the idle hazard matched to the events per session and the long gaps. Only
   when patience is switched on (it is off by default: consumption logs do not identify it) and alone
   already ends sessions sooner than the logs does ``drain_scale`` move: then the offset sits at
   :data:`OFFSET_FLOOR` (the learned end is off) and the drains shrink until the logged session length
   is reached. One search parameter covers both, so the fit moves from the first to the second
   continuously.

A fitted parameter that ends at a bound of its search range was not identified by the logs (the
mechanism cannot reproduce them): the report lists it under ``at_bound`` with the reason, and
:func:`format_report` says so, instead of presenting the bound as a fit.

(2), and (3) where the likelihood does not fit it, are fitted by simulating ``n_users`` users under the
logging-like policy (slates drawn without replacement by training-split popularity, or from the user
model's own next-item distribution) and measuring the simulated sessions *as the logs would show them*:
only sessions with at least one consumption, their number of events, and events per step between the
first and the last event. The consumption rate falls with the no-choice logit and the session length
with the length parameter, so each is solved in turn by bracketed 1-D root finding (secant, then
Illinois regula falsi) on the logit error of the rate and the log ratio of the lengths: rate, length,
rate, length, sharing ``rounds`` simulations. The simulated point with the smallest total error is kept.
Everything runs with fixed seeds, so a calibration is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from recsim_env.choice import catalogue_logits, learned_choice_of
from recsim_env.config import Calibration, SimConfig
from recsim_env.core import SimulationCore, wear_item_vectors
from recsim_env.factory import build_core, check_compatible, resolve_from_data
from recsim_env.gap_reading import compare_readings
from recsim_env.gap_reading import describe as describe_gap_reading
from recsim_env.offline.leave_impressions import LeaveFit, consumption_steps, fit_leave, impression_steps
from recsim_env.offline.leave_impressions import describe as describe_leave
from recsim_env.offline.rollout import PolicyRun, rollout
from recsim_env.population import LONG_GAP_STEPS, SessionStats, logged_stats, median_session_gap
from recsim_env.spaces import SpaceAdapter
from user_models.data.artifact import EvalSplit, SequenceDataset
from user_models.errors import InputError
from user_models.protocol import History, UserModel

LoggingPolicy = Literal["popular", "model"]
OFFSET_FLOOR = -6.0
"""End-logit offset below which the learned end probability no longer matters (odds x 0.0025): with
patience on, the length search continues below it into the drain scale."""
MIN_DRAIN_SCALE = 0.01
OFFSET_BOUNDS = (-8.0, 8.0)
"""Search range of the end-logit offset when patience is off (odds x 0.0003 to x 3000)."""
NO_CHOICE_BOUNDS = (-15.0, 15.0)
"""Search range of the no-choice logit."""
IDLE_BOUNDS = (0.0, 5.0)
"""Search range of the idle hazard's rate (5: a user leaves after one idle step with probability 0.99)."""


@dataclass(frozen=True)
class CalibrationSettings:
    """How to calibrate.

    Attributes:
        n_users: Simulated users per simulation round.
        n_examples: Logged next-item examples used for temperature scaling.
        temperature_split: Where those examples come from: ``valid`` (default; held-out events, as
            temperature scaling prescribes; used for this one parameter only, never for users) or
            ``train``.
        rounds: Simulation rounds fitting the no-choice logit and the end-logit offset.
        logging_policy: ``model`` (default: slates sampled from the user model's next-item
            distribution; the logged items are what the logging recommender led users to consume, and
            the model learned exactly that distribution, so its slates stand in for the logging
            policy's) or ``popular`` (sampled by training popularity: a worse stand-in for a
            personalised logging policy, which makes every slate look as good as the logged ones).
        max_steps: Step cap of a simulated session (None: 20x the logged steps per session, >= 200).
        target_consumption_rate: Overrides the logged consumption rate (required without timestamps).
        seed: Seed of every random draw of the calibration.
        session_wear: Fit the leave by maximum likelihood with the session wear
            (:mod:`recsim_env.offline.leave_impressions`): on the impression steps when the choice is
            learned from impressions, else on the steps rebuilt from the consumption logs' time gaps
            (patience off, timestamps needed). False: the offset and the idle hazard only, on the
            impression steps or by the simulated search.
        item_wear: With the session wear, fit the consumed item's part of it too
            (``wear_item_weights``).
        leave_users: The most users whose rebuilt consumption steps the leave is fitted on (an evenly
            spaced sample; each step costs a user-model prefill).
    """

    n_users: int = 512
    n_examples: int = 2048
    rounds: int = 24
    temperature_split: EvalSplit = "valid"
    logging_policy: LoggingPolicy = "model"
    max_steps: int | None = None
    target_consumption_rate: float | None = None
    seed: int = 0
    session_wear: bool = True
    item_wear: bool = True
    leave_users: int = 500


def logging_slates(core: SimulationCore, policy: LoggingPolicy, generator: torch.Generator,
                   shift: torch.Tensor | None = None) -> torch.Tensor:
    """``[N, k]`` distinct items per row drawn without replacement (Gumbel top-k) by the logging policy:
    ``popular`` in proportion to the training split's ``log(1 + count)``, ``model`` from the user model's
    own next-item distribution; ``shift`` (``[n_items + 1]``) is added to the log weights (another
    policy's logs: see :func:`recsim_env.offline.fidelity.heldout_policy_fidelity`)."""
    if policy == "popular":
        log_weight = core.log_popularity[None, 1:].expand(core.n_users, -1)
    elif policy == "model":
        log_weight = torch.log_softmax(core.catalogue_logits(), dim=1)
    else:
        raise InputError(f"logging policy must be 'popular' or 'model', got {policy!r}")
    if shift is not None:
        log_weight = log_weight + shift.to(core.device)[None, 1:]
    uniform = torch.rand(log_weight.shape, generator=generator, device=core.device).clamp_(min=1e-12)
    keys = log_weight - torch.log(-torch.log(uniform))
    return keys.topk(core.slate_size, dim=1).indices + 1


class LoggingSlates:
    """The logging-like policy as an SB3-style policy over ``core``'s current users (``slate`` mode).

    Slates come from :func:`logging_slates`, drawn from the policy's own generator (seeded by ``seed``),
    so the core's random streams are the same whatever the policy does. ``shift`` tilts the weights
    (see :func:`logging_slates`).
    """

    def __init__(self, core: SimulationCore, policy: LoggingPolicy, seed: int,
                 shift: torch.Tensor | None = None) -> None:
        self.core = core
        self.policy = policy
        self.shift = shift
        self.generator = torch.Generator(device=core.device).manual_seed(seed)

    def predict(
        self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = False
    ) -> tuple[np.ndarray, Any]:
        slates = logging_slates(self.core, self.policy, self.generator, self.shift)
        return slates.cpu().numpy(), state


def simulate_sessions(core: SimulationCore, policy: LoggingPolicy, seed: int) -> SessionStats:
    """Run one session per row of ``core`` under the logging policy and measure it like the logs."""
    adapter = SpaceAdapter(core, "slate", "history")
    return session_stats(rollout(core, adapter, LoggingSlates(core, policy, seed + 1), seed))


def session_stats(run: PolicyRun) -> SessionStats:
    """A run's sessions measured as logs would show them (see :class:`SessionStats`)."""
    chose = (run.steps["position"] >= 0) & run.steps["active"]  # [T, N]
    events = chose.sum(axis=0).astype(np.float64)
    steps = run.steps["active"].sum(axis=0).astype(np.float64)
    t = np.arange(chose.shape[0])[:, None]
    first = np.where(chose, t, chose.shape[0]).min(axis=0)
    last = np.where(chose, t, -1).max(axis=0)
    seen = events > 0
    visible_steps = (last - first + 1)[seen].astype(np.float64)
    rows, times = np.nonzero(chose.T)  # consumptions, row by row, in time order
    gaps = np.diff(times)[np.diff(rows) == 0]  # steps between consecutive consumptions of one user
    return SessionStats(
        events_per_session=float(events[seen].mean()) if seen.any() else 0.0,
        consumption_rate=float(events[seen].sum() / visible_steps.sum()) if seen.any() else 0.0,
        steps_per_session=float(visible_steps.mean()) if seen.any() else 0.0,
        n_sessions=int(seen.sum()),
        long_gap_share=float((gaps >= LONG_GAP_STEPS).mean()) if gaps.size else float("nan"),
        raw_consumption_rate=float(events.sum() / steps.sum()),
        empty_sessions=float((~seen).mean()),
        truncated=float(run.truncated.mean()),
    )


def fit_temperature(model: UserModel, dataset: SequenceDataset, n_examples: int, split: EvalSplit,
                    seed: int) -> tuple[float, float, float]:
    """Temperature scaling of the model's next-item softmax over the whole catalogue.

    Uses ``n_examples`` next-item examples of ``split`` (leave-last-out: the history before the target).
    Returns ``(temperature, nll at temperature 1, nll at the fitted temperature)``, NLL per example.
    """
    view = dataset.leave_last_out(split)
    examples = view.history.n_users
    if examples == 0:
        raise InputError(f"dataset {dataset.meta.name!r}: no {split} examples for temperature scaling")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(examples, size=min(n_examples, examples), replace=False))
    lengths = view.history.lengths[pick]
    width = int(max(min(lengths.max(), 200), 1))
    keep = np.minimum(lengths, width)
    start = view.history.offsets[pick] + lengths - keep
    pos = np.arange(width)[None, :]
    valid = pos < keep[:, None]
    index = np.where(valid, start[:, None] + pos, 0)
    device = model.device
    history = History(
        torch.as_tensor(np.where(valid, view.history.items[index], 0).astype(np.int64), device=device),
        torch.as_tensor(np.where(valid, view.history.behaviors[index], 0).astype(np.int64), device=device),
        torch.full(index.shape, -1.0, device=device),
        torch.as_tensor(keep, device=device),
    )
    target = torch.as_tensor(view.target_items[pick].astype(np.int64), device=device)
    with torch.no_grad():
        state = model.encode(history)
        logits = catalogue_logits(model, state)

    def nll(log_t: float) -> float:
        log_probs = torch.log_softmax(logits / math.exp(log_t), dim=1)
        return float(-log_probs.gather(1, target[:, None] - 1).mean())

    lo, hi = math.log(0.05), math.log(20.0)
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(40):  # golden-section search; the NLL is unimodal in log temperature
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if nll(a) < nll(b):
            hi = b
        else:
            lo = a
    log_t = (lo + hi) / 2
    return math.exp(log_t), nll(0.0), nll(log_t)


def calibrate(
    model: UserModel,
    dataset: SequenceDataset,
    config: SimConfig,
    settings: CalibrationSettings | None = None,
    progress: bool = True,
) -> Calibration:
    """Fit temperature, no-choice logit and end-logit offset; the report holds targets, before and after.

    ``config`` gives everything else (slate size, patience, population, repeat policy); its calibrated
    fields are the starting point ("before").
    """
    settings = settings or CalibrationSettings()
    check_compatible(model, dataset)
    step_seconds = config.gap_seconds if config.gap_seconds is not None else median_session_gap(dataset)
    target = logged_stats(dataset, step_seconds, settings.target_consumption_rate)
    if not 0 < target.consumption_rate < 1:
        raise InputError(f"logged consumption rate {target.consumption_rate:.3f} is not in (0, 1); "
                         "pass a target consumption rate")
    reads_gaps = (settings.target_consumption_rate is None and dataset.meta.has_timestamps
                  and step_seconds > 0)
    max_steps = settings.max_steps or max(200, int(20 * target.steps_per_session))
    base = resolve_from_data(replace(config, max_steps=max_steps, candidates=None), dataset, step_seconds)
    patience = base.leave.patience_on
    bar = tqdm(total=settings.rounds + 3, desc="calibrate", disable=not progress)

    def run(cfg: SimConfig, seed: int) -> SessionStats:
        core = build_core(model, dataset, cfg, n_users=settings.n_users)
        stats = simulate_sessions(core, settings.logging_policy, seed)
        bar.update(1)
        return stats

    before = run(base, settings.seed)
    temperature, nll_before, nll_after = fit_temperature(model, dataset, settings.n_examples,
                                                         settings.temperature_split, settings.seed)
    bar.update(1)
    # Search over (no-choice logit c, length parameter z): z is the end-logit offset down to
    # OFFSET_FLOOR; below it the learned end no longer matters and z - OFFSET_FLOOR is the log of the
    # patience drain scale. The consumption rate falls with c and the session length falls with z
    # (both monotone), so the two are solved in turn by bracketed 1-D root finding, twice.
    rounds: list[dict[str, Any]] = []
    best: tuple[float, Calibration] | None = None
    evaluated: dict[tuple[float, float, float], np.ndarray] = {}
    gaps_known = math.isfinite(target.long_gap_share) and 0 < target.long_gap_share < 1
    wear: dict[str, Any] = {}  # the session wear's fit, where the impressions give one

    def errors_at(c: float, z: float, g: float) -> np.ndarray:
        nonlocal best
        key = (round(c, 6), round(z, 6), round(g, 6))
        if key not in evaluated:
            params = replace(_calibration(temperature, np.array([c, z, g]), patience), **wear)
            stats = run(params.apply(base), settings.seed)
            errs = np.array([_logit(stats.consumption_rate) - _logit(target.consumption_rate),
                             math.log(max(stats.events_per_session, 1e-6) / target.events_per_session),
                             (_logit(stats.long_gap_share) - _logit(target.long_gap_share)
                              if gaps_known and math.isfinite(stats.long_gap_share) else 0.0)])
            error = float(np.abs(errs).sum())
            rounds.append({**_params(params), "error": error, **asdict(stats)})
            if best is None or error < best[0]:
                best = (error, params)
            evaluated[key] = errs
        return evaluated[key]

    c, z, g = base.choice.no_choice_logit, base.leave.end_logit_offset, base.leave.idle_hazard
    z_bounds = (OFFSET_FLOOR + math.log(MIN_DRAIN_SCALE), OFFSET_BOUNDS[1]) if patience else OFFSET_BOUNDS
    phases: tuple[tuple[str, float], ...] = (
        (("c", 0.2), ("z", 0.3), ("g", 0.15), ("c", 0.1), ("z", 0.15), ("g", 0.1)) if gaps_known
        else (("c", 0.25), ("z", 0.4), ("c", 0.15), ("z", 0.2)))
    # A choice learned from impressions already fixes how often slates are taken (what the no-choice
    # logit would be fitted to): only the leave parameters are left to fit.
    learned = learned_choice_of(model, base.choice) is not None
    leave_fit: LeaveFit | None = None
    leave_source = "simulated sessions matched to the logged ones"
    likelihood = not patience and base.leave.end_hazard == "per_step"
    items = (wear_item_vectors(model.item_embeddings().detach().float().cpu())
             if settings.session_wear and settings.item_wear else None)
    assert base.leave.hazard_scale is not None  # resolved from the data
    if learned:
        phases = tuple((which, share) for which, share in phases if which != "c")
        if dataset.impressions is not None and likelihood:
            # The impressions show every step and where sessions ended: the leave hazard is fitted on
            # them by maximum likelihood, and the simulated sessions only report how well it does.
            leave_fit = fit_leave(impression_steps(model, dataset), base.leave.hazard_scale, OFFSET_BOUNDS,
                                  IDLE_BOUNDS, wear=settings.session_wear, item_vectors=items)
            leave_source = "impression steps (maximum likelihood)"
            phases = ()
    elif settings.session_wear and likelihood and reads_gaps:
        # The steps rebuilt from the time gaps, with the slates passed over after a session's last
        # consumption summed over: the session wear by maximum likelihood; the simulation fits c alone.
        steps = consumption_steps(model, dataset, step_seconds, target.consumption_rate, settings.leave_users)
        leave_fit = fit_leave(steps, base.leave.hazard_scale, OFFSET_BOUNDS, IDLE_BOUNDS, wear=True,
                              item_vectors=items)
        leave_source = "consumption steps rebuilt from the time gaps (maximum likelihood)"
        phases = tuple((which, share) for which, share in phases if which == "c")
    if leave_fit is not None:
        z, g = leave_fit.end_logit_offset, leave_fit.idle_hazard
        if leave_fit.wear_weights:
            wear = {"end_logit_scale": leave_fit.end_logit_scale, "wear_weights": leave_fit.wear_weights,
                    "wear_decay": leave_fit.wear_decay, "wear_bounds": leave_fit.wear_bounds,
                    "wear_item_weights": leave_fit.wear_item_weights, "base_hazard": leave_fit.base_hazard}
        if not phases:
            errors_at(c, z, g)
            bar.update(settings.rounds - 1)
    for which, share in phases:
        iterations = max(2, round(share * settings.rounds))
        if which == "c":
            c = _solve_decreasing(_along(errors_at, (c, z, g), 0), c, NO_CHOICE_BOUNDS, iterations)
        elif which == "z":
            z = _solve_decreasing(_along(errors_at, (c, z, g), 1), z, z_bounds, iterations)
        else:
            g = _solve_decreasing(_along(errors_at, (c, z, g), 2), g, IDLE_BOUNDS, iterations)
    assert best is not None
    params = best[1]
    bounds = leave_fit.at_bound if leave_fit is not None else at_bound(params, patience, gaps_known)
    after = run(params.apply(base), settings.seed + 1000)
    bar.close()
    gap_reading = compare_readings(dataset, step_seconds, target.consumption_rate) if reads_gaps else None
    report = {
        "dataset": dataset.meta.name,
        "behaviors": list(dataset.meta.behaviors),
        "logging_policy": settings.logging_policy,
        "step_seconds": step_seconds,
        "settings": asdict(settings),
        "logged": asdict(target),
        "gap_reading": gap_reading,
        "before": {**_params(Calibration(base.choice.temperature, base.choice.no_choice_logit,
                                         base.leave.end_logit_offset, base.leave.drain_scale,
                                         idle_hazard=base.leave.idle_hazard)),
                   **asdict(before)},
        "after": {**_params(params), **asdict(after)},
        "temperature_nll": {"at_1": nll_before, "fitted": nll_after},
        "patience": patience,
        "hazard_scale": base.leave.hazard_scale,
        "repeat": base.choice.repeat,
        "repeat_window": base.choice.repeat_window,
        "choice": "learned from impressions (temperature and no-choice logit unused)" if learned
        else "calibrated multinomial logit",
        "leave": {"source": leave_source, **(leave_fit.to_json() if leave_fit is not None else {})},
        "at_bound": bounds,
        "rounds": rounds,
    }
    return replace(params, dataset_fingerprint=dataset.fingerprint, report=report)


def format_report(calibration: Calibration) -> str:
    """A small Markdown table: logged vs simulated before and after calibration."""
    r = calibration.report
    logged, before, after = r["logged"], r["before"], r["after"]
    rows = [
        ("events per session", "events_per_session", "{:.2f}"),
        ("consumption rate (events/step)", "consumption_rate", "{:.3f}"),
        ("steps per session (first to last event)", "steps_per_session", "{:.2f}"),
    ]
    lines = [
        f"Dataset `{r['dataset']}`, logging policy `{r['logging_policy']}`, step = {r['step_seconds']:.0f} s",
        "",
        "| statistic | logged | simulated before | simulated after |",
        "|---|---:|---:|---:|",
    ]
    for label, key, fmt in rows:
        lines.append(f"| {label} | {fmt.format(logged[key])} | {fmt.format(before[key])} | "
                     f"{fmt.format(after[key])} |")
    lines += [
        f"| users leaving with no consumption | - | {before['empty_sessions']:.3f} | "
        f"{after['empty_sessions']:.3f} |",
        f"| sessions truncated | - | {before['truncated']:.3f} | {after['truncated']:.3f} |",
        "",
        f"Fitted: temperature {after['temperature']:.3f} (next-item NLL "
        f"{r['temperature_nll']['at_1']:.3f} -> {r['temperature_nll']['fitted']:.3f}), "
        f"no-choice logit {after['no_choice_logit']:.3f}, "
        f"end-logit offset {after['end_logit_offset']:.3f}, drain scale {after['drain_scale']:.3f} (before: "
        f"{before['temperature']:g}, {before['no_choice_logit']:g}, {before['end_logit_offset']:g}, "
        f"{before['drain_scale']:g}).",
    ]
    if r.get("gap_reading"):
        lines.append(describe_gap_reading(r["gap_reading"], r.get("behaviors", ())))
    leave = r.get("leave", {})
    if "steps" in leave:
        lines.append(f"{describe_leave(leave)} (maximum likelihood).")
    for name, why in r.get("at_bound", {}).items():
        lines.append(f"Not identified: {name} {why}.")
    return "\n".join(lines) + "\n"


def _along(errors_at: Callable[[float, float, float], np.ndarray], point: tuple[float, float, float],
           axis: int) -> Callable[[float], float]:
    """The error of parameter ``axis`` as a function of that parameter, the others fixed at ``point``."""
    def error(x: float) -> float:
        args = list(point)
        args[axis] = x
        return float(errors_at(args[0], args[1], args[2])[axis])

    return error


def _solve_decreasing(f: Callable[[float], float], x: float, bounds: tuple[float, float],
                      iterations: int) -> float:
    """The ``x`` in ``bounds`` with the smallest ``|f(x)|`` found in ``iterations`` evaluations of a
    decreasing ``f``: secant steps (slope -1 until measured, at most 2) until the root is
    bracketed, then Illinois regula falsi inside the bracket."""
    lo, hi = bounds
    x = float(np.clip(x, lo, hi))
    fx = f(x)
    points = [(x, fx)]
    above = (x, fx) if fx > 0 else None  # f > 0: x is too small
    below = (x, fx) if fx <= 0 else None
    last_side = ""
    for _ in range(iterations - 1):
        if above is not None and below is not None:
            (xa, fa), (xb, fb) = above, below
            x_new = xa - fa * (xb - xa) / (fb - fa) if fb != fa else (xa + xb) / 2
        else:
            slope = -1.0
            if len(points) > 1:
                (x1, f1), (x2, f2) = points[-2], points[-1]
                measured = (f2 - f1) / (x2 - x1) if x2 != x1 else 0.0
                slope = measured if measured < 0 else -1.0
            x_new = x + float(np.clip(-fx / slope, -2.0, 2.0))
        x_new = float(np.clip(x_new, lo, hi))
        if x_new == x:
            break
        x, fx = x_new, f(x_new)
        points.append((x, fx))
        if fx > 0:
            if last_side == "above" and below is not None:
                below = (below[0], below[1] / 2)  # Illinois: keep regula falsi from stalling
            above, last_side = (x, fx), "above"
        else:
            if last_side == "below" and above is not None:
                above = (above[0], above[1] / 2)
            below, last_side = (x, fx), "below"
    return min(points, key=lambda p: abs(p[1]))[0]


def _calibration(temperature: float, x: np.ndarray, patience: bool) -> Calibration:
    """Parameters from the search vector ``(no-choice logit, z, idle hazard)`` (see :func:`calibrate`):
    ``z`` is the end-logit offset, continued below :data:`OFFSET_FLOOR` into the drain scale when
    patience is on."""
    no_choice, z, idle = float(x[0]), float(x[1]), float(x[2])
    if z >= OFFSET_FLOOR or not patience:
        return Calibration(temperature, no_choice, z, 1.0, idle_hazard=idle)
    return Calibration(temperature, no_choice, OFFSET_FLOOR, math.exp(z - OFFSET_FLOOR), idle_hazard=idle)


def at_bound(params: Calibration, patience: bool, gaps_fitted: bool = True) -> dict[str, str]:
    """The fitted parameters that ended at a bound of their search, with what that means
    (``gaps_fitted``: the idle hazard was fitted, the logs having timestamps)."""
    out: dict[str, str] = {}
    tol = 1e-3
    if min(abs(params.no_choice_logit - b) for b in NO_CHOICE_BOUNDS) < tol:
        out["no_choice_logit"] = (f"at its bound {params.no_choice_logit:g}: no no-choice utility gives "
                                  "the logged consumption rate under the logging policy")
    low, high = OFFSET_BOUNDS
    if patience and params.drain_scale <= MIN_DRAIN_SCALE + tol:
        out["drain_scale"] = (f"at its bound {params.drain_scale:g}: even without patience the learned end "
                              "ends sessions sooner than the logs")
    elif not patience and abs(params.end_logit_offset - low) < tol:
        out["end_logit_offset"] = (f"at its bound {low:g}: the learned end head cannot make sessions as "
                                   "long as the logged ones under the logging policy (the leave mechanism "
                                   "is mis-specified for these logs)")
    if params.idle_hazard >= IDLE_BOUNDS[1] - tol:
        out["idle_hazard"] = (f"at its bound {params.idle_hazard:g}: even leaving after every idle step "
                              "leaves more long gaps than the logs show")
    elif gaps_fitted and params.idle_hazard <= IDLE_BOUNDS[0] + tol:
        out["idle_hazard"] = ("at its bound 0: without it the simulated sessions already hold fewer long "
                              "idle gaps than the logs, so the logs show no extra wear-out by idle steps")
    if abs(params.end_logit_offset - high) < tol:
        out["end_logit_offset"] = (f"at its bound {high:g}: the learned end head cannot make sessions as "
                                   "short as the logged ones")
    return out


def _params(calibration: Calibration) -> dict[str, Any]:
    return {"temperature": calibration.temperature, "no_choice_logit": calibration.no_choice_logit,
            "end_logit_offset": calibration.end_logit_offset, "drain_scale": calibration.drain_scale,
            "idle_hazard": calibration.idle_hazard, "end_logit_scale": calibration.end_logit_scale,
            "wear_weights": list(calibration.wear_weights), "wear_decay": calibration.wear_decay}


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))
