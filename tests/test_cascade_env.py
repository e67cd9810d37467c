"""RecSim-CascadeWorld-v0: the cascade world through the same env, spaces and policies as the simulator."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from recsim_env.cli import main
from recsim_env.factory import world_config
from recsim_env.offline.rollout import build_policy, build_simulator, rollout
from user_models.data.artifact import SequenceDataset
from user_models.errors import InputError


@pytest.fixture(scope="module")
def cascade_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("cascade") / "data"
    assert main(["data", "synth", "--world", "cascade", "--users", "120", "--items", "150", "--seed", "3",
                 "--out", str(out)]) == 0
    return out


def test_the_cascade_env_passes_the_checkers_and_ends_by_itself(cascade_data) -> None:
    env = gym.make("RecSim-CascadeWorld-v0", data=cascade_data, slate_size=4, max_steps=500)
    check_env(env.unwrapped)
    lengths = []
    for episode in range(20):
        env.reset(seed=episode)
        done, steps = False, 0
        while not done:
            _, _, terminated, truncated, info = env.step(env.action_space.sample())
            steps += 1
            assert not truncated  # the world's users leave on their own, long before 500 steps
            done = terminated
            probs = info["choice_probs"]
            assert probs.shape == (5,) and abs(float(probs.sum()) - 1) < 1e-5
        lengths.append(steps)
    assert min(lengths) >= 1 and np.mean(lengths) < 100


def test_same_seed_same_cascade_trajectories(cascade_data) -> None:
    def run(seed: int) -> list[list[int]]:
        env = gym.make("RecSim-CascadeWorld-v0", data=cascade_data, slate_size=3)
        env.reset(seed=seed)
        env.action_space.seed(seed)
        out = []
        for _ in range(15):
            _, _, term, trunc, info = env.step(env.action_space.sample())
            out.append([int(info["item"]), int(info["behavior"])])
            if term or trunc:
                env.reset()
        return out

    assert run(5) == run(5) and run(5) != run(6)


def test_the_worlds_answer_is_the_worlds(cascade_data) -> None:
    """The env's choice probabilities are the cascade's (top-down scan), not a logit over the slate: a
    slot below an item the user surely clicks is never chosen."""
    sim = build_simulator("world", cascade_data, world_config(slate_size=3), 64)
    world = sim.core.model.world
    sim.core.manual_seed(0)
    sim.core.reset()
    state = sim.core.user_state
    sure = world.click_probs(state, torch.arange(1, world.n_items + 1).expand(64, -1)).argmax(1) + 1
    slate = torch.stack([sure, sure % world.n_items + 1, (sure + 1) % world.n_items + 1], dim=1)
    expected = world.choice_probs(state, slate)  # before the step: it updates the state in place
    record = sim.core.step(slate)
    torch.testing.assert_close(record.choice_probs[:, :3], expected[:, :3].float(), rtol=0, atol=1e-5)
    assert (record.choice_probs[:, 0] >= record.choice_probs[:, 1]).float().mean() > 0.9


def test_policies_run_in_the_cascade_world_through_the_rollout_harness(cascade_data) -> None:
    sim = build_simulator("world", cascade_data, world_config(slate_size=4), 30)
    returns = {}
    for name in ("random", "popular", "oracle"):
        run = rollout(sim.core, sim.adapter, build_policy(name, sim, 0), seed=1)
        returns[name] = np.mean([ep.rewards.sum() for ep in run.episodes])
    assert returns["oracle"] > returns["random"]  # the world's own attractiveness gets clicks


def test_the_cascade_id_needs_cascade_data(tmp_path) -> None:
    assert main(["data", "synth", "--users", "40", "--items", "30", "--out", str(tmp_path / "organic")]) == 0
    with pytest.raises(InputError, match="not written by the cascade world"):
        gym.make("RecSim-CascadeWorld-v0", data=SequenceDataset.load(tmp_path / "organic"))


def test_the_worlds_masks_can_follow_the_simulators_repeat_rule(cascade_data) -> None:
    """Ground-truth fidelity filters the world's actions by the simulator's repeat rule (the recommender
    side is the same in both); the world's users answer as they always do."""
    from recsim_env.config import ChoiceConfig

    rule = ChoiceConfig(repeat="mask", repeat_window=3)
    own = build_simulator("world", cascade_data, world_config(slate_size=4), 8)
    ruled = build_simulator("world", cascade_data, world_config(slate_size=4), 8, mask_rule=rule)
    for sim in (own, ruled):
        sim.core.manual_seed(0)
        sim.core.reset()
    slate = torch.arange(1, 5)[None, :].expand(8, -1) + torch.arange(8)[:, None] * 4
    for _ in range(6):
        records = [sim.core.step(slate) for sim in (own, ruled)]
        assert torch.equal(records[0].position, records[1].position)  # the same answers
    n = own.core.n_items
    assert own.adapter.action_masks()[:, 1:n + 1].all()  # the world's own rule: repeats allowed
    masks = ruled.adapter.action_masks()[:, : n + 1]  # the first slot's block (id 0, then the items)
    recent = ruled.core.history_items[:, -3:]
    for row in range(8):
        hidden = {i for i in range(1, n + 1) if not masks[row, i]}
        assert hidden == {int(i) for i in recent[row] if i > 0}
    assert any(masks[row, 1:].sum() < n for row in range(8))  # something was consumed


def test_ground_truth_fidelity_follows_the_worlds_bait_through_both_sides(cascade_data, tmp_path) -> None:
    """The cascade world marks its bait items; the fidelity report counts them per policy in the world
    and in the simulator (here the world on both sides: the same numbers)."""
    from recsim_env.factory import load_dataset, load_model
    from recsim_env.offline.benchmark import BenchmarkConfig
    from recsim_env.offline.fidelity import ground_truth_fidelity, hidden_item_groups

    dataset = load_dataset(cascade_data)
    flags = hidden_item_groups(load_model("world", dataset))["bait"]
    assert flags.shape == (dataset.n_items + 1,) and not flags[0] and 0 < flags[1:].mean() < 0.5
    settings = world_config(slate_size=4, max_steps=30)
    bench = BenchmarkConfig(policies=("random", "oracle"), episodes=16, seeds=1, n_resamples=50)
    result = ground_truth_fidelity("world", cascade_data, bench, settings, settings, tmp_path, progress=False)
    by_policy = {r.policy: r.item_groups for r in result.returns}
    for groups in by_policy.values():
        (g,) = groups
        assert g.group == "bait"
        assert (g.world_shown, g.world_consumed) == (g.learned_shown, g.learned_consumed)
        assert 0 < g.world_shown < 1 and 0 <= g.world_leave_after <= 1
    # The world's oracle (the most clickable slate) leans on bait: more of its slots, and of what is taken.
    assert by_policy["oracle"][0].world_shown > by_policy["random"][0].world_shown
