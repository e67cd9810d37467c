"""Fidelity statistics on hand-computed cases; world-vs-itself is a perfect ground-truth match."""

import math

import numpy as np
import pytest
import torch

from recsim_env.config import EnvConfig
from recsim_env.factory import world_config
from recsim_env.offline.benchmark import BenchmarkConfig
from recsim_env.offline.fidelity import (
    GroundTruthFidelity,
    PolicyReturn,
    Sessions,
    data_fidelity,
    explain_miss,
    fidelity_markdown,
    ground_truth_fidelity,
    held_out_sessions,
    js_divergence,
    popularity_bins,
)
from recsim_env.testing import logged_dataset
from user_models.handwritten import clickbait_user


def test_js_divergence_known_values():
    assert js_divergence(np.array([1, 2, 3]), np.array([2, 4, 6])) == pytest.approx(0.0, abs=1e-12)
    assert js_divergence(np.array([1, 0]), np.array([0, 1])) == pytest.approx(1.0)
    # p = (1, 0), q = (1/2, 1/2): H(M = (3/4, 1/4)) - (H(p) + H(q)) / 2.
    h_m = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert js_divergence(np.array([1, 0]), np.array([1, 1])) == pytest.approx(h_m - 0.5)


def test_popularity_bins_split_the_event_mass():
    # Sorted counts 50, 30, 10, 10 have cumulative shares .5, .8, .9, 1: with two bins the top item fills
    # the first half of the events; unseen item 5 goes to the last bin.
    bins = popularity_bins(np.array([0, 50, 30, 10, 10, 0]), n_bins=2)
    assert bins.tolist() == [0, 0, 1, 1, 1, 1]


def test_repeat_rate_counts_prefix_and_session_repeats():
    sessions = Sessions([np.array([1, 2, 1])], [np.array([1, 1, 1])], [{2}])
    assert sessions.repeat_rate() == pytest.approx(2 / 3)


def test_held_out_split_and_data_fidelity(tmp_path):
    torch.set_num_threads(1)
    user = clickbait_user()
    dataset = logged_dataset(user, n_users=30, n_sessions=3)
    dataset.save(tmp_path / "data")
    held = held_out_sessions(dataset, 10, np.random.default_rng(0))
    for row, u in enumerate(held.users):
        items, _, _ = dataset.sequences.user(int(u))
        n = int(held.history.lengths[row])
        joined = np.concatenate([held.history.items[row, :n].numpy(), held.sessions.items[row]])
        np.testing.assert_array_equal(joined, items)  # prefix + held-out last session = the user
    result = data_fidelity(user, tmp_path / "data", EnvConfig(slate_size=2, max_steps=30), n_users=20)
    assert result.n_users == 20
    for key in ("category_js", "popularity_js", "behavior_js", "length_ks"):
        assert 0.0 <= result.statistics[key] <= 1.0 and 0.0 <= result.noise_floor[key] <= 1.0
    assert "noise floor" in fidelity_markdown(result, None, {"model": "handwritten"})


def test_world_against_itself_is_a_perfect_match(tmp_path):
    synthetic = pytest.importorskip("user_models.synthetic")
    from user_models.synthetic.config import SyntheticConfig

    torch.set_num_threads(1)
    config = SyntheticConfig(n_users=40, n_items=30, n_categories=4, seed=0)
    synthetic.synthesize_dataset(config).save(tmp_path / "data")
    bench = BenchmarkConfig(policies=("random", "popular", "oracle"), episodes=12, seeds=1, n_resamples=100)
    settings = world_config(slate_size=2, max_steps=10)
    result = ground_truth_fidelity(
        "world", tmp_path / "data", bench, settings, settings, tmp_path, progress=False
    )
    # Same simulator on both sides with common random numbers: identical returns, identical ranking.
    assert [r.world for r in result.returns] == [r.learned for r in result.returns]
    assert result.max_relative_error == 0.0 and result.meets_targets
    assert len({r.world for r in result.returns}) == 3 and result.kendall_tau == pytest.approx(1.0)
    first = [r.world_first_pick for r in result.returns]
    assert first == [r.learned_first_pick for r in result.returns] and all(0 <= x <= 1 for x in first)
    assert max(first) > 0  # someone takes something from the first slate


