"""What a real recommender could know about items from the logs alone: popularity and co-occurrence.

Both are computed from the *training split* (:meth:`SequenceDataset.train_sequences`: each user's events
minus the validation and test events), never from the simulator's parameters. They feed MostPopular, the
bandit and MMR baselines, and optionally initialise an RL agent's item embeddings.

What this does and does not leak: the embeddings summarise which items the logged users consumed close
together, exactly what a production recommender trained on the same logs would know. They carry no
information from the simulator's user model (weights, hidden state, behavior head) and none from the
held-out validation/test events. They do share their source with the user model (both learn from the
same training logs), so an agent initialised with them starts with the same prior about item similarity
as the simulator; this is realistic, not an oracle, but it is why the flag is opt-in and recorded.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from user_models.data.artifact import SequenceDataset, Sequences


def cooccurrence_embeddings(
    sequences: Sequences, n_items: int, dim: int, seed: int, window: int = 5
) -> np.ndarray:
    """Item vectors from a truncated SVD of the positive PMI of within-user co-occurrence.

    Two events count as co-occurring when the same user consumed them at most ``window`` events apart.
    Rows are scaled to unit length (similarity = dot product); items never seen get a zero vector.

    Args:
        sequences: per-user event sequences (use the training split).
        n_items: catalogue size; item ids are ``1..n_items``.
        dim: embedding size (capped at ``n_items - 1``).
        seed: seeds the SVD's start vector, so the result is deterministic.
        window: co-occurrence window in events.

    Returns:
        ``[n_items + 1, dim]`` float32; row 0 (padding) is zero.
    """
    items = sequences.items.astype(np.int64)
    owner = np.repeat(np.arange(sequences.n_users), sequences.lengths)
    rows, cols = [], []
    for lag in range(1, window + 1):  # a loop over lags, vectorised over all events
        same = owner[:-lag] == owner[lag:]
        rows.append(items[:-lag][same])
        cols.append(items[lag:][same])
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    size = n_items + 1
    counts = sp.coo_matrix((np.ones(len(r) * 2), (np.r_[r, c], np.r_[c, r])), shape=(size, size)).tocsr()
    counts.sum_duplicates()
    total = counts.sum()
    dim = max(1, min(dim, n_items - 1))
    if total == 0:
        return np.zeros((size, dim), dtype=np.float32)
    marginal = np.asarray(counts.sum(axis=1)).ravel()
    coo = counts.tocoo()
    pmi = np.log(coo.data * total / (marginal[coo.row] * marginal[coo.col]))
    keep = pmi > 0
    ppmi = sp.csr_matrix((pmi[keep], (coo.row[keep], coo.col[keep])), shape=(size, size))
    v0 = np.random.default_rng(seed).standard_normal(size)
    u, s, _ = svds(ppmi, k=dim, v0=v0)
    order = np.argsort(-s)
    vectors = u[:, order] * np.sqrt(s[order])
    # Singular vectors have an arbitrary sign; fix it so equal inputs give equal outputs everywhere.
    signs = np.sign(vectors[np.argmax(np.abs(vectors), axis=0), np.arange(dim)])
    vectors = vectors * np.where(signs == 0, 1.0, signs)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    vectors[0] = 0.0
    return vectors.astype(np.float32)


def log_item_embeddings(dataset: SequenceDataset, dim: int, seed: int) -> np.ndarray:
    """:func:`cooccurrence_embeddings` of the dataset's training split."""
    return cooccurrence_embeddings(dataset.train_sequences(), dataset.n_items, dim, seed)
