"""The leave hazard fitted on impression steps: the steps read off a table by hand, the fit recovering the
parameters that made the sessions, and the calibration using it when the data has impressions."""

from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import polars as pl
import pytest
import torch

from recsim_env.config import Calibration, LeaveConfig, SimConfig
from recsim_env.core import wear_item_vectors
from recsim_env.offline.calibrate import (
    IDLE_BOUNDS,
    OFFSET_BOUNDS,
    CalibrationSettings,
    calibrate,
    format_report,
)
from recsim_env.offline.leave_impressions import (
    TAIL_STEPS,
    ImpressionSteps,
    consumption_steps,
    describe,
    fit_leave,
    impression_steps,
    leave_probability,
    session_wear,
    unlogged_tail,
)
from tests._user_model_data import cyclic_dataset
from user_models.choice_model import LearnedChoice, end_probs_after
from user_models.data.artifact import IMPRESSIONS_SCHEMA, SequenceDataset
from user_models.errors import InputError
from user_models.transformer import TransformerConfig, UserTransformer


def simulated_steps(offset: float, idle_hazard: float, scale: float, n_sessions: int,
                    seed: int) -> ImpressionSteps:
    """Sessions stepped with the simulator's leave rule (written out here): a click with probability 0.5
    per step, the end probability uniform in [0.02, 0.4]."""
    rng = np.random.default_rng(seed)
    end_prob, idle, left, clicked = [], [], [], []
    for _ in range(n_sessions):
        run = 0
        while True:
            e = rng.uniform(0.02, 0.4)
            click = rng.random() < 0.5
            run = 0 if click else run + 1
            learned = scale / (1 + np.exp(-(np.log(e / (1 - e)) + offset)))
            gone = rng.random() < 1 - (1 - learned) * np.exp(-idle_hazard * run)
            end_prob.append(e), idle.append(float(run)), left.append(gone), clicked.append(click)
            if gone:
                break
    return ImpressionSteps(np.array(end_prob), np.array(idle), np.array(left), np.array(clicked), n_sessions)


def test_leave_probability_by_hand() -> None:
    steps = ImpressionSteps(np.array([0.2, 0.5]), np.array([0.0, 2.0]), np.array([False, True]),
                            np.array([True, False]), 1)
    p = leave_probability(steps, 0.5, torch.tensor(1.0), torch.tensor(0.3))
    learned = 0.5 / (1 + np.exp(-(np.log(0.2 / 0.8) + 1.0)))
    both = 1 - (1 - 0.5 / (1 + np.exp(-1.0))) * np.exp(-0.6)
    torch.testing.assert_close(p, torch.tensor([learned, both], dtype=torch.float64))


def test_the_fit_recovers_the_offset_and_idle_hazard_that_ended_the_sessions() -> None:
    steps = simulated_steps(offset=0.8, idle_hazard=0.35, scale=0.6, n_sessions=6000, seed=0)
    fit = fit_leave(steps, 0.6, OFFSET_BOUNDS, IDLE_BOUNDS)
    assert fit.end_logit_offset == pytest.approx(0.8, abs=0.15)
    assert fit.idle_hazard == pytest.approx(0.35, abs=0.06)
    assert fit.nll < fit.nll_at_zero and not fit.at_bound
    assert fit.expected_leaves == pytest.approx(fit.sessions, rel=0.05)
    # No wear-out in the data: the idle hazard lands at 0 and the report says it is not identified.
    flat = fit_leave(simulated_steps(0.0, 0.0, 0.6, 3000, seed=1), 0.6, OFFSET_BOUNDS, IDLE_BOUNDS)
    assert flat.idle_hazard < 0.02
    if flat.idle_hazard <= IDLE_BOUNDS[0] + 1e-3:
        assert "no more leaving after unclicked slates" in flat.at_bound["idle_hazard"]
    with pytest.raises(InputError, match="hazard_scale"):
        fit_leave(steps, 0.0, OFFSET_BOUNDS, IDLE_BOUNDS)


