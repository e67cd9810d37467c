"""The simulation core against hand-computed numbers, with the hand-written user (no training)."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from recsim_env.choice import choice_probabilities, choice_utilities, sample_categorical
from recsim_env.config import ChoiceConfig, LeaveConfig, PopulationConfig, RewardConfig, SimConfig
from recsim_env.core import wear_item_vectors
from recsim_env.factory import build_core
from recsim_env.testing import logged_dataset
from user_models.errors import InputError
from user_models.handwritten import clickbait_user


@pytest.fixture(scope="module")
def user():
    return clickbait_user(5)


@pytest.fixture(scope="module")
def dataset(user):
    return logged_dataset(user, n_users=30, seed=1)


def make_core(user, dataset, n=8, seed=0, **changes):
    config = SimConfig(**{"slate_size": 3, "history_len": 6, **changes})
    core = build_core(user, dataset, config, n_users=n)
    core.manual_seed(seed)
    core.reset()
    return core


def test_choice_probabilities_by_hand(user, dataset):
    # Raw-logit utilities: items 1 (clickbait, logit 2) and 6 (quality, logit 0) and an empty slot;
    # temperature 2, no-choice logit 0.5, genre bonus 0.5 for the last item's genre, repeats allowed.
    core = make_core(user, dataset, choice=ChoiceConfig(temperature=2.0, no_choice_logit=0.5, repeat="allow",
                                                        utility="logit"))
    slate = torch.tensor([[1, 6, 0]]).expand(8, -1)
    record = core.step(slate)
    for row in range(8):
        snap = record.row(row)
        # recover the pre-step last item: it is the history's last item unless this step appended one
        prev = snap.history_items[-2] if snap.position >= 0 else snap.history_items[-1]
        bonus_click = 0.5 if 1 <= prev <= 5 else 0.0
        bonus_quality = 0.5 if prev >= 6 else 0.0
        e1, e6, none = math.exp((2 + bonus_click) / 2), math.exp((0 + bonus_quality) / 2), math.exp(0.5)
        total = e1 + e6 + none
        np.testing.assert_allclose(snap.choice_probs, [e1 / total, e6 / total, 0.0, none / total], rtol=1e-5)


def test_normalised_choice_by_hand(user, dataset):
    # Log-lift utilities (the default): u = log(n * q) with q = softmax(logits / T) over the whole
    # catalogue of 10 items (5 clickbait at logit 2, 5 quality at logit 0, +0.5 for the last item's
    # genre). Slate: item 1, item 6, an empty slot; T = 2, no-choice utility 0.5; examination 0.5 per slot.
    choice = ChoiceConfig(temperature=2.0, no_choice_logit=0.5, repeat="allow", position_decay=0.5)
    core = make_core(user, dataset, choice=choice)
    record = core.step(torch.tensor([[1, 6, 0]]).expand(8, -1))
    for row in range(8):
        snap = record.row(row)
        prev = snap.history_items[-2] if snap.position >= 0 else snap.history_items[-1]
        click, quality = 2 + (0.5 if 1 <= prev <= 5 else 0.0), 0 + (0.5 if prev >= 6 else 0.0)
        normaliser = 5 * math.exp(click / 2) + 5 * math.exp(quality / 2)
        lift1, lift6 = 10 * math.exp(click / 2) / normaliser, 10 * math.exp(quality / 2) / normaliser
        # slot 0 examined fully, slot 1 half as often: e = (1, 0.5)
        total = lift1 + 0.5 * lift6 + math.exp(0.5)
        np.testing.assert_allclose(snap.choice_probs, [lift1 / total, 0.5 * lift6 / total, 0.0,
                                                       math.exp(0.5) / total], rtol=1e-5)


def test_normalised_choice_ignores_the_level_of_the_logits():
    # Softmax training fixes logit differences only: adding a constant per user must not change choice.
    config = ChoiceConfig(temperature=1.5, repeat="allow")
    catalogue = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    items = torch.tensor([[2, 4]])
    none = torch.zeros(1, 2, dtype=torch.bool)
    utilities = []
    for shift in (0.0, 7.0):
        logits = catalogue + shift
        norm = torch.logsumexp(logits / 1.5, dim=1, keepdim=True)
        utilities.append(choice_utilities(logits.gather(1, items - 1), none, config, norm, n_items=4))
    torch.testing.assert_close(utilities[0], utilities[1])
    q = torch.softmax(catalogue / 1.5, dim=1)[0]
    torch.testing.assert_close(utilities[0][0], torch.log(4 * q[[1, 3]]))


def test_repeat_policies_by_hand():
    logits = torch.tensor([[1.0, 1.0]])
    repeated = torch.tensor([[True, False]])
    shown = torch.tensor([[True, True]])
    for policy, expected_u0 in (("allow", 1.0), ("penalise", 1.0 - 2.0), ("mask", float("-inf"))):
        config = ChoiceConfig(temperature=1.0, utility="logit", repeat=policy, repeat_penalty=2.0)
        u = choice_utilities(logits, repeated, config)
        probs = choice_probabilities(u, shown, 0.0)[0]
        e0, e1, none = math.exp(expected_u0), math.e, 1.0
        total = e0 + e1 + none
        np.testing.assert_allclose(probs.numpy(), [e0 / total, e1 / total, none / total], rtol=1e-6)


def test_sampling_follows_probabilities():
    gen = torch.Generator().manual_seed(0)
    probs = torch.tensor([[0.2, 0.0, 0.5, 0.3]]).expand(20000, -1)
    counts = torch.bincount(sample_categorical(probs, gen), minlength=4).float() / 20000
    assert counts[1] == 0
    np.testing.assert_allclose(counts.numpy(), [0.2, 0.0, 0.5, 0.3], atol=0.015)


def test_response_reward_and_leave_by_hand(user, dataset):
    leave = LeaveConfig(initial_patience=1.0, no_choice_drain=0.3, low_value_drain=0.1, high_value_refill=0.2,
                        sharpness=2.0, end_logit_offset=math.log(3.0), end_hazard="after_event")
    reward = RewardConfig(behavior_weights=(0.25, 2.0), no_choice_penalty=0.5)
    core = make_core(user, dataset, n=64, leave=leave, reward=reward)
    record = core.step(torch.tensor([[1, 2, 3]]).expand(64, -1))
    chose = record.position >= 0
    # behavior distribution of clickbait items: (0.9, 0.1)
    assert torch.allclose(record.behavior_probs[chose], torch.tensor([0.9, 0.1]))
    expected_reward = torch.tensor([-0.5, 0.25, 2.0])[record.behavior]
    assert torch.allclose(record.reward, expected_reward)
    expected_patience = torch.tensor([0.7, 0.9, 1.0])[record.behavior]
    assert torch.allclose(record.patience, expected_patience)
    # learned part: end prob 0.05 with odds x3 -> 0.15 / 1.1; impatience (1 - p) ** 2
    learned = torch.where(chose, torch.tensor(0.15 / 1.10), torch.tensor(0.0))
    expected_leave = 1 - (1 - learned) * (1 - (1 - expected_patience) ** 2)
    assert torch.allclose(record.leave_prob, expected_leave, atol=1e-5)
    assert chose.any() and (~chose).any()


def test_learned_end_is_a_per_step_hazard_by_hand(user, dataset):
    # Default leave: no patience; every active step, consumption or not, the user leaves with
    # hazard_scale * sigmoid(logit(end_prob) + offset): end prob 0.05 with odds x3 -> 0.15 / 1.1.
    leave = LeaveConfig(end_logit_offset=math.log(3.0), hazard_scale=0.4)
    core = make_core(user, dataset, n=64, leave=leave)
    record = core.step(torch.tensor([[1, 2, 3]]).expand(64, -1))
    chose = record.position >= 0
    assert chose.any() and (~chose).any() and (record.patience == 1.0).all()
    # rows that chose nothing keep the end prob of their last event (0.05 for any behavior of this user)
    torch.testing.assert_close(record.leave_prob, torch.full((64,), 0.4 * 0.15 / 1.10))
    inactive = core.step(torch.tensor([[1, 2, 3]]).expand(64, -1), active=torch.zeros(64, dtype=torch.bool))
    assert (inactive.leave_prob == 0).all() and not inactive.terminated.any()


def test_idle_hazard_by_hand(user, dataset):
    # Nothing shown twice in a row: the second step is the second idle step in a row (j = 2), and the
    # user leaves with 1 - (1 - h) * exp(-idle_hazard * j), h the learned per-step hazard.
    leave = LeaveConfig(end_logit_offset=math.log(3.0), hazard_scale=0.4, idle_hazard=0.5)
    core = make_core(user, dataset, n=4, leave=leave)
    empty = torch.zeros(4, 3, dtype=torch.long)
    first = core.step(empty)
    second = core.step(empty, active=~first.terminated)
    h = 0.4 * 0.15 / 1.10
    torch.testing.assert_close(first.leave_prob, torch.full((4,), 1 - (1 - h) * math.exp(-0.5)))
    alive = ~first.terminated
    expected = torch.full((int(alive.sum()),), 1 - (1 - h) * math.exp(-1.0))
    torch.testing.assert_close(second.leave_prob[alive], expected)


def test_session_wear_by_hand(user, dataset):
    # The wear adds to the learned hazard's logit: w <- clip(0.5 * w + weights[b], -0.8, 1.0) after each
    # step (b = 0: nothing chosen), logit = 0.5 * logit(end prob 0.05) + log 3 + w; reset to 0 with the user.
    weights = (0.6, -0.4, -1.0)
    leave = LeaveConfig(end_logit_offset=math.log(3.0), hazard_scale=0.4, end_logit_scale=0.5,
                        wear_weights=weights, wear_decay=0.5, wear_bounds=(-0.8, 1.0))
    core = make_core(user, dataset, n=64, leave=leave)
    slate = torch.tensor([[1, 2, 3]]).expand(64, -1)
    wear = torch.zeros(64)
    for _ in range(3):
        record = core.step(slate)
        wear = (0.5 * wear + torch.tensor(weights)[record.behavior]).clamp(-0.8, 1.0)
        logit = 0.5 * math.log(0.05 / 0.95) + math.log(3.0) + wear
        torch.testing.assert_close(record.leave_prob, 0.4 * torch.sigmoid(logit))
        torch.testing.assert_close(core.wear, wear)
        torch.testing.assert_close(record.wear, wear)
        assert record.row(0).as_info()["wear"] == pytest.approx(float(wear[0]))
    assert (record.behavior == 0).any() and (record.behavior > 0).any()
    assert (wear == -0.8).any()  # the clip was reached
    core.reset()
    assert (core.wear == 0).all()
    # the consumed item's part: its standardised vector dotted with the item weights, added per step
    d = user.item_embeddings().shape[1]
    item_weights = tuple(float(x) for x in torch.linspace(-1.0, 1.0, d))
    core = make_core(user, dataset, n=64, leave=replace(leave, wear_item_weights=item_weights))
    per_item = wear_item_vectors(user.item_embeddings().float()) @ torch.tensor(item_weights)
    assert per_item[0] == 0 and per_item[1:].std() > 0
    wear = torch.zeros(64)
    for _ in range(3):
        record = core.step(slate)
        wear = (0.5 * wear + torch.tensor(weights)[record.behavior] + per_item[record.item]).clamp(-0.8, 1.0)
        torch.testing.assert_close(record.wear, wear)
    # the base hazard: a leave probability each step that the wear does not move
    core = make_core(user, dataset, n=64, leave=replace(leave, base_hazard=0.2))
    wear = torch.zeros(64)
    for _ in range(3):
        record = core.step(slate)
        wear = (0.5 * wear + torch.tensor(weights)[record.behavior]).clamp(-0.8, 1.0)
        logit = 0.5 * math.log(0.05 / 0.95) + math.log(3.0) + wear
        torch.testing.assert_close(record.leave_prob, 1 - 0.8 * (1 - 0.4 * torch.sigmoid(logit)))
    with pytest.raises(InputError, match="wear_item_weights has 1 entries"):
        make_core(user, dataset, leave=replace(leave, wear_item_weights=(0.1,)))
    with pytest.raises(InputError, match="wear_weights has 2 entries"):
        make_core(user, dataset, leave=LeaveConfig(wear_weights=(0.1, 0.2)))
    for bad in ({"wear_decay": 1.5}, {"wear_bounds": (1.0, -1.0)}, {"end_logit_scale": -1.0},
                {"wear_weights": (0.0, math.inf, 0.0)}, {"base_hazard": 1.0}, {"base_hazard": -0.1}):
        with pytest.raises(InputError, match=next(iter(bad))):
            LeaveConfig(**bad)


def test_hazard_scale_and_repeat_policy_come_from_the_data(user, dataset):
    from recsim_env.population import logged_stats, median_session_gap, repeat_rate

    core = make_core(user, dataset, n=2)
    step = median_session_gap(dataset)
    assert core.config.leave.hazard_scale == pytest.approx(logged_stats(dataset, step).consumption_rate)
    # these logs re-consume even the item just before, more than 1% of the time: repeats allowed
    assert repeat_rate(dataset, 1) > 0.01
    assert (core.config.choice.repeat, core.config.choice.repeat_window) == ("allow", None)


def _logs_of(sequences: list[list[int]]):
    """A dataset whose users consumed ``sequences`` (each followed by two fresh items, the validation
    and test events that training data leaves out)."""
    import polars as pl

    from user_models.data.artifact import DatasetMeta, SequenceDataset

    names = ("user", "item", "behavior", "timestamp", "session", "position")
    rows: dict[str, list[int]] = {k: [] for k in names}
    for u, seq in enumerate(sequences):
        for pos, item in enumerate([*seq, 90 + 2 * u, 91 + 2 * u]):
            for key, value in (("user", u), ("item", item), ("behavior", 1), ("timestamp", 1000 + 60 * pos),
                               ("session", 0), ("position", pos)):
                rows[key].append(value)
    n = 100
    ids = list(range(1, n + 1))
    items = pl.DataFrame({"item": ids, "raw_id": [f"i{i}" for i in ids], "title": [f"item {i}" for i in ids],
                          "category": ["g"] * n, "price": None})
    n_users = len(sequences)
    users = pl.DataFrame({"user": list(range(n_users)), "user_key": [f"u{u}" for u in range(n_users)]})
    meta = DatasetMeta(name="hand", behaviors=("view",), n_users=0, n_items=0, n_interactions=0, n_sessions=0,
                       has_timestamps=True, behavior_source="events", session_gap_seconds=1800)
    return SequenceDataset.from_frames(pl.DataFrame(rows), items, users, meta)


def test_the_repeat_rule_is_what_the_logs_show():
    from recsim_env.population import data_repeat_rule, repeat_lags, repeat_rate

    never = _logs_of([[1, 2, 3, 4], [5, 6, 7, 8]])
    assert data_repeat_rule(never, 6) == ("mask", None)  # MovieLens: nothing is consumed twice
    later = _logs_of([[1, 2, 3, 1, 2, 3, 1], [4, 5, 6, 4, 7, 8, 9]])  # back to an item after 3 events
    assert repeat_lags(later, 6).tolist() == [0, 0, 0, 3, 3, 3, 3, 0, 0, 0, 3, 0, 0, 0]
    assert repeat_rate(later, 2) == 0.0 and repeat_rate(later, 3) == pytest.approx(5 / 14)
    assert data_repeat_rule(later, 6) == ("mask", 2)  # never within the last 2, often after
    assert data_repeat_rule(later, 2) == ("mask", None)  # within a window of 2: never
    nearest = _logs_of([[1, 1, 2, 1]])  # item 1 again right after, then 2 events after its last time
    assert repeat_lags(nearest, 6).tolist() == [0, 1, 0, 2]
    assert data_repeat_rule(nearest, 6) == ("allow", None)


def test_a_repeat_window_masks_only_the_latest_consumptions(user, dataset):
    from recsim_env.offline.fidelity import PrefixPopulation
    from recsim_env.spaces import SpaceAdapter
    from user_models.protocol import History

    items = torch.tensor([[1, 2, 3], [4, 5, 6]])
    history = History(items, (items > 0).long(), torch.full(items.shape, -1.0), torch.tensor([3, 3]))
    choice = ChoiceConfig(repeat="mask", repeat_window=2, utility="logit")
    config = SimConfig(slate_size=3, history_len=6, choice=choice)
    core = build_core(user, dataset, config, n_users=2, population=PrefixPopulation(history))
    core.manual_seed(0)
    core.reset()
    assert core.consumed is None  # a window: no bitmap of everything consumed
    slate = torch.tensor([[1, 2, 3], [4, 5, 6]])
    assert core.barred_repeats(slate).tolist() == [[False, True, True]] * 2
    assert core.repeated(slate).all()  # the learned choice's flag still spans the whole history
    probs = core.slate_choice_probabilities(slate, slate > 0)
    assert (probs[:, 1:3] == 0).all() and (probs[:, 0] > 0).all()
    masks = SpaceAdapter(core, "slate", "history").action_masks()[:, :11]
    assert [i for i in range(11) if not masks[0, i]] == [0, 2, 3]
    assert [i for i in range(11) if not masks[1, i]] == [0, 5, 6]
    # the masks can follow another rule than the users' own (the world's, under the simulator's rule)
    allowing = SimConfig(slate_size=3, history_len=6, choice=ChoiceConfig(repeat="allow"))
    allow = build_core(user, dataset, allowing, n_users=2, population=PrefixPopulation(history))
    allow.manual_seed(0)
    allow.reset()
    assert SpaceAdapter(allow, "slate", "history").action_masks()[:, 1:11].all()
    ruled = SpaceAdapter(allow, "slate", "history", mask_rule=choice).action_masks()[:, :11]
    assert torch.equal(ruled, masks)
    assert not allow.barred_repeats(slate).any()
    with pytest.raises(InputError, match="repeat_window"):
        SimConfig(history_len=6, choice=ChoiceConfig(repeat="mask", repeat_window=7))
    with pytest.raises(InputError, match="repeat_window"):
        ChoiceConfig(repeat_window=0)


def test_mask_covers_everything_the_user_consumed_beyond_the_window(user, dataset):
    from recsim_env.offline.fidelity import PrefixPopulation
    from recsim_env.spaces import SpaceAdapter
    from user_models.protocol import History

    items = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8, 9, 0], [10, 10, 0, 0, 0, 0, 0, 0, 0, 0]])
    history = History(items, (items > 0).long(), torch.full(items.shape, -1.0), (items > 0).sum(1))
    config = SimConfig(slate_size=1, history_len=3, choice=ChoiceConfig(repeat="mask"))
    core = build_core(user, dataset, config, n_users=2, population=PrefixPopulation(history))
    core.manual_seed(0)
    core.reset()
    assert core.history_items[0].tolist() == [7, 8, 9]  # the window holds the last three events only
    masks = SpaceAdapter(core, "slate", "history").action_masks()
    assert [i for i in range(11) if not masks[0, i]] == list(range(10))  # 0 and items 1..9 all masked
    assert [i for i in range(11) if not masks[1, i]] == [0, 10]
    slate = torch.tensor([[10], [3]])  # item 10 is new for row 0, item 3 for row 1
    assert not core.repeated(slate).any()
    chose = torch.zeros(2, dtype=torch.bool)
    for _ in range(30):  # until each row has consumed its item once
        chose |= core.step(slate, active=~chose).position >= 0
        if chose.all():
            break
    assert chose.all() and core.repeated(slate).all()  # consumed now: masked from here on


def test_duplicates_and_empty_slots_show_nothing(user, dataset):
    core = make_core(user, dataset, n=2)
    record = core.step(torch.tensor([[3, 3, 0], [4, 5, 4]]))
    assert record.slate.tolist() == [[3, 0, 0], [4, 5, 0]]
    assert (record.choice_probs[0, 1:3] == 0).all() and record.choice_probs[1, 2] == 0
    torch.testing.assert_close(record.choice_probs.sum(1), torch.ones(2))


def test_same_seed_same_trajectory_and_other_seed_differs(user, dataset):
    def run(seed):
        core = make_core(user, dataset, n=16, seed=seed, population=PopulationConfig(max_prefix=8))
        gen = torch.Generator().manual_seed(5)
        out = []
        for _ in range(15):
            slate = torch.randint(0, user.n_items + 1, (16, 3), generator=gen)
            r = core.step(slate)
            out.append(torch.stack([r.item, r.behavior, r.terminated.long()]))
            core.reset(r.terminated | r.truncated)
        return torch.stack(out)

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))


def test_reset_only_touches_selected_rows(user, dataset):
    core = make_core(user, dataset, n=6, seed=3)
    for _ in range(3):
        core.step(torch.tensor([[6, 7, 8]]).expand(6, -1))
    before = {name: getattr(core, name).clone() for name in ("history_items", "patience", "steps")}
    logits_before = core.catalogue_logits()
    rows = torch.tensor([True, False, False, True, False, False])
    core.reset(rows)
    for name, old in before.items():
        assert torch.equal(getattr(core, name)[~rows], old[~rows]), name
    assert (core.steps[rows] == 0).all() and (core.patience[rows] == 1.0).all()
    assert torch.equal(core.catalogue_logits()[~rows], logits_before[~rows])


def test_inactive_rows_are_untouched(user, dataset):
    core = make_core(user, dataset, n=4)
    active = torch.tensor([True, False, True, False])
    history = core.history_items.clone()
    record = core.step(torch.tensor([[1, 2, 3]]).expand(4, -1), active=active)
    assert (record.reward[~active] == 0).all() and (record.position[~active] == -1).all()
    assert torch.equal(core.history_items[~active], history[~active])
    assert core.steps.tolist() == [1, 0, 1, 0]


def test_dataset_population_uses_training_split_only(user):
    ds = logged_dataset(user, n_users=20, seed=2)
    config = SimConfig(population=PopulationConfig(min_prefix=1, max_prefix=500))
    core = build_core(user, ds, config, n_users=64)
    core.manual_seed(0)
    history = core.population.sample(64, core.generator)
    train = ds.train_sequences()
    for row in range(64):
        n = int(history.lengths[row])
        prefix = history.items[row, :n].tolist()
        assert any(train.user(u)[0][:n].tolist() == prefix and len(train.user(u)[0]) >= n
                   for u in range(ds.n_users))
    assert int(history.lengths.max()) <= int(train.lengths.max())


def test_generated_population_lengths_and_ids(user, dataset):
    core = make_core(user, dataset, n=16, population=PopulationConfig(kind="generated", min_prefix=2,
                                                                        max_prefix=5))
    lengths = core.history_lengths
    assert ((lengths >= 2) & (lengths <= 5)).all()
    assert ((core.history_items >= 0) & (core.history_items <= user.n_items)).all()
    assert (core.history_items[core.history_mask] > 0).all()


def test_bad_configs_fail_clearly(user, dataset):
    with pytest.raises(InputError, match="temperature"):
        ChoiceConfig(temperature=0)
    with pytest.raises(InputError, match="slate_size 11 exceeds"):
        build_core(user, dataset, SimConfig(slate_size=11))
    with pytest.raises(InputError, match="behavior_weights has 3"):
        build_core(user, dataset, SimConfig(reward=RewardConfig(behavior_weights=(1, 2, 3))))


def test_no_choice_steps_append_nothing_unless_asked(user, dataset):
    empty = torch.zeros(4, 3, dtype=torch.long)  # nothing shown: a sure no-choice step
    patience = LeaveConfig(end_hazard="after_event", no_choice_drain=0.1)
    core = make_core(user, dataset, n=4, leave=patience)
    end_before = user.end_prob(core.user_state).clone()
    record = core.step(empty)
    assert (record.position == -1).all() and torch.equal(record.end_prob, end_before)
    # patience 1 - 0.1 (no-choice drain); the learned end does not count without an event
    torch.testing.assert_close(record.leave_prob, torch.full((4,), 0.1**4))
    world_like = make_core(user, dataset, n=4, no_choice_event=True, leave=patience)
    record = world_like.step(empty)
    # a behavior-0 event was appended: the hand-written user's end prob after behavior 0 is 0.02
    torch.testing.assert_close(record.end_prob, torch.full((4,), 0.02))
    torch.testing.assert_close(record.leave_prob, torch.full((4,), 1 - 0.98 * (1 - 0.1**4)))
