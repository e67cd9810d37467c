"""The synthetic world: determinism, the user protocol, drift, patience, replay, the dataset and its CLI."""

import argparse
import math
from dataclasses import replace

import numpy as np
import polars as pl
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recsim_env.cli.data_synth import add_synth_parser
from user_models.data.artifact import SequenceDataset
from user_models.errors import DatasetError, InputError
from user_models.protocol import History, UserModel, UserState
from user_models.synthetic import (
    BEHAVIORS,
    SyntheticConfig,
    SyntheticState,
    SyntheticWorld,
    generate_logs,
    synthesize_dataset,
)

SMALL = SyntheticConfig(n_users=60, n_items=120, n_categories=6, dim=8, mean_events_per_user=25,
                        min_events_per_user=5, max_events_per_user=80, seed=3)
VIEW, CLICK, CART, BUY = 1, 2, 3, 4


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return SyntheticWorld(SMALL)


@pytest.fixture(scope="module")
def small_ds() -> SequenceDataset:
    return synthesize_dataset(SMALL)


def history_of(items: list[list[int]], behaviors: list[list[int]], gaps: list[list[float]]) -> History:
    """Right-padded History from ragged lists."""
    lengths = [len(r) for r in items]
    width = max(max(lengths), 1)

    def pad(rows: list[list], fill: float, dtype: torch.dtype) -> torch.Tensor:
        return torch.tensor([r + [fill] * (width - len(r)) for r in rows], dtype=dtype)

    return History(pad(items, 0, torch.int64), pad(behaviors, 0, torch.int64), pad(gaps, -1.0, torch.float32),
                   torch.tensor(lengths))


def test_same_seed_same_logs_other_seed_other_logs():
    a, b = generate_logs(SMALL), generate_logs(SMALL)
    for field in ("user", "item", "behavior", "timestamp", "session", "position"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    c = generate_logs(replace(SMALL, seed=4))
    assert len(a) != len(c) or not np.array_equal(a.item, c.item)
    other_world = SyntheticWorld(replace(SMALL, seed=4))
    assert not torch.equal(SyntheticWorld(SMALL).item_vectors, other_world.item_vectors)


def test_protocol_conformance(world):
    g = torch.Generator().manual_seed(0)
    state = world.sample_users(5, g)
    assert isinstance(world, UserModel) and isinstance(state, UserState) and state.batch_size == 5
    assert world.behaviors == ("view", "click", "cart", "buy") and world.n_items == SMALL.n_items
    items = torch.randint(1, SMALL.n_items + 1, (5, 7), generator=g)
    logits = world.item_logits(state, items)
    assert logits.shape == (5, 7) and torch.isfinite(logits).all()
    catalogue = world.all_item_logits(state)
    assert catalogue.shape == (5, SMALL.n_items + 1) and catalogue[:, 0].eq(-math.inf).all()
    torch.testing.assert_close(catalogue.gather(1, items), logits)
    padded = items.clone()
    padded[:, -1] = 0
    assert world.item_logits(state, padded)[:, -1].eq(-math.inf).all()
    probs = world.behavior_probs(state, items)
    assert probs.shape == (5, 7, 4) and (probs > 0).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(5, 7))
    end = world.end_prob(state)
    assert end.shape == (5,) and ((end > 0) & (end < 1)).all()
    emb = world.item_embeddings()
    assert emb.shape == (SMALL.n_items + 1, SMALL.dim) and emb[0].eq(0).all()
    torch.testing.assert_close(emb[1:].norm(dim=-1), torch.ones(SMALL.n_items))


def test_step_only_changes_active_rows(world):
    state = world.sample_users(3, torch.Generator().manual_seed(1))
    before = SyntheticState(state.interest.clone(), state.satiation.clone(), state.patience.clone())
    items, behaviors = torch.tensor([1, 2, 3]), torch.tensor([BUY, VIEW, VIEW])
    world.step(state, items, behaviors, torch.tensor([-1.0, 5, 5]), torch.tensor([True, False, True]))
    for name in ("interest", "satiation", "patience"):
        after, old = getattr(state, name), getattr(before, name)
        assert torch.equal(after[1], old[1]) and not torch.equal(after[2], old[2])


def category_share(world: SyntheticWorld, state, k: int) -> float:
    """P(the next organic pick is in category k) for a one-row state."""
    return float(torch.softmax(world.all_item_logits(state)[0], 0)[world.item_category == k].sum())


