"""``recsim visualize --replay`` and the frame player, headless (SDL dummy video driver)."""

from __future__ import annotations

import argparse
import dataclasses
import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import pytest

from recsim_env.render.trajectory import read_trajectory, write_trajectory
from tests.viz_frames import make_frame
from user_models.errors import InputError

pytest.importorskip("pygame", reason="the visualizer tests need pygame-ce (recsim-env[viz])")

from recsim_env.cli import visualize  # noqa: E402
from recsim_env.render.player import play  # noqa: E402
from recsim_env.render.pygame_renderer import HumanViewer, import_pygame  # noqa: E402


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="recsim")
    visualize.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["visualize", *argv])
    return int(args.func(args))


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
def test_bad_arguments_are_input_errors(tmp_path, monkeypatch, argv: list[str], message: str) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=message):
        run(*argv)
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
