"""Frames built from the simulation core: catalogue, interests, occlusion weights, env rendering."""

from __future__ import annotations

import math
import os
import sys

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import recsim_env  # noqa: F401  (registers the env ids)
from recsim_env.render.frame import SessionFrame
from recsim_env.render.snapshot import (
    ATTENTION_SOURCE,
    FrameBuilder,
    InterestSummary,
    ItemCatalogue,
    occlusion_weights,
)


def test_interests_split_multi_category_items_evenly() -> None:
    catalogue = ItemCatalogue(
        titles=(None, "a", "b", "c", "d"), categories=((), ("A",), ("A", "B"), ("C",), ())
    )
    # softmax over items 1..4 of [0, 0, ln 2, 0] = [0.2, 0.2, 0.4, 0.2]. Item 2 (A|B) splits its 0.2,
    # so A = 0.2 + 0.1, B = 0.1, C = 0.4, and item 4 (no category) gives (unknown) 0.2.
    interests = InterestSummary(catalogue, top=4)(torch.tensor([0.0, 0.0, math.log(2.0), 0.0]))
    assert [i.category for i in interests] == ["C", "A", "(unknown)", "B"]
    assert [i.prob for i in interests] == pytest.approx([0.4, 0.3, 0.2, 0.1])
    assert InterestSummary(ItemCatalogue((None, "x"), ((), ())))(torch.zeros(1)) == ()


def test_catalogue_view_shows_first_category_and_empty_slots() -> None:
    catalogue = ItemCatalogue(titles=(None, "Toy Story (1995)"), categories=((), ("Animation", "Comedy")))
    assert catalogue.view(1).label == "Toy Story (1995)"
    assert catalogue.view(1).category == "Animation"
    assert catalogue.view(0).label == "(empty slot)"


# --- frames of the real env (the hand-written clickbait user; no training) --------------------------
def make(user, dataset, **kwargs):
    return gym.make("RecSim-v0", model=user, data=dataset, slate_size=3, history_len=8, **kwargs)


def test_occlusion_weights_by_hand(user) -> None:
    # Items 1..10 are clickbait (genre 0), 11..20 quality (genre 1); the logit gets +0.5 (genre_bonus)
    # when the item's genre equals the last event's. History [quality 11, clickbait 3]:
    # for clickbait 5, dropping event 3 removes the bonus (logit 2.5 -> 2.0): all weight on it.
    items, behaviors = np.array([11, 3]), np.array([2, 1])
    assert occlusion_weights(user, items, behaviors, chosen_item=5, n_targets=2) == pytest.approx([0, 1])
    # For quality 12 dropping event 3 *adds* the bonus (11 becomes last): no event raised its logit.
    assert occlusion_weights(user, items, behaviors, chosen_item=12, n_targets=2) == pytest.approx([0, 0])
    assert occlusion_weights(user, items[:0], behaviors[:0], chosen_item=5, n_targets=3).shape == (0,)


def test_session_frame_matches_the_step(user, dataset) -> None:
    env = make(user, dataset)
    obs, _ = env.reset(seed=3)
    start = env.unwrapped.session_frame(policy="hand")
    assert (start.step, start.slate, start.no_choice_prob) == (0, (), 1.0)
    assert [e.item.item for e in start.history] == obs["history_items"][obs["mask"] == 1].tolist()
    total = 0.0
    for step in range(1, 6):
        before = obs["history_items"][obs["mask"] == 1].tolist()
        obs, reward, terminated, truncated, info = env.step(np.array([3, 12, 13]))
        total += reward
        frame = env.unwrapped.session_frame(policy="hand")
        assert frame.step == step and frame.policy == "hand" and frame.user_id == 0
        assert [s.item.item for s in frame.slate] == info["slate"].tolist()
        probs = [s.choice_prob for s in frame.slate] + [frame.no_choice_prob]
        assert probs == pytest.approx(info["choice_probs"].tolist())
        assert frame.chosen_slot == (info["position"] if info["position"] >= 0 else None)
        assert [e.item.item for e in frame.history] == before[-len(frame.history):]
        assert frame.cumulative_reward == pytest.approx(total)
        assert (frame.patience, frame.leave_prob) == pytest.approx((info["patience"], info["leave_prob"]))
        assert (frame.terminated, frame.truncated) == (terminated, truncated)
        if frame.chosen_slot is not None:
            assert frame.attention_source == ATTENTION_SOURCE and len(frame.attention) == len(frame.history)
        assert [i.category for i in frame.interests] and sum(i.prob for i in frame.interests) <= 1 + 1e-6
        assert SessionFrame.from_dict(frame.to_dict()) == frame
        if terminated or truncated:
            break
    env.reset()
    assert env.unwrapped.session_frame().user_id == 1