def worn_steps(offset: float, scale: float, decay: float, weights: tuple[float, ...], hazard_scale: float,
               n_sessions: int, seed: int, item_wear: np.ndarray | None = None,
               base: float = 0.0, consume_rate: float | None = None) -> ImpressionSteps:
    """Sessions stepped with the session-wear leave rule (written out here): responses none / 1 / 2
    with probabilities 0.4 / 0.3 / 0.3, the end probability uniform in [0.02, 0.4]; user = session.
    With ``item_wear`` (``[n_items + 1]``) a response consumes a uniformly drawn item, which adds its
    entry to the wear. ``base``: the base hazard, a leave probability each step that nothing moves.
    ``consume_rate``: instead, each session opens with a consumption and later steps are one with this
    probability (responses 1 and 2 alike): sessions as consumption logs see them."""
    rng = np.random.default_rng(seed)
    cols: dict[str, list] = {k: [] for k in ("e", "idle", "left", "clicked", "response", "step", "user",
                                             "item")}
    for session in range(n_sessions):
        wear, run, t = 0.0, 0, 0
        while True:
            e = rng.uniform(0.02, 0.4)
            if consume_rate is None:
                b = int(rng.choice(3, p=[0.4, 0.3, 0.3]))
            else:
                b = int(rng.integers(1, 3)) if t == 0 or rng.random() < consume_rate else 0
            item = int(rng.integers(1, len(item_wear))) if item_wear is not None and b else 0
            run = 0 if b else run + 1
            wear = decay * wear + weights[b] + (item_wear[item] if item else 0.0)
            h = hazard_scale / (1 + np.exp(-(scale * np.log(e / (1 - e)) + offset + wear)))
            gone = rng.random() < 1 - (1 - base) * (1 - h) or t == 199
            for key, value in zip(cols, (e, float(run), gone, b > 0, b, t, session, item), strict=True):
                cols[key].append(value)
            t += 1
            if gone:
                break
    return ImpressionSteps(np.array(cols["e"]), np.array(cols["idle"]), np.array(cols["left"]),
                           np.array(cols["clicked"]), n_sessions, {}, np.array(cols["response"]),
                           np.array(cols["step"]), np.array(cols["user"]), 0, np.array(cols["item"]))


def test_session_wear_and_its_hazard_by_hand() -> None:
    # two sessions: responses (0, 2, 1) then (1,)
    steps = ImpressionSteps(np.array([0.2, 0.3, 0.4, 0.5]), np.zeros(4), np.array([False, False, True, True]),
                            np.array([False, True, True, True]), 2, {}, np.array([0, 2, 1, 1]),
                            np.array([0, 1, 2, 0]), np.array([0, 0, 0, 1]))
    weights = torch.tensor([0.5, -0.2, -1.0], dtype=torch.float64)
    wear = session_wear(steps, weights, torch.tensor(0.5, dtype=torch.float64))
    torch.testing.assert_close(wear, torch.tensor([0.5, 0.25 - 1.0, -0.375 - 0.2, -0.2], dtype=torch.float64))
    p = leave_probability(steps, 0.5, torch.tensor(0.3), torch.tensor(0.0), 0.7, wear)
    e = np.array([0.2, 0.3, 0.4, 0.5])
    expected = 0.5 / (1 + np.exp(-(0.7 * np.log(e / (1 - e)) + 0.3 + wear.numpy())))
    np.testing.assert_allclose(p.numpy(), expected)
    with_base = leave_probability(steps, 0.5, torch.tensor(0.3), torch.tensor(0.0), 0.7, wear, 0.1)
    np.testing.assert_allclose(with_base.numpy(), 1 - 0.9 * (1 - expected))
    # sessions longer than one block of the matrix products: the same recursion, written out
    long = worn_steps(0.0, 1.0, 0.9, (0.05, 0.0, -0.02), 0.02, 40, seed=3)
    assert long.step.max() > 64
    weights = torch.tensor([0.3, -0.1, -0.7], dtype=torch.float64)
    expected, w = [], 0.0
    for b, t in zip(long.response, long.step, strict=True):
        w = (0.0 if t == 0 else 0.8 * w) + float(weights[b])
        expected.append(w)
    torch.testing.assert_close(session_wear(long, weights, torch.tensor(0.8, dtype=torch.float64)),
                               torch.tensor(expected, dtype=torch.float64))
    with pytest.raises(InputError, match="no responses"):
        bare = ImpressionSteps(e, np.zeros(4), steps.left, steps.clicked, 2)
        session_wear(bare, weights, torch.tensor(0.5))


