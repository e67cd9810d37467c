"""One evaluation harness for every next-item model, plus the Transformer's behavior and session heads.

Next item: leave-last-out (``valid`` or ``test``), full ranking over the whole catalogue (no sampled
negatives). The target's 0-based rank is the number of other items scored higher than or equal to it
(ties rank pessimistically, so a model scoring everything alike gets the worst rank, not the best); a
NaN score ranks ahead of the target and a NaN target score ranks last. Two protocols are reported and
always labelled:

- ``seen items not masked`` (the headline, as RecBole's full-sort evaluation of sequential models): the
  items already in the user's history stay in the ranking;
- ``seen items masked``: every item of the history except the target itself is removed from the ranking.

Metrics: ``hr@k`` (target in the top k), ``ndcg@k`` (``1 / log2(rank + 2)`` inside the top k) for
k = 5, 10, 20, and ``mrr`` (``1 / (rank + 1)``, no cut-off).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from user_models.data.artifact import EvalSplit, SequenceDataset, Sequences
from user_models.protocol import History, UserModel
from user_models.sequences import history_from_sequences, session_end_flags, take_users
from user_models.transformer import UserTransformer

CUTOFFS = (5, 10, 20)
HEADLINE = "full ranking over the catalogue, seen items not masked"
MASKED = "full ranking over the catalogue, seen items masked (except the target)"


class NextItemScorer(Protocol):
    """Anything that scores the whole catalogue for a batch of histories (models and baselines alike)."""

    name: str
    context: int | None
    """How many of the most recent events :meth:`score` reads (None = the whole history)."""

    def score(self, history: History) -> torch.Tensor:
        """``[B, n_items + 1]`` scores (higher = more likely next); column 0 is ignored."""
        ...


class TransformerScorer:
    """:class:`UserTransformer` as a :class:`NextItemScorer` (prefill, then the catalogue logits)."""

    def __init__(self, model: UserTransformer, name: str = "Transformer") -> None:
        self.model = model
        self.name = name
        self.context: int | None = model.config.max_len

    @torch.no_grad()
    def score(self, history: History) -> torch.Tensor:
        return self.model.all_item_logits(self.model.encode(history))


def target_ranks(scores: torch.Tensor, targets: torch.Tensor, seen: torch.Tensor | None = None
                 ) -> torch.Tensor:
    """0-based rank of each target among items ``1..n`` of ``scores`` ``[B, n + 1]``.

    Args:
        scores: higher = better; column 0 (padding) never counts.
        targets: ``[B]`` item ids.
        seen: optional ``[B, W]`` item ids (0 = padding) removed from the ranking, the target excepted.
    """
    scores = scores.float()
    competing = torch.ones_like(scores, dtype=torch.bool)
    competing[:, 0] = False
    if seen is not None:
        competing.scatter_(1, seen.long(), False)
    competing.scatter_(1, targets[:, None].long(), False)
    target = scores.gather(1, targets[:, None].long())
    # pessimistic: an item tied with the target, a NaN score, or any item when the target's score is
    # NaN ranks ahead of it, so a degenerate model (constant or NaN scores) gets the worst rank
    ahead = (scores >= target) | scores.isnan() | target.isnan()
    return (ahead & competing).sum(1)


def ranking_metrics(ranks: np.ndarray) -> dict[str, float]:
    """HR@k, NDCG@k (k in :data:`CUTOFFS`) and MRR of 0-based ``ranks`` (means over examples)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    out: dict[str, float] = {}
    for k in CUTOFFS:
        hit = ranks < k
        out[f"hr@{k}"] = float(hit.mean())
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean())
    out["mrr"] = float((1.0 / (ranks + 1.0)).mean())
    return out


@dataclass(frozen=True)
class EvalExamples:
    """Leave-last-out examples with everything the heads need (full histories, not windows)."""

    split: EvalSplit
    history: Sequences
    target_items: np.ndarray
    target_behaviors: np.ndarray
    session_end: np.ndarray
    """Whether each history's last event ended its session (the session-end head's label)."""
    users: np.ndarray
    """Each example's dataset user index (a ground-truth world continues that very user)."""


def eval_examples(dataset: SequenceDataset, split: EvalSplit) -> EvalExamples:
    """The ``split`` examples of ``dataset`` with session-end labels."""
    view = dataset.leave_last_out(split)
    seqs = dataset.sequences
    ends = session_end_flags(seqs, dataset.interactions["session"].to_numpy())
    last_history_event = seqs.offsets[view.users + 1] - {"test": 2, "valid": 3}[split]
    return EvalExamples(split, view.history, view.target_items, view.target_behaviors,
                        ends[last_history_event], view.users.astype(np.int64))


def _batches(n: int, batch_size: int) -> list[np.ndarray]:
    return [np.arange(lo, min(lo + batch_size, n)) for lo in range(0, n, batch_size)]


@torch.no_grad()
def ranking_report(scorer: NextItemScorer, examples: EvalExamples, device: str | torch.device = "cpu",
                   batch_size: int = 256) -> dict[str, Any]:
    """Next-item metrics of ``scorer`` on ``examples``: headline (not masked) and ``seen_masked``."""
    plain, masked = [], []
    for rows in _batches(len(examples.target_items), batch_size):
        seqs = take_users(examples.history, rows)
        scores = scorer.score(history_from_sequences(seqs, scorer.context).to(device))
        targets = torch.from_numpy(examples.target_items[rows].astype(np.int64)).to(device)
        seen = history_from_sequences(seqs).items.to(device)
        plain.append(target_ranks(scores, targets).cpu())
        masked.append(target_ranks(scores, targets, seen).cpu())
    return {
        "model": scorer.name,
        "split": examples.split,
        "n_users": len(examples.target_items),
        "ranking": HEADLINE,
        **ranking_metrics(torch.cat(plain).numpy()),
        "seen_masked": {"ranking": MASKED, **ranking_metrics(torch.cat(masked).numpy())},
    }