def test_rgb_array_render_mode(user, dataset) -> None:
    env = make(user, dataset, render_mode="rgb_array")
    env.reset(seed=0)
    first = env.render()
    env.step(np.array([1, 11, 12]))
    second = env.render()
    assert first.shape == second.shape == (600, 960, 3) and first.dtype == np.uint8
    assert (first != second).any()
    check_env(env.unwrapped, skip_render_check=False)
    env.close()


def test_human_render_mode_draws_every_step_until_q(user, dataset) -> None:
    pygame = pytest.importorskip("pygame")
    env = make(user, dataset, render_mode="human")
    env.reset(seed=0)  # opens the window and shows the new user
    viewer = env.unwrapped._view._viewer
    assert viewer is not None and not viewer.closed
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_q))
    env.step(np.array([1, 11, 12]))  # shown, then q closes the window
    assert viewer.closed
    env.step(np.array([1, 11, 12]))  # stepping goes on without a window
    assert env.render() is None
    env.close()


def test_env_without_pygame_fails_on_render_with_the_hint(user, dataset, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pygame", None)
    env = make(user, dataset, render_mode="rgb_array")  # building the env needs no pygame
    env.reset(seed=0)
    with pytest.raises(ImportError, match=r"recsim-env\[viz\]"):
        env.render()


def test_live_session_plays_and_records(user, dataset, tmp_path) -> None:
    iio = pytest.importorskip("imageio.v3")
    from recsim_env.cli.visualize import live_episodes
    from recsim_env.render.player import play
    from recsim_env.render.recording import VideoRecorder
    from recsim_env.render.trajectory import TrajectoryWriter, read_trajectory

    env = make(user, dataset, max_steps=4)
    env.action_space.seed(0)
    episodes = live_episodes(env, lambda obs: env.action_space.sample(), "random", seed=0)
    recorder, writer = VideoRecorder(tmp_path / "s.gif", fps=4), TrajectoryWriter(tmp_path / "s.jsonl")
    with recorder, writer:
        result = play(episodes, max_frames=6, recorder=recorder, writer=writer)
    assert result.frames == 6 and result.episodes >= 2  # episodes are truncated after 4 steps
    frames = read_trajectory(tmp_path / "s.jsonl").frames
    for previous, frame in zip(frames, frames[1:], strict=False):
        ended = previous.terminated or previous.truncated
        assert frame.step == (1 if ended else previous.step + 1)
        assert frame.episode == previous.episode + ended
    assert {f.policy for f in frames} == {"random"}
    assert iio.imread(tmp_path / "s.gif", index=None).shape[0] == 6


def test_vector_env_renders_the_chosen_row(user, dataset) -> None:
    env = gym.make_vec("RecSim-v0", num_envs=3, vectorization_mode="vector_entry_point", model=user,
                       data=dataset, slate_size=3, history_len=8, max_steps=2, render_mode="rgb_array")
    base = env.unwrapped
    env.reset(seed=0)
    assert [base.session_frame(r).user_id for r in range(3)] == [0, 1, 2]
    slates = np.array([[1, 2, 3], [11, 12, 13], [4, 15, 16]])
    env.step(slates)
    images = []
    for row in range(3):
        base.render_row = row
        (image,) = env.render()
        assert image.shape == (600, 960, 3) and image.dtype == np.uint8
        images.append(image)
        frame = base.session_frame(row)
        assert [s.item.item for s in frame.slate] == slates[row].tolist() and frame.step == 1
    assert (images[0] != images[1]).any()
    _, _, terminated, truncated, _ = env.step(slates)  # max_steps=2: every row truncates and resets
    assert truncated.all()
    last = [base.session_frame(r) for r in range(3)]
    assert [f.user_id for f in last] == [0, 1, 2], "a finished row's frame shows the user who left"
    assert all(f.truncated and f.step == 2 and f.interests == () for f in last)
    env.step(slates)
    assert sorted(base.session_frame(r).user_id for r in range(3)) == [3, 4, 5]
    env.close()


def test_frames_of_several_rows_equal_single_frames(user, dataset) -> None:
    env = gym.make_vec("RecSim-v0", num_envs=3, vectorization_mode="vector_entry_point", model=user,
                       data=dataset, slate_size=3, history_len=8)
    env.reset(seed=1)
    env.step(np.array([[1, 2, 3], [11, 12, 13], [4, 15, 16]]))
    builder = FrameBuilder(env.unwrapped.core, ItemCatalogue.from_dataset(dataset))
    batch = builder.frames([2, 0], user_ids=[7, 5], episodes=[7, 5])
    assert batch == [builder.frame(2, user_id=7, episode=7), builder.frame(0, user_id=5, episode=5)]
