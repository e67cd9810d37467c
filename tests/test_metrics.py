"""Recommendation metrics against hand-computed values."""

import math

import numpy as np
import pytest

from recsim_env.offline.metrics import (
    Catalogue,
    Episode,
    behavior_rates,
    catalogue_coverage,
    categories_multi_hot,
    category_entropy,
    consumption_rate,
    entropy_bits,
    episode_metrics,
    exposure_counts,
    gini,
    intra_list_distance,
    novelty,
)

# Items 1..4: 1 and 2 point the same way, 3 is orthogonal to them, 4 is opposite to 1.
EMB = np.array([[0, 0], [1, 0], [2, 0], [0, 1], [-1, 0]], dtype=np.float64)


def test_consumption_and_behavior_rates():
    assert consumption_rate(np.array([3, 0, 1, 0])) == 0.5
    assert consumption_rate(np.array([], dtype=int)) == 0.0
    np.testing.assert_allclose(behavior_rates(np.array([1, 0, 2, 2]), 3), [0.25, 0.5, 0.0])


def test_intra_list_distance():
    # {1,2}: cos 1 -> 0; {1,3}: cos 0 -> 1; {1,4}: cos -1 -> 2; {1,3,4}: distances 1, 2, 1 -> mean 4/3.
    assert intra_list_distance(np.array([[1, 2]]), EMB) == pytest.approx(0.0)
    assert intra_list_distance(np.array([[1, 3]]), EMB) == pytest.approx(1.0)
    assert intra_list_distance(np.array([[1, 4]]), EMB) == pytest.approx(2.0)
    assert intra_list_distance(np.array([[1, 3, 4]]), EMB) == pytest.approx(4 / 3)
    # Mean over slates; empty slots and repeats count once; single-item slates are skipped.
    assert intra_list_distance(np.array([[1, 3, 0], [1, 1, 4], [2, 0, 0]]), EMB) == pytest.approx(1.5)
    assert intra_list_distance(np.array([[2, 2]]), EMB) == 0.0


def test_entropy_and_category_entropy():
    assert entropy_bits(np.array([1, 1, 1, 1])) == pytest.approx(2.0)
    assert entropy_bits(np.array([0, 0])) == 0.0
    cats, names = categories_multi_hot(["A", "A|B", None, "B"])
    assert names == ["A", "B"]
    np.testing.assert_array_equal(cats, [[0, 0], [1, 0], [1, 1], [0, 0], [0, 1]])
    # Items 1 and 4: A and B each mass 1 -> 1 bit. Items 1,1,2: A 2.5, B 0.5 -> H(5/6, 1/6).
    assert category_entropy(np.array([1, 4]), cats) == pytest.approx(1.0)
    expected = -(5 / 6 * math.log2(5 / 6) + 1 / 6 * math.log2(1 / 6))
    assert category_entropy(np.array([[1, 1], [2, 3]]), cats) == pytest.approx(expected)


def test_novelty_coverage_exposure_gini():
    popularity = np.array([0, 6, 2, 0, 0])  # item 3, 4 unseen -> mass 0.5 each; p = count / 8
    assert novelty(np.array([1, 2]), popularity) == pytest.approx((-math.log2(6 / 8) - math.log2(2 / 8)) / 2)
    assert novelty(np.array([3]), popularity) == pytest.approx(-math.log2(0.5 / 8))
    assert catalogue_coverage(np.array([[1, 1], [2, 0]]), 4) == 0.5
    np.testing.assert_array_equal(exposure_counts(np.array([[1, 1], [2, 0]]), 4), [2, 1, 0, 0])
    assert gini(np.array([5, 5, 5, 5])) == pytest.approx(0.0)
    assert gini(np.array([0, 0, 0, 1])) == pytest.approx(0.75)
    # Sorted [1, 2, 3]: 2 * (1 + 4 + 9) / (3 * 6) - 4 / 3 = 2/9.
    assert gini(np.array([3, 1, 2])) == pytest.approx(2 / 9)
    with pytest.raises(ValueError):
        gini(np.array([-1, 2]))


def test_episode_metrics_collects_everything():
    cats, _ = categories_multi_hot(["A", "A", "B", "B"])
    catalogue = Catalogue(
        embeddings=EMB, categories=cats, popularity=np.array([0, 1, 1, 1, 1]), n_behaviors=2
    )
    ep = Episode(
        slates=np.array([[1, 3], [2, 4]]),
        chosen=np.array([3, 0]),
        behaviors=np.array([2, 0]),
        rewards=np.array([1.5, -0.1]),
    )
    m = episode_metrics(ep, catalogue, ("click", "buy"))
    assert m["return"] == pytest.approx(1.4)
    assert m["length"] == 2
    assert m["consumption_rate"] == 0.5
    assert (m["rate_click"], m["rate_buy"]) == (0.0, 0.5)
    assert m["intra_list_distance"] == pytest.approx(1.5)
    assert m["category_entropy"] == pytest.approx(1.0)
    assert m["novelty"] == pytest.approx(2.0)


def test_episode_shape_validation():
    with pytest.raises(ValueError, match="slates"):
        Episode(np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(3))
