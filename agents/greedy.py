"""The Greedy baseline's recommender: the GRU4Rec baseline of :mod:`user_models.baselines`, on the logs.

It is trained on the dataset's training split (early-stopped on the validation split, as any production
team would) and never sees the simulator's user model, so the Greedy policy is what one would deploy
from the same logs: rank items by the predicted probability of being consumed next. This module only
adapts that model to the policies' observation batches and saves it as safetensors + JSON (no pickle).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_model, save_model

from agents.obs import HistoryBatch
from user_models.baselines import GRUConfig, GRURecommender, GRUScorer, train_gru
from user_models.data.artifact import SequenceDataset, atomic_directory
from user_models.errors import CheckpointError
from user_models.outputs import OutputKind
from user_models.protocol import History
from user_models.train import TrainConfig

FORMAT_VERSION = 1


class LogRecommender:
    """A trained :class:`GRURecommender` as the :class:`~agents.baselines.NextItemScorer` Greedy ranks by."""

    def __init__(self, model: GRURecommender) -> None:
        self.model = model.eval()
        self.scorer = GRUScorer(self.model)

    @torch.no_grad()
    def scores(self, history: HistoryBatch) -> np.ndarray:
        """``[B, n_items + 1]`` next-item logits after each user's last ``max_len`` real events."""
        window = self.model.config.max_len
        lengths = torch.as_tensor(history.lengths)
        items = torch.as_tensor(history.items)
        behaviors = torch.as_tensor(history.behaviors)
        kept = lengths.clamp(max=window)
        j = torch.arange(min(window, items.shape[1]))[None, :]
        idx = ((lengths - kept)[:, None] + j).clamp(max=max(items.shape[1] - 1, 0))
        real = j < kept[:, None]
        batch = History(
            torch.gather(items, 1, idx) * real,
            torch.gather(behaviors, 1, idx) * real,
            torch.full(idx.shape, -1.0),
            kept,
        )
        return self.scorer.score(batch).float().numpy()


def train_log_recommender(
    dataset: SequenceDataset, seed: int, progress: bool = True, train_config: TrainConfig | None = None
) -> LogRecommender:
    """Fit the GRU4Rec baseline on ``dataset``'s training split (early stopping on validation).

    ``train_config`` overrides the shared training loop's defaults (its ``seed`` and ``progress`` win
    over the arguments).
    """
    config = train_config or TrainConfig(seed=seed, progress=progress)
    model, _ = train_gru(dataset, GRUConfig(), config)
    return LogRecommender(model)


LOG_RECOMMENDER = OutputKind("log recommender", marker="config.json",
                             keys=("format_version", "config", "n_items", "dataset"))
"""A saved Greedy/log recommender directory (its ``config.json``); only such a directory is replaced."""


def save_log_recommender(
    recommender: LogRecommender, path: str | os.PathLike[str], dataset: SequenceDataset
) -> Path:
    """Write ``weights.safetensors`` and ``config.json`` (with the dataset fingerprint) atomically."""
    root = Path(path)
    model = recommender.model
    meta = {
        "format_version": FORMAT_VERSION,
        "config": asdict(model.config),
        "n_items": dataset.n_items,
        "dataset": dataset.fingerprint,
    }
    with atomic_directory(root, overwrite=True, kind=LOG_RECOMMENDER) as tmp:
        save_model(model, str(tmp / "weights.safetensors"))
        (tmp / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
    return root


def load_log_recommender(path: str | os.PathLike[str], dataset: SequenceDataset) -> LogRecommender:
    """Read a saved recommender; it must have been trained on ``dataset``."""
    root = Path(path)
    try:
        meta = json.loads((root / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{root}/config.json: cannot read ({exc})") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{root}: recommender format version {meta.get('format_version')!r}, expected {FORMAT_VERSION}"
        )
    if meta.get("dataset") != dataset.fingerprint:
        raise CheckpointError(
            f"{root}: trained on another dataset (fingerprint {str(meta.get('dataset'))[:12]}, "
            f"this one {dataset.fingerprint[:12]})"
        )
    model = GRURecommender(GRUConfig(**meta["config"]), int(meta["n_items"]))
    load_model(model, str(root / "weights.safetensors"))
    return LogRecommender(model)