def test_the_fit_recovers_the_session_wear_that_ended_the_sessions() -> None:
    truth = {"offset": 0.3, "scale": 0.7, "decay": 0.6, "weights": (0.4, 0.1, -0.5)}
    steps = worn_steps(**truth, hazard_scale=0.6, n_sessions=5000, seed=0)
    fit = fit_leave(steps, 0.6, OFFSET_BOUNDS, IDLE_BOUNDS, wear=True)
    assert fit.end_logit_scale == pytest.approx(truth["scale"], abs=0.15)
    assert fit.wear_decay == pytest.approx(truth["decay"], abs=0.15)
    # the offset and the weights trade against each other only through the sessions' lengths: compare
    # the per-response contrasts and the leave rate they make
    contrasts = np.diff(fit.wear_weights)
    np.testing.assert_allclose(contrasts, np.diff(truth["weights"]), atol=0.2)
    assert fit.idle_hazard == 0.0 and not fit.at_bound
    assert fit.expected_leaves == pytest.approx(fit.sessions, rel=0.05)
    low, high = fit.wear_bounds
    assert low < 0 < high
    # the held-out users are better predicted with the wear than without it
    assert fit.heldout["steps_heldout"] > 0 and fit.heldout["with_wear"] < fit.heldout["without_wear"]
    assert "session wear per response" in describe(fit.to_json())
    # sessions without any wear: the weights stay near 0 and the held-out gain vanishes
    flat = fit_leave(worn_steps(0.3, 1.0, 0.5, (0.0, 0.0, 0.0), 0.6, 3000, seed=1), 0.6, OFFSET_BOUNDS,
                     IDLE_BOUNDS, wear=True)
    assert np.abs(flat.wear_weights).max() < 0.35
    assert flat.heldout["with_wear"] > flat.heldout["without_wear"] - 2e-3


def test_the_fit_recovers_a_base_hazard_the_wear_cannot_lower() -> None:
    # engaged users (deep responses lower the wear) still leave 3% of steps whatever the wear says:
    # a logistic hazard alone would put their leaving near 0 at the wear's low end
    truth = {"offset": -1.0, "scale": 0.5, "decay": 0.8, "weights": (0.6, -0.4, -0.9)}
    steps = worn_steps(**truth, hazard_scale=0.6, n_sessions=4000, seed=3, base=0.03)
    fit = fit_leave(steps, 0.6, OFFSET_BOUNDS, IDLE_BOUNDS, wear=True)
    assert fit.base_hazard == pytest.approx(0.03, abs=0.01)
    assert "base_hazard" not in fit.at_bound and "base hazard 0.0" in describe(fit.to_json())
    # where the wear is lowest the fitted hazard matches the logged leave rate
    wear = session_wear(steps, torch.tensor(fit.wear_weights), torch.tensor(fit.wear_decay))
    p = leave_probability(steps, 0.6, torch.tensor(fit.end_logit_offset), torch.tensor(0.0),
                          fit.end_logit_scale, wear, fit.base_hazard).numpy()
    lowest = wear.numpy() <= np.quantile(wear.numpy(), 0.1)
    assert p[lowest].mean() == pytest.approx(steps.left[lowest].mean(), rel=0.2)
    # without a base hazard in the sessions the fit puts (almost) none, and says it is no bound reached
    none = fit_leave(worn_steps(**truth, hazard_scale=0.6, n_sessions=4000, seed=4), 0.6, OFFSET_BOUNDS,
                     IDLE_BOUNDS, wear=True)
    assert none.base_hazard < 0.006 and "base_hazard" not in none.at_bound


