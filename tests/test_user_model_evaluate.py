"""Evaluation metrics against hand-computed values on tiny rankings, and the baselines' scores."""

import math

import numpy as np
import pytest
import torch

from user_models.baselines import MarkovScorer, PopularityScorer
from user_models.data.artifact import Sequences
from user_models.evaluate import (
    expected_calibration_error,
    log_loss,
    macro_f1,
    ranking_metrics,
    reliability_diagram,
    roc_auc,
    target_ranks,
)
from user_models.protocol import History


def test_target_ranks_full_catalogue_ties_and_masking():
    # items 1..5 (column 0 = padding, ignored even with the highest score)
    scores = torch.tensor([[9.0, 0.5, 0.9, 0.1, 0.9, 0.3],
                           [9.0, 0.5, 0.9, 0.1, 0.9, 0.3]])
    targets = torch.tensor([1, 4])
    # row 0: items 2 and 4 (0.9) beat item 1 (0.5) -> rank 2; row 1: item 2 ties with 4 and has a
    # smaller id -> rank 1
    assert target_ranks(scores, targets).tolist() == [2, 1]
    seen = torch.tensor([[2, 1, 0], [4, 2, 0]])  # the target itself is never masked
    assert target_ranks(scores, targets, seen).tolist() == [1, 0]


def test_ranking_metrics_by_hand():
    ranks = np.array([0, 1, 4, 9, 19, 30])
    m = ranking_metrics(ranks)
    assert m["hr@5"] == pytest.approx(3 / 6)
    assert m["hr@10"] == pytest.approx(4 / 6)
    assert m["hr@20"] == pytest.approx(5 / 6)
    assert m["ndcg@5"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6)) / 6)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6) + 1 / math.log2(11)) / 6)
    assert m["ndcg@20"] == pytest.approx(m["ndcg@10"] + 1 / math.log2(21) / 6)
    assert m["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 10 + 1 / 20 + 1 / 31) / 6)


def test_binary_and_multiclass_metrics_by_hand(tmp_path):
    labels = np.array([1, 0, 1, 0], dtype=bool)
    assert roc_auc(np.array([0.9, 0.1, 0.8, 0.3]), labels) == 1.0
    assert roc_auc(np.array([0.2, 0.6, 0.6, 0.1]), labels) == pytest.approx(2.5 / 4)  # one tie = half
    assert math.isnan(roc_auc(np.array([0.1, 0.2]), np.array([True, True])))
    probs = np.array([0.8, 0.2, 0.6, 0.4])
    assert log_loss(probs, labels) == pytest.approx(-np.mean(np.log([0.8, 0.8, 0.6, 0.6])))
    # bins: 0.2 -> bin 2 (label 0), 0.4 -> bin 4 (0), 0.6 -> bin 6 (1), 0.8 -> bin 8 (1)
    assert expected_calibration_error(probs, labels) == pytest.approx((0.2 + 0.4 + 0.4 + 0.2) / 4)
    # classes 0,1,2: F1(0) = 2*1/(2+0+1) = 2/3, F1(1) = 2*1/(2+1+0) = 2/3, F1(2) = 1
    f1 = macro_f1(np.array([0, 1, 1, 2]), np.array([0, 0, 1, 2]), 3)
    assert f1 == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    png = reliability_diagram(probs, labels, tmp_path / "r.png", "test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_popularity_and_markov_scores():
    # users: [1, 2, 3], [1, 2], [2, 3, 3]
    train = Sequences(np.array([0, 3, 5, 8]), np.array([1, 2, 3, 1, 2, 2, 3, 3], dtype=np.int32),
                      np.ones(8, dtype=np.int8), None)
    history = History(torch.tensor([[1, 2], [3, 0], [4, 0]]), torch.ones(3, 2, dtype=torch.long),
                      torch.full((3, 2), -1.0), torch.tensor([2, 1, 1]))
    pop = PopularityScorer(train, n_items=4).score(history)
    assert pop[0].tolist() == [0, 2, 3, 3, 0]
    markov = MarkovScorer(train, n_items=4).score(history)
    # after 2: 2->3 twice (users 0 and 2); 1->2 never counts across users (3 -> 1 is not a transition)
    assert markov[0, 3] > 2 > markov[0, 1]
    assert markov[1, 3] == pytest.approx(1 + 3 / 4)  # 3->3 once, plus popularity 3 / (max 3 + 1)
    assert torch.argsort(markov[2], descending=True)[:2].tolist() in ([2, 3], [3, 2])  # unseen 4: popularity
