"""UserTransformer: protocol conformance and incremental (KV-cached) inference == full recompute."""

import pytest
import torch

import user_models.transformer
from user_models.protocol import History, UserModel, UserState
from user_models.transformer import TransformerConfig, UserTransformer, gap_bucket

N_ITEMS, BEHAVIORS = 30, ("view", "click", "buy")


def make_model(max_len: int = 8) -> UserTransformer:
    torch.manual_seed(0)
    model = UserTransformer(TransformerConfig(dim=16, layers=2, heads=2, max_len=max_len, dropout=0.1),
                            N_ITEMS, BEHAVIORS)
    with torch.no_grad():  # break the zero init of biases so every term matters in the comparison
        model.item_bias.normal_()
        model.end_head.bias.normal_()
        model.repeat_head.bias.fill_(-3.0)
    return model.eval()


def random_events(gen: torch.Generator, n: int) -> list[tuple[int, int, float]]:
    items = torch.randint(1, N_ITEMS + 1, (n,), generator=gen).tolist()
    behaviors = torch.randint(1, len(BEHAVIORS) + 1, (n,), generator=gen).tolist()
    gaps = (torch.rand(n, generator=gen) * 1e5 - 2e4).tolist()  # some negative = unknown
    return list(zip(items, behaviors, gaps, strict=True))


def to_history(rows: list[list[tuple[int, int, float]]]) -> History:
    width = max([len(r) for r in rows] + [1])
    items = torch.zeros(len(rows), width, dtype=torch.long)
    behaviors = torch.zeros(len(rows), width, dtype=torch.long)
    gaps = torch.full((len(rows), width), -1.0)
    for b, row in enumerate(rows):
        for t, (i, k, g) in enumerate(row):
            items[b, t], behaviors[b, t], gaps[b, t] = i, k, g
    return History(items, behaviors, gaps, torch.tensor([len(r) for r in rows]))


def reference_outputs(model: UserTransformer, windows: list[list[tuple[int, int, float]]]):
    """Full recompute from scratch of each row's current window."""
    hidden = model(to_history(windows))
    lengths = torch.tensor([len(w) for w in windows])
    last = hidden[torch.arange(len(windows)), (lengths - 1).clamp(min=0)]
    last = torch.where((lengths > 0)[:, None], last, 0)
    items = torch.arange(1, N_ITEMS + 1).expand(len(windows), -1)
    seen = torch.tensor([[i in {e[0] for e in w} for i in range(1, N_ITEMS + 1)] for w in windows])
    return (model.item_scores(last, items, seen), model.behavior_logits(last, items).softmax(-1),
            torch.sigmoid(model.end_logit(last)))


def test_transformer_satisfies_the_protocol():
    model = make_model()
    assert isinstance(model, UserModel)
    state = model.encode(to_history([[(1, 1, 5.0)], []]))
    assert isinstance(state, UserState) and state.batch_size == 2
    assert model.item_embeddings().shape == (N_ITEMS + 1, 16)
    assert model.behavior_probs(state, torch.tensor([[1, 2], [3, 4]])).shape == (2, 2, 3)
    assert model.end_prob(state).shape == (2,)


def test_gap_buckets_are_log_scaled_with_an_unknown_bucket():
    gaps = torch.tensor([-1.0, 0.0, 1.0, 2.0, 3.0, 1e12])
    assert gap_bucket(gaps, 32).tolist() == [0, 1, 2, 2, 3, 31]


