"""The choice learned from impressions: hand-computed probabilities, the fit, the features, the files, and
the env using it (and only when it should)."""

import json
import math
from contextlib import contextmanager

import numpy as np
import polars as pl
import pytest
import torch

from recsim_env.config import ChoiceConfig, EnvConfig, SimConfig
from recsim_env.core import SimulationCore
from recsim_env.factory import build_core, build_env_core
from tests._user_model_data import cyclic_dataset
from user_models.checkpoint import (
    CHOICE_CONFIG,
    WEIGHTS,
    load_learned_choice,
    load_user_model,
    save_learned_choice,
    save_tensors,
    save_user_model,
)
from user_models.choice_model import (
    ImpressionFeatures,
    LearnedChoice,
    fit_learned_choice,
    impression_features,
    impression_nll,
)
from user_models.data.artifact import IMPRESSIONS_SCHEMA
from user_models.errors import CheckpointError, DatasetError, InputError
from user_models.transformer import TransformerConfig, UserTransformer


def choice_of(n_items: int, position: list[float], no_choice: float, pref: float = 1.0, repeat: float = 0.0,
              item_bias: list[float] | None = None, form: str = "mnl") -> LearnedChoice:
    bias = torch.zeros(n_items + 1) if item_bias is None else torch.tensor([0.0, *item_bias])
    return LearnedChoice(torch.tensor(pref), torch.tensor(repeat), bias, torch.tensor(position),
                         torch.tensor(no_choice), form)


def test_probabilities_by_hand() -> None:
    c = choice_of(3, [0.0, -1.0], no_choice=0.5, pref=2.0, repeat=-3.0, item_bias=[0.1, 0.2, 0.3])
    lift = torch.tensor([[0.2, -0.4, 1.0]])
    items = torch.tensor([[1, 3, 2]])
    repeated = torch.tensor([[False, True, False]])
    u = c.item_utilities(lift, repeated, items)
    torch.testing.assert_close(u, torch.tensor([[2 * 0.2 + 0.1, 2 * -0.4 - 3.0 + 0.3, 2 * 1.0 + 0.2]]))
    shown = torch.tensor([[True, True, False]])  # slot 2 empty; slots past n_slots reuse the last bias
    p = c.probabilities(u, shown)
    e = [math.exp(0.5), math.exp(-3.5 - 1.0), 0.0, math.exp(0.5)]
    torch.testing.assert_close(p, torch.tensor([[x / sum(e) for x in e]]))
    shown_all = torch.ones(1, 3, dtype=torch.bool)
    third = c.probabilities(u, shown_all)[0, 2]
    e3 = [math.exp(0.5), math.exp(-4.5), math.exp(2.2 - 1.0), math.exp(0.5)]
    assert float(third) == pytest.approx(e3[2] / sum(e3), rel=1e-5)


def test_cascade_probabilities_by_hand() -> None:
    c = choice_of(3, [0.0, -1.0], no_choice=0.5, pref=2.0, form="cascade")
    u = torch.tensor([[1.0, 0.5, 3.0, 2.0]])  # slot 2 empty: the scan passes it by
    shown = torch.tensor([[True, True, False, True]])
    p = c.probabilities(u, shown)
    a = [1 / (1 + math.exp(-(x - 0.5))) for x in (1.0, 0.5 - 1.0, None, 2.0 - 1.0) if x is not None]
    expected = [a[0], (1 - a[0]) * a[1], 0.0, (1 - a[0]) * (1 - a[1]) * a[2],
                (1 - a[0]) * (1 - a[1]) * (1 - a[2])]
    torch.testing.assert_close(p, torch.tensor([expected]))
    # unlike the logit, a slot's chance does not depend on what is shown below it
    longer = c.probabilities(torch.tensor([[1.0, 0.5, 3.0, 2.0, 4.0]]), torch.ones(1, 5, dtype=torch.bool))
    logit = choice_of(3, [0.0, -1.0], no_choice=0.5, pref=2.0).probabilities(
        torch.tensor([[1.0, 0.5, 3.0, 2.0, 4.0]]), torch.ones(1, 5, dtype=torch.bool))
    assert float(longer[0, 0]) == pytest.approx(a[0], rel=1e-6)
    assert float(logit[0, 0]) < float(choice_of(3, [0.0, -1.0], no_choice=0.5).probabilities(
        torch.tensor([[1.0]]), torch.ones(1, 1, dtype=torch.bool))[0, 0])
    with pytest.raises(InputError, match="form"):
        choice_of(3, [0.0], no_choice=0.0, form="probit")


