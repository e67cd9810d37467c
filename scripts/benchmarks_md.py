"""Write one marked section of ``BENCHMARKS.md``; shared by every benchmark script under ``scripts/``.

Each benchmark script owns one or more sections of ``BENCHMARKS.md`` between ``<!-- BEGIN name -->`` and
``<!-- END name -->``, so scripts can be re-run one at a time and their sections merged across branches.
One helper keeps that contract in one place: the other sections stay byte-identical, a missing section is
appended, and the file is replaced atomically (never half-written if a script dies mid-write).

Scripts run as ``python scripts/X.py`` have ``scripts/`` on ``sys.path`` and import it as
``from benchmarks_md import write_section``.
"""

from __future__ import annotations

import os
from pathlib import Path

HEADING = "# Benchmarks\n"
"""The content of a ``BENCHMARKS.md`` that does not exist yet."""


def write_section(path: Path, name: str, body: str) -> None:
    """Replace section ``name`` of the markdown file ``path`` with ``body``, or append it.

    The section, markers included, becomes ``<!-- BEGIN name -->``, ``body`` (stripped) and
    ``<!-- END name -->`` on their own lines. Every byte outside it is kept as it was. A missing section
    is appended after one blank line; a missing file is created with a ``# Benchmarks`` heading first.
    The new file is written to a temporary file next to ``path`` and renamed over it.

    Args:
        path: The markdown file, usually the repository's ``BENCHMARKS.md``.
        name: The section's name, as it appears in its markers (e.g. ``bench_env``, ``user_model:ml-100k``).
        body: The section's text without the markers.

    Raises:
        ValueError: The file's markers of ``name`` are not one BEGIN followed by one END (a hand-edit
            gone wrong): writing would otherwise duplicate or swallow text.
    """
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    text = path.read_bytes().decode("utf-8") if path.exists() else HEADING
    start, stop = text.find(begin), text.find(end)
    if text.count(begin) > 1 or text.count(end) > 1 or (start < 0) != (stop < 0) or stop < start:
        raise ValueError(f"{path}: section {name!r} needs exactly one {begin!r} followed by one {end!r}")
    if start >= 0:
        text = text[:start] + block + text[stop + len(end) :]
    else:
        separator = "" if not text or text.endswith("\n\n") else "\n" if text.endswith("\n") else "\n\n"
        text = text + separator + block + "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(text.encode("utf-8"))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