def test_the_fit_recovers_what_the_consumed_items_add_to_the_wear() -> None:
    # 40 items; a tenth are "bait" whose consumption raises the leave odds 3-fold, the rest spread a
    # little around 0; the item vectors hold the bait flag in one of 4 dimensions, noise in the others
    rng = np.random.default_rng(5)
    bait = rng.random(41) < 0.1
    bait[0] = False
    truth = np.where(bait, 1.1, rng.normal(0.0, 0.15, 41))
    truth[0] = 0.0
    raw = torch.as_tensor(np.c_[bait.astype(float) + rng.normal(0, 0.05, 41), rng.normal(0, 1, (41, 3))])
    vectors = wear_item_vectors(raw)
    assert vectors[0].abs().sum() == 0 and vectors[1:].mean(0).abs().max() < 1e-6
    steps = worn_steps(0.3, 0.7, 0.6, (0.4, 0.1, -0.5), 0.6, 6000, seed=2, item_wear=truth)
    fit = fit_leave(steps, 0.6, OFFSET_BOUNDS, IDLE_BOUNDS, wear=True, item_vectors=vectors)
    fitted = (vectors.double() @ torch.tensor(fit.wear_item_weights, dtype=torch.float64)).numpy()
    # what the bait adds over an ordinary item, and where the spread is: bait items' wear is up
    gap = fitted[1:][bait[1:]].mean() - fitted[1:][~bait[1:]].mean()
    assert gap == pytest.approx(1.1, abs=0.3)
    assert np.corrcoef(fitted[1:], truth[1:])[0, 1] > 0.8
    assert fit.item_wear_spread > 0.2
    # held out: the item part predicts better than the wear by response alone, which beats no wear
    held = fit.heldout
    assert held["with_wear"] < held["response_wear"] < held["without_wear"]
    assert "consumed item's part" in describe(fit.to_json())
    # no item effect in the data: the item part scores worse on the held-out users, so it is left out
    plain = fit_leave(worn_steps(0.3, 0.7, 0.6, (0.4, 0.1, -0.5), 0.6, 3000, seed=3,
                                 item_wear=np.zeros(41)), 0.6, OFFSET_BOUNDS, IDLE_BOUNDS, wear=True,
                      item_vectors=vectors)
    assert plain.heldout["response_wear"] < plain.heldout["with_wear"]
    assert plain.wear_item_weights == () and plain.item_wear_spread == 0.0
    assert len(plain.wear_weights) == 3 and "item's part is left out" in describe(plain.to_json())
    with pytest.raises(InputError, match="no clicked items"):
        session_wear(replace(steps, item=None), torch.zeros(3), torch.tensor(0.5), torch.zeros(41))


def consumption_logged(steps: ImpressionSteps, rate: float) -> ImpressionSteps:
    """What consumption logs show of ``steps`` (sessions that open with a consumption, as
    ``worn_steps(..., consume_rate=rate)`` makes them): each session up to
    its last consumption, which becomes its last step; the slates passed over after it leave no trace."""
    keep = np.zeros(len(steps.left), dtype=bool)
    session = np.cumsum(steps.step == 0) - 1
    for s in np.unique(session):
        rows = np.flatnonzero(session == s)
        last = rows[steps.clicked[rows]].max()
        keep[rows[0]:last + 1] = True
    left = np.zeros(len(steps.left), dtype=bool)
    left[np.flatnonzero(keep)[np.r_[np.diff(session[keep]) != 0, True]]] = True
    return replace(steps, left=left, unlogged_pass=1.0 - rate).subset(keep)


def test_the_unlogged_tail_by_hand() -> None:
    # one session, last logged step with wear 0.4: the user leaves there, or after 1, 2, ... unlogged
    # unanswered slates, each passed over with probability 0.3 and moving the wear by 0.5 * w + 1
    steps = ImpressionSteps(np.array([0.2, 0.3]), np.zeros(2), np.array([False, True]), np.ones(2, bool), 1,
                            unlogged_pass=0.3)
    wear = torch.tensor([0.1, 0.4], dtype=torch.float64)
    tail = unlogged_tail(steps, 0.5, torch.tensor(0.2), torch.tensor(0.0), 0.7, wear, 0.05, 1.0, 0.5)
    logit, w, expected, reach = np.log(0.3 / 0.7), 0.4, 0.0, 1.0
    for _ in range(TAIL_STEPS):
        h = 1 - 0.95 * (1 - 0.5 / (1 + np.exp(-(0.7 * logit + 0.2 + w))))
        expected, reach, w = expected + reach * h, reach * (1 - h) * 0.3, 0.5 * w + 1.0
    assert tail.shape == (1,) and float(tail[0]) == pytest.approx(expected + reach)
    assert expected > float(leave_probability(steps, 0.5, torch.tensor(0.2), torch.tensor(0.0), 0.7, wear,
                                              0.05)[1])  # leaving later adds to leaving now
    # every slate logged: the last step's own leave probability
    logged = replace(steps, unlogged_pass=0.0)
    offset, idle = torch.tensor(0.2), torch.tensor(0.0)
    torch.testing.assert_close(unlogged_tail(logged, 0.5, offset, idle, 0.7, wear, 0.05),
                               leave_probability(logged, 0.5, offset, idle, 0.7, wear, 0.05)[1:])


