"""Interest profiles: which categories (genres) a user is likely to pick next.

The profile is the model's next-item distribution pushed through the item metadata: an item with ``g``
categories (``items.category``, ``|``-joined) gives each of them ``1/g`` of its probability; items without
metadata give theirs to ``(unknown)``. The category probabilities therefore sum to one.
"""

from __future__ import annotations

import polars as pl
import torch

from user_models.protocol import History
from user_models.transformer import UserTransformer

UNKNOWN = "(unknown)"


class InterestProfiler:
    """Batched category profiles from a :class:`UserTransformer` and the dataset's items table.

    Args:
        model: the trained user model.
        items: the dataset's ``items`` frame (``item``, ``category``).
    """

    def __init__(self, model: UserTransformer, items: pl.DataFrame) -> None:
        self.model = model
        frame = items.select("item", pl.col("category").fill_null("")).sort("item")
        genres = [[g.strip() for g in (c or "").split("|") if g.strip()] for c in frame["category"].to_list()]
        names = sorted({g for gs in genres for g in gs})
        if any(not gs for gs in genres):
            names.append(UNKNOWN)
        column = {name: j for j, name in enumerate(names)}
        weights = torch.zeros(model.n_items + 1, len(names))
        for item, gs in zip(frame["item"].to_list(), genres, strict=True):
            for g in gs or [UNKNOWN]:
                weights[item, column[g]] = 1.0 / max(len(gs), 1)
        self.categories = tuple(names)
        self.weights = weights.to(model.device)

    @torch.no_grad()
    def category_probs(self, history: History) -> torch.Tensor:
        """``[B, n_categories]`` P(next item's category), columns in :attr:`categories` order."""
        logits = self.model.all_item_logits(self.model.encode(history.to(self.model.device)))
        return logits.softmax(-1) @ self.weights

    def profile(self, history: History, top: int = 5) -> list[list[tuple[str, float]]]:
        """The ``top`` categories of each row with their probabilities, most likely first."""
        probs = self.category_probs(history)
        values, index = probs.topk(min(top, probs.shape[1]), dim=1)
        return [[(self.categories[j], float(v)) for v, j in zip(vs, js, strict=True)]
                for vs, js in zip(values.tolist(), index.tolist(), strict=True)]
