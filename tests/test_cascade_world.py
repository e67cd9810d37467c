"""The cascade world: steppability, determinism, hand-checked cascade semantics, sessions, logs, dataset."""

from __future__ import annotations

import ast
import json
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
import torch

from recsim_env.cli import main
from user_models.data.artifact import SequenceDataset
from user_models.errors import DatasetError, InputError
from user_models.protocol import History
from user_models.synthetic import (
    BEHAVIORS,
    CascadeConfig,
    CascadeWorld,
    generate_cascade_logs,
    write_cascade_logs,
)
from user_models.synthetic.cascade import log_seed

SMALL = CascadeConfig(n_users=80, n_items=150, n_categories=5, dim=8, seed=4)


@pytest.fixture(scope="module")
def world() -> CascadeWorld:
    return CascadeWorld(SMALL)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_slates(world: CascadeWorld, n: int, k: int, g: torch.Generator) -> torch.Tensor:
    return torch.randint(1, world.n_items + 1, (n, k), generator=g)


def oracle_slates(world: CascadeWorld, state, k: int) -> torch.Tensor:
    """A good policy that reads the hidden state: attractive, high-quality, never bait."""
    score = world.all_attractiveness(state) + 1.5 * world.item_quality - 10.0 * world.item_bait
    score[:, 0] = -torch.inf
    return score.topk(k, dim=1).indices


def run(world: CascadeWorld, policy, n: int = 200, seed: int = 0, max_steps: int = 500) -> tuple[float, ...]:
    """Mean session length (steps) and pick rate of ``n`` fresh users under ``policy``."""
    g = gen(seed)
    state = world.sample_users(n, g)
    steps = torch.zeros(n)
    picks = torch.zeros(n)
    for _ in range(max_steps):
        res = world.step(state, policy(state, g), g)
        steps += res.active
        picks += res.item > 0
        if bool(state.left.all()):
            break
    assert bool(state.left.all()), "sessions must end without a step cap"
    return float(steps.mean()), float(picks.sum() / steps.sum())


def test_step_shapes_and_invariants(world):
    g = gen(1)
    state = world.sample_users(16, g)
    slates = random_slates(world, 16, 5, g)
    res = world.step(state, slates, g)
    for name in ("position", "item", "behavior", "left", "active", "satisfaction", "leave_prob", "examined",
                 "bait"):
        assert getattr(res, name).shape == (16,), name
    assert res.click_probs.shape == (16, 5)
    chose = res.position >= 0
    assert torch.equal(res.item[chose], slates[chose].gather(1, res.position[chose, None])[:, 0])
    assert (res.item[~chose] == 0).all() and (res.behavior[~chose] == 0).all()
    assert ((res.behavior[chose] >= 1) & (res.behavior[chose] <= 4)).all()
    assert res.active.all() and (state.steps == 1).all()
    assert world.behaviors == BEHAVIORS and world.item_embeddings().shape == (world.n_items + 1, SMALL.dim)
    assert len(world.item_categories()) == world.n_items


def test_same_seed_same_trajectories(world):
    def trajectory(seed: int) -> list[torch.Tensor]:
        g = gen(seed)
        state = world.sample_users(32, g)
        out = []
        for _ in range(15):
            res = world.step(state, random_slates(world, 32, 6, g), g)
            out += [res.position, res.behavior, res.left, res.satisfaction]
        return out

    a, b, c = trajectory(7), trajectory(7), trajectory(8)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


def test_everyone_clicks_the_top_when_it_is_examined_and_liked():
    w = CascadeWorld(replace(SMALL, examine_first=1.0, threshold_mean=-100.0, threshold_sd=0.0))
    g = gen(2)
    state = w.sample_users(50, g)
    slates = random_slates(w, 50, 4, g)
    res = w.step(state, slates, g)
    assert (res.position == 0).all() and torch.equal(res.item, slates[:, 0]) and (res.examined == 1).all()


def test_the_scan_passes_empty_slots_and_never_looks_again_after_a_click():
    w = CascadeWorld(replace(SMALL, examine_first=1.0, scan_continue=1.0, threshold_mean=-100.0,
                             threshold_sd=0.0))
    g = gen(3)
    state = w.sample_users(20, g)
    slates = torch.zeros(20, 4, dtype=torch.int64)
    slates[:, 2] = 5
    slates[:, 3] = 6
    res = w.step(state, slates, g)
    assert (res.position == 2).all() and (res.item == 5).all() and (res.examined == 3).all()


def test_a_slate_of_empty_slots_gives_no_choice(world):
    g = gen(4)
    state = world.sample_users(30, g)
    res = world.step(state, torch.zeros(30, 5, dtype=torch.int64), g)
    assert (res.position == -1).all() and (res.item == 0).all() and (res.behavior == 0).all()
    assert (res.click_probs == 0).all()
    c = world.config
    expected = c.satisfaction_init - c.fatigue + c.no_click_delta
    assert torch.allclose(res.satisfaction, torch.full((30,), expected))