def test_drift_moves_interest_toward_consumed_category(world):
    k = 1
    members = torch.nonzero(world.item_category == k)[:, 0]
    state = world.prior_state(1)
    start_affinity = float(state.interest[0] @ world.centroids[k])
    start_share = category_share(world, state, k)
    for t in range(30):  # one purchase per session, a day apart
        item = members[t % len(members)].view(1)
        expected = state.interest + SMALL.drift_rates[BUY - 1] * (world.item_vectors[item] - state.interest)
        world.step(state, item, torch.tensor([BUY]), torch.tensor([86400.0]), torch.tensor([True]))
        torch.testing.assert_close(state.interest, expected)
    assert float(state.interest[0] @ world.centroids[k]) > start_affinity + 0.3
    state.satiation.zero_()  # the next session
    assert category_share(world, state, k) > 2 * start_share


def test_satiation_makes_more_of_the_same_less_attractive_within_a_session(world):
    k = 2
    item = torch.nonzero(world.item_category == k)[0]
    state = world.prior_state(1)
    for _ in range(4):
        world.step(state, item, torch.tensor([VIEW]), torch.tensor([30.0]), torch.tensor([True]))
    vector = world.item_vectors[item[0]]
    torch.testing.assert_close(state.satiation[0], (1 - (1 - SMALL.satiation_rate) ** 4) * vector)
    # The same interests without this session's satiation (what the next session will start from).
    rested = SyntheticState(state.interest, torch.zeros_like(state.satiation), state.patience)
    assert category_share(world, state, k) < category_share(world, rested, k)
    click = lambda s: float(world.behavior_probs(s, item[None])[0, 0, CLICK - 1:].sum())  # noqa: E731
    assert click(state) < click(rested)
    share = category_share(world, state, k)
    world.step(state, item, torch.tensor([0]), torch.tensor([30.0]), torch.tensor([True]))  # shown, not taken
    assert category_share(world, state, k) == pytest.approx(share)
    new_session = torch.tensor([SMALL.session_gap_seconds])
    world.step(state, item, torch.tensor([VIEW]), new_session, torch.tensor([True]))
    torch.testing.assert_close(state.satiation[0], SMALL.satiation_rate * vector)


def test_patience_low_value_events_raise_end_prob_high_value_lower_it(world):
    state = world.prior_state(1)
    one = torch.tensor([True])
    ends = [float(world.end_prob(state))]
    for _ in range(5):
        world.step(state, torch.tensor([1]), torch.tensor([VIEW]), torch.tensor([20.0]), one)
        ends.append(float(world.end_prob(state)))
    assert all(b > a for a, b in zip(ends, ends[1:], strict=False))
    world.step(state, torch.tensor([1]), torch.tensor([BUY]), torch.tensor([20.0]), one)
    assert float(world.end_prob(state)) < ends[-1]
    tired = float(world.end_prob(state))
    world.step(state, torch.tensor([1]), torch.tensor([0]), torch.tensor([20.0]), one)  # no response drains
    assert float(world.end_prob(state)) > tired
    # A gap of a new session refills patience before the event applies.
    new_session = torch.tensor([SMALL.session_gap_seconds])
    world.step(state, torch.tensor([1]), torch.tensor([CLICK]), new_session, one)
    assert float(state.patience) == pytest.approx(SMALL.patience_init + SMALL.patience_deltas[CLICK])


def test_satisfaction_not_appeal_keeps_users(world):
    """Recommending what users value (carts, buys) keeps them far longer than recommending what they are
    most likely to pick: the world rewards long-term planning."""

    def session_lengths(policy: str, n: int = 400) -> torch.Tensor:
        g = torch.Generator().manual_seed(0)
        state, alive, length = world.sample_users(n, g), torch.ones(n, dtype=torch.bool), torch.zeros(n)
        value = torch.tensor(SMALL.patience_deltas[1:])
        for _ in range(100):
            logits = world.all_item_logits(state)
            if policy == "most likely pick":
                item = logits.argmax(1)
            else:  # among the 20 likeliest picks, the one with the best expected patience change
                top = logits.topk(20).indices
                item = top.gather(1, (world.behavior_probs(state, top) @ value).argmax(1, keepdim=True))[:, 0]
            probs = world.behavior_probs(state, item[:, None])[:, 0]
            behavior = torch.multinomial(probs, 1, generator=g)[:, 0] + 1
            world.step(state, item, behavior, torch.full((n,), 30.0), alive)
            length += alive
            alive &= torch.rand(n, generator=g) >= world.end_prob(state)
        return length

    myopic, satisfying = session_lengths("most likely pick"), session_lengths("satisfying")
    standard_error = math.sqrt(myopic.var() / len(myopic) + satisfying.var() / len(satisfying))
    assert satisfying.mean() > 2 * myopic.mean()  # measured: ~46 vs ~17 events
    assert satisfying.mean() - myopic.mean() > 5 * standard_error


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, SMALL.n_items), st.integers(0, 4), st.floats(-1, 1e6)), min_size=1,
                max_size=30))