# --- the Transformer's other heads ----------------------------------------------------------------

def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count half); NaN when one class is absent."""
    labels = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def macro_f1(predicted: np.ndarray, actual: np.ndarray, n_classes: int) -> float:
    """Unweighted mean F1 over classes ``0..n_classes-1`` that occur in ``actual`` or ``predicted``."""
    scores = []
    for c in range(n_classes):
        tp = np.sum((predicted == c) & (actual == c))
        fp = np.sum((predicted == c) & (actual != c))
        fn = np.sum((predicted != c) & (actual == c))
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else float("nan")


def calibration_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = 10
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width bin: mean predicted probability, observed frequency, count (NaN when empty)."""
    which = np.minimum((probs * n_bins).astype(np.int64), n_bins - 1)
    counts = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(which, weights=probs, minlength=n_bins) / counts
        freq = np.bincount(which, weights=labels.astype(np.float64), minlength=n_bins) / counts
    return mean_p, freq, counts


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> float:
    """Count-weighted mean ``|frequency - mean probability|`` over equal-width probability bins."""
    mean_p, freq, counts = calibration_bins(probs, labels, n_bins)
    used = counts > 0
    return float(np.sum(counts[used] * np.abs(freq[used] - mean_p[used])) / counts.sum())


def log_loss(probs: np.ndarray, labels: np.ndarray, eps: float = 1e-7) -> float:
    p = np.clip(probs, eps, 1 - eps)
    return float(-np.mean(np.where(labels, np.log(p), np.log(1 - p))))


def reliability_diagram(probs: np.ndarray, labels: np.ndarray, path: str | Path, title: str) -> Path:
    """Save a reliability diagram (observed frequency vs predicted probability per bin) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mean_p, freq, counts = calibration_bins(probs, labels)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    used = counts > 0
    ax.plot(mean_p[used], freq[used], "o-", label="model")
    for x, y, c in zip(mean_p[used], freq[used], counts[used], strict=True):
        ax.annotate(str(int(c)), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set(xlabel="predicted P(session ends)", ylabel="observed frequency", xlim=(0, 1), ylim=(0, 1),
           title=title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


@torch.no_grad()
def heads_report(model: UserModel, examples: EvalExamples, device: str | torch.device = "cpu",
                 batch_size: int = 256, reliability_png: str | Path | None = None) -> dict[str, Any]:
    """Behavior-given-item and session-end metrics of ``model`` on ``examples``.

    The behavior head is asked for the behavior of the true next item; the session-end head whether the
    last history event ended its session. Any :class:`~user_models.protocol.UserModel` can be scored
    (each gets the whole history and the user's index; the Transformer keeps its own window), so a
    ground-truth world's own probabilities on the same examples are the ceiling of the learned heads.
    """
    behavior_p, end_p = [], []
    for rows in _batches(len(examples.target_items), batch_size):
        history = history_from_sequences(take_users(examples.history, rows))
        history = replace(history, users=torch.as_tensor(examples.users[rows]))
        state = model.encode(history.to(device))
        items = torch.from_numpy(examples.target_items[rows].astype(np.int64)).to(device)[:, None]
        behavior_p.append(model.behavior_probs(state, items)[:, 0].float().cpu())
        end_p.append(model.end_prob(state).float().cpu())
    probs = torch.cat(behavior_p).numpy()
    actual = examples.target_behaviors.astype(np.int64) - 1
    predicted = probs.argmax(1)
    n_classes = probs.shape[1]
    aucs = [roc_auc(probs[:, c], actual == c) for c in range(n_classes)]
    defined = [a for a in aucs if not math.isnan(a)]
    end = torch.cat(end_p).numpy().astype(np.float64)
    labels = examples.session_end.astype(bool)
    report: dict[str, Any] = {
        "behavior": {
            "accuracy": float((predicted == actual).mean()),
            "macro_f1": macro_f1(predicted, actual, n_classes),
            "auc_ovr": float(np.mean(defined)) if defined else float("nan"),
            "majority_accuracy": float(np.bincount(actual, minlength=n_classes).max() / len(actual)),
        },
        "session_end": {
            "auc": roc_auc(end, labels),
            "log_loss": log_loss(end, labels),
            "ece": expected_calibration_error(end, labels),
            "base_rate": float(labels.mean()),
        },
    }
    if reliability_png is not None:
        path = reliability_diagram(end, labels, reliability_png,
                                   f"session end, {examples.split} split (n={len(labels)})")
        report["session_end"]["reliability_png"] = str(path)
    return report


def format_table(reports: list[dict[str, Any]], masked: bool = False) -> str:
    """A plain-text table of ranking reports (one row per model), titled with the protocol."""
    keys = [f"{m}@{k}" for m in ("hr", "ndcg") for k in CUTOFFS] + ["mrr"]
    title = MASKED if masked else HEADLINE
    lines = [f"{reports[0]['split']} split, {title}:",
             f"{'model':<14}" + "".join(f"{k:>9}" for k in keys)]
    for r in reports:
        values = r["seen_masked"] if masked else r
        lines.append(f"{r['model']:<14}" + "".join(f"{values[k]:>9.4f}" for k in keys))
    return "\n".join(lines)
