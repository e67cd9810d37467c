"""The shared BENCHMARKS.md section writer of the benchmark scripts (``scripts/benchmarks_md.py``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

# ``scripts/`` is not a package (its scripts run as ``python scripts/X.py``): load the module from its file.
_SPEC = importlib.util.spec_from_file_location(
    "benchmarks_md", Path(__file__).resolve().parents[1] / "scripts" / "benchmarks_md.py"
)
assert _SPEC is not None and _SPEC.loader is not None
benchmarks_md = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(benchmarks_md)
write_section = benchmarks_md.write_section

HEAD = "# Benchmarks\n\nIntro text, kept as is.\r\n\n"
A = "<!-- BEGIN a -->\nold a\n<!-- END a -->\n\n"
A_LONG = "<!-- BEGIN a_long -->\nkeep me\n<!-- END a_long -->\n"  # a name that extends ``a``
TAIL = "\ntrailing words, no final newline"


def test_replace_keeps_other_sections_byte_identical(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_bytes((HEAD + A + A_LONG + TAIL).encode())
    write_section(path, "a", "\n  new a\n\n| x |\n")
    expected = HEAD + "<!-- BEGIN a -->\nnew a\n\n| x |\n<!-- END a -->\n\n" + A_LONG + TAIL
    assert path.read_bytes() == expected.encode()


def test_missing_section_is_appended_after_one_blank_line(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\n" + A_LONG)
    write_section(path, "a", "body")
    assert path.read_text() == "# Benchmarks\n\n" + A_LONG + "\n<!-- BEGIN a -->\nbody\n<!-- END a -->\n"


def test_missing_file_is_created_with_heading(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    write_section(path, "user_model:ml-100k", "table")
    assert path.read_text() == (
        "# Benchmarks\n\n<!-- BEGIN user_model:ml-100k -->\ntable\n<!-- END user_model:ml-100k -->\n"
    )


def test_writing_twice_is_idempotent_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(HEAD + A + A_LONG)
    write_section(path, "a", "same")
    write_section(path, "b", "appended")
    once = path.read_bytes()
    write_section(path, "a", "same")
    write_section(path, "b", "appended")
    assert path.read_bytes() == once
    assert once.count(b"<!-- BEGIN b -->") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["BENCHMARKS.md"]


@pytest.mark.parametrize(
    "text",
    [
        "<!-- BEGIN a -->\nno end\n",
        "<!-- END a -->\n<!-- BEGIN a -->\n",
        A + A,
    ],
    ids=["begin-without-end", "end-before-begin", "duplicate"],
)
def test_broken_markers_raise_and_leave_file_alone(tmp_path: Path, text: str) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(text)
    with pytest.raises(ValueError, match="BENCHMARKS.md: section 'a'"):
        write_section(path, "a", "body")
    assert path.read_text() == text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["BENCHMARKS.md"]