def test_any_event_sequence_keeps_the_state_valid(events):
    world = SyntheticWorld(SMALL)
    state = world.sample_users(1, torch.Generator().manual_seed(0))
    for item, behavior, gap in events:
        event = torch.tensor([item]), torch.tensor([behavior]), torch.tensor([gap]), torch.tensor([True])
        world.step(state, *event)
        assert 0 <= float(state.patience) <= SMALL.patience_max
        assert 0 < float(world.end_prob(state)) < 1
        assert torch.isfinite(world.all_item_logits(state)[:, 1:]).all()
        probs = world.behavior_probs(state, torch.arange(1, SMALL.n_items + 1)[None])
        torch.testing.assert_close(probs.sum(-1), torch.ones(1, SMALL.n_items))


def test_encode_equals_stepping_and_differs_from_truth_by_decayed_initial_interest(world):
    items = [[3, 7, 7, 50, 2], [9], []]
    behaviors = [[VIEW, BUY, CLICK, CART, VIEW], [CART], []]
    gaps = [[-1.0, 30.0, 5000.0, 12.0, 40.0], [-1.0], []]
    history = history_of(items, behaviors, gaps)
    encoded = world.encode(history)

    stepped = world.prior_state(3)
    truth = world.sample_users(3, torch.Generator().manual_seed(2))
    initial_gap = truth.interest - stepped.interest
    for t in range(5):
        args = (history.items[:, t], history.behaviors[:, t], history.gaps[:, t], t < history.lengths)
        world.step(stepped, *args)
        world.step(truth, *args)
    for exact in (encoded, truth):  # satiation and patience do not depend on the initial interest
        torch.testing.assert_close(exact.satiation, stepped.satiation)
        torch.testing.assert_close(exact.patience, stepped.patience)
    torch.testing.assert_close(encoded.interest, stepped.interest)
    torch.testing.assert_close(encoded.interest[2], world.prior_mean)
    rates = torch.tensor((0.0, *SMALL.drift_rates))
    weight = torch.where(history.items > 0, 1 - rates[history.behaviors], torch.ones(())).prod(dim=1)
    torch.testing.assert_close(truth.interest - encoded.interest, weight[:, None] * initial_gap)
    assert weight[0] < weight[1] < weight[2] == 1  # the unknown start matters less after more events


def full_histories(ds: SequenceDataset, with_users: bool) -> History:
    """Every user's whole logged history, gaps from the timestamps; ``users`` named when asked."""
    seqs = ds.sequences
    width = int(seqs.lengths.max())
    items = np.zeros((ds.n_users, width), np.int64)
    behaviors = np.zeros_like(items)
    gaps = np.full((ds.n_users, width), -1.0, np.float32)
    for u in range(ds.n_users):
        it, be, ts = seqs.user(u)
        items[u, : len(it)], behaviors[u, : len(it)] = it, be
        gaps[u, 1 : len(it)] = np.diff(ts)
    users = torch.arange(ds.n_users) if with_users else None
    return History(torch.as_tensor(items), torch.as_tensor(behaviors), torch.as_tensor(gaps),
                   torch.as_tensor(seqs.lengths.astype(np.int64)), users)


def test_the_world_rebuilt_from_its_dataset_continues_the_logged_users_exactly():
    """With ``History.users`` the replay starts from each logged user's true initial interest, so it ends
    in the very state the log generator left them in; without it, only close (the prior-mean start)."""
    logs = generate_logs(SMALL)
    ds = synthesize_dataset(SMALL)
    world = SyntheticWorld.from_dataset(ds)
    assert world.logged_interest is not None and world.logged_interest.shape == (SMALL.n_users, SMALL.dim)
    truth = logs.final_state
    known = world.encode(full_histories(ds, with_users=True))
    assert torch.equal(known.interest, truth.interest)
    assert torch.equal(known.patience, truth.patience)
    rebuilt = world.encode(full_histories(ds, with_users=False))
    assert not torch.allclose(rebuilt.interest, truth.interest)
    # A world made from the config alone knows nobody: it replays from the prior mean.
    stranger = SyntheticWorld(SMALL)
    assert stranger.logged_interest is None
    torch.testing.assert_close(stranger.encode(full_histories(ds, True)).interest, rebuilt.interest)
    bad = full_histories(ds, with_users=True)
    with pytest.raises(InputError, match="0..59"):
        world.encode(History(bad.items, bad.behaviors, bad.gaps, bad.lengths, bad.users + 1))
    hashed = SequenceDataset(ds.interactions, ds.items,
                             ds.users.with_columns(pl.col("user_key").str.replace("synth-", "h")), ds.meta)
    assert SyntheticWorld.from_dataset(hashed).logged_interest is None


