"""Candidate retrieval (recsim_env.retrieval): the sampled draw has the exact draw's distribution, never
repeats or returns an excluded item, falls back to a fixed order when its draws run short, and traces as
one graph."""

from __future__ import annotations

import pytest
import torch

from recsim_env.config import CandidateConfig
from recsim_env.retrieval import MIN_DRAWS, CandidateRetriever, first_usable, resolve_retrieval
from user_models.errors import InputError

N_ITEMS, HISTORY = 60, 4


def _retriever(retrieval: str, counts: tuple[int, int, int], popularity: torch.Tensor | None = None,
               exclude_history: bool = True) -> CandidateRetriever:
    g = torch.Generator().manual_seed(0)
    if popularity is None:
        popularity = torch.cat([torch.zeros(1), torch.rand(N_ITEMS, generator=g) * 20]).floor()
    embeddings = torch.randn(N_ITEMS + 1, 8, generator=g)
    embeddings[0] = 0
    return CandidateRetriever(counts, torch.log1p(popularity), embeddings, retrieval, exclude_history,
                              fallback_len=sum(counts) + HISTORY)


def _histories(n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    history = torch.randint(1, N_ITEMS + 1, (n, HISTORY), generator=g)
    history[: n // 4, :2] = 0  # some rows with a shorter (left-padded) history
    return history, history > 0


def _frequencies(retrieval: str, counts: tuple[int, int, int], rows: int = 20000) -> torch.Tensor:
    """``[sum(counts), n_items + 1]`` how often each item fills each candidate slot, one history for all."""
    r = _retriever(retrieval, counts)
    history = torch.tensor([[3, 7, 0, 0]]).expand(rows, -1)
    out = r.retrieve(history, history > 0, r.noise(rows, torch.Generator().manual_seed(2)))
    return torch.stack([torch.bincount(out[:, j], minlength=N_ITEMS + 1) for j in range(out.shape[1])]) / rows


def test_sampled_popular_and_random_parts_follow_the_exact_distribution() -> None:
    counts = (2, 3, 3)
    exact, sampled = _frequencies("exact", counts), _frequencies("sampled", counts)
    # Per slot, the total variation between the two empirical distributions is sampling noise only
    # (20,000 rows over 60 items: about 0.03 between two exact runs).
    tv = 0.5 * (exact - sampled).abs().sum(dim=1)
    assert tv.max() < 0.05, tv
    # The first popular slot, by hand: weight 1 + count among the items not excluded (3, 7 and the two
    # nearest items are excluded).
    r = _retriever("sampled", counts)
    nearest = exact[:2].argmax(dim=1)
    weights = r.log_popularity.exp().clone()
    weights[[0, 3, 7, *nearest.tolist()]] = 0
    torch.testing.assert_close(sampled[2], (weights / weights.sum()).float(), atol=0.012, rtol=0)
    # The history, the padding and the nearest items never fill a drawn slot.
    assert not sampled[2:, [0, 3, 7, *nearest.tolist()]].any()


@pytest.mark.parametrize("retrieval", ["exact", "sampled"])
def test_candidates_are_distinct_and_never_excluded(retrieval: str) -> None:
    r = _retriever(retrieval, (4, 4, 4))
    history, mask = _histories(500)
    out = r.retrieve(history, mask, r.noise(500, torch.Generator().manual_seed(3)))
    assert out.shape == (500, 12) and int(out.min()) >= 1 and int(out.max()) <= N_ITEMS
    assert all(len(set(row.tolist())) == 12 for row in out)
    in_history = (out[:, :, None] == history[:, None, :]).any(dim=2)
    assert not in_history.any()


def test_a_row_whose_draws_run_short_takes_the_fallback_order() -> None:
    # One item holds nearly all the popularity: every draw hits it, so the popular part's other slots
    # come from the most popular items not yet taken, in order.
    popularity = torch.ones(N_ITEMS + 1)
    popularity[5] = 1e9
    popularity[[9, 11, 13]] = torch.tensor([50.0, 40.0, 30.0])
    r = _retriever("sampled", (0, 3, 0), popularity)
    history = torch.tensor([[11, 0, 0, 0]])
    out = r.retrieve(history, history > 0, r.noise(1, torch.Generator().manual_seed(0)))
    assert out.tolist() == [[5, 9, 13]]  # 11 is in the history


def test_first_usable_skips_repeats_and_blocked_items_in_order() -> None:
    sequence = torch.tensor([[4, 4, 2, 7, 2, 9, 1]])
    blocked = torch.zeros(1, 10, dtype=torch.bool)
    blocked[0, 7] = True
    assert first_usable(sequence, blocked, 3).tolist() == [[0, 2, 5]]  # items 4, 2, 9


def test_sampled_retrieval_draws_few_uniforms_and_traces_as_one_graph() -> None:
    r = _retriever("sampled", (2, 3, 3))
    noise = r.noise(16, torch.Generator().manual_seed(0))
    assert [u.shape for u in noise] == [(16, MIN_DRAWS), (16, MIN_DRAWS)]
    history, mask = _histories(16)
    torch._dynamo.reset()
    compiled = torch.compile(r.retrieve, fullgraph=True, backend="eager")  # a graph break raises here
    assert torch.equal(compiled(history, mask, noise), r.retrieve(history, mask, noise))
    torch._dynamo.reset()


def test_auto_samples_on_large_catalogues_only() -> None:
    assert resolve_retrieval("auto", 1000, 20, 50) == "sampled"
    assert resolve_retrieval("auto", 200, 20, 50) == "exact"
    assert resolve_retrieval("exact", 5000, 20, 50) == "exact"
    with pytest.raises(InputError, match="needs at least n_candidates \\+ history_len = 70 items"):
        resolve_retrieval("sampled", 60, 20, 50)
    with pytest.raises(InputError, match="candidate retrieval must be one of"):
        CandidateConfig(retrieval="fast")  # type: ignore[arg-type]