def test_the_fit_on_consumption_logs_recovers_the_wear_of_the_slates_they_do_not_show() -> None:
    truth = (0.6, 0.0, -0.6)  # a passed-over slate wears the user out, a deep response holds them
    full = worn_steps(0.3, 0.7, 0.8, truth, 0.6, n_sessions=4000, seed=0, consume_rate=0.5)
    logged = consumption_logged(full, rate=0.5)
    assert len(logged.left) < len(full.left) and logged.n_sessions == full.n_sessions
    fit = fit_leave(logged, 0.6, OFFSET_BOUNDS, IDLE_BOUNDS, wear=True)
    np.testing.assert_allclose(np.diff(fit.wear_weights), np.diff(truth), atol=0.25)
    assert fit.wear_decay == pytest.approx(0.8, abs=0.15)
    assert fit.expected_leaves == pytest.approx(fit.sessions, rel=0.05)
    # Reading the last consumption as the leave itself (as impression logs would) gets the passed-over
    # slates backwards: they never end a session in what the logs show.
    naive = fit_leave(replace(logged, unlogged_pass=0.0), 0.6, OFFSET_BOUNDS, IDLE_BOUNDS, wear=True)
    assert naive.wear_weights[0] - naive.wear_weights[1] < fit.wear_weights[0] - fit.wear_weights[1] - 0.5


@pytest.fixture(scope="module")
def data() -> SequenceDataset:
    return cyclic_dataset(n_users=6, n_items=10, length=12)


@pytest.fixture(scope="module")
def model(data) -> UserTransformer:
    torch.manual_seed(0)
    return UserTransformer(TransformerConfig(dim=16, layers=1, heads=2, max_len=8, dropout=0.0),
                           data.n_items, data.behaviors).eval()


def with_impressions(data: SequenceDataset, rows: list[tuple]) -> SequenceDataset:
    """``data`` with an impression table of (user, impression, timestamp, session, slot, item, clicked)."""
    names = ["user", "impression", "timestamp", "session", "slot", "item", "clicked"]
    table = pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None).with_columns(
        behavior=pl.lit(None), propensity=pl.lit(None)).select(list(IMPRESSIONS_SCHEMA)).cast(
        pl.Schema(IMPRESSIONS_SCHEMA))
    return SequenceDataset(data.interactions, data.items, data.users, data.meta, table)