def synthetic_features(truth: LearnedChoice, n: int, k: int, seed: int) -> ImpressionFeatures:
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(1, truth.n_items + 1, (n, k), generator=g)
    lift = torch.randn(n, k, generator=g)
    repeated = torch.rand(n, k, generator=g) < 0.1
    shown = torch.ones(n, k, dtype=torch.bool)
    probs = truth.probabilities(truth.item_utilities(lift, repeated, items), shown)
    choice = torch.multinomial(probs, 1, generator=g)[:, 0]
    return ImpressionFeatures(np.zeros(n, dtype=np.int64), items, {1.0: lift}, repeated.long(), choice, {})


def test_the_fit_recovers_the_parameters_that_made_the_choices() -> None:
    truth = choice_of(5, [0.0, -0.7, -1.5, -2.0], no_choice=1.0, pref=1.5, repeat=-1.0,
                      item_bias=[0.8, -0.8, 0.0, 0.4, -0.4])
    features = synthetic_features(truth, 20_000, 4, seed=0)
    fitted = fit_learned_choice(features, 5, item_l2=0.01)
    assert float(fitted.pref_weight) == pytest.approx(1.5, abs=0.1)
    assert float(fitted.repeat_weight) == pytest.approx(-1.0, abs=0.2)
    torch.testing.assert_close(fitted.position_bias, truth.position_bias, atol=0.15, rtol=0)
    # item biases and the no-choice utility are identified together up to one shift
    shift = float(fitted.no_choice - truth.no_choice)
    torch.testing.assert_close(fitted.item_bias[1:] - shift, truth.item_bias[1:], atol=0.15, rtol=0)
    assert impression_nll(fitted, features) <= impression_nll(truth, features) + 1e-4
    plain = fit_learned_choice(features, 5, item_bias=False)
    assert torch.equal(plain.item_bias, torch.zeros(6))
    assert impression_nll(plain, features) > impression_nll(fitted, features)


@pytest.mark.parametrize("form", ["mnl", "cascade"])
def test_each_form_is_recovered_and_scores_best_on_its_own_choices(form: str) -> None:
    truth = choice_of(5, [0.0, -0.7, -1.5, -2.0, -2.4], no_choice=1.0, pref=1.5, form=form)
    features = synthetic_features(truth, 20_000, 5, seed=1)
    fitted = fit_learned_choice(features, 5, item_bias=False, form=form)
    assert fitted.form == form
    assert float(fitted.pref_weight) == pytest.approx(1.5, abs=0.1)
    torch.testing.assert_close(fitted.position_bias, truth.position_bias, atol=0.15, rtol=0)
    assert float(fitted.no_choice) == pytest.approx(1.0, abs=0.15)
    other = fit_learned_choice(features, 5, item_bias=False, form="cascade" if form == "mnl" else "mnl")
    unseen = synthetic_features(truth, 20_000, 5, seed=2)
    assert impression_nll(fitted, unseen) < impression_nll(other, unseen) - 0.005


@pytest.fixture(scope="module")
def data():
    return cyclic_dataset(n_users=6, n_items=10, length=12)


@pytest.fixture(scope="module")
def model(data):
    torch.manual_seed(0)
    return UserTransformer(TransformerConfig(dim=16, layers=1, heads=2, max_len=8, dropout=0.0),
                           data.n_items, data.behaviors).eval()


def impressions(rows: list[tuple[int, int, int | None, int, int, int]]) -> pl.DataFrame:
    """(user, impression, timestamp, slot, item, clicked) rows as the contract's table."""
    names = ["user", "impression", "timestamp", "slot", "item", "clicked"]
    frame = pl.DataFrame(rows, schema=names, orient="row")
    return frame.with_columns(session=pl.lit(0), behavior=pl.lit(None), propensity=pl.lit(None)).select(
        list(IMPRESSIONS_SCHEMA)).cast(pl.Schema(IMPRESSIONS_SCHEMA))