def policy_return(policy: str, world: float, learned: float, consumption: tuple[float, float],
                  first_pick: tuple[float, float]) -> PolicyReturn:
    return PolicyReturn(policy, world, world - 1, world + 1, learned, learned - 1, learned + 1, 20.0, 30.0,
                        *consumption, 0.2, *first_pick)


def test_a_miss_is_explained_with_how_much_the_first_slate_already_shows():
    returns = [policy_return("greedy", 10.0, 15.0, (0.65, 0.78), (0.75, 0.81)),
               policy_return("random", 5.0, 5.5, (0.50, 0.52), (0.55, 0.50))]
    result = GroundTruthFidelity(returns, 1.0, 0.5, 0.3, 0.3)
    text = explain_miss(result)
    assert "`greedy` by 50%" in text and "0.75 -> 0.81" in text
    assert "46% of the consumption gap is there before the session's dynamics" in text
    table = fidelity_markdown(None, result, {})
    assert "| 0.75 / 0.81 |" in table and "| 0.55 / 0.50 |" in table
    flipped = GroundTruthFidelity([policy_return("greedy", 10.0, 15.0, (0.65, 0.78), (0.80, 0.75))],
                                  1.0, 0.5, 0.5, 0.5)
    assert "the choice errs the other way there" in explain_miss(flipped)


def test_group_stats_count_shown_slots_consumptions_and_the_leave_after_them_by_hand():
    from recsim_env.offline.fidelity import _group_stats
    from recsim_env.offline.rollout import PolicyRun

    flags = np.array([False, True, False, False, True])  # items 1 and 4 are in the group
    steps = {  # 2 steps x 2 rows; row 1 is done after its first step
        "active": np.array([[True, True], [True, False]]),
        "slate": np.array([[[1, 2], [3, 4]], [[4, 0], [1, 1]]]),
        "item": np.array([[1, 3], [4, 1]]),
        "terminated": np.array([[False, True], [True, False]]),
    }
    run = PolicyRun("p", 0, steps, np.zeros(2))
    shown, consumed, after, after_other = _group_stats([run], flags)
    assert shown == pytest.approx(3 / 5)  # live slots 1, 2, 3, 4, 4
    assert consumed == pytest.approx(2 / 3)  # items 1, 3, 4
    assert (after, after_other) == (0.5, 1.0)  # after 1 stays, after 4 leaves; after 3 leaves


def test_a_miss_names_the_hidden_group_and_whether_choice_or_leave_is_off():
    from recsim_env.offline.fidelity import ItemGroupFidelity

    bait = ItemGroupFidelity("bait", 0.20, 0.10, 0.44, 0.12, 0.13, 0.11, 0.05, 0.02)
    row = PolicyReturn("oracle", 4.6, 4.1, 5.1, 12.7, 11.5, 13.9, 12.0, 34.3, 0.82, 0.66, 0.47, 0.86, 0.73,
                       (bait,))
    text = explain_miss(GroundTruthFidelity([row], 1.0, 1.79, 1.79, 1.79))
    assert "hidden bait items fill 20% of the shown slots in the world and 10% in the simulator" in text
    assert "make 44% vs 12% of the consumptions" in text
    assert "2.2x their share of the slots in the world, 1.2x in the simulator" in text
    assert "the gap is in the choice" in text
    table = fidelity_markdown(None, GroundTruthFidelity([row], 1.0, 1.79, 1.79, 1.79), {})
    row_text = ("| oracle | bait | 0.200 / 0.100 | 0.440 / 0.120 | 2.20 / 1.20 | 0.130 / 0.110 "
                "| 0.050 / 0.020 |")
    assert row_text in table
    assert (bait.world_lift, bait.learned_lift) == pytest.approx((2.2, 1.2))