def test_steps_are_read_off_the_table(model, data) -> None:
    ts = data.sequences.timestamps
    t0 = int(ts[0])  # user 0's first consumption
    off1 = int(data.sequences.offsets[1])
    u1 = int(ts[off1 + 4])  # user 1's fifth consumption
    rows = [
        # user 0, session 0: no click, no click, click (at its first consumption's time), then gone
        (0, 10, t0 - 20, 0, 0, 3, 0), (0, 11, t0 - 10, 0, 0, 4, 0), (0, 12, t0, 0, 0, 1, 1),
        (0, 12, t0, 0, 1, 2, 0),
        # user 0, session 1: one unclicked slate
        (0, 13, t0 + 5, 1, 0, 5, 0),
        # user 1: unclicked, then no timestamp (dropped)
        (1, 20, u1, 0, 0, 6, 0), (1, 21, None, 0, 0, 7, 1),
    ]
    ds = with_impressions(data, rows)
    steps = impression_steps(model, ds)
    assert steps.dropped == {"no timestamp": 1} and steps.n_sessions == 3
    assert steps.idle.tolist() == [1, 2, 0, 1, 1]
    assert steps.left.tolist() == [False, False, True, True, True]
    assert steps.clicked.tolist() == [False, False, True, False, False]
    assert steps.response.tolist() == [0, 0, 1, 0, 0]  # a click with no behavior logged: the first
    assert steps.step.tolist() == [0, 1, 2, 0, 0] and steps.user.tolist() == [0, 0, 0, 0, 1]
    assert steps.item.tolist() == [0, 0, 1, 0, 0]  # the clicked slot's item
    # the state after the consumptions up to each step: 0, 0, 1 (its own click), 1; user 1: 4 earlier
    expected = end_probs_after(model, ds, np.array([0, 0, 0, 0, 1]), np.array([0, 0, 1, 1, 4]))
    np.testing.assert_allclose(steps.end_prob, expected)
    # Without a session column, sessions are cut by the dataset's session gap.
    no_session = with_impressions(data, [(u, i, t, None, s, it, c) for u, i, t, _, s, it, c in rows])
    assert impression_steps(model, no_session).n_sessions == 2  # the 5 s between 12 and 13 is no gap
    with pytest.raises(InputError, match="no impression table"):
        impression_steps(model, data)


@contextmanager
def attached(model, choice: LearnedChoice):
    model.learned_choice = choice
    try:
        yield
    finally:
        model.learned_choice = None


