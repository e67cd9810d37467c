"""Candidate retrieval for the ``candidates`` action mode: nearest, popular and random items, distinct.

Kept apart from the core (like :mod:`recsim_env.choice`) so its sampling can be checked on its own.
The nearest part is the top of the dot product with the mean embedding of the visible history; the
popular part draws items without replacement with weight ``1 + training count``; the random part
draws uniformly without replacement. Two ways to draw those two parts, with the same distribution:

- ``exact``: Gumbel-top-k over the whole catalogue (one uniform per item and row per part);
- ``sampled``: ``draws`` picks with replacement per row and part (inverse CDF), keeping the first
  ``count`` distinct ones that are not excluded. Successive sampling that skips what is already taken is
  the Plackett-Luce draw without replacement, which is what Gumbel-top-k samples too; it needs ``draws``
  random numbers per row instead of ``n_items + 1``. At 1,000 items and 2,048 rows the catalogue-wide
  uniforms and their top-k were half of an env step on 2 CPU cores (57 of 111 ms; sampled, retrieval
  takes 17 ms, and BENCHMARKS ``bench_train``'s env alone went from 23,594 to 36,019 steps/s).

Excluded items (already taken by an earlier part, and the recent history unless the repeat policy is
``allow``) come last in ``exact`` and never in ``sampled``. A ``sampled`` row whose draws hold fewer than
``count`` usable items (possible only when the excluded items carry most of the part's weight, or on
purpose in the tests) takes the rest from a fixed order: the most popular items first, or a fixed
random permutation of the catalogue from a position given by the row's first draw.
"""

from __future__ import annotations

import torch

from recsim_env.config import Retrieval
from user_models.errors import InputError

SAMPLED_MIN_ITEMS = 256
"""``auto`` samples when the catalogue has at least this many items and at least four times
``n_candidates + history_len``; smaller catalogues use the exact draw (it costs little there)."""
DRAWS_PER_SLOT = 6
"""Draws with replacement per candidate of a sampled part (at least :data:`MIN_DRAWS`)."""
MIN_DRAWS = 32
"""Fewest draws of a sampled part: with 5 candidates, a row falls back only if 28 of 32 draws hit
excluded items or repeats (below 1e-12 when those hold a quarter of the part's weight)."""


def resolve_retrieval(retrieval: Retrieval, n_items: int, n_candidates: int, history_len: int) -> str:
    """``exact`` or ``sampled`` for ``retrieval`` on this catalogue (see :data:`SAMPLED_MIN_ITEMS`).

    Raises:
        InputError: ``sampled`` on a catalogue smaller than ``n_candidates + history_len`` (the excluded
            items could then leave fewer usable items than a part needs).
    """
    if retrieval == "sampled" and n_items < n_candidates + history_len:
        raise InputError(f"candidate retrieval 'sampled' needs at least n_candidates + history_len = "
                         f"{n_candidates + history_len} items, the catalogue has {n_items}: use 'exact' or "
                         "'auto'")
    if retrieval != "auto":
        return retrieval
    large = n_items >= max(SAMPLED_MIN_ITEMS, 4 * (n_candidates + history_len))
    return "sampled" if large else "exact"


