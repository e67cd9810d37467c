"""Recommendation metrics over simulated sessions: pure functions of arrays, no simulator needed.

Conventions follow :mod:`user_models.protocol`: item ids ``1..n_items`` (0 = empty slot / no choice),
behavior ids ``1..n_behaviors`` (0 = no response).

Per-episode metrics (:func:`episode_metrics`) are averaged over episodes with a bootstrap interval;
population metrics (:func:`catalogue_coverage`, :func:`gini`) describe all episodes of a policy together
and are bootstrapped by resampling episodes (see :mod:`recsim_env.offline.stats`).

Definitions:

- **return**: sum of rewards; **length**: number of steps.
- **consumption rate**: fraction of steps where the user chose an item from the slate.
- **behavior rates**: fraction of steps ending in each behavior (they sum to the consumption rate).
- **intra-list distance** (ILD): mean pairwise cosine distance ``1 - cos`` between the distinct items of a
  slate, averaged over the episode's slates (Ziegler et al., 2005). Uses the simulator's item embeddings.
- **category entropy**: Shannon entropy (bits) of the category distribution of all items recommended in
  the episode; an item with several categories spreads its unit mass evenly over them.
- **novelty**: mean self-information ``-log2 p(i)`` of recommended items, ``p`` = the item's share of the
  training interactions (Zhou et al., 2010); unseen items get the mass of half an interaction.
- **catalogue coverage**: fraction of the catalogue recommended at least once.
- **exposure Gini**: Gini coefficient of recommendation counts over all catalogue items (0 = every item
  equally exposed, -> 1 = all exposure on one item).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Episode:
    """One simulated session, as the benchmark records it.

    Attributes:
        slates: ``[T, k]`` recommended item ids per step (0 = an empty or wasted slot).
        chosen: ``[T]`` item the user chose, 0 for no choice.
        behaviors: ``[T]`` behavior id of the response, 0 for none.
        rewards: ``[T]`` reward per step.
    """

    slates: np.ndarray
    chosen: np.ndarray
    behaviors: np.ndarray
    rewards: np.ndarray

    def __post_init__(self) -> None:
        t = self.rewards.shape[0]
        if self.slates.ndim != 2 or self.slates.shape[0] != t:
            raise ValueError(f"slates must be [T={t}, k], got {self.slates.shape}")
        if self.chosen.shape != (t,) or self.behaviors.shape != (t,):
            raise ValueError(
                f"chosen and behaviors must be [T={t}], got {self.chosen.shape}, {self.behaviors.shape}"
            )

    @property
    def length(self) -> int:
        return int(self.rewards.shape[0])


@dataclass(frozen=True)
class Catalogue:
    """What the metrics need to know about the items.

    Attributes:
        embeddings: ``[n_items + 1, d]`` item vectors (row 0 unused).
        categories: ``[n_items + 1, n_categories]`` multi-hot category membership (row 0 unused);
            an item without categories has an all-zero row and is left out of the entropy.
        popularity: ``[n_items + 1]`` interaction counts in the training logs (row 0 unused).
        n_behaviors: size of the behavior vocabulary.
    """

    embeddings: np.ndarray
    categories: np.ndarray
    popularity: np.ndarray
    n_behaviors: int

    @property
    def n_items(self) -> int:
        return int(self.popularity.shape[0] - 1)


def consumption_rate(chosen: np.ndarray) -> float:
    """Fraction of steps with a choice (``chosen > 0``); 0 for an empty episode."""
    chosen = np.asarray(chosen)
    return float((chosen > 0).mean()) if chosen.size else 0.0


def behavior_rates(behaviors: np.ndarray, n_behaviors: int) -> np.ndarray:
    """``[n_behaviors]``: fraction of steps whose response is behavior id ``i + 1``."""
    behaviors = np.asarray(behaviors, dtype=np.int64)
    if behaviors.size == 0:
        return np.zeros(n_behaviors)
    counts = np.bincount(behaviors, minlength=n_behaviors + 1)[1 : n_behaviors + 1]
    return counts / behaviors.size


def intra_list_distance(slates: np.ndarray, embeddings: np.ndarray) -> float:
    """Mean pairwise cosine distance within each slate, averaged over slates.

    Empty slots (0) and repeated items count once; a slate with fewer than two distinct items is skipped.
    Returns 0 when no slate has two distinct items.
    """
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    unit = embeddings / np.where(norms > 0, norms, 1.0)
    per_slate = []
    for slate in np.asarray(slates):
        items = np.unique(slate[slate > 0])
        if items.size < 2:
            continue
        v = unit[items]
        sim = v @ v.T
        m = items.size
        mean_sim = (sim.sum() - np.trace(sim)) / (m * (m - 1))
        per_slate.append(1.0 - mean_sim)
    return float(np.mean(per_slate)) if per_slate else 0.0


def entropy_bits(mass: np.ndarray) -> float:
    """Shannon entropy in bits of a non-negative mass vector (normalised here); 0 for zero mass."""
    mass = np.asarray(mass, dtype=np.float64)
    total = mass.sum()
    if total <= 0:
        return 0.0
    p = mass[mass > 0] / total
    return float(-(p * np.log2(p)).sum())


def category_entropy(items: np.ndarray, categories: np.ndarray) -> float:
    """Entropy (bits) of the category mix of ``items`` (0s ignored); each item has unit mass."""
    items = np.asarray(items).reshape(-1)
    items = items[items > 0]
    rows = categories[items].astype(np.float64)
    per_item = rows.sum(axis=1, keepdims=True)
    mass = (rows / np.where(per_item > 0, per_item, 1.0)).sum(axis=0)
    return entropy_bits(mass)


def novelty(items: np.ndarray, popularity: np.ndarray) -> float:
    """Mean ``-log2 p(i)`` of ``items`` (0s ignored), ``p`` from interaction counts ``popularity``."""
    items = np.asarray(items).reshape(-1)
    items = items[items > 0]
    if items.size == 0:
        return 0.0
    counts = np.asarray(popularity, dtype=np.float64)[1:]
    p = np.maximum(counts, 0.5) / counts.sum()
    return float(-np.log2(p[items - 1]).mean())


def catalogue_coverage(items: np.ndarray, n_items: int) -> float:
    """Fraction of the ``n_items`` catalogue that appears in ``items`` (0s ignored)."""
    items = np.asarray(items).reshape(-1)
    return float(np.unique(items[items > 0]).size / n_items)


def exposure_counts(items: np.ndarray, n_items: int) -> np.ndarray:
    """``[n_items]`` number of times each item id ``1..n_items`` appears in ``items``."""
    items = np.asarray(items, dtype=np.int64).reshape(-1)
    return np.bincount(items[items > 0], minlength=n_items + 1)[1:]


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values (0 = equal; ``(n-1)/n`` = all mass on one entry)."""
    x = np.sort(np.asarray(values, dtype=np.float64).reshape(-1))
    if x.size == 0 or x.sum() <= 0:
        return 0.0
    if x[0] < 0:
        raise ValueError("Gini coefficient needs non-negative values")
    n = x.size
    ranks = np.arange(1, n + 1)
    return float(2.0 * (ranks * x).sum() / (n * x.sum()) - (n + 1) / n)


