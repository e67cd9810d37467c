"""Play sessions frame by frame: show them in a window, record them to a video, save a trajectory.

Live sessions (``recsim visualize --model ...``) and replays (``--replay FILE``) both come here as
episodes of :class:`~recsim_env.render.frame.SessionFrame`, so they look and record the same.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tqdm import tqdm

from recsim_env.render.frame import SessionFrame
from recsim_env.render.pygame_renderer import HumanViewer, SessionRenderer, ViewerCommand
from recsim_env.render.recording import VideoRecorder
from recsim_env.render.trajectory import TrajectoryWriter


@dataclass(frozen=True)
class PlayResult:
    """What a :func:`play` call went through."""

    frames: int
    episodes: int
    total_reward: float
    quit: bool
    """The person at the window pressed q (or closed it)."""


def play(
    episodes: Iterable[Iterable[SessionFrame]],
    *,
    max_frames: int,
    viewer: HumanViewer | None = None,
    recorder: VideoRecorder | None = None,
    renderer: SessionRenderer | None = None,
    writer: TrajectoryWriter | None = None,
    progress: bool = False,
) -> PlayResult:
    """Go through ``episodes`` until ``max_frames`` frames, the episodes run out, or the viewer quits.

    Each frame is saved to ``writer``, drawn into ``recorder`` (by ``renderer``, or the viewer's) and
    shown in ``viewer``. When the viewer asks for the next user, the current episode is abandoned and
    the next one starts (a live source then resets the env).
    """
    if recorder is not None and renderer is None:
        renderer = viewer.renderer if viewer is not None else SessionRenderer()
    frames = n_episodes = 0
    total = 0.0
    bar = tqdm(total=max_frames, unit="frame", disable=not progress or viewer is not None)
    try:
        for episode in episodes:
            n_episodes += 1
            last: SessionFrame | None = None
            for frame in episode:
                last = frame
                frames += 1
                bar.update()
                if writer is not None:
                    writer.write(frame)
                if recorder is not None and renderer is not None:
                    recorder.add(renderer.rgb_array(frame))
                command = viewer.show(frame) if viewer is not None else ViewerCommand.CONTINUE
                if command is ViewerCommand.QUIT:
                    return PlayResult(frames, n_episodes, total + frame.cumulative_reward, quit=True)
                if command is ViewerCommand.NEXT_USER or frames >= max_frames:
                    break
            total += last.cumulative_reward if last is not None else 0.0
            if frames >= max_frames:
                break
    finally:
        bar.close()
    return PlayResult(frames, n_episodes, total, quit=False)
