"""Baseline next-item models, scored by the same harness (:mod:`user_models.evaluate`) on the same split.

- :class:`PopularityScorer`: training-event counts, the same ranking for everyone.
- :class:`MarkovScorer`: first-order item-to-item transition counts from the last history item, ties
  (and unseen transitions) broken by popularity.
- :class:`GRURecommender`: a GRU4Rec-style recurrent model (item embeddings -> GRU -> tied softmax),
  trained by the same loop as the Transformer (full-softmax cross-entropy at every position, early
  stopping on validation NDCG@10).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from scipy import sparse
from torch import nn

from user_models.data.artifact import EvalSplit, SequenceDataset, Sequences
from user_models.protocol import History


def _counts(seqs: Sequences, n_items: int) -> np.ndarray:
    return np.bincount(seqs.items, minlength=n_items + 1).astype(np.float64)


class PopularityScorer:
    """Scores every item by its number of training events."""

    name = "Pop"
    context: int | None = 1

    def __init__(self, train: Sequences, n_items: int) -> None:
        self.scores = torch.from_numpy(_counts(train, n_items)).float()

    def score(self, history: History) -> torch.Tensor:
        return self.scores.to(history.items.device).expand(history.batch_size, -1).clone()


class MarkovScorer:
    """``count(last item -> j)`` from training sequences, plus popularity as a tie-breaker below 1.

    Popularity is scaled into ``[0, 1)``, so any observed transition outranks every unobserved one and
    users with an unseen (or no) last item get the popularity ranking.
    """

    name = "Markov"
    context: int | None = 1

    def __init__(self, train: Sequences, n_items: int) -> None:
        same_user = np.ones(len(train.items), dtype=bool)
        firsts = train.offsets[:-1][train.lengths > 0]
        same_user[firsts] = False  # an event whose predecessor belongs to another user
        src = train.items[:-1][same_user[1:]]
        dst = train.items[1:][same_user[1:]]
        shape = (n_items + 1, n_items + 1)
        self.transitions = sparse.csr_matrix((np.ones(len(src)), (src, dst)), shape=shape)
        pop = _counts(train, n_items)
        self.prior = torch.from_numpy(pop / (pop.max() + 1.0)).float()

    def score(self, history: History) -> torch.Tensor:
        last = history.items.gather(1, (history.lengths - 1).clamp(min=0)[:, None])[:, 0]
        rows = torch.where(history.lengths > 0, last, 0).cpu().numpy()
        counts = torch.from_numpy(np.asarray(self.transitions[rows].todense())).float()
        return (counts + self.prior).to(history.items.device)


@dataclass(frozen=True)
class GRUConfig:
    """Architecture of :class:`GRURecommender`."""

    dim: int = 64
    layers: int = 1
    dropout: float = 0.3
    max_len: int = 50
    """Most recent events fed to the GRU (longer histories are cut, as for the Transformer)."""


class GRURecommender(nn.Module):
    """GRU4Rec-style model: embeddings -> dropout -> GRU -> next-item logits tied to the embeddings."""

    def __init__(self, config: GRUConfig, n_items: int) -> None:
        super().__init__()
        self.config = config
        self.item_emb = nn.Embedding(n_items + 1, config.dim, padding_idx=0)
        nn.init.normal_(self.item_emb.weight, std=0.02)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        self.dropout = nn.Dropout(config.dropout)
        self.gru = nn.GRU(config.dim, config.dim, num_layers=config.layers, batch_first=True,
                          dropout=config.dropout if config.layers > 1 else 0.0)
        self.out = nn.Linear(config.dim, config.dim)
        self.item_bias = nn.Parameter(torch.zeros(n_items + 1))

    def forward(self, history: History) -> torch.Tensor:
        """Hidden states ``[B, L, d]`` after each event (causal by construction)."""
        hidden, _ = self.gru(self.dropout(self.item_emb(history.items)))
        return self.out(self.dropout(hidden))

    def catalogue_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[..., n_items + 1]`` next-item logits of hidden states ``[..., d]``."""
        return hidden @ self.item_emb.weight.T + self.item_bias

    def item_scores(self, hidden: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits ``[..., k]`` of ``items`` ``[..., k]`` for hidden ``[..., d]``."""
        return (hidden.unsqueeze(-2) * self.item_emb(items)).sum(-1) + self.item_bias[items]

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class GRUScorer:
    """:class:`GRURecommender` as a :class:`~user_models.evaluate.NextItemScorer`."""

    name = "GRU4Rec"

    def __init__(self, model: GRURecommender) -> None:
        self.model = model
        self.context: int | None = model.config.max_len

    @torch.no_grad()
    def score(self, history: History) -> torch.Tensor:
        hidden = self.model(history)
        rows = torch.arange(history.batch_size, device=hidden.device)
        last = hidden[rows, (history.lengths - 1).clamp(min=0)]
        logits = self.model.catalogue_logits(last)
        return torch.where((history.lengths > 0)[:, None], logits, self.model.item_bias)


def train_gru(dataset: SequenceDataset, config: GRUConfig | None = None, train_config: Any = None
              ) -> tuple[GRURecommender, Any]:
    """Train the GRU baseline with the shared loop of :mod:`user_models.train` (no checkpoint)."""
    from user_models.evaluate import eval_examples
    from user_models.train import TrainConfig, fit, train_windows

    config = config or GRUConfig()
    train_config = train_config or TrainConfig()
    torch.manual_seed(train_config.seed)
    model = GRURecommender(config, dataset.n_items)
    result = fit(model, train_windows(dataset, config.max_len), eval_examples(dataset, "valid"),
                 lambda m: GRUScorer(model),
                 train_config, dataset.n_items, desc="GRU4Rec")
    return model.cpu(), result


def baseline_reports(dataset: SequenceDataset, split: EvalSplit, gru_config: GRUConfig | None = None,
                     train_config: Any = None) -> list[dict[str, Any]]:
    """Ranking reports of Pop, Markov and a freshly trained GRU4Rec on ``split``."""
    import time

    from user_models.evaluate import eval_examples, ranking_report

    train = dataset.train_sequences()
    examples = eval_examples(dataset, split)
    reports = []
    for scorer in (PopularityScorer(train, dataset.n_items), MarkovScorer(train, dataset.n_items)):
        reports.append({**ranking_report(scorer, examples), "train_seconds": 0.0, "parameters": 0})
    started = time.perf_counter()
    gru, result = train_gru(dataset, gru_config, train_config)
    seconds = time.perf_counter() - started
    reports.append({**ranking_report(GRUScorer(gru), examples), "train_seconds": seconds,
                    "parameters": gru.n_parameters(), "best_epoch": result.best_epoch,
                    "config": asdict(gru.config)})
    return reports
