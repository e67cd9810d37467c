"""Output safety: every command that writes goes through here, so no command can lose data.

The rules, for every writer (``data prepare``, ``data synth``, ``user-model train`` today; ``agent
train``, ``benchmark``, ``fidelity``, ``visualize --record`` and ``demo`` are meant to call the same):

1. **Nothing is replaced without** ``--overwrite`` (an empty directory counts as absent), and
   ``--overwrite`` only replaces what recsim-env itself wrote, recognised by its marker
   (:class:`OutputKind`): a dataset by its ``meta.json``, a user model by its ``config.json``, an agent
   by its ``agent.json``, a report by its ``results.json``, a recording by its file signature. Anything
   else (a home directory, a thesis) is refused.
2. **Inputs are never deleted**: an output that is, or contains, one of the command's inputs is refused.
   The current directory and its parents are never replaced (``--out .``).
3. **Checked before the work**: :func:`check_output` fails at once when the parent is a regular file or
   cannot be written (it writes and removes a probe file), so a long job does not fail at the end.
4. **Atomic, no leftovers**: :func:`replace_output` fills a temporary sibling
   ``.NAME.tmp-PID-XXXX`` and renames it into place; the old output is moved to ``.NAME.old-PID-XXXX``
   and removed only once the new one is in place. SIGTERM is handled like Ctrl-C (the temporary is
   removed). Leftovers of a process that died (SIGKILL, power loss) are cleaned by the next run into
   the same parent; an ``.old`` copy whose target is missing (killed between the two renames) is put
   back instead.

How a command uses it::

    from user_models.outputs import DATASET, check_output, replace_output

    out = check_output(args.out, DATASET, overwrite=args.overwrite, inputs=[args.input])  # first
    ...  # the work
    with replace_output(out, DATASET, overwrite=args.overwrite, inputs=[args.input]) as tmp:
        write_everything_into(tmp)  # tmp is an empty directory (a file path for file kinds)

A command with its own kind defines one (``OutputKind("report", marker="results.json")``, or
``OutputKind("recording", directory=False, signatures=(b"GIF8",))``) and passes it the same way.
Every refusal is an :class:`~user_models.errors.OutputError` (an ``InputError``: exit code 2, one line).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from user_models.errors import OutputError


@dataclass(frozen=True)
class OutputKind:
    """What recsim-env writes at an output path, and how to recognise an earlier one.

    Attributes:
        name: shown in messages ("dataset", "user-model checkpoint", ...).
        marker: for directories: the file (relative path) whose presence marks the directory as ours.
            Further ``markers`` are alternatives (e.g. ``final/agent.json`` for an agent run).
        keys: JSON keys the marker must hold (when it is JSON); a marker without them is not ours.
        directory: True for a directory output, False for a single file.
        signatures: for files: byte prefixes one of which the existing file must start with; an empty
            tuple with ``suffixes`` recognises by name only.
        suffixes: for files: accepted name suffixes (lower case) of an existing file to replace.
        check: optional extra predicate on the existing path (True means ours).
    """

    name: str
    marker: str = ""
    markers: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    directory: bool = True
    signatures: tuple[bytes, ...] = ()
    suffixes: tuple[str, ...] = ()
    check: Callable[[Path], bool] | None = None

    def recognises(self, path: Path) -> bool:
        """Whether the existing ``path`` is an output of this kind (and so may be replaced)."""
        if self.directory:
            if not path.is_dir() or path.is_symlink():
                return False
            names = [m for m in (self.marker, *self.markers) if m]
            found = any(_marker_ok(path / m, self.keys) for m in names) if names else self.check is not None
        else:
            if not path.is_file() or path.is_symlink():
                return False
            found = _file_ok(path, self.signatures, self.suffixes)
        return found and (self.check is None or self.check(path))


def _marker_ok(file: Path, keys: tuple[str, ...]) -> bool:
    if not file.is_file():
        return False
    if not keys:
        return True
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and all(k in data for k in keys)


def _file_ok(path: Path, signatures: tuple[bytes, ...], suffixes: tuple[str, ...]) -> bool:
    if suffixes and not path.name.lower().endswith(suffixes):
        return False
    if not signatures:
        return bool(suffixes)
    try:
        with open(path, "rb") as f:
            head = f.read(max(len(s) for s in signatures))
    except OSError:
        return False
    return any(head.startswith(s) for s in signatures)


DATASET = OutputKind("dataset", marker="meta.json", keys=("format_version", "fingerprint", "behaviors"))
"""A dataset directory (``recsim data prepare/synth``, :meth:`SequenceDataset.save`)."""


def _is_resume_state(path: Path) -> bool:
    return _marker_ok(path / "resume" / "progress.json", ("epoch", "train_config"))


USER_MODEL = OutputKind(
    "user-model checkpoint", marker="config.json", markers=("resume/progress.json",),
    keys=(), check=lambda p: _marker_ok(p / "config.json", ("format_version", "kind", "sha256"))
    or _is_resume_state(p),
)
"""A user-model checkpoint directory, finished (``config.json``) or interrupted (``resume/``)."""

AGENT = OutputKind("agent", marker="agent.json", markers=("final/agent.json",), keys=())
"""An agent directory or training run (``agent.json``, or ``final/agent.json``)."""

REPORT = OutputKind("report", marker="results.json", keys=())
"""A benchmark or fidelity report directory (``results.json``)."""

RECORDING = OutputKind("recording", directory=False, signatures=(b"GIF87a", b"GIF89a", b"\x89PNG"),
                       suffixes=(".gif", ".png"))
"""A GIF/PNG written by ``visualize --record``."""

KINDS = {k.name: k for k in (DATASET, USER_MODEL, AGENT, REPORT, RECORDING)}


# --- checks before the work ---------------------------------------------------------------------------
def check_output(
    path: str | os.PathLike[str], kind: OutputKind, overwrite: bool = False,
    inputs: Iterable[str | os.PathLike[str] | None] = (), flag: str = "--out",
    allow_existing: bool = False,
) -> Path:
    """Validate an output path before any work; return it absolute (``.`` and ``..`` resolved).

    Args:
        path: where the command will write.
        kind: what it writes there (decides what ``overwrite`` may replace).
        overwrite: the user allowed replacing an earlier output of ``kind``.
        inputs: the command's input files/directories; none may be the output or inside it.
        flag: the option's name for messages.
        allow_existing: an existing output of ``kind`` is fine without ``overwrite`` (``--resume``).

    Raises:
        OutputError: the path exists and may not be replaced, would replace an input or the current
            directory, its parent is a file, or it cannot be written.
    """
    target = absolute(path)
    if target.parent == target:
        raise OutputError(f"{flag} {path}: refusing to write to the filesystem root")
    clean_stale(target)
    if (target.exists() or target.is_symlink()) and not _empty_directory(target, kind):
        if target.is_symlink():
            raise OutputError(f"{flag} {path}: is a symbolic link; refusing to replace it")
        ours = kind.recognises(target)
        if not (overwrite or (allow_existing and ours)):
            raise OutputError(f"{flag} {path}: output exists; pass --overwrite to replace it")
        if not ours:
            what = "directory" if target.is_dir() else "file" if target.is_file() else "path"
            raise OutputError(f"{flag} {path}: is a {what} that is not a {kind.name} written by recsim-env "
                              f"({_marker_text(kind)}); --overwrite only replaces those, refusing to "
                              "delete it")
        cwd = absolute(Path.cwd())
        if cwd == target or target in cwd.parents:
            raise OutputError(f"{flag} {path}: is the current directory or contains it; refusing to "
                              "replace it (give a path below it)")
    for raw in inputs:
        if raw is None:
            continue
        source = absolute(raw)
        if source == target or target in source.parents:
            raise OutputError(f"{flag} {path}: contains the input {raw}; refusing to write where it would "
                              "be deleted (choose another output)")
    _check_writable(target, flag, path)
    return target


def _empty_directory(path: Path, kind: OutputKind) -> bool:
    """An existing empty directory holds nothing to lose: a directory output may use it."""
    if not kind.directory or path.is_symlink() or not path.is_dir():
        return False
    try:
        return next(path.iterdir(), None) is None
    except OSError:
        return False


def _marker_text(kind: OutputKind) -> str:
    if kind.directory:
        return "recognised by " + " or ".join(m for m in (kind.marker, *kind.markers) if m)
    return "recognised by its " + "/".join(kind.suffixes) + " file signature"


def absolute(path: str | os.PathLike[str]) -> Path:
    """``path`` made absolute with ``.``/``..`` collapsed, without following a final symlink."""
    p = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
    return p


def _check_writable(target: Path, flag: str, shown: Any) -> None:
    """The nearest existing ancestor must be a directory we can create a file in (probed for real)."""
    ancestor = target.parent
    while not ancestor.exists():
        if ancestor.is_symlink():  # a dangling link
            raise OutputError(f"{flag} {shown}: {ancestor} is a broken symbolic link")
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"{flag} {shown}: {ancestor} is a file, not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.probe-{os.getpid()}-", dir=ancestor)
    except OSError as exc:
        raise OutputError(f"{flag} {shown}: cannot write in {ancestor} ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)


# --- stale leftovers -----------------------------------------------------------------------------------
def _leftover_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"^\.{re.escape(name)}\.(tmp|old|probe)-(\d+)-[A-Za-z0-9_]+$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    except OSError:
        return False
    return True


def clean_stale(target: str | os.PathLike[str]) -> list[Path]:
    """Remove ``.NAME.tmp-PID-*``/``.NAME.probe-PID-*`` leftovers of dead processes beside ``target``.

    An ``.NAME.old-PID-*`` of a dead process is the previous output, moved aside just before the new
    one was renamed in: when ``target`` is missing it is put back, else removed. Returns what was
    removed or restored. Entries of live processes (a concurrent run) are left alone.
    """
    target = absolute(target)
    pattern = _leftover_pattern(target.name)
    done: list[Path] = []
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return done
    for entry in sorted(entries):
        match = pattern.match(entry.name)
        if match is None or _alive(int(match.group(2))):
            continue
        if match.group(1) == "old" and not (target.exists() or target.is_symlink()):
            os.replace(entry, target)
        else:
            _remove(entry)
        done.append(entry)
    return done


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# --- atomic replacement --------------------------------------------------------------------------------
@contextmanager
def replace_output(
    path: str | os.PathLike[str], kind: OutputKind, overwrite: bool = False,
    inputs: Iterable[str | os.PathLike[str] | None] = (), flag: str = "--out",
) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to fill; it replaces ``path`` only if the block succeeds.

    Runs :func:`check_output` first (again: the world may have changed during the work). For a
    directory kind the temporary is an empty directory; for a file kind it is a path to write the file
    to. SIGTERM during the block raises ``KeyboardInterrupt`` (the temporary is removed either way).
    """
    target = check_output(path, kind, overwrite, inputs, flag)
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}.tmp-{os.getpid()}-"
    if kind.directory:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, dir=target.parent)
        os.close(fd)
        tmp = Path(name)
    with sigterm_as_interrupt():
        try:
            yield tmp
            _swap_in(tmp, target)
        except BaseException:
            _remove(tmp)
            raise


def _swap_in(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``; an existing target is moved aside first and removed after."""
    if not (target.exists() or target.is_symlink()):
        os.replace(tmp, target)
        return
    if not target.is_dir() or not tmp.is_dir():
        os.replace(tmp, target)  # a file replaces a file atomically
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-{os.getpid()}-", dir=target.parent))
    os.rmdir(old)
    os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(old, target)
        raise
    _remove(old)


def atomic_swap_directory(target: str | os.PathLike[str]) -> Any:
    """:func:`replace_output` for a directory the project owns outright (no kind or overwrite check).

    For internal state such as a training run's ``resume/``: written whole into a temporary sibling and
    renamed, so a reader sees the old state or the new one, never a mix.
    """
    return replace_output(target, _INTERNAL, overwrite=True)


_INTERNAL = OutputKind("internal state", check=lambda p: True)


# --- signals -------------------------------------------------------------------------------------------
@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises ``KeyboardInterrupt`` like Ctrl-C (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.getsignal(signal.SIGTERM)
    if previous not in (signal.SIG_DFL, None):
        yield  # someone else handles SIGTERM already (e.g. an outer block): keep theirs
        return
    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
