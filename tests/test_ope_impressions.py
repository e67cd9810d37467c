"""Off-policy evaluation on logged impressions: a log written by a known simulated user, evaluated from
the log alone, agrees with the simulator's own estimate of the same targets."""

import math

import numpy as np
import polars as pl
import pytest
import torch

from recsim_env.offline.ope_impressions import impression_ope, ope_markdown
from tests._user_model_data import cyclic_dataset
from user_models.choice_model import LearnedChoice, impression_features
from user_models.data.artifact import IMPRESSIONS_SCHEMA
from user_models.errors import InputError
from user_models.transformer import TransformerConfig, UserTransformer


@pytest.fixture(scope="module")
def world():
    """A tiny user model carrying a known choice (the truth the log is written by)."""
    data = cyclic_dataset(n_users=6, n_items=10, length=12)
    torch.manual_seed(0)
    model = UserTransformer(TransformerConfig(dim=16, layers=1, heads=2, max_len=8, dropout=0.0),
                            data.n_items, data.behaviors).eval()
    model.learned_choice = LearnedChoice(torch.tensor(1.0), torch.tensor(0.0),
                                         torch.linspace(-1, 1, data.n_items + 1) * (torch.arange(11) > 0),
                                         torch.tensor([0.0]), torch.tensor(0.5))
    return data, model


def logged(data, model, per_context: int = 40, seed: int = 0) -> pl.DataFrame:
    """Slates of one item drawn uniformly (propensity 1/n), answered by ``model``'s choice and behavior
    head at the users' states; one impression per (user, prefix) ``per_context`` times."""
    rng = np.random.default_rng(seed)
    seq, n = data.sequences, data.n_items
    users = np.repeat(np.arange(data.n_users), data.sequences.lengths - 1)
    positions = np.concatenate([np.arange(1, length) for length in seq.lengths])
    stamps = seq.timestamps[seq.offsets[users] + positions]  # just before event `position`
    users, stamps = np.repeat(users, per_context), np.repeat(stamps, per_context)
    items = rng.integers(1, n + 1, len(users))
    table = pl.DataFrame({"user": users, "impression": np.arange(len(users)), "timestamp": stamps,
                          "session": 0, "slot": 0, "item": items, "clicked": 0, "behavior": None,
                          "propensity": 1.0 / n}).cast(pl.Schema(IMPRESSIONS_SCHEMA))
    probs: dict[int, tuple[float, np.ndarray]] = {}
    choice = model.learned_choice

    def answer(rows, local, logits, state, shown):
        lift = torch.log_softmax(logits, 1) + math.log(n)
        behave = model.behavior_probs(state, torch.arange(1, n + 1).expand(len(logits), -1))
        for r, i, s in zip(rows, shown[:, 0].tolist(), local.tolist(), strict=True):
            u = choice.item_utilities(lift[s, i - 1].reshape(1, 1), torch.zeros(1, 1, dtype=torch.bool),
                                      torch.tensor([[i]]))
            p = float(choice.probabilities(u, torch.ones(1, 1, dtype=torch.bool))[0, 0])
            probs[int(r)] = (p, behave[s, i - 1].numpy())

    impression_features(model, data, table, on_batch=answer)
    clicked = np.zeros(len(users), dtype=np.int8)
    behavior = np.zeros(len(users), dtype=np.int64)
    for r, (p, b) in probs.items():
        if rng.random() < p:
            clicked[r], behavior[r] = 1, rng.choice(len(b), p=b / b.sum()) + 1
    return table.with_columns(clicked=pl.Series(clicked), behavior=pl.Series(behavior)).with_columns(
        pl.when(pl.col("clicked") == 1).then(pl.col("behavior")).otherwise(None).alias("behavior")
    ).cast(pl.Schema(IMPRESSIONS_SCHEMA))


def test_the_log_and_the_simulator_agree_when_the_simulator_wrote_the_log(world) -> None:
    data, model = world
    table = logged(data, model)
    rows = {r.target: r for r in impression_ope(model, data, table, target_temperature=0.3, seed=1)}
    uniform, personal = rows["uniform"], rows["model"]
    # the uniform target is the logging policy: every weight is 1, IPS is the log's own mean
    assert uniform.estimates["ips"] == pytest.approx(uniform.logged_value, rel=1e-6)  # float32 target
    assert uniform.ess == pytest.approx(uniform.impressions)
    assert personal.ess < personal.impressions  # a sharper target: unequal weights
    for row in (uniform, personal):
        # rewards lie in [0, 1], so their variance is at most their mean: a bound on the log's standard
        # error (the weights of this target stay near 1: ESS > 0.9 n)
        se = math.sqrt(row.logged_value / row.impressions)
        slack = 3 * se + (row.simulator_high - row.simulator_low) / 2
        for name in ("ips", "snips", "dr"):
            assert abs(row.estimates[name] - row.simulator) < slack, (name, row)
    # the sharper target prefers the items the user model likes, which the choice also favours here
    assert personal.simulator != pytest.approx(uniform.simulator, abs=1e-6)
    assert "| model |" in ope_markdown(list(rows.values()))


def test_a_log_without_propensities_is_refused_by_name(world) -> None:
    data, model = world
    table = logged(data, model, per_context=1).with_columns(propensity=pl.lit(None, dtype=pl.Float64))
    with pytest.raises(InputError, match=r"shown slots have no logging propensity"):
        impression_ope(model, data, table)
