"""The visualizer: frames, trajectory files, the pygame renderer, the window's keys and GIF recording.

Headless: SDL's dummy video driver stands in for a display.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import stat
import sys

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import numpy as np
import pytest

from recsim_env.render.frame import FrameError, SessionFrame
from recsim_env.render.trajectory import (
    TrajectoryError,
    iter_trajectory,
    read_trajectory,
    write_trajectory,
)
from tests.viz_frames import make_frame

pytest.importorskip("pygame", reason="the visualizer tests need pygame-ce (recsim-env[viz])")

from recsim_env.render.pygame_renderer import (  # noqa: E402 (after the skip)
    HumanViewer,
    RenderConfig,
    SessionRenderer,
    ViewerCommand,
    VizDependencyError,
    import_pygame,
)
from recsim_env.render.recording import VideoRecorder, write_video  # noqa: E402


@pytest.fixture(scope="module")
def renderer() -> SessionRenderer:
    return SessionRenderer()


# --- frames and trajectory files -------------------------------------------------------------------
def test_frame_round_trips_through_json() -> None:
    for frame in (make_frame(3), make_frame(4, chosen=None), make_frame(0, history_len=0)):
        again = SessionFrame.from_dict(json.loads(json.dumps(frame.to_dict())))
        assert again == frame


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"no_choice_prob": 0.5}, "sum to"),
        ({"chosen_slot": 7}, "chosen_slot=7"),
        ({"behavior": None}, "both be None"),
        ({"behavior": "shrug"}, "'shrug' is not in the vocabulary"),
        ({"attention": (1.0,)}, "1 weights for 12 history events"),
        ({"leave_prob": 1.5}, "leave_prob=1.5"),
    ],
)
def test_frame_rejects_inconsistent_values(change: dict, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        dataclasses.replace(make_frame(1), **change)


def test_frame_from_dict_names_missing_and_unknown_keys() -> None:
    data = make_frame(1).to_dict()
    del data["patience"]
    with pytest.raises(FrameError, match="missing frame key 'patience'"):
        SessionFrame.from_dict(data)
    with pytest.raises(FrameError, match=r"unknown frame key\(s\) \['colour'\]"):
        SessionFrame.from_dict({**make_frame(1).to_dict(), "colour": 1})


@pytest.mark.parametrize("name", ["session.jsonl", "session.jsonl.gz"])
def test_trajectory_round_trip(tmp_path, name: str) -> None:
    first = [make_frame(s) for s in range(3)]
    second = [dataclasses.replace(make_frame(s, chosen=None), episode=1, user_id=7) for s in range(2)]
    path = write_trajectory(tmp_path / name, first + second, meta={"policy": "random", "seed": 3})
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary file left behind"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, "saved like any file, not private"
    trajectory = read_trajectory(path)
    assert trajectory.meta == {"policy": "random", "seed": 3}
    assert trajectory.frames == tuple(first + second)
    assert [len(e) for e in trajectory.episodes()] == [3, 2]


def test_trajectory_errors_name_file_and_line(tmp_path) -> None:
    path = write_trajectory(tmp_path / "t.jsonl", [make_frame(0), make_frame(1)])
    lines = path.read_text().splitlines()

    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join([lines[0], lines[1], "{not json"]) + "\n")
    meta, frames = iter_trajectory(broken)
    assert next(frames) == make_frame(0)
    with pytest.raises(TrajectoryError, match=r"broken.jsonl: line 3: invalid JSON"):
        next(frames)

    bad_frame = tmp_path / "bad_frame.jsonl"
    record = json.loads(lines[2])
    record["patience"] = -4
    bad_frame.write_text("\n".join([lines[0], json.dumps(record)]) + "\n")
    with pytest.raises(TrajectoryError, match=r"bad_frame.jsonl: line 2: patience=-4.0"):
        read_trajectory(bad_frame)

    old = tmp_path / "old.jsonl"
    old.write_text(json.dumps({"format": "recsim-trajectory", "format_version": 0}) + "\n" + lines[1] + "\n")
    with pytest.raises(TrajectoryError, match="format version 0"):
        read_trajectory(old)

    headless = tmp_path / "headless.jsonl"
    headless.write_text(lines[1] + "\n")
    with pytest.raises(TrajectoryError, match="line 1 is not a recsim-trajectory header"):
        read_trajectory(headless)

    corrupt = tmp_path / "corrupt.jsonl.gz"
    corrupt.write_bytes(gzip.compress(path.read_bytes())[:-20])
    with pytest.raises(TrajectoryError, match="corrupt.jsonl.gz: unreadable"):
        read_trajectory(corrupt)

    with pytest.raises(TrajectoryError, match="no such trajectory file"):
        read_trajectory(tmp_path / "missing.jsonl")


def test_failed_write_leaves_no_file(tmp_path) -> None:
    def frames():
        yield make_frame(0)
        raise RuntimeError("policy crashed")

    with pytest.raises(RuntimeError):
        write_trajectory(tmp_path / "t.jsonl", frames())
    assert list(tmp_path.iterdir()) == []


# --- renderer -------------------------------------------------------------------------------------
def test_rgb_array_shape_and_dtype() -> None:
    small = SessionRenderer(RenderConfig(width=640, height=400))
    image = small.rgb_array(make_frame(2))
    assert image.shape == (400, 640, 3)
    assert image.dtype == np.uint8
    assert image.flags.c_contiguous
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 20, "the frame is (nearly) blank"


def test_consecutive_frames_differ(renderer: SessionRenderer) -> None:
    images = [renderer.rgb_array(make_frame(step)) for step in range(4)]
    for a, b in zip(images, images[1:], strict=False):
        assert (a != b).any(axis=2).sum() > 500


def _changed(a: np.ndarray, b: np.ndarray, box: tuple[int, int, int, int]) -> int:
    x, y, w, h = box
    return int((a[y:y + h, x:x + w] != b[y:y + h, x:x + w]).any(axis=2).sum())


def test_slate_region_changes_when_only_the_slate_changes(renderer: SessionRenderer) -> None:
    before = renderer.rgb_array(make_frame(5, slate=(11, 12, 13, 14, 15)))
    after = renderer.rgb_array(make_frame(5, slate=(21, 22, 23, 24, 25)))
    regions = renderer.regions
    assert _changed(before, after, regions["slate"]) > 500
    for unchanged in ("history", "gauges", "header"):
        assert _changed(before, after, regions[unchanged]) == 0, unchanged
    assert (before != after).any(axis=2).sum() == _changed(before, after, regions["slate"])


def test_chosen_and_no_choice_are_drawn_differently(renderer: SessionRenderer) -> None:
    chosen = renderer.rgb_array(make_frame(5, chosen=1))
    other = renderer.rgb_array(make_frame(5, chosen=3))
    nothing = renderer.rgb_array(make_frame(5, chosen=None))
    slate = renderer.regions["slate"]
    assert _changed(chosen, other, slate) > 500
    assert _changed(chosen, nothing, slate) > 500


def test_renderer_draws_edge_cases(renderer: SessionRenderer) -> None:
    long_title = dataclasses.replace(
        make_frame(1), policy="a policy with a very long name " * 5, terminated=True
    )
    for frame in (make_frame(0, history_len=0), make_frame(1, slate=tuple(range(1, 11))), long_title,
                  dataclasses.replace(make_frame(2), interests=(), attention=None)):
        assert renderer.rgb_array(frame).shape == (600, 960, 3)


def test_missing_pygame_gives_install_hint(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pygame", None)  # makes `import pygame` raise ImportError
    with pytest.raises(VizDependencyError, match=r"recsim-env\[viz\]"):
        import_pygame()
    with pytest.raises(VizDependencyError):
        SessionRenderer()


# --- human window ---------------------------------------------------------------------------------
def _press(pygame, *keys: int) -> None:
    for key in keys:
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key))


def test_human_viewer_keys(renderer: SessionRenderer) -> None:
    pygame = import_pygame()
    viewer = HumanViewer(fps=200, renderer=renderer)
    try:
        assert viewer.show(make_frame(0)) is ViewerCommand.CONTINUE
        _press(pygame, pygame.K_UP, pygame.K_UP, pygame.K_DOWN)
        assert viewer.show(make_frame(1)) is ViewerCommand.CONTINUE
        assert viewer.speed == 2.0
        assert viewer.frame_seconds == pytest.approx(1 / 400)
        # Paused: the frame stays until the right arrow steps one frame; it stays paused afterwards.
        _press(pygame, pygame.K_SPACE, pygame.K_RIGHT)
        assert viewer.show(make_frame(2)) is ViewerCommand.CONTINUE
        assert viewer.paused
        _press(pygame, pygame.K_n)
        assert viewer.show(make_frame(3)) is ViewerCommand.NEXT_USER
        _press(pygame, pygame.K_q)
        assert viewer.show(make_frame(4)) is ViewerCommand.QUIT
        assert viewer.closed
        assert viewer.show(make_frame(5)) is ViewerCommand.QUIT
    finally:
        viewer.close()


# --- recording ------------------------------------------------------------------------------------
def test_gif_is_written_and_readable(tmp_path, renderer: SessionRenderer) -> None:
    iio = pytest.importorskip("imageio.v3")
    frames = [renderer.rgb_array(make_frame(step)) for step in range(3)]
    path = write_video(frames, tmp_path / "session.gif", fps=4)
    assert [p.name for p in tmp_path.iterdir()] == ["session.gif"]
    video = iio.imread(path, index=None)
    assert video.shape == (3, 600, 960, 3)
    # GIF quantises colours; the frames must still be recognisably the ones drawn.
    for got, drawn in zip(video, frames, strict=True):
        assert np.abs(got.astype(int) - drawn.astype(int)).mean() < 4
    assert iio.immeta(path, index=0).get("duration") == 250


def test_recorder_rejects_bad_input(tmp_path) -> None:
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        write_video([np.zeros((4, 4), dtype=np.uint8)], tmp_path / "a.gif", fps=4)
    with pytest.raises(ValueError, match="cannot record '.avi'"):
        VideoRecorder(tmp_path / "a.avi", fps=4)
    with pytest.raises(ValueError, match="nothing to record"):
        write_video([], tmp_path / "b.gif", fps=4)
    assert list(tmp_path.iterdir()) == []


def test_mp4_without_moviepy_says_what_to_install(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "moviepy", None)
    monkeypatch.delitem(sys.modules, "gymnasium.utils.save_video", raising=False)
    with pytest.raises(VizDependencyError, match="needs moviepy"):
        VideoRecorder(tmp_path / "a.mp4", fps=4)
    assert list(tmp_path.iterdir()) == []