def test_nobody_looks_at_a_slate_when_examine_first_is_zero():
    w = CascadeWorld(replace(SMALL, examine_first=0.0, threshold_mean=-100.0))
    g = gen(5)
    state = w.sample_users(30, g)
    res = w.step(state, random_slates(w, 30, 5, g), g)
    assert (res.position == -1).all() and (res.examined == 0).all()


def test_bait_lowers_satisfaction_and_good_items_raise_it():
    w = CascadeWorld(replace(SMALL, examine_first=1.0, threshold_mean=-100.0, threshold_sd=0.0))
    bait = torch.nonzero(w.item_bait).flatten()
    good = torch.nonzero(~w.item_bait & (w.item_quality > 1.0)).flatten()
    assert len(bait) and len(good)
    n = 200
    g = gen(6)
    after = {}
    for name, pool in (("bait", bait), ("good", good)):
        state = w.sample_users(n, g)
        res = w.step(state, pool[torch.randint(len(pool), (n, 1), generator=g)], g)
        assert (res.position == 0).all()
        after[name] = res.satisfaction
        assert res.bait.all() if name == "bait" else not res.bait.any()
    c = w.config
    assert (after["bait"] < c.satisfaction_init - c.fatigue).all()
    assert after["good"].mean() > c.satisfaction_init
    # Bait rarely goes deep in the funnel: compare the share of carts and buys.
    for name, pool in (("bait", bait), ("good", good)):
        state = w.sample_users(n, g)
        res = w.step(state, pool[torch.randint(len(pool), (n, 1), generator=g)], g)
        after[name + "_deep"] = (res.behavior >= 3).float().mean()
    assert after["bait_deep"] < 0.1 < after["good_deep"]


def test_left_rows_stay_left_until_reset(world):
    g = gen(7)
    state = world.sample_users(10, g)
    state.left[:4] = True
    before = state.satisfaction.clone()
    res = world.step(state, random_slates(world, 10, 5, g), g)
    assert not res.active[:4].any() and res.left[:4].all() and (res.position[:4] == -1).all()
    assert torch.equal(state.satisfaction[:4], before[:4]) and (state.steps[:4] == 0).all()
    rows = torch.zeros(10, dtype=torch.bool)
    rows[:2] = True
    world.reset_rows(state, rows, generator=g)
    assert not state.left[:2].any() and state.left[2:4].all()
    world.start_session(state, state.left.clone())
    assert not state.left.any()
    with pytest.raises(InputError):
        world.reset_rows(state, rows)


def test_sessions_end_sooner_under_random_slates_than_under_a_good_policy(world):
    random_len, random_pick = run(world, lambda s, g: random_slates(world, s.batch_size, 10, g))
    good_len, good_pick = run(world, lambda s, g: oracle_slates(world, s, 10))
    assert 1.0 < random_len < good_len
    assert random_pick < good_pick


def test_encode_replays_a_logged_history(world):
    c = world.config
    good = int(torch.nonzero(~world.item_bait & (world.item_quality > 1.0)).flatten()[0])
    bait = int(torch.nonzero(world.item_bait).flatten()[0])
    history = History(
        items=torch.tensor([[good, bait, good, 0], [good, 0, 0, 0]]),
        behaviors=torch.tensor([[4, 1, 4, 0], [4, 0, 0, 0]]),
        gaps=torch.tensor([[-1.0, 30.0, 7200.0, 0.0], [-1.0, 0.0, 0.0, 0.0]]),
        lengths=torch.tensor([3, 1]),
    )
    state = world.encode(history)
    q = float(world.item_quality[good])
    one_buy = c.satisfaction_init - c.fatigue + c.stage_gains[3] + c.quality_gain * q
    # Row 0: the third event starts a new session (gap >= session gap), so satisfaction is one buy's.
    assert torch.allclose(state.satisfaction, torch.tensor([one_buy, one_buy]))
    assert state.memory[0, :3].tolist() == [good, bait, good] and state.memory[1, :2].tolist() == [good, 0]
    assert state.steps.tolist() == [1, 1] and not state.left.any()
    assert torch.allclose(state.threshold, torch.full((2,), c.threshold_mean))


def test_the_world_shares_no_code_with_the_simulator():
    root = Path(__file__).resolve().parents[1] / "user_models" / "synthetic"
    for name in ("cascade.py", "cascade_config.py", "cascade_logs.py"):
        tree = ast.parse((root / name).read_text())
        modules = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not any(m.startswith(("recsim_env", "user_models.synthetic.world")) for m in modules), name


