"""The Greedy baseline's recommender: a small GRU4Rec-style next-item model trained on the logs.

It learns from the dataset's *training split* only and never sees the simulator's user model, so the
Greedy policy is what a production team would deploy from the same logs: rank items by the predicted
probability of being consumed next. Saved as safetensors + JSON (no pickle).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_model, save_model
from torch import nn
from tqdm.auto import tqdm

from agents.obs import HistoryBatch
from user_models.data.artifact import SequenceDataset, Sequences, atomic_directory
from user_models.errors import CheckpointError

FORMAT_VERSION = 1


@dataclass(frozen=True)
class GRUConfig:
    """Size and training schedule of :class:`GRURecommender`.

    Attributes:
        n_items: catalogue size (item ids ``1..n_items``).
        dim: embedding and GRU state size.
        window: training window length (events); inference uses each user's last ``window`` events.
        epochs: passes over the training windows.
        batch_size: windows per gradient step.
        lr: Adam learning rate.
    """

    n_items: int
    dim: int = 64
    window: int = 50
    epochs: int = 3
    batch_size: int = 128
    lr: float = 2e-3


class GRURecommender(nn.Module):
    """Item embedding -> GRU -> dot product with the (tied) item embeddings: next-item logits."""

    def __init__(self, config: GRUConfig) -> None:
        super().__init__()
        self.config = config
        self.items = nn.Embedding(config.n_items + 1, config.dim, padding_idx=0)
        self.gru = nn.GRU(config.dim, config.dim, batch_first=True)
        self.out = nn.Linear(config.dim, config.dim)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """``[B, L, n_items + 1]`` logits of the next item after each position of right-padded ``items``."""
        hidden, _ = self.gru(self.items(items))
        return self.out(hidden) @ self.items.weight.T

    @torch.no_grad()
    def scores(self, history: HistoryBatch) -> np.ndarray:
        """``[B, n_items + 1]`` next-item logits after each user's last real event (0 for no history)."""
        window = self.config.window
        lengths = torch.as_tensor(history.lengths)
        items = torch.as_tensor(history.items)
        # Keep each row's last `window` real events, still right-padded.
        kept = torch.clamp(lengths, max=window)
        j = torch.arange(min(window, items.shape[1]))[None, :]
        idx = ((lengths - kept)[:, None] + j).clamp(max=items.shape[1] - 1)
        clipped = torch.gather(items, 1, idx) * (j < kept[:, None])
        logits = self.forward(clipped)
        last = (kept - 1).clamp(min=0)
        out = logits[torch.arange(len(last)), last]
        out = torch.where((kept > 0)[:, None], out, torch.zeros_like(out))
        return out.numpy()


def _windows(sequences: Sequences, width: int) -> np.ndarray:
    """``[n, width + 1]`` non-overlapping chunks of each user's events (0-padded at the end)."""
    lengths = sequences.lengths
    n_chunks = np.maximum((lengths - 1 + width - 1) // width, 0)  # chunks with at least one target
    owner = np.repeat(np.arange(len(lengths)), n_chunks)
    chunk = np.arange(n_chunks.sum()) - np.repeat(np.cumsum(n_chunks) - n_chunks, n_chunks)
    starts = sequences.offsets[owner] + chunk * width
    ends = sequences.offsets[owner + 1]
    idx = starts[:, None] + np.arange(width + 1)[None, :]
    return np.where(idx < ends[:, None], sequences.items[np.minimum(idx, len(sequences.items) - 1)], 0)


def train_gru_recommender(
    dataset: SequenceDataset, config: GRUConfig, seed: int, progress: bool = True
) -> GRURecommender:
    """Fit the recommender to next-item prediction on the dataset's training split (full softmax)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # nn.Module initialisation draws from the global generator
    model = GRURecommender(config)
    windows = torch.as_tensor(_windows(dataset.train_sequences(), config.window), dtype=torch.int64)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    loss_fn = nn.CrossEntropyLoss(ignore_index=0)
    steps = config.epochs * ((len(windows) + config.batch_size - 1) // config.batch_size)
    bar = tqdm(total=steps, desc="greedy recommender", disable=not progress)
    for _ in range(config.epochs):
        order = torch.randperm(len(windows), generator=generator)
        for batch in windows[order].split(config.batch_size):
            logits = model(batch[:, :-1])
            loss = loss_fn(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    return model.eval()


def save_gru_recommender(
    model: GRURecommender, path: str | os.PathLike[str], dataset: SequenceDataset
) -> Path:
    """Write ``weights.safetensors`` and ``config.json`` (with the dataset fingerprint) atomically."""
    root = Path(path)
    with atomic_directory(root, overwrite=True) as tmp:
        save_model(model, str(tmp / "weights.safetensors"))
        meta = {
            "format_version": FORMAT_VERSION,
            "config": asdict(model.config),
            "dataset": dataset.fingerprint,
        }
        (tmp / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
    return root


def load_gru_recommender(path: str | os.PathLike[str], dataset: SequenceDataset) -> GRURecommender:
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
            f"{root}: trained on another dataset (fingerprint {str(meta.get('dataset'))[:12]})"
        )
    model = GRURecommender(GRUConfig(**meta["config"]))
    load_model(model, str(root / "weights.safetensors"))
    return model.eval()
