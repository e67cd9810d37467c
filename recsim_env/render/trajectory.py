"""Trajectory files: saved :class:`~recsim_env.render.frame.SessionFrame` sequences for replay.

Format (JSON Lines, UTF-8; gzip-compressed when the name ends in ``.gz``):

- line 1, the header: ``{"format": "recsim-trajectory", "format_version": 1, "meta": {...}}``, where
  ``meta`` is free-form provenance (model, dataset, env config, policy, seed);
- every further line: one frame, :meth:`SessionFrame.to_dict` output, in playing order. Episodes follow
  each other; a frame's ``episode`` and ``user_id`` tell them apart.

Writers go through a temporary sibling file renamed into place on success, so a reader never sees half
a file. Readers check the header and name the file and line of any bad record.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tempfile
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from recsim_env.render.frame import FrameError, SessionFrame
from user_models.errors import InputError

TRAJECTORY_FORMAT = "recsim-trajectory"
TRAJECTORY_FORMAT_VERSION = 1
"""Bumped whenever a frame's keys or their meaning change; reading another version fails."""


class TrajectoryError(InputError):
    """A trajectory file that is missing, of another format or version, or has a malformed line."""


@dataclass(frozen=True)
class Trajectory:
    """A whole trajectory file: its header's ``meta`` and its frames in order."""

    frames: tuple[SessionFrame, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    def episodes(self) -> list[tuple[SessionFrame, ...]]:
        """The frames split into consecutive runs of the same ``(episode, user_id)``."""
        runs: list[list[SessionFrame]] = []
        for frame in self.frames:
            if not runs or (runs[-1][-1].episode, runs[-1][-1].user_id) != (frame.episode, frame.user_id):
                runs.append([])
            runs[-1].append(frame)
        return [tuple(r) for r in runs]


def _open_binary(path: Path, mode: str, compressed: bool) -> IO[bytes]:
    return gzip.open(path, mode + "b") if compressed else open(path, mode + "b")  # type: ignore[return-value]


class TrajectoryWriter:
    """Stream frames into a trajectory file; the file appears only when the writer closes cleanly.

    Use as a context manager::

        with TrajectoryWriter("out/session.jsonl", meta={"policy": "greedy"}) as writer:
            writer.write(frame)
    """

    def __init__(self, path: str | os.PathLike[str], meta: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.tmp-", dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        binary = _open_binary(self._tmp, "w", compressed=self.path.suffix == ".gz")
        self._file = io.TextIOWrapper(binary, encoding="utf-8", newline="\n")
        header = {"format": TRAJECTORY_FORMAT, "format_version": TRAJECTORY_FORMAT_VERSION,
                  "meta": meta or {}}
        self._file.write(json.dumps(header) + "\n")
        self.n_frames = 0

    def write(self, frame: SessionFrame) -> None:
        """Append one frame."""
        self._file.write(json.dumps(frame.to_dict()) + "\n")
        self.n_frames += 1

    def close(self) -> Path:
        """Finish the file and rename it into place; returns its path."""
        if not self._file.closed:
            self._file.close()
            os.chmod(self._tmp, 0o666 & ~_umask())  # mkstemp makes it private; a saved file should not be
            os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Discard everything written so far (the target path is left untouched)."""
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _umask() -> int:
    """The process umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_trajectory(
    path: str | os.PathLike[str], frames: Iterable[SessionFrame], meta: dict[str, Any] | None = None
) -> Path:
    """Write ``frames`` to a trajectory file at ``path`` (atomically); returns the path."""
    with TrajectoryWriter(path, meta) as writer:
        for frame in frames:
            writer.write(frame)
    return writer.path


def iter_trajectory(path: str | os.PathLike[str]) -> tuple[dict[str, Any], Iterator[SessionFrame]]:
    """The header's ``meta`` and a lazy iterator over the frames of a trajectory file.

    Raises:
        TrajectoryError: the file is missing, not a trajectory, of another version, or (while
            iterating) has a line that is not a valid frame; the message names the file and line.
    """
    source = Path(path)
    if not source.is_file():
        raise TrajectoryError(f"{source}: no such trajectory file")
    lines = _numbered_lines(source)
    first = next(lines, None)
    header = None if first is None else _parse_line(first[1], source, 1)
    if not isinstance(header, dict) or header.get("format") != TRAJECTORY_FORMAT:
        lines.close()
        raise TrajectoryError(
            f"{source}: line 1 is not a {TRAJECTORY_FORMAT} header; write trajectories with "
            "`recsim benchmark` or recsim_env.render.trajectory.write_trajectory"
        )
    version = header.get("format_version")
    if version != TRAJECTORY_FORMAT_VERSION:
        lines.close()
        raise TrajectoryError(
            f"{source}: trajectory format version {version!r}, this recsim-env reads version "
            f"{TRAJECTORY_FORMAT_VERSION}"
        )

    def frames() -> Iterator[SessionFrame]:
        for number, raw in lines:
            if not raw.strip():
                continue
            try:
                yield SessionFrame.from_dict(_parse_line(raw, source, number))
            except FrameError as exc:
                raise TrajectoryError(f"{source}: line {number}: {exc}") from None

    return dict(header.get("meta") or {}), frames()


def read_trajectory(path: str | os.PathLike[str]) -> Trajectory:
    """Read a whole trajectory file; see :func:`iter_trajectory` for the errors."""
    meta, frames = iter_trajectory(path)
    loaded = tuple(frames)
    if not loaded:
        raise TrajectoryError(f"{Path(path)}: the trajectory holds no frames")
    return Trajectory(loaded, meta)


def _numbered_lines(source: Path) -> Generator[tuple[int, bytes], None, None]:
    """``(line number, raw bytes)`` pairs; a corrupt gzip stream becomes a :class:`TrajectoryError`."""
    with _open_binary(source, "r", compressed=source.suffix == ".gz") as file:
        number = 0
        try:
            for number, raw in enumerate(file, start=1):
                yield number, raw
        except (OSError, EOFError) as exc:
            raise TrajectoryError(f"{source}: unreadable after line {number} ({exc})") from None


def _parse_line(raw: bytes, source: Path, number: int) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise TrajectoryError(f"{source}: line {number}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise TrajectoryError(f"{source}: line {number}: invalid JSON ({exc.msg})") from None
