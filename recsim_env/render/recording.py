"""Write rendered frames to an animated GIF (imageio + Pillow) or an MP4 (Gymnasium + moviepy).

GIFs need only the ``viz`` extra (imageio and Pillow; no ffmpeg download). MP4s go through Gymnasium's
video utilities, which need ``moviepy``; it is not a dependency of recsim-env, so asking for an MP4
without it fails up front with the install hint. For an env-driven MP4 without the CLI, wrap the env in
``gymnasium.wrappers.RecordVideo`` with ``render_mode="rgb_array"``.

Either file is written to a temporary sibling and renamed into place, so a crash never leaves half a
video behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium.error import DependencyNotInstalled

from recsim_env.render.pygame_renderer import VizDependencyError
from user_models.errors import InputError

VIDEO_SUFFIXES = (".gif", ".mp4")


def _check_frame(frame: np.ndarray, expected: tuple[int, ...] | None) -> tuple[int, ...]:
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"a video frame must be H x W x 3 uint8, got {frame.shape} {frame.dtype}")
    if expected is not None and frame.shape != expected:
        raise ValueError(f"frame of shape {frame.shape} in a video of {expected} frames")
    return tuple(frame.shape)


class VideoRecorder:
    """Collect ``H x W x 3`` uint8 frames and write them as a GIF or an MP4 when closed.

    Args:
        path: Output file; its suffix (``.gif`` or ``.mp4``) picks the format.
        fps: Frames per second of the video.

    Raises:
        InputError: the suffix is neither ``.gif`` nor ``.mp4``.
        VizDependencyError: imageio (GIF) or moviepy (MP4) is not installed.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float) -> None:
        self.path = Path(path)
        self.fps = float(fps)
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.format = self.path.suffix.lower()
        if self.format not in VIDEO_SUFFIXES:
            raise InputError(f"{self.path}: cannot record {self.format or 'a file without suffix'!r}; "
                             f"use one of {', '.join(VIDEO_SUFFIXES)}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._shape: tuple[int, ...] | None = None
        self.n_frames = 0
        self._frames: list[np.ndarray] = []  # MP4 only: moviepy takes the whole sequence at once
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.tmp-", dir=self.path.parent))
        self._gif: Any = None
        try:
            if self.format == ".gif":
                self._gif = _open_gif(self._tmp / "video.gif")
            else:
                _import_save_video()
        except BaseException:
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise

    def add(self, frame: np.ndarray) -> None:
        """Append one frame (all frames must have the same shape)."""
        self._shape = _check_frame(frame, self._shape)
        if self._gif is not None:
            # Pillow stores GIF frame durations in whole milliseconds.
            self._gif.write(frame, is_batch=False, duration=round(1000 / self.fps), loop=0)
        else:
            self._frames.append(frame.copy())
        self.n_frames += 1

    def close(self) -> Path:
        """Write the video and rename it into place; returns its path."""
        if self.n_frames == 0:
            self.abort()
            raise InputError(f"{self.path}: nothing to record (no frames)")
        try:
            if self._gif is not None:
                self._gif.close()
                produced = self._tmp / "video.gif"
            else:
                save_video = _import_save_video()
                save_video(self._frames, str(self._tmp), fps=self.fps, name_prefix="video")
                produced = next(self._tmp.glob("*.mp4"))
            os.replace(produced, self.path)
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)
        return self.path

    def abort(self) -> None:
        """Discard the frames; the output path is left untouched."""
        if self._gif is not None:
            self._gif.close()
            self._gif = None
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> VideoRecorder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(frames: list[np.ndarray], path: str | os.PathLike[str], fps: float) -> Path:
    """Write ``frames`` as a GIF or MP4 (by the suffix of ``path``); returns the path."""
    with VideoRecorder(path, fps) as recorder:
        for frame in frames:
            recorder.add(frame)
    return recorder.path


def _open_gif(path: Path) -> Any:
    try:
        import imageio.v3 as iio
    except ImportError as exc:
        raise VizDependencyError(
            "recording a GIF needs imageio, which is not installed; pip install 'recsim-env[viz]'"
        ) from exc
    return iio.imopen(path, "w", plugin="pillow", extension=".gif")


def _import_save_video() -> Any:
    try:
        from gymnasium.utils.save_video import save_video
    except (ImportError, DependencyNotInstalled) as exc:  # gymnasium raises the latter without moviepy
        raise VizDependencyError(
            "recording an MP4 needs moviepy, which recsim-env does not install; "
            "pip install moviepy, or record a .gif instead"
        ) from exc
    return save_video
