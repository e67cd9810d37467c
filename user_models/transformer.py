"""The learned user: a causal pre-LN Transformer over a user's events, with incremental inference.

Each event is one token: item embedding + behavior embedding + time-gap bucket embedding + a learned
position counted from the first event of the row's window (rows are right padded, so position ``t`` of a
cached row is always slot ``t`` of its cache). Three heads read the last hidden state ``h``:

- next item: ``h · e_item + b_item`` over the whole catalogue, tied to the input item embeddings, plus a
  learned repeat logit ``r(h)`` for items already in the window (users of some logs never repeat an
  item, others often do: the data decides);
- behavior given item: ``P(behavior | history, item)`` from an MLP over ``[h, e_item]``;
- session end: ``P(the last event ended its session | history)``.

:class:`UserTransformer` implements :class:`user_models.protocol.UserModel`. Its state
(:class:`TransformerState`) is a preallocated per-layer key/value cache with one write position per row,
because rows start, reset and slide independently. A row holds at most ``max_len`` events; when a full
row receives an event it *slides*: the model re-encodes its most recent ``max_len // 2`` events (one
batched prefill over the sliding rows) and appends the new one, so the window stays bounded and the
re-encoding cost is amortised over ``max_len // 2`` steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from user_models.choice_model import LearnedChoice
from user_models.protocol import History

CPU_BLOCK_ELEMENTS = 1 << 19
"""Elements per row block on the CPU: the logits of :meth:`UserTransformer.item_logits_and_log_normaliser`
and the MLP activations of a step (:meth:`UserTransformer._finish_rows`). 2 MiB of float32, about one
core's L2 cache (the rows of a block are split between the threads). On the 2-core benchmark machine
(N = 4096, 1,682 items) the choice took 27 ms a step at this size, 28-30 ms at half or twice it, 42 ms in
one block and 82 ms with the [N, n_items] tensor of before."""


@dataclass(frozen=True)
class TransformerConfig:
    """Architecture of :class:`UserTransformer` (the catalogue and behaviors come from the dataset).

    The defaults are sized for 2 CPU cores and are the benchmarked configuration.
    """

    dim: int = 64
    """Width of every token and hidden vector."""
    layers: int = 2
    heads: int = 2
    max_len: int = 50
    """Events a row attends over; longer histories keep their most recent events."""
    dropout: float = 0.2
    """Dropout on embeddings, attention weights and residual branches during training."""
    gap_buckets: int = 32
    """Time-gap buckets: 0 = unknown (no timestamps, or a user's first event), then
    ``1 + floor(log2(1 + seconds))`` capped at ``gap_buckets - 1``."""

    def __post_init__(self) -> None:
        for name, (lo, hi) in SIZE_BOUNDS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
            if not lo <= value <= hi:
                raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
        dropout = self.dropout
        if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")
        if self.max_len < 2:
            raise ValueError(f"max_len must be at least 2, got {self.max_len}")
        if self.gap_buckets < 2:
            raise ValueError(f"gap_buckets must be at least 2, got {self.gap_buckets}")


SIZE_BOUNDS: dict[str, tuple[int, int]] = {
    "dim": (2, 4096), "layers": (1, 64), "heads": (1, 64), "max_len": (2, 4096), "gap_buckets": (2, 1024),
}
"""Inclusive bounds of the integer sizes of :class:`TransformerConfig` (beyond them a model is
degenerate, e.g. ``dim`` 0, or cannot fit one machine's memory, e.g. ``max_len`` 10**7)."""


def gap_bucket(gaps: torch.Tensor, n_buckets: int) -> torch.Tensor:
    """Log-scaled time-gap bucket ids: 0 for negative (unknown) gaps, else ``1 + floor(log2(1 + s))``."""
    known = gaps >= 0
    b = torch.floor(torch.log2(1.0 + gaps.clamp(min=0).float())).long() + 1
    return torch.where(known, b.clamp(max=n_buckets - 1), torch.zeros_like(b))


def _slots_kept(lengths: torch.Tensor, width: int, dtype: torch.dtype) -> torch.Tensor:
    """``[R, width]`` 1.0 at each row's first ``lengths`` slots, 0.0 after: multiplying a finite cache by
    it zeroes the slots past a row's events (a zero may be ``-0.0``, equal to 0.0 in every comparison and
    sum). On the CPU this is about ten times faster than ``torch.where`` or ``masked_fill`` with the
    boolean mask broadcast over heads and head dimension, which run element by element."""
    return (torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]).to(dtype)


def logsumexp_rows(x: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``[b, 1]`` ``torch.logsumexp(x / temperature, dim=1, keepdim=True)`` of ``[b, n]`` float rows, with
    base-2 exponentials: on the CPU torch's float ``exp`` goes through MKL's vector math library, which
    on the benchmark machine (AMD EPYC) is 3x slower than ``exp2`` (a 311 x 1,683 block: 0.89 ms against
    0.47 ms for the whole reduction). The same number up to float rounding; like ``torch.logsumexp``, an
    infinite row maximum is not subtracted (a row of ``-inf`` gives ``-inf``)."""
    top = x.amax(dim=1, keepdim=True)
    top = top.masked_fill(top.isinf(), 0.0)
    total = (x - top).mul_(1.0 / (math.log(2.0) * temperature)).exp2_().sum(dim=1, keepdim=True)
    return total.log_().add_(top / temperature)


def _attend_one(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor
                ) -> torch.Tensor:
    """Attention of one query per row and head (``q``: ``[B, heads, 1, head_dim]``) over a cache
    (``keys``, ``values``: ``[B, heads, L, head_dim]``) with an additive ``bias`` (``[B, heads, 1, L]``,
    ``-inf`` where not attended): ``scaled_dot_product_attention(q, keys, values, attn_mask=bias)``.

    Written as two batched matrix products because the CPU's fused attention kernel runs a small
    matrix product per row and head, which at one query costs about twice the matrix products over the
    whole batch (N = 4096, 2 heads, window 50: about 8 ms against 4 to 5 ms a layer, reading the cache
    being most of that).
    """
    b, h, length, d = keys.shape
    scores = torch.baddbmm(bias.reshape(b * h, 1, length), q.reshape(b * h, 1, d),
                           keys.reshape(b * h, length, d).transpose(1, 2), alpha=d ** -0.5)
    return torch.bmm(scores.softmax(dim=-1), values.reshape(b * h, length, d)).view(b, h, 1, d)


class _Block(nn.Module):
    """Pre-LN Transformer block whose attention is supplied by the caller (causal or cached)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        d = config.dim
        self.heads = config.heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.dropout = nn.Dropout(config.dropout)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values ``[B, heads, T, head_dim]`` of ``x`` ``[B, T, d]``."""
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return q, k, v

    def finish(self, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """Residual updates from the attention output ``[B, heads, T, head_dim]`` and the MLP."""
        b, t, d = x.shape
        x = x + self.dropout(self.proj(attended.transpose(1, 2).reshape(b, t, d)))
        return x + self.dropout(self.mlp(self.ln2(x)))


@dataclass
class TransformerState:
    """Incremental state of a batch of rows: the window of events and its key/value cache.

    Attributes:
        keys, values: ``[layers, B, heads, max_len, head_dim]``; slot ``t`` holds the row's event ``t``.
        items, behaviors, gap_buckets: ``[B, max_len]`` the window's events (kept to re-encode on slide).
        lengths: ``[B]`` events in each row's window (0..max_len).
        hidden: ``[B, dim]`` final hidden state after each row's last event (zeros for an empty row).
    """

    keys: torch.Tensor
    values: torch.Tensor
    items: torch.Tensor
    behaviors: torch.Tensor
    gap_buckets: torch.Tensor
    lengths: torch.Tensor
    hidden: torch.Tensor

    @property
    def batch_size(self) -> int:
        return int(self.lengths.shape[0])


@dataclass
class PrefixTable:
    """Encoded windows whose prefixes start new users by a copy (see :meth:`UserTransformer.encode_prefixes`).

    Attributes:
        windows: The state of U rows, each after the first ``max_len`` events of one sequence.
        hidden: ``[U, max_len, dim]`` the final hidden state after each of those events.
    """

    windows: TransformerState
    hidden: torch.Tensor

    @property
    def nbytes(self) -> int:
        tensors = [*vars(self.windows).values(), self.hidden]
        return sum(t.numel() * t.element_size() for t in tensors)


class UserTransformer(nn.Module):
    """Causal Transformer user model; see the module docstring. Implements ``UserModel``.

    Args:
        config: architecture.
        n_items: catalogue size (item ids ``1..n_items``, 0 = padding).
        behaviors: behavior names, lowest engagement first (ids ``1..len(behaviors)``).
    """

    def __init__(self, config: TransformerConfig, n_items: int, behaviors: tuple[str, ...]) -> None:
        super().__init__()
        if n_items < 1 or not behaviors:
            raise ValueError(f"need at least one item and one behavior, got {n_items} and {behaviors}")
        self.config = config
        self._n_items = n_items
        self._behaviors = tuple(behaviors)
        d = config.dim
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.behavior_emb = nn.Embedding(len(behaviors) + 1, d, padding_idx=0)
        self.gap_emb = nn.Embedding(config.gap_buckets, d)
        self.pos_emb = nn.Embedding(config.max_len, d)
        self.emb_dropout = nn.Dropout(config.dropout)
        self.blocks: nn.ModuleList = nn.ModuleList(_Block(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(d)
        self.item_bias = nn.Parameter(torch.zeros(n_items + 1))
        self.behavior_head = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, len(behaviors)))
        self.end_head = nn.Linear(d, 1)
        self.repeat_head = nn.Linear(d, 1)
        self.apply(self._init_weights)
        self.learned_choice: LearnedChoice | None = None
        """The slate choice learned from impression logs (:mod:`user_models.choice_model`), attached by
        :func:`~user_models.checkpoint.load_user_model` when the checkpoint has one; not a weight of the
        Transformer (its own files, fitted after training)."""

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
            if module.padding_idx is not None:
                module.weight.data[module.padding_idx].zero_()

    # --- protocol properties ----------------------------------------------------------------------
    @property
    def n_items(self) -> int:
        return self._n_items

    @property
    def behaviors(self) -> tuple[str, ...]:
        return self._behaviors

    @property
    def device(self) -> torch.device:
        return self.item_bias.device

    def _layers(self) -> list[_Block]:
        return [b for b in self.blocks if isinstance(b, _Block)]

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # --- full forward (training, prefill, reference) ----------------------------------------------
    def _embed(self, items: torch.Tensor, behaviors: torch.Tensor, buckets: torch.Tensor,
               positions: torch.Tensor) -> torch.Tensor:
        x = self.item_emb(items) + self.behavior_emb(behaviors) + self.gap_emb(buckets)
        return self.emb_dropout(x + self.pos_emb(positions))

    def _encode_tokens(self, items: torch.Tensor, behaviors: torch.Tensor, buckets: torch.Tensor
                       ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Causal forward over right-padded ``[B, T]`` tokens: final hidden ``[B, T, d]``, per-layer k/v."""
        positions = torch.arange(items.shape[1], device=items.device)
        x = self._embed(items, behaviors, buckets, positions)
        p = self.config.dropout if self.training else 0.0
        kv = []
        for block in self._layers():
            q, k, v = block.project(x)
            x = block.finish(x, F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True))
            kv.append((k, v))
        return self.norm(x), kv

    def _encode_last(self, items: torch.Tensor, behaviors: torch.Tensor, buckets: torch.Tensor,
                     lengths: torch.Tensor) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """:meth:`_encode_tokens` for a prefill: per-layer k/v at every position of right-padded
        ``[R, T]`` tokens, but the final hidden state only after each row's last event (``[R, d]``, at
        position ``lengths - 1``; a row of no events reads position 0).

        No layer reads the last layer's output at the other positions, so its attention and MLP run for
        that one position (:func:`_attend_one`): with 2 layers, about a third less work than the full
        forward.
        """
        positions = torch.arange(items.shape[1], device=items.device)
        x = self._embed(items, behaviors, buckets, positions)
        p = self.config.dropout if self.training else 0.0
        *lower, top = self._layers()
        kv = []
        for block in lower:
            q, k, v = block.project(x)
            x = block.finish(x, F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True))
            kv.append((k, v))
        q, k, v = top.project(x)
        kv.append((k, v))
        last = (lengths - 1).clamp(min=0)
        rows = torch.arange(items.shape[0], device=items.device)
        later = positions[None, :] > last[:, None]
        bias = torch.zeros(q.shape[0], q.shape[1], 1, items.shape[1], dtype=x.dtype, device=x.device)
        bias = bias.masked_fill_(later[:, None, None, :], -math.inf)
        attended = _attend_one(q[rows, :, last][:, :, None], k, v, bias)
        return self.norm(top.finish(x[rows, last][:, None], attended))[:, 0], kv

    def forward(self, history: History) -> torch.Tensor:
        """Hidden states ``[B, L, d]`` after every event of right-padded ``history`` (``L <= max_len``).

        Position ``t``'s state has seen events ``0..t`` only; positions past a row's length are padding.
        """
        if history.items.shape[1] > self.config.max_len:
            width = history.items.shape[1]
            raise ValueError(f"history of width {width} exceeds max_len {self.config.max_len}")
        buckets = gap_bucket(history.gaps, self.config.gap_buckets)
        return self._encode_tokens(history.items, history.behaviors, buckets)[0]

    def catalogue_logits(self, hidden: torch.Tensor, seen: torch.Tensor | None = None) -> torch.Tensor:
        """``[..., n_items + 1]`` next-item logits of hidden states ``[..., d]`` (column 0 = padding).

        ``seen`` (``[..., n_items + 1]`` bool) marks items already in the window; they get the learned,
        history-dependent repeat logit added (very negative on data where users never repeat an item).
        """
        logits = hidden @ self.item_emb.weight.T + self.item_bias
        return logits if seen is None else logits + seen * self.repeat_logit(hidden).unsqueeze(-1)

    def item_scores(self, hidden: torch.Tensor, items: torch.Tensor, seen: torch.Tensor | None = None
                    ) -> torch.Tensor:
        """Logits ``[..., k]`` of ``items`` ``[..., k]`` for hidden ``[..., d]``, as ``catalogue_logits``."""
        logits = (hidden.unsqueeze(-2) * self.item_emb(items)).sum(-1) + self.item_bias[items]
        return logits if seen is None else logits + seen * self.repeat_logit(hidden).unsqueeze(-1)

    def repeat_logit(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[...]`` logit added to items the user already has in the window."""
        return self.repeat_head(hidden).squeeze(-1)

    @staticmethod
    def first_positions(items: torch.Tensor, lengths: torch.Tensor, n_items: int) -> torch.Tensor:
        """``[B, n_items + 1]`` first position of each item in right-padded ``items`` ``[B, L]``.

        Items absent from a row get ``L`` (so ``first <= t`` means "seen by position t").
        """
        b, width = items.shape
        dtype = torch.int32  # compact (training gathers a row per position); CUDA has int32 atomics
        positions = torch.arange(width, device=items.device, dtype=dtype).expand(b, -1)
        positions = torch.where(positions < lengths[:, None], positions, width)
        first = torch.full((b, n_items + 1), width, dtype=dtype, device=items.device)
        return first.scatter_reduce(1, items, positions, reduce="amin")

    def behavior_logits(self, hidden: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``[..., k, n_behaviors]`` behavior logits for hidden ``[..., d]`` and items ``[..., k]``."""
        e = self.item_emb(items)
        h = hidden.unsqueeze(-2).expand_as(e)
        return self.behavior_head(torch.cat([h, e], dim=-1))

    def end_logit(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[...]`` session-end logit for hidden ``[..., d]``."""
        return self.end_head(hidden).squeeze(-1)

    # --- incremental inference (UserModel protocol) -----------------------------------------------
    def empty_state(self, batch_size: int) -> TransformerState:
        """A state of ``batch_size`` rows with no events (preallocated cache)."""
        c, dev = self.config, self.device
        cache = (c.layers, batch_size, c.heads, c.max_len, c.dim // c.heads)
        dtype = self.item_bias.dtype
        zeros_long = torch.zeros(batch_size, c.max_len, dtype=torch.long, device=dev)
        return TransformerState(
            keys=torch.zeros(cache, dtype=dtype, device=dev),
            values=torch.zeros(cache, dtype=dtype, device=dev),
            items=zeros_long, behaviors=zeros_long.clone(), gap_buckets=zeros_long.clone(),
            lengths=torch.zeros(batch_size, dtype=torch.long, device=dev),
            hidden=torch.zeros(batch_size, c.dim, dtype=dtype, device=dev),
        )

    @torch.no_grad()
    def encode(self, history: History) -> TransformerState:
        """Prefill: the state of each row after its last ``max_len`` events."""
        state = self.empty_state(history.batch_size)
        self._load_rows(state, torch.arange(history.batch_size, device=self.device), history.to(self.device))
        return state

    @torch.no_grad()
    def reset_rows(self, state: TransformerState, rows: torch.Tensor, history: History) -> TransformerState:
        """Replace the rows where ``rows`` is set by users encoded from ``history`` (in row order)."""
        index = rows.nonzero().squeeze(1)
        if history.batch_size != index.numel():
            raise ValueError(f"reset of {index.numel()} rows got a history of {history.batch_size} rows")
        self._load_rows(state, index, history.to(self.device))
        return state

    @torch.no_grad()
    def encode_prefixes(self, history: History, max_bytes: int) -> PrefixTable | None:
        """Encode every row once, for :meth:`reset_rows_from_prefixes`; None if not possible.

        Attention is causal and positions count from a window's first event, so the state after the
        first ``l`` events of a row that fits the window is the first ``l`` slots of the row's encoding
        and the hidden state at position ``l - 1``: a reset to any such prefix is a copy, not a prefill.
        Rows wider than ``max_len`` (prefixes would be re-windowed) or a table over ``max_bytes`` give None.
        """
        c = self.config
        rows, width = history.items.shape
        per_row = (2 * c.layers * c.max_len * c.dim + 2 * c.dim) * self.item_bias.element_size() \
            + (c.max_len * c.dim) * self.item_bias.element_size() + 3 * c.max_len * 8 + 8
        if width > c.max_len or rows * per_row > max_bytes:
            return None
        history = history.to(self.device)
        return PrefixTable(self.encode(history), self.forward(history))

    @torch.no_grad()
    def reset_rows_from_prefixes(self, state: TransformerState, rows: torch.Tensor, table: PrefixTable,
                                 sources: torch.Tensor, lengths: torch.Tensor) -> TransformerState:
        """Like :meth:`reset_rows` with the first ``lengths`` events of table rows ``sources`` (in row
        order; ``lengths <= max_len``), copied from ``table`` instead of encoded."""
        index = rows.nonzero().squeeze(1)
        windows = table.windows
        valid = torch.arange(self.config.max_len, device=self.device)[None, :] < lengths[:, None]
        for name in ("items", "behaviors", "gap_buckets"):
            getattr(state, name)[index] = torch.where(valid, getattr(windows, name)[sources], 0)
        state.lengths[index] = lengths
        # Whole rows' caches along the row dimension (index_select/index_copy_: several times faster than
        # advanced indexing behind the layer dimension, keys[:, rows]), the slots past each prefix zeroed
        # by a float mask (see _slots_kept).
        kept = _slots_kept(lengths, self.config.max_len, state.keys.dtype)[None, :, None, :, None]
        for cache, source in ((state.keys, windows.keys), (state.values, windows.values)):
            cache.index_copy_(1, index, source.index_select(1, sources).mul_(kept))
        last = table.hidden[sources, (lengths - 1).clamp(min=0)]
        state.hidden[index] = torch.where((lengths > 0)[:, None], last, 0)
        return state

    def _load_rows(self, state: TransformerState, index: torch.Tensor, history: History) -> None:
        """Write the last ``max_len`` events of each ``history`` row into state rows ``index``."""
        max_len = self.config.max_len
        lengths = history.lengths.clamp(max=max_len)
        start = history.lengths - lengths
        cols = start[:, None] + torch.arange(max_len, device=self.device)[None, :]
        valid = torch.arange(max_len, device=self.device)[None, :] < lengths[:, None]
        width = history.items.shape[1]
        cols = cols.clamp(max=max(width - 1, 0))

        def window(x: torch.Tensor, fill: float) -> torch.Tensor:
            if width == 0:
                return torch.full((x.shape[0], max_len), fill, dtype=x.dtype, device=self.device)
            return torch.where(valid, x.gather(1, cols), torch.full_like(cols, fill, dtype=x.dtype))

        items = window(history.items, 0)
        behaviors = window(history.behaviors, 0)
        buckets = torch.where(valid, gap_bucket(window(history.gaps, -1.0), self.config.gap_buckets), 0)
        self._prefill(state, index, items, behaviors, buckets, lengths)

    def _prefill(self, state: TransformerState, index: torch.Tensor, items: torch.Tensor,
                 behaviors: torch.Tensor, buckets: torch.Tensor, lengths: torch.Tensor,
                 width: int | None = None) -> None:
        """Encode windows ``[R, max_len]`` (first ``lengths`` valid) into state rows ``index``;
        ``width``: ``max(lengths)`` when the caller knows it (read from the tensor otherwise)."""
        state.items[index] = items
        state.behaviors[index] = behaviors
        state.gap_buckets[index] = buckets
        state.lengths[index] = lengths
        if width is None:
            width = int(lengths.max()) if lengths.numel() else 0
        if width == 0:
            state.keys[:, index] = 0
            state.values[:, index] = 0
            state.hidden[index] = 0
            return
        hidden, kv = self._encode_last(items[:, :width], behaviors[:, :width], buckets[:, :width], lengths)
        # Whole rows of the cache at once (index_copy_, not a write behind the layer dimension), the slots
        # past a row's events zeroed by a float mask (see _slots_kept).
        max_len = self.config.max_len
        valid = _slots_kept(lengths, max_len, hidden.dtype)[:, None, :, None]
        for layer, (k, v) in enumerate(kv):
            for cache, new in ((state.keys[layer], k), (state.values[layer], v)):
                cache.index_copy_(0, index, F.pad(new, (0, 0, 0, max_len - width)) * valid)
        state.hidden[index] = torch.where((lengths > 0)[:, None], hidden, 0)

    @torch.no_grad()
    def step(self, state: TransformerState, items: torch.Tensor, behaviors: torch.Tensor,
             gaps: torch.Tensor, active: torch.Tensor) -> TransformerState:
        """Append one event to each active row (sliding full rows first); inactive rows are untouched.

        Dense over the batch: every row is computed and inactive rows keep their old values through
        ``torch.where``. Gathering the active rows instead would copy the whole key/value cache each step
        (most rows are active) and read the active count back to the host.
        """
        c = self.config
        # A full row slides: re-encode its most recent half (every max_len/2 steps). No `if any():` on
        # the host: the rows that slide (often none) go through the same ops, so the step holds no host
        # read and compiles as one graph.
        index = (active & (state.lengths >= c.max_len)).nonzero().squeeze(1)
        keep = c.max_len // 2
        items_, behaviors_, buckets_ = (self._shift(x[index], keep)
                                        for x in (state.items, state.behaviors, state.gap_buckets))
        kept = torch.full_like(index, keep)
        self._prefill(state, index, items_, behaviors_, buckets_, kept, width=keep)
        pos = state.lengths.clamp(max=c.max_len - 1)  # inactive full rows: a slot rewritten unchanged
        item, behavior = items.long(), behaviors.long()
        bucket = gap_bucket(gaps, c.gap_buckets)
        rows = torch.arange(state.batch_size, device=self.device)

        def write(cache: torch.Tensor, value: torch.Tensor) -> None:
            """``cache[row, ..., pos[row], ...] = value[row]`` where active.

            ``cache`` is ``[B, L]`` or ``[B, heads, L, head_dim]`` (contiguous); ``index_select`` and
            ``index_copy_`` on a flat view are several times faster than advanced indexing here.
            """
            heads = cache.shape[1] if cache.dim() == 4 else 1
            slot = ((rows[:, None] * heads + torch.arange(heads, device=self.device)) * c.max_len
                    + pos[:, None]).reshape(-1)
            flat = cache.view(-1, cache.shape[-1] if cache.dim() == 4 else 1)
            old = flat.index_select(0, slot).view_as(value)
            new = torch.where(active.view(-1, *[1] * (value.dim() - 1)), value, old)
            flat.index_copy_(0, slot, new.reshape(slot.numel(), -1))

        write(state.items, item)
        write(state.behaviors, behavior)
        write(state.gap_buckets, bucket)
        x = self._embed(item[:, None], behavior[:, None], bucket[:, None], pos[:, None])
        # The one query of each row sees the cache up to its new slot: -inf past it, shared by the layers.
        future = torch.arange(c.max_len, device=self.device)[None, :] > pos[:, None]
        bias = torch.zeros(state.batch_size, c.heads, 1, c.max_len, dtype=x.dtype, device=self.device)
        bias = bias.masked_fill_(future[:, None, None, :], -math.inf)
        for layer, block in enumerate(self._layers()):
            q, k, v = block.project(x)
            write(state.keys[layer], k[:, :, 0])
            write(state.values[layer], v[:, :, 0])
            x = self._finish_rows(block, x, _attend_one(q, state.keys[layer], state.values[layer], bias))
        state.hidden = torch.where(active[:, None], self.norm(x)[:, 0], state.hidden)
        state.lengths = state.lengths + active.long()
        return state

    def _finish_rows(self, block: _Block, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """``block.finish(x, attended)`` of one token per row (``x``: ``[B, 1, d]``), on the CPU in row
        blocks of :data:`CPU_BLOCK_ELEMENTS` MLP activations (``[rows, 4 d]``; 2,048 rows at ``d`` = 64).

        The activations of the whole batch are 4 MiB per tensor at N = 4096, and on the 2-core benchmark
        machine writing a fresh tensor of that size is several times slower than the arithmetic: GELU and
        the first linear's bias copy took 18 ms a step, 3 ms in blocks of 2,048 rows. Other devices take
        all rows at once (blocks would only add kernel launches).
        """
        rows = x.shape[0]
        size = max(1, CPU_BLOCK_ELEMENTS // (4 * x.shape[-1])) if self.device.type == "cpu" else rows
        return torch.cat([block.finish(x[start:start + size], attended[start:start + size])
                          for start in range(0, max(rows, 1), size)])

    @staticmethod
    def _shift(x: torch.Tensor, keep: int) -> torch.Tensor:
        """The last ``keep`` columns of full windows ``x`` moved to the front, zeros after."""
        out = torch.zeros_like(x)
        out[:, :keep] = x[:, -keep:]
        return out

    @torch.no_grad()
    def item_logits(self, state: TransformerState, items: torch.Tensor) -> torch.Tensor:
        """``[B, k]`` next-item preference logits for ``items`` ``[B, k]``."""
        items = items.long()
        in_window = torch.arange(self.config.max_len, device=self.device)[None, :] < state.lengths[:, None]
        seen = ((state.items[:, None, :] == items[:, :, None]) & in_window[:, None, :]).any(-1)
        return self.item_scores(state.hidden, items, seen)

    @torch.no_grad()
    def all_item_logits(self, state: TransformerState) -> torch.Tensor:
        """``[B, n_items + 1]`` logits over the whole catalogue (column 0 = padding, never a choice).

        The same logits as ``catalogue_logits(hidden, seen)``, with the repeat logit added at the
        window's items only (``[B, L]``, not a ``[B, n_items + 1]`` mask): one fused matrix product, one
        small gather and scatter (see :meth:`_window_logits`).
        """
        return self._window_logits(state.hidden, state.items, state.lengths, self.repeat_logit(state.hidden))

    @torch.no_grad()
    def item_logits_and_log_normaliser(self, state: TransformerState, items: torch.Tensor, temperature: float
                                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, m]`` float :meth:`all_item_logits` of ``items`` (``[B, m]``, ids >= 1) and the ``[B, 1]``
        ``logsumexp`` of the catalogue's (items ``1..n_items``) float logits divided by ``temperature``.

        What a choice over the whole catalogue needs, without a ``[B, n_items]`` tensor: on the CPU the
        rows go in blocks of about :data:`CPU_BLOCK_ELEMENTS` logits, so each block's logits stay in
        the cache from the matrix product to the ``logsumexp`` (at N = 4096 users and 1,682 items the
        whole tensor, 28 MB, would go to memory and back once per pass over it). Other devices take all
        rows at once (blocks would only add kernel launches). The numbers are those of the whole tensor:
        the simulator's step spends most of its time here.
        """
        rows = state.hidden.shape[0]
        block = max(1, CPU_BLOCK_ELEMENTS // (self.n_items + 1)) if self.device.type == "cpu" else rows
        repeat = self.repeat_logit(state.hidden)  # all rows at once: no row's number depends on its block
        picked, normaliser = [], []
        for start in range(0, rows, block):
            span = slice(start, start + block)
            logits = self._window_logits(state.hidden[span], state.items[span], state.lengths[span],
                                         repeat[span]).float()
            picked.append(logits.gather(1, items[span]))
            normaliser.append(logsumexp_rows(logits[:, 1:], temperature))
        return torch.cat(picked), torch.cat(normaliser)

    def _window_logits(self, hidden: torch.Tensor, items: torch.Tensor, lengths: torch.Tensor,
                       repeat: torch.Tensor) -> torch.Tensor:
        """``[b, n_items + 1]`` :meth:`all_item_logits` of rows with final ``hidden`` states ``[b, dim]``,
        windows ``items`` (``[b, L]``) holding ``lengths`` (``[b]``) events and repeat logits ``repeat``
        (``[b]``, :meth:`repeat_logit`).

        The repeat logit is added once per distinct window item: the logits at the window's items are
        gathered, raised and scattered back (every copy of an item writes the same number, so the
        order of the writes does not matter); slots past a row's length write into column 0, which is
        then set to ``-inf``.
        """
        logits = torch.addmm(self.item_bias, hidden, self.item_emb.weight.T)
        valid = torch.arange(items.shape[1], device=items.device)[None, :] < lengths[:, None]
        seen = torch.where(valid, items, 0)
        raised = logits.gather(1, seen) + repeat[:, None].to(logits.dtype)
        logits.scatter_(1, seen, raised)
        logits[:, 0] = -math.inf
        return logits

    @torch.no_grad()
    def behavior_probs(self, state: TransformerState, items: torch.Tensor) -> torch.Tensor:
        """``[B, k, n_behaviors]`` P(behavior | history, the user picks the item)."""
        return self.behavior_logits(state.hidden, items.long()).softmax(-1)

    @torch.no_grad()
    def end_prob(self, state: TransformerState) -> torch.Tensor:
        """``[B]`` P(the row's last event ended its session | history)."""
        return torch.sigmoid(self.end_logit(state.hidden))

    def item_embeddings(self) -> torch.Tensor:
        """``[n_items + 1, dim]`` input/output item vectors (row 0 = padding)."""
        return self.item_emb.weight.detach()