def test_features_are_the_models_view_just_before_each_impression(model, data) -> None:
    ts = data.sequences.timestamps
    t3 = int(ts[3])  # user 0's fourth consumption: the state before it holds three events
    first, second = int(data.sequences.items[0]), int(data.sequences.items[1])
    table = impressions([
        (0, 0, t3, 0, first, 0), (0, 0, t3, 1, second, 1),
        (0, 1, int(ts[0]) - 10, 0, 2, 0),  # before the first consumption: dropped and counted
        (1, 2, None, 0, 4, 1),  # no timestamp: dropped and counted
    ])
    f = impression_features(model, data, table, (1.0, 2.0), history_len=2)
    assert f.n == 1 and f.dropped == {"no timestamp": 1, "before the first consumption": 1}
    assert f.items.tolist() == [[first, second]] and f.choice.tolist() == [1]
    from user_models.protocol import History

    seq = data.sequences
    hist = History(torch.as_tensor(seq.items[:3][None].astype(np.int64)),
                   torch.as_tensor(seq.behaviors[:3][None].astype(np.int64)),
                   torch.tensor([[-1.0, *np.diff(ts[:3]).astype(np.float32)]]), torch.tensor([3]))
    logits = model.all_item_logits(model.encode(hist))[:, 1:]
    for t in (1.0, 2.0):
        expected = torch.log_softmax(logits / t, dim=1)[0, f.items[0] - 1] + math.log(data.n_items)
        torch.testing.assert_close(f.log_lift[t][0], expected)
    # the repeat flag looks at the last history_len=2 consumptions (the second and third), not the first
    assert f.repeated.tolist() == [[False, True]]
    # ... and says how far back: the second consumption is two back, unless the third repeats it
    lag = 1 if int(seq.items[2]) == second else 2
    assert f.repeat_lag.tolist() == [[0, lag]]
    assert f.repeated_within(1).tolist() == [[False, lag == 1]]


def test_bad_impressions_name_the_column_and_value(model, data) -> None:
    table = impressions([(0, 0, 1, 0, data.n_items + 1, 0)])
    with pytest.raises(DatasetError, match=r"row 0 column 'item' value 11"):
        impression_features(model, data, table)
    two_clicks = impressions([(0, 0, 1, 0, 1, 1), (0, 0, 1, 1, 2, 1)])
    with pytest.raises(DatasetError, match="impression 0 has 2 clicked slots"):
        impression_features(model, data, two_clicks)


def test_saved_with_the_checkpoint_and_old_checkpoints_load_without_it(model, data, tmp_path) -> None:
    root = save_user_model(model, tmp_path / "m", data)
    assert load_user_model(root, dataset=data).learned_choice is None  # a checkpoint as before
    choice = choice_of(data.n_items, [0.0, -0.5, -1.0], no_choice=0.3, pref=1.2)
    save_learned_choice(choice, root)
    loaded = load_user_model(root, dataset=data).learned_choice
    assert loaded is not None
    for name, t in choice.tensors().items():
        torch.testing.assert_close(loaded.tensors()[name], t)
    assert loaded.form == "mnl"
    save_learned_choice(choice_of(data.n_items, [0.0], no_choice=0.3, form="cascade"), root)
    assert load_user_model(root, dataset=data).learned_choice.form == "cascade"
    meta = json.loads((root / CHOICE_CONFIG).read_text())
    meta["form"] = "probit"
    (root / CHOICE_CONFIG).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="choice form 'probit'"):
        load_learned_choice(root)
    meta["format_version"] = 1  # a file written before forms: a logit
    del meta["form"]
    (root / CHOICE_CONFIG).write_text(json.dumps(meta))
    assert load_learned_choice(root).form == "mnl"
    meta = json.loads((root / CHOICE_CONFIG).read_text())
    meta["format_version"] = 99
    (root / CHOICE_CONFIG).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="choice format version 99"):
        load_learned_choice(root)
    save_learned_choice(choice, root)
    assert load_learned_choice(root) is not None
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    weights["item_bias"] += 0.1
    save_tensors(root / WEIGHTS, weights)  # the weights file replaced behind the choice's back
    with pytest.raises(CheckpointError, match="fitted on other user-model weights"):
        load_learned_choice(root)
    save_user_model(model, root, data)  # retraining into the directory drops the stale choice
    save_learned_choice(choice, root)
    save_user_model(model, root, data)
    assert not (root / CHOICE_CONFIG).exists() and load_user_model(root, dataset=data).learned_choice is None