class CandidateRetriever:
    """Distinct candidates per row: ``nearest`` by embedding, ``popular`` and ``random`` drawn.

    Args:
        counts: numbers of (nearest, popular, random) candidates.
        log_popularity: ``[n_items + 1]`` ``log(1 + training count)`` per item (index 0: padding).
        embeddings: ``[n_items + 1, d]`` item vectors of the recommender side (row 0: padding).
        retrieval: ``exact`` or ``sampled`` (see the module docstring; :func:`resolve_retrieval`).
        exclude_history: whether items in the recent history are excluded (the repeat policy is not
            ``allow``).
        fallback_len: how many items of the fixed fallback order a sampled row may need: at least the
            number of candidates plus the history length, so the order always holds enough usable items.
    """

    def __init__(self, counts: tuple[int, int, int], log_popularity: torch.Tensor, embeddings: torch.Tensor,
                 retrieval: str, exclude_history: bool, fallback_len: int) -> None:
        if retrieval not in ("exact", "sampled"):
            raise ValueError(f"retrieval must be 'exact' or 'sampled', got {retrieval!r}")
        self.counts = counts
        self.retrieval = retrieval
        self.exclude_history = exclude_history
        self.n_items = int(embeddings.shape[0]) - 1
        self.embeddings = embeddings
        self.log_popularity = log_popularity
        device = embeddings.device
        weights = log_popularity[1:].double().exp()
        self._cdf = (weights.cumsum(0) / weights.sum()).to(device).contiguous()  # float64: long tails
        fallback_len = min(fallback_len, self.n_items)
        self._popular_order = weights.argsort(descending=True)[:fallback_len].to(device) + 1
        permutation = torch.randperm(self.n_items, generator=torch.Generator().manual_seed(0)) + 1
        self._permutation = torch.cat([permutation, permutation[:fallback_len]]).to(device)
        self._fallback_steps = torch.arange(fallback_len, device=device)

    def draws(self, count: int) -> int:
        """Uniforms per row that a part of ``count`` candidates takes (``n_items + 1`` when exact)."""
        return self.n_items + 1 if self.retrieval == "exact" else max(MIN_DRAWS, DRAWS_PER_SLOT * count)

    def noise(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """The uniforms of :meth:`retrieve` for ``n`` rows: one ``[n, draws]`` tensor per drawn part."""
        _, n_pop, n_rand = self.counts
        return tuple(torch.rand(n, self.draws(count), generator=generator, device=self.embeddings.device)
                     for count in (n_pop, n_rand) if count)

    def retrieve(self, history: torch.Tensor, history_mask: torch.Tensor,
                 noise: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """``[n, C]`` candidates for ``[n, L]`` histories (item ids, 0 = padding; ``history_mask``
        marks the visible events), drawn with ``noise`` (:meth:`noise`): nearest, popular, random."""
        n_near, n_pop, n_rand = self.counts
        blocked = torch.zeros(len(history), self.n_items + 1, dtype=torch.bool, device=history.device)
        if self.exclude_history:
            blocked.scatter_(1, history, True)
        blocked[:, 0] = True
        uniforms = list(noise)
        parts = []
        if n_near:
            weights = history_mask.float()
            weights = weights / weights.sum(1, keepdim=True).clamp(min=1.0)
            query = torch.nn.functional.embedding_bag(history, self.embeddings, mode="sum",
                                                      per_sample_weights=weights)
            scores = (query @ self.embeddings.T).masked_fill_(blocked, -1e29)
            scores[:, 0] = float("-inf")
            parts.append(scores.topk(n_near, dim=1).indices)
        for count, popular in ((n_pop, True), (n_rand, False)):
            if not count:
                continue
            uniform = uniforms.pop(0)
            taken = torch.cat(parts, dim=1) if parts else None
            if self.retrieval == "exact":
                parts.append(self._gumbel(uniform, blocked, taken, count, popular))
            else:
                if taken is not None:
                    blocked.scatter_(1, taken, True)
                parts.append(self._sampled(uniform, blocked, count, popular))
        return torch.cat(parts, dim=1)

    def _gumbel(self, uniform: torch.Tensor, blocked: torch.Tensor, taken: torch.Tensor | None, count: int,
                popular: bool) -> torch.Tensor:
        """``[n, count]`` Gumbel-top-k over the catalogue: excluded history items after the others, items
        already taken after those, the padding never."""
        exclude = torch.where(blocked, -1e29, 0.0)
        if taken is not None:
            exclude.scatter_(1, taken, -1e30)
        exclude[:, 0] = float("-inf")
        keys = uniform.clamp(min=1e-12).log_().neg_().log_().neg_().add_(exclude)  # Gumbel noise, in place
        if popular:
            keys = keys.add_(self.log_popularity)
        return keys.topk(count, dim=1).indices

    def _sampled(self, uniform: torch.Tensor, blocked: torch.Tensor, count: int, popular: bool
                 ) -> torch.Tensor:
        """``[n, count]`` the first distinct unblocked items of the draws, then of the fallback order."""
        last = self.n_items - 1
        if popular:
            drawn = torch.searchsorted(self._cdf, uniform.double(), right=True).clamp_(max=last) + 1
            fallback = self._popular_order.expand(len(uniform), -1)
        else:
            drawn = (uniform * self.n_items).long().clamp_(max=last) + 1
            fallback = self._permutation[(drawn[:, :1] - 1) + self._fallback_steps]
        sequence = torch.cat([drawn, fallback], dim=1)
        return sequence.gather(1, first_usable(sequence, blocked, count))


def first_usable(sequence: torch.Tensor, blocked: torch.Tensor, count: int) -> torch.Tensor:
    """``[n, count]`` positions in ``sequence`` (``[n, S]`` item ids) of its first ``count`` items that are
    not ``blocked`` (``[n, n_items + 1]`` bool) and not repeats of an earlier position, in order.

    ``sequence`` must hold at least ``count`` such items per row (the caller's fallback order ensures it).
    """
    size = sequence.shape[1]
    position = torch.arange(size, dtype=torch.int32, device=sequence.device).expand_as(sequence)
    first = torch.full(blocked.shape, size, dtype=torch.int32, device=sequence.device)
    first.scatter_reduce_(1, sequence, position, "amin")  # each item's first position in the sequence
    usable = (first.gather(1, sequence) == position) & ~blocked.gather(1, sequence)
    key = torch.where(usable, position, position + size)  # usable ones first, each group in order
    return key.topk(count, dim=1, largest=False, sorted=True).indices
