"""``recsim visualize --replay`` and the frame player, headless (SDL dummy video driver)."""

from __future__ import annotations

import dataclasses
import os
import sys

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import pytest

from recsim_env.render.trajectory import read_trajectory, write_trajectory
from tests.viz_frames import make_frame

pytest.importorskip("pygame", reason="the visualizer tests need pygame-ce (recsim-env[viz])")

from recsim_env.cli import main  # noqa: E402
from recsim_env.render.player import play  # noqa: E402
from recsim_env.render.pygame_renderer import HumanViewer, import_pygame  # noqa: E402


def run(*argv: str) -> int:
    return main(["visualize", *argv])


def two_users() -> list:
    first = [make_frame(s) for s in range(1, 4)]
    second = [dataclasses.replace(make_frame(s), episode=1, user_id=9) for s in range(1, 3)]
    return first + second


def test_replay_records_a_gif_and_resaves_the_trajectory(tmp_path, capsys) -> None:
    iio = pytest.importorskip("imageio.v3")
    source = write_trajectory(tmp_path / "in.jsonl", two_users(), meta={"policy": "random"})
    gif, again = tmp_path / "replay.gif", tmp_path / "again.jsonl"
    assert run("--replay", str(source), "--no-window", "--record", str(gif), "--save-trajectory",
               str(again)) == 0
    assert iio.imread(gif, index=None).shape == (5, 600, 960, 3)
    assert read_trajectory(again).frames == tuple(two_users())
    assert "5 frames, 2 user(s)" in capsys.readouterr().out


def test_replay_in_a_window_stops_after_steps(tmp_path, capsys) -> None:
    source = write_trajectory(tmp_path / "in.jsonl", two_users())
    assert run("--replay", str(source), "--fps", "500", "--steps", "4") == 0
    assert "4 frames, 2 user(s)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--replay", "x.jsonl", "--model", "m"], "not both"),
        (["--model", "m"], "need --model and --data"),
        (["--replay", "x.jsonl", "--steps", "0"], "--steps must be at least 1"),
        (["--replay", "x.jsonl", "--no-window"], "would show nothing"),
        (["--replay", "missing.jsonl", "--no-window", "--record", "a.gif"], "no such trajectory file"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path, monkeypatch, capsys, argv: list[str], message: str
                                            ) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(*argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "a.gif").exists()


def test_next_user_key_abandons_the_episode() -> None:
    pygame = import_pygame()
    episodes = [[make_frame(s) for s in range(1, 4)],
                [dataclasses.replace(make_frame(s), episode=1) for s in range(1, 4)]]
    viewer = HumanViewer(fps=500)
    try:
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_n))
        result = play((iter(e) for e in episodes), max_frames=10, viewer=viewer)
    finally:
        viewer.close()
    assert (result.frames, result.episodes, result.quit) == (4, 2, False)
    assert result.total_reward == pytest.approx(1.0 + 3.0)  # first user left after step 1, second ran out


def test_quit_key_stops_playing() -> None:
    pygame = import_pygame()
    viewer = HumanViewer(fps=500)
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_q))
    result = play(iter([iter([make_frame(s) for s in range(1, 5)])]), max_frames=10, viewer=viewer)
    assert (result.frames, result.quit) == (1, True)


@pytest.mark.parametrize(("missing", "record", "hint"), [("pygame", "a.gif", "recsim-env[viz]"),
                                                         ("moviepy", "a.mp4", "needs moviepy")])
def test_missing_optional_dependency_exits_2_with_the_hint(tmp_path, monkeypatch, capsys, missing: str,
                                                          record: str, hint: str) -> None:
    source = write_trajectory(tmp_path / "in.jsonl", two_users())
    monkeypatch.setitem(sys.modules, missing, None)
    monkeypatch.delitem(sys.modules, "gymnasium.utils.save_video", raising=False)
    assert run("--replay", str(source), "--no-window", "--record", str(tmp_path / record)) == 2
    assert hint in capsys.readouterr().err
    assert not (tmp_path / record).exists()


def test_live_world_session_records_and_replays_identically(tmp_path, capsys) -> None:
    """A live session (the synthetic world needs no checkpoint), recorded, then replayed from its file."""
    iio = pytest.importorskip("imageio.v3")
    from user_models.synthetic import SyntheticConfig, synthesize_dataset

    config = SyntheticConfig(n_users=60, n_items=120, n_categories=6, dim=8, mean_events_per_user=25,
                             min_events_per_user=5, max_events_per_user=80, seed=3)
    data = synthesize_dataset(config).save(tmp_path / "world")
    live, saved, replayed = tmp_path / "live.gif", tmp_path / "s.jsonl.gz", tmp_path / "replay.gif"
    assert run("--env-id", "RecSim-World-v0", "--data", str(data), "--steps", "6", "--max-steps", "4",
               "--no-window", "--record", str(live), "--save-trajectory", str(saved)) == 0
    assert "6 frames" in capsys.readouterr().out
    frames = read_trajectory(saved).frames
    assert len(frames) == 6 and frames[0].policy == "random" and frames[0].step == 1
    assert run("--replay", str(saved), "--no-window", "--record", str(replayed)) == 0
    assert (iio.imread(live, index=None) == iio.imread(replayed, index=None)).all()


def test_live_session_from_a_transformer_checkpoint(tmp_path, capsys) -> None:
    """`--model DIR --data DIR`: a (small, untrained) Transformer checkpoint drives the session."""
    from tests._user_model_data import cyclic_dataset
    from user_models.checkpoint import save_user_model
    from user_models.transformer import TransformerConfig, UserTransformer

    dataset = cyclic_dataset()
    data = dataset.save(tmp_path / "data")
    model = UserTransformer(TransformerConfig(dim=16, layers=1, heads=1, max_len=16), dataset.n_items,
                            dataset.behaviors)
    save_user_model(model, tmp_path / "model", dataset)
    saved = tmp_path / "s.jsonl"
    assert run("--model", str(tmp_path / "model"), "--data", str(data), "--steps", "8", "--slate-size", "3",
               "--no-window", "--save-trajectory", str(saved)) == 0
    frames = read_trajectory(saved).frames
    assert len(frames) == 8 and {len(f.slate) for f in frames} == {3}
    chose = [f for f in frames if f.chosen_slot is not None and f.history]
    assert chose, "no step with a choice in 8 steps"
    for frame in chose:
        assert frame.attention is not None and len(frame.attention) == len(frame.history)
        assert sum(frame.attention) == pytest.approx(1.0) or not any(frame.attention)
    assert {i.category for f in frames for i in f.interests} <= {"Drama", "Comedy", "Action"}