@contextmanager
def attached(model: UserTransformer, choice: LearnedChoice | None):
    """``model`` carrying ``choice`` as a loaded checkpoint with a learned choice would."""
    model.learned_choice = choice
    try:
        yield model
    finally:
        model.learned_choice = None


SLATE = torch.tensor([[1, 2, 3], [4, 5, 0], [6, 7, 8], [9, 10, 1]])


def step_probs(model, data, source: str = "auto") -> tuple[torch.Tensor, SimulationCore]:
    choice = ChoiceConfig(no_choice_logit=0.7, repeat="allow", source=source)  # type: ignore[arg-type]
    config = SimConfig(slate_size=3, choice=choice)
    core = build_core(model, data, config, n_users=4)
    core.manual_seed(0)
    core.reset()
    return core.step(SLATE).choice_probs, core


def test_the_env_uses_the_learned_choice_when_the_model_has_one(model, data) -> None:
    choice = choice_of(data.n_items, [0.0, -1.0, -2.0], no_choice=-0.4, pref=0.5,
                       item_bias=[0.1 * i for i in range(data.n_items)])
    plain, _ = step_probs(model, data)
    with attached(model, choice):
        learned, core = step_probs(model, data)
        assert core.learned_choice is not None
        fresh = build_core(model, data, SimConfig(slate_size=3), n_users=4)  # the same users, by hand
        fresh.manual_seed(0)
        fresh.reset()
        lift = torch.log_softmax(fresh.catalogue_logits(), 1).gather(1, SLATE.clamp(min=1) - 1)
        u = 0.5 * (lift + math.log(data.n_items)) + choice.item_bias[SLATE.clamp(min=1)]
        u = (u + torch.tensor([0.0, -1.0, -2.0])).masked_fill(SLATE == 0, -math.inf)
        expected = torch.softmax(torch.cat([u, torch.full((4, 1), -0.4)], 1), 1)
        torch.testing.assert_close(learned, expected)
        assert not torch.allclose(learned, plain)
        forced, core = step_probs(model, data, source="calibrated")
        assert core.learned_choice is None
        torch.testing.assert_close(forced, plain)  # the calibrated choice, exactly as without one
    with pytest.raises(InputError, match="no choice learned from impressions"):
        step_probs(model, data, source="learned")


def test_the_choice_source_is_an_env_setting(model, data) -> None:
    with pytest.raises(InputError, match="source must be one of .auto., .learned., .calibrated., got"):
        EnvConfig.from_mapping({"choice": {"source": "guess"}})
    with attached(model, choice_of(data.n_items, [0.0], 0.0)):
        core, _ = build_env_core(model, data, EnvConfig.from_mapping({"choice": {"source": "calibrated"}}))
        assert core.learned_choice is None
        core, _ = build_env_core(model, data, EnvConfig())
        assert core.learned_choice is not None


def test_calibration_leaves_the_take_rate_to_the_learned_choice(model, data) -> None:
    from recsim_env.offline.calibrate import CalibrationSettings, calibrate

    settings = CalibrationSettings(n_users=16, n_examples=16, rounds=4, target_consumption_rate=0.5)
    with attached(model, choice_of(data.n_items, [0.0, -0.5, -1.0], no_choice=0.2)):
        cal = calibrate(model, data, SimConfig(slate_size=3), settings, progress=False)
    assert cal.report["choice"].startswith("learned from impressions")
    assert {r["no_choice_logit"] for r in cal.report["rounds"]} == {0.0}  # never searched
    plain = calibrate(model, data, SimConfig(slate_size=3), settings, progress=False)
    assert plain.report["choice"] == "calibrated multinomial logit"
    assert len({r["no_choice_logit"] for r in plain.report["rounds"]}) > 1