def test_reset_rows_replaces_only_selected_rows(world):
    state = world.sample_users(3, torch.Generator().manual_seed(5))
    keep = state.interest[1].clone()
    history = history_of([[4, 5], [6]], [[CLICK, BUY], [VIEW]], [[-1.0, 10.0], [-1.0]])
    world.reset_rows(state, torch.tensor([True, False, True]), history)
    fresh = world.encode(history)
    torch.testing.assert_close(state.interest[[0, 2]], fresh.interest)
    torch.testing.assert_close(state.satiation[[0, 2]], fresh.satiation)
    assert torch.equal(state.interest[1], keep)


def test_organic_logs_follow_the_worlds_own_probabilities(world):
    """First events: item, behavior and session end follow the protocol's probabilities (organic
    browsing at ``browse_temperature`` 1 samples from ``softmax(item_logits)``)."""
    config = replace(SMALL, n_users=3000, min_events_per_user=2, max_events_per_user=2)
    logs = generate_logs(config)
    first, second = logs.position == 0, logs.position == 1
    # Expected over the prior, from users drawn independently of the logs' generator.
    users = world.sample_users(20000, torch.Generator().manual_seed(11))
    probs = torch.softmax(world.all_item_logits(users), dim=-1)
    expected = probs.mean(0)[1:].numpy() * first.sum()
    observed = np.bincount(logs.item[first], minlength=SMALL.n_items + 1)[1:]
    chi2, dof = ((observed - expected) ** 2 / expected).sum(), SMALL.n_items - 1
    assert chi2 < dof + 4 * math.sqrt(2 * dof)  # ~121 here; a temperature of 0.8 or 1.25 gives > 230
    items = torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(12))
    expected_mix = world.behavior_probs(users, items)[:, 0].mean(0).numpy()
    observed_mix = np.bincount(logs.behavior[first], minlength=5)[1:] / first.sum()
    np.testing.assert_allclose(observed_mix, expected_mix, atol=0.03)
    patience = np.clip(SMALL.patience_init + np.array(SMALL.patience_deltas[1:]), 0, SMALL.patience_max)
    end_by_behavior = 1 / (1 + np.exp(-(SMALL.end_bias - SMALL.end_slope * patience)))
    expected_end = float(observed_mix @ end_by_behavior)
    observed_end = float(logs.session[second].mean())
    assert abs(observed_end - expected_end) < 4 * math.sqrt(expected_end * (1 - expected_end) / second.sum())


def test_logs_have_sequential_structure(small_ds, world):
    """Consecutive events share a category far more than chance: drift gives the model something to learn."""
    it = small_ds.interactions
    cats = world.item_category[torch.from_numpy(it["item"].to_numpy().astype(np.int64))].numpy()
    same_user = it["user"].to_numpy()[1:] == it["user"].to_numpy()[:-1]
    consecutive = (cats[1:] == cats[:-1])[same_user].mean()
    shares = np.bincount(cats) / len(cats)
    assert consecutive > 2 * float((shares**2).sum())


def test_dataset_artifact_round_trip(small_ds, tmp_path):
    small_ds.save(tmp_path / "synth")
    ds = SequenceDataset.load(tmp_path / "synth")
    meta = ds.meta
    assert (meta.n_users, meta.n_items, meta.behaviors) == (SMALL.n_users, SMALL.n_items, BEHAVIORS)
    lengths = ds.sequences.lengths
    assert lengths.min() >= SMALL.min_events_per_user and lengths.max() <= SMALL.max_events_per_user
    assert meta.n_interactions == lengths.sum() and 10 < lengths.mean() < 60
    it = ds.interactions
    assert set(np.unique(it["behavior"].to_numpy())) == {1, 2, 3, 4}
    # Sessions start exactly where the gap is at least the session gap; timestamps never go back.
    same_user = it["user"].to_numpy()[1:] == it["user"].to_numpy()[:-1]
    gaps = np.diff(it["timestamp"].to_numpy())[same_user]
    new_session = np.diff(it["session"].to_numpy())[same_user]
    assert (gaps > 0).all() and np.array_equal(new_session == 1, gaps >= SMALL.session_gap_seconds)
    assert meta.n_sessions == it.select(pl.struct("user", "session").n_unique()).item() > SMALL.n_users
    assert [s.step for s in meta.cleaning] == ["synthetic: generated"] and meta.cleaning[0].removed == 0
    ts = it["timestamp"].to_numpy()
    assert meta.temporal_cutoff in ts and 0.85 < (ts < meta.temporal_cutoff).mean() <= 0.9
    assert meta.has_timestamps and meta.behavior_source == "events"
    assert ds.items["title"][16] == "Item 17" and ds.items["category"][0].startswith("cat_")
    assert ds.users["user_key"][17] == "synth-000017" and (ds.items["price"] > 0).all()