def episode_metrics(
    episode: Episode, catalogue: Catalogue, behavior_names: tuple[str, ...]
) -> dict[str, float]:
    """All per-episode metrics of one session, keyed by metric name (behavior rates as ``rate_<name>``)."""
    shown = episode.slates
    rates = behavior_rates(episode.behaviors, catalogue.n_behaviors)
    out = {
        "return": float(episode.rewards.sum()),
        "length": float(episode.length),
        "consumption_rate": consumption_rate(episode.chosen),
    }
    out.update({f"rate_{name}": float(r) for name, r in zip(behavior_names, rates, strict=True)})
    out["intra_list_distance"] = intra_list_distance(shown, catalogue.embeddings)
    out["category_entropy"] = category_entropy(shown, catalogue.categories)
    out["novelty"] = novelty(shown, catalogue.popularity)
    return out


def categories_multi_hot(
    category_strings: list[str | None], separator: str = "|"
) -> tuple[np.ndarray, list[str]]:
    """Turn per-item category strings (index 0 = item 1; ``None`` = unknown) into a multi-hot matrix.

    Returns:
        ``[n_items + 1, n_categories]`` 0/1 matrix (row 0 all zero) and the sorted category names.
    """
    split = [[c for c in (s or "").split(separator) if c] for s in category_strings]
    names = sorted({c for cats in split for c in cats})
    index = {c: j for j, c in enumerate(names)}
    matrix = np.zeros((len(split) + 1, len(names)), dtype=np.float32)
    for i, cats in enumerate(split, start=1):
        for c in cats:
            matrix[i, index[c]] = 1.0
    return matrix, names