def test_logs_have_funnel_rows_and_impressions(tmp_path):
    config = replace(SMALL, n_users=40)
    logs = generate_cascade_logs(config, "A")
    ev = logs.events
    assert ev.columns == ["user_id", "item_id", "timestamp", "event"]
    assert set(ev["event"].unique()) <= set(BEHAVIORS)
    # A buy is preceded by the view, click and cart rows of the same item, seconds apart.
    rows = ev.rows()
    buys = [i for i, r in enumerate(rows) if r[3] == "buy"]
    assert buys
    for i in buys:
        funnel = rows[i - 3:i + 1]
        assert [r[3] for r in funnel] == list(BEHAVIORS)
        assert len({(r[0], r[1]) for r in funnel}) == 1
        assert 0 < funnel[-1][2] - funnel[0][2] < config.session_gap_seconds
    imp = logs.impressions
    assert imp.columns == ["user_id", "timestamp", "session", "step", "slate", "position", "item_id", "event"]
    clicked = imp.filter(pl.col("position") >= 0)
    assert clicked.height == ev.filter(pl.col("event") == "view").height
    assert clicked.select(pl.col("slate").arr.get(pl.col("position")) == pl.col("item_id")).to_series().all()
    assert imp.filter(pl.col("position") < 0)["event"].is_null().all()
    # Same seed, same logs; another logging policy, other logs.
    assert generate_cascade_logs(config, "A").events.equals(ev)
    other = generate_cascade_logs(config, "B")
    assert not other.impressions.select("slate").equals(imp.select("slate"))
    files = write_cascade_logs(config, tmp_path / "raw", "B")
    assert pl.read_csv(files.events).equals(other.events)
    assert pl.read_csv(files.items).height == config.n_items


def test_config_round_trips_and_rejects_bad_values():
    assert CascadeConfig.from_dict(json.loads(json.dumps(SMALL.to_dict()))) == SMALL
    with pytest.raises(DatasetError):
        CascadeConfig.from_dict({**SMALL.to_dict(), "patience": 1.0})
    with pytest.raises(InputError):
        CascadeConfig(scan_continue=1.5)
    with pytest.raises(InputError):
        generate_cascade_logs(SMALL, "C")


def test_data_synth_cascade_writes_a_dataset_whose_world_can_be_rebuilt(tmp_path, capsys):
    out = tmp_path / "cascade"
    args = ["data", "synth", "--world", "cascade", "--logging-policy", "B", "--users", "60", "--items", "120",
            "--seed", "2", "--out", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    ds = SequenceDataset.load(out)
    assert ds.meta.extra["logging_policy"] == "B" and ds.meta.behaviors == BEHAVIORS
    steps = {s.step: s for s in ds.meta.cleaning}
    assert steps["funnel collapse"].removed > 0
    assert {s["path"] for s in ds.meta.sources} == {"raw/events.csv", "raw/items.csv"}
    assert all((out / s["path"]).is_file() for s in ds.meta.sources)
    assert (out / "raw" / "impressions.parquet").is_file()
    world = CascadeWorld.from_dataset(ds)
    assert world.n_items == ds.n_items and world.config.seed == 2
    full = CascadeWorld(world.config)
    ids = torch.tensor([int(r) for r in ds.items["raw_id"].to_list()])
    assert torch.equal(world.item_vectors[1:], full.item_vectors[ids])
    assert torch.equal(world.world_item_ids[1:], ids)
    # The rebuilt world steps on dataset item ids, from logged histories.
    seqs = ds.sequences
    n = 3
    items = torch.zeros(n, 6, dtype=torch.int64)
    behaviors = torch.zeros(n, 6, dtype=torch.int64)
    for u in range(n):
        it, be, _ = seqs.user(u)
        items[u, :min(6, len(it))] = torch.tensor(it[:6].astype("int64"))
        behaviors[u, :min(6, len(be))] = torch.tensor(be[:6].astype("int64"))
    lengths = (items > 0).sum(1)
    state = world.encode(History(items, behaviors, torch.full((n, 6), -1.0), lengths))
    res = world.step(state, torch.arange(1, 6).expand(n, -1), gen(0))
    assert res.active.all()
    with pytest.raises(DatasetError):
        CascadeWorld.from_dataset(replace_extra(ds, cascade_world_version=99))
    # The rebuilt world knows the logged users: each one's true threshold and interest, by raw user id.
    assert world.logged_users is not None and world.logged_users.batch_size == ds.n_users
    drawn = full.sample_users(world.config.n_users, gen(log_seed(world.config.seed, "B")))
    rows = torch.tensor([int(k) for k in ds.users["user_key"].to_list()])
    assert torch.equal(world.logged_users.threshold, drawn.threshold[rows])
    users = torch.arange(n)
    known = world.encode(History(items, behaviors, torch.full((n, 6), -1.0), lengths, users))
    assert torch.equal(known.threshold, drawn.threshold[rows[:n]])
    assert torch.equal(state.threshold, torch.full((n,), world.config.threshold_mean))
    assert not torch.allclose(known.interest, state.interest)
    with pytest.raises(InputError, match="not from the dataset"):
        world.encode(History(items, behaviors, torch.full((n, 6), -1.0), lengths, users + ds.n_users))


def replace_extra(ds: SequenceDataset, **changes) -> SequenceDataset:
    out = SequenceDataset(ds.interactions, ds.items, ds.users, replace(ds.meta, extra={**ds.meta.extra,
                                                                                     **changes}))
    return out


def test_data_synth_flags_belong_to_their_world(tmp_path, capsys):
    assert main(["data", "synth", "--logging-policy", "B", "--out", str(tmp_path / "x")]) == 2
    assert "organic browsing" in capsys.readouterr().err
    assert main(["data", "synth", "--world", "cascade", "--events-per-user", "5", "--out",
                 str(tmp_path / "y")]) == 2
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