def test_from_dataset_rebuilds_the_same_world(small_ds, world, tmp_path):
    small_ds.save(tmp_path / "synth")
    rebuilt = SyntheticWorld.from_dataset(SequenceDataset.load(tmp_path / "synth"))
    state = world.sample_users(4, torch.Generator().manual_seed(7))
    assert torch.equal(rebuilt.all_item_logits(state), world.all_item_logits(state))
    items = torch.randint(1, SMALL.n_items + 1, (4, 3), generator=torch.Generator().manual_seed(8))
    assert torch.equal(rebuilt.behavior_probs(state, items), world.behavior_probs(state, items))
    assert rebuilt.config == SMALL


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({}, "not a synthetic dataset"),
        ({"synthetic_config": replace(SMALL, seed=9).to_dict(), "synthetic_world_version": 1}, "not match"),
        ({"synthetic_config": {**SMALL.to_dict(), "gravity": 1}, "synthetic_world_version": 1}, "gravity"),
        ({"synthetic_config": SMALL.to_dict(), "synthetic_world_version": 99}, "world version 99"),
        ({"synthetic_config": {**SMALL.to_dict(), "n_users": "many"}, "synthetic_world_version": 1}, "str"),
    ],
)
def test_from_dataset_rejects_other_datasets(small_ds, extra, message):
    meta = replace(small_ds.meta, extra=extra)
    ds = SequenceDataset(small_ds.interactions, small_ds.items, small_ds.users, meta)
    with pytest.raises(DatasetError, match=message):
        SyntheticWorld.from_dataset(ds)


@pytest.mark.parametrize("bad", [dict(n_users=0), dict(drift_rates=(0.1, 0.2)), dict(dwell_max_seconds=4e3),
                                 dict(appeal_quality_corr=1.5), dict(n_categories=500)])
def test_config_rejects_bad_values(bad):
    with pytest.raises(InputError, match="SyntheticConfig"):
        replace(SMALL, **bad)


def synth_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="recsim data")
    add_synth_parser(parser.add_subparsers())
    return parser.parse_args(["synth", *argv])


def test_cli_synth_writes_dataset_and_refuses_existing_output(tmp_path, capsys):
    out = tmp_path / "synth"
    args = synth_args("--out", str(out), "--users", "30", "--items", "50", "--seed", "1",
                      "--events-per-user", "12")
    assert args.func(args) == 0
    ds = SequenceDataset.load(out)
    assert (ds.n_users, ds.n_items) == (30, 50) and ds.meta.extra["synthetic_config"]["seed"] == 1
    printed = capsys.readouterr().out
    assert "synthetic dataset written" in printed and "30" in printed
    with pytest.raises(InputError, match="--overwrite"):
        args.func(args)
    again = synth_args("--out", str(out), "--users", "20", "--items", "50", "--overwrite")
    assert again.func(again) == 0 and SequenceDataset.load(out).n_users == 20


def test_cli_synth_rejects_bad_sizes_before_writing(tmp_path):
    args = synth_args("--out", str(tmp_path / "synth"), "--users", "0")
    with pytest.raises(InputError, match="n_users"):
        args.func(args)
    assert not (tmp_path / "synth").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_world_runs_on_cuda(world):
    cuda = SyntheticWorld(SMALL, "cuda")
    state = world.sample_users(4, torch.Generator().manual_seed(3))
    on_gpu = SyntheticState(state.interest.cuda(), state.satiation.cuda(), state.patience.cuda())
    torch.testing.assert_close(cuda.all_item_logits(on_gpu).cpu(), world.all_item_logits(state))
    logs = generate_logs(SMALL, device="cuda")
    assert len(logs) > 0 and logs.item.min() >= 1