def test_calibration_fits_the_leave_on_the_impressions_when_it_can(model, data, tmp_path) -> None:
    ts = data.sequences.timestamps
    offsets = data.sequences.offsets
    rng = np.random.default_rng(0)
    rows, imp = [], 0
    for u in range(data.n_users):
        for k in range(1, 11):  # one slate just before each of the user's consumptions 1..10
            t = int(ts[offsets[u] + k]) - 1
            rows.append((u, imp, t, k // 4, 0, int(rng.integers(1, 11)), int(rng.random() < 0.5)))
            imp += 1
    ds = with_impressions(data, rows)
    choice = LearnedChoice(torch.tensor(1.0), torch.tensor(0.0), torch.zeros(data.n_items + 1),
                           torch.tensor([0.0, -0.5, -1.0]), torch.tensor(0.2))
    settings = CalibrationSettings(n_users=16, n_examples=16, rounds=4, target_consumption_rate=0.5)
    with attached(model, choice):
        cal = calibrate(model, ds, SimConfig(slate_size=3), settings, progress=False)
        assert cal.report["leave"]["source"].startswith("impression steps")
        assert cal.report["leave"]["steps"] == len(rows)
        assert len(cal.report["rounds"]) == 1  # simulated once, for the report; nothing searched
        steps = impression_steps(model, ds)
        scale = cal.report["hazard_scale"]
        vectors = wear_item_vectors(model.item_embeddings().detach().float())
        fit = fit_leave(steps, scale, OFFSET_BOUNDS, IDLE_BOUNDS, wear=True, item_vectors=vectors)
        assert cal.end_logit_offset == pytest.approx(fit.end_logit_offset)
        assert cal.wear_item_weights == pytest.approx(fit.wear_item_weights)
        # random clicks: the item part is kept only if it predicts the held-out users better
        kept = fit.heldout["with_wear"] <= fit.heldout["response_wear"]
        assert len(cal.wear_item_weights) == (model.item_embeddings().shape[1] if kept else 0)
        assert cal.idle_hazard == 0.0
        assert cal.wear_weights == pytest.approx(fit.wear_weights) and len(cal.wear_weights) == 3
        assert (cal.end_logit_scale, cal.wear_decay) == pytest.approx((fit.end_logit_scale, fit.wear_decay))
        assert cal.wear_bounds == pytest.approx(fit.wear_bounds)
        assert cal.apply(SimConfig()).leave.wear_weights == cal.wear_weights
        assert cal.apply(SimConfig()).leave.wear_item_weights == cal.wear_item_weights
        some = (0.1,) * model.item_embeddings().shape[1]
        assert replace(cal, wear_item_weights=some).apply(SimConfig()).leave.wear_item_weights == some
        assert cal.base_hazard == pytest.approx(fit.base_hazard)
        assert cal.apply(SimConfig()).leave.base_hazard == cal.base_hazard
        by_response = calibrate(model, ds, SimConfig(slate_size=3), replace(settings, item_wear=False),
                                progress=False)
        assert by_response.wear_item_weights == () and len(by_response.wear_weights) == 3
        back = Calibration.load(cal.save(tmp_path / "cal.json"))  # the report holds NaN: compare the rest
        assert replace(back, report={}) == replace(cal, report={})
        assert "session wear per response" in format_report(cal)
        # without the wear: the offset and the idle hazard alone, as before
        unworn = calibrate(model, ds, SimConfig(slate_size=3), replace(settings, session_wear=False),
                           progress=False)
        fit = fit_leave(steps, scale, OFFSET_BOUNDS, IDLE_BOUNDS)
        assert unworn.end_logit_offset == pytest.approx(fit.end_logit_offset)
        assert unworn.idle_hazard == pytest.approx(fit.idle_hazard) and unworn.wear_weights == ()
        # Patience on: the likelihood does not hold it, so the simulated search runs as before.
        patience = SimConfig(slate_size=3, leave=LeaveConfig(no_choice_drain=0.1))
        patient = calibrate(model, ds, patience, settings, progress=False)
        assert patient.report["leave"]["source"].startswith("simulated")
    # Without a learned choice the impressions are not used for the leave either.
    plain = calibrate(model, ds, SimConfig(slate_size=3), settings, progress=False)
    assert plain.report["leave"]["source"].startswith("simulated")


def test_steps_are_rebuilt_from_the_consumption_gaps(model, data) -> None:
    # user 0's third and fourth events come 180 s after the second (60 s steps): two slates passed over
    shifted = data.interactions.with_columns(
        pl.when((pl.col("user") == 0) & pl.col("position").is_in([2, 3])).then(pl.col("timestamp") + 120)
        .otherwise(pl.col("timestamp")).alias("timestamp"))
    ds = SequenceDataset.from_frames(shifted, data.items, data.users, data.meta)
    steps = consumption_steps(model, ds, 60.0, 0.8)
    # every user: sessions 0 and 1 (events 0-3, 4-7); session 2 holds the validation and test events
    assert steps.n_sessions == 2 * data.n_users
    assert steps.dropped == {"sessions holding validation or test events": data.n_users,
                             "events of users not sampled": 0}
    assert steps.unlogged_pass == pytest.approx(0.2)
    first = slice(0, 10)  # user 0: 6 steps, then 4
    assert steps.idle[first].tolist() == [0, 0, 1, 2, 0, 0, 0, 0, 0, 0]
    assert steps.clicked[first].tolist() == [True, True, False, False] + [True] * 6
    assert steps.left[first].tolist() == [False] * 5 + [True] + [False] * 3 + [True]
    assert steps.step[first].tolist() == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3]
    behaviors = data.sequences.behaviors[:8]
    assert steps.response[first].tolist() == [*behaviors[:2], 0, 0, *behaviors[2:8]]
    assert steps.item[first].tolist() == [*data.sequences.items[:2], 0, 0, *data.sequences.items[2:8]]
    counts = np.array([1, 2, 2, 2, 3, 4, 5, 6, 7, 8])  # consumptions up to each step, its own included
    np.testing.assert_allclose(steps.end_prob[first],
                               end_probs_after(model, ds, np.zeros(10, np.int64), counts))
    assert len(steps.left) == 8 * data.n_users + 2
    # at most 4 of the 6 users: every second one
    sampled = consumption_steps(model, ds, 60.0, 0.8, max_users=4)
    assert np.unique(sampled.user).tolist() == [0, 2, 4]
    assert sampled.dropped["events of users not sampled"] == 3 * 12
    np.testing.assert_array_equal(sampled.idle[:10], steps.idle[:10])
    with pytest.raises(InputError, match="consumption rate"):
        consumption_steps(model, ds, 60.0, 0.0)
    with pytest.raises(InputError, match="positive step length"):
        consumption_steps(model, ds, -1.0, 0.5)