@torch.no_grad()
def test_incremental_equals_full_recompute_through_steps_resets_and_slides():
    max_len, batch = 8, 6
    model = make_model(max_len)
    gen = torch.Generator().manual_seed(1)
    histories = [random_events(gen, n) for n in (0, 1, 3, 8, 11, 5)]  # empty, full and over-long rows
    windows = [h[-max_len:] for h in histories]
    state = model.encode(to_history(histories))
    n_slides = n_resets = 0
    for step in range(30):
        active = torch.rand(batch, generator=gen) < 0.8
        events = random_events(gen, batch)
        state = model.step(state, torch.tensor([e[0] for e in events]), torch.tensor([e[1] for e in events]),
                           torch.tensor([e[2] for e in events]), active)
        for b in range(batch):
            if active[b]:
                if len(windows[b]) == max_len:
                    windows[b] = windows[b][-(max_len // 2):]
                    n_slides += 1
                windows[b] = windows[b] + [events[b]]
        if step % 7 == 3:
            rows = torch.tensor([b % 3 == step % 3 for b in range(batch)])
            sizes = torch.randint(0, 12, (int(rows.sum()),), generator=gen).tolist()
            fresh = [random_events(gen, n) for n in sizes]
            state = model.reset_rows(state, rows, to_history(fresh))
            for b, h in zip(rows.nonzero().squeeze(1).tolist(), fresh, strict=True):
                windows[b] = h[-max_len:]
            n_resets += int(rows.sum())
        assert state.lengths.tolist() == [len(w) for w in windows]
        logits, behavior, end = reference_outputs(model, windows)
        items = torch.arange(1, N_ITEMS + 1).expand(batch, -1)
        torch.testing.assert_close(model.item_logits(state, items), logits, atol=1e-4, rtol=0)
        torch.testing.assert_close(model.all_item_logits(state)[:, 1:], logits, atol=1e-4, rtol=0)
        torch.testing.assert_close(model.behavior_probs(state, items), behavior, atol=1e-4, rtol=0)
        torch.testing.assert_close(model.end_prob(state), end, atol=1e-4, rtol=0)
    assert n_slides >= 5 and n_resets >= 5  # the path under test was really exercised


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_blocked_item_logits_and_normaliser_equal_the_whole_catalogue(monkeypatch, temperature):
    """The row blocks (here of 4 rows, the last one short) give the numbers of the full logits."""
    model = make_model()
    gen = torch.Generator().manual_seed(3)
    state = model.encode(to_history([random_events(gen, n) for n in (0, 1, 3, 5, 8, 8, 2, 7, 4, 6, 8, 1, 3)]))
    items = torch.randint(1, N_ITEMS + 1, (13, 5), generator=gen)
    monkeypatch.setattr(user_models.transformer, "CPU_BLOCK_ELEMENTS", 4 * (N_ITEMS + 1))
    picked, normaliser = model.item_logits_and_log_normaliser(state, items, temperature)
    catalogue = model.all_item_logits(state)
    torch.testing.assert_close(picked, catalogue.gather(1, items))
    expected = torch.logsumexp(catalogue[:, 1:] / temperature, dim=1, keepdim=True)
    torch.testing.assert_close(normaliser, expected)


def test_inactive_rows_are_untouched():
    model = make_model()
    gen = torch.Generator().manual_seed(2)
    state = model.encode(to_history([random_events(gen, 4), random_events(gen, 8)]))
    before = (state.keys.clone(), state.hidden.clone(), state.lengths.clone())
    model.step(state, torch.tensor([3, 4]), torch.tensor([1, 1]), torch.tensor([10.0, 10.0]),
               torch.tensor([False, True]))
    torch.testing.assert_close(state.keys[:, 0], before[0][:, 0])
    torch.testing.assert_close(state.hidden[0], before[1][0])
    assert state.lengths.tolist() == [4, 5]  # row 1 was full: slid to 4 events, then appended one


def test_one_query_attention_equals_scaled_dot_product_attention():
    """The step's attention (two batched matrix products) is torch's attention with the same mask."""
    gen = torch.Generator().manual_seed(4)
    shapes = ((6, 2, 1, 8), (6, 2, 5, 8), (6, 2, 5, 8))
    q, keys, values = (torch.randn(shape, generator=gen) for shape in shapes)
    newest = torch.tensor([0, 1, 2, 3, 4, 4])
    seen = (torch.arange(5)[None, :] <= newest[:, None])[:, None, None, :].expand(6, 2, 1, 5)
    bias = torch.zeros(6, 2, 1, 5).masked_fill(~seen, float("-inf"))
    expected = torch.nn.functional.scaled_dot_product_attention(q, keys, values, attn_mask=seen)
    torch.testing.assert_close(user_models.transformer._attend_one(q, keys, values, bias), expected)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logsumexp_rows_equals_torch_logsumexp(temperature):
    """The base-2 reduction gives torch's logsumexp, -inf entries and rows of -inf included."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(7, 300, generator=gen) * 20
    x[0, :5] = float("-inf")
    x[1] = float("-inf")
    expected = torch.logsumexp(x / temperature, dim=1, keepdim=True)
    torch.testing.assert_close(user_models.transformer.logsumexp_rows(x, temperature), expected)


def test_prefill_equals_the_full_forward():
    """A prefill computes its last layer at each row's last event only; its state is the full forward's
    (hidden state after the last event, keys and values at every event, zeros after)."""
    model = make_model(max_len=8)
    gen = torch.Generator().manual_seed(6)
    history = to_history([random_events(gen, n) for n in (0, 1, 3, 8, 5, 8)])
    state = model.encode(history)
    hidden = model.forward(history)
    last = (history.lengths - 1).clamp(min=0)
    expected = torch.where((history.lengths > 0)[:, None], hidden[torch.arange(6), last], 0)
    torch.testing.assert_close(state.hidden, expected)
    buckets = gap_bucket(history.gaps, model.config.gap_buckets)
    _, kv = model._encode_tokens(history.items, history.behaviors, buckets)
    valid = (torch.arange(8)[None, :] < history.lengths[:, None])[:, None, :, None]
    for layer, (k, v) in enumerate(kv):
        torch.testing.assert_close(state.keys[layer], torch.where(valid, k, 0))
        torch.testing.assert_close(state.values[layer], torch.where(valid, v, 0))


def test_step_in_row_blocks_equals_one_block(monkeypatch):
    """The step's MLP in row blocks (here of 3 rows, the last one short) gives the numbers of one block."""
    model = make_model()
    gen = torch.Generator().manual_seed(7)
    events = [random_events(gen, n) for n in (0, 2, 8, 5, 1, 8, 3)]
    items = torch.randint(1, N_ITEMS + 1, (7,), generator=gen)
    behaviors = torch.randint(1, len(BEHAVIORS) + 1, (7,), generator=gen)
    gaps, active = torch.full((7,), 60.0), torch.tensor([True, True, True, False, True, True, True])
    whole = model.step(model.encode(to_history(events)), items, behaviors, gaps, active)
    monkeypatch.setattr(user_models.transformer, "CPU_BLOCK_ELEMENTS", 3 * 4 * model.config.dim)
    blocked = model.step(model.encode(to_history(events)), items, behaviors, gaps, active)
    for name in ("keys", "values", "hidden"):
        torch.testing.assert_close(getattr(blocked, name), getattr(whole, name))
