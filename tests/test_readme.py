"""The README's code, executed: every ```bash and ```python block, top to bottom, on a tiny world.

A new user copies the README's blocks in order, so the test does the same in one scratch folder:
``recsim`` lines run through :func:`recsim_env.cli.main` in this process (the command is the one the
README shows, with :data:`SMALL` flags appended so it takes seconds), other shell lines run in bash,
Python blocks run with ``exec`` after the :data:`PYTHON_SMALL` replacements (sizes and device only).

A block that cannot run here (the full install, minutes-long runs, synopses with placeholders) starts
with a visible ``# not run by tests/test_readme.py: <why>`` line in the README. Nothing is skipped
silently: a block without that line runs, an unknown shell line fails, and every small-size flag and
replacement below must still match the README (a stale one fails the test).
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import torch

from recsim_env.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = "# not run by tests/test_readme.py:"
_FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", flags=re.M | re.S)

SMALL: dict[tuple[str, ...], list[str]] = {
    ("data", "synth"): ["--users", "120", "--items", "80", "--events-per-user", "25"],
    ("user-model", "train"): ["--epochs", "1", "--no-progress"],
    ("env", "calibrate"): ["--n-users", "32", "--rounds", "2", "--examples", "256"],
    ("env", "check"): ["--episodes", "1", "--max-steps", "10"],
    ("agent", "train"): ["--timesteps", "256", "--num-envs", "4", "--no-progress", "--hyperparams",
                         "n_steps=32", "batch_size=64", "eval_freq=128", "n_eval_episodes=4"],
    ("benchmark",): ["--episodes", "8", "--seeds", "1", "--resamples", "100"],
}
"""Flags appended to a README command (the longest matching command prefix) to make it small."""
PYTHON_SMALL = {"num_envs=4096": "num_envs=8", 'device="cuda"': 'device="cpu"',
                ".learn(100_000)": ".learn(64)"}
"""Replacements in the README's Python blocks: sizes and the device, nothing else."""
SHELL_LINES_NOT_RUN = {
    ". .venv/bin/activate": "the test already runs in the project's environment",
    "recsim data prepare --dataset ml-100k --data-dir PATH": "the alternative to the synthetic world: PATH "
    "is the reader's MovieLens copy (tests/test_ingest_formats.py covers that reader)",
}
"""Shell lines of runnable blocks that the test does not run, by their start, with the reason."""


def readme_blocks() -> list[tuple[str, str]]:
    """``(language, code)`` of every fenced block with a language (the others are diagrams and trees)."""
    return [(lang, code) for lang, code in _FENCE.findall(README.read_text(encoding="utf-8")) if lang]


def shell_commands(code: str) -> list[str]:
    """The commands of a shell block: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", code)
    commands = []
    for line in joined.splitlines():
        line = re.sub(r"\s+#\s.*$", "", line).strip()
        if line and not line.startswith("#"):
            commands.append(line)
    return commands


def test_every_block_is_bash_or_python_and_marked_blocks_say_why() -> None:
    blocks = readme_blocks()
    assert len(blocks) >= 8
    for lang, code in blocks:
        assert lang in ("bash", "python"), lang
        first = code.splitlines()[0]
        if first.startswith(MARKER):
            assert len(first) > len(MARKER) + 10, f"say why the block is not run: {first!r}"
    runnable = [b for b in blocks if not b[1].startswith(MARKER)]
    assert {lang for lang, _ in runnable} == {"bash", "python"}


def _run_recsim(command: str, used: set[tuple[str, ...]]) -> None:
    argv = shlex.split(command)[1:]
    prefix = max((key for key in SMALL if tuple(argv[: len(key)]) == key), key=len, default=None)
    extra = []
    if prefix is not None:
        used.add(prefix)
        extra = SMALL[prefix]
    # a README flag given again by SMALL would be ambiguous: the README's own value must not be overridden
    readme_flags = {a for a in argv if a.startswith("--")}
    assert not readme_flags & {a for a in extra if a.startswith("--")}, (command, extra)
    assert main([*argv, *extra]) == 0, command


@pytest.mark.slow
def test_readme_code_runs_top_to_bottom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    torch.set_num_threads(1)
    used: set[tuple[str, ...]] = set()
    skipped: set[str] = set()
    replaced: set[str] = set()
    ran = {"bash": 0, "python": 0}
    for lang, code in readme_blocks():
        if code.startswith(MARKER):
            continue
        ran[lang] += 1
        if lang == "python":
            for old, new in PYTHON_SMALL.items():
                if old in code:
                    code, _ = code.replace(old, new), replaced.add(old)
            exec(compile(code, f"README.md python block {ran['python']}", "exec"), {"__name__": "readme"})
            continue
        for command in shell_commands(code):
            reason = next((start for start in SHELL_LINES_NOT_RUN if command.startswith(start)), None)
            if reason is not None:
                skipped.add(reason)
            elif command.startswith("recsim "):
                _run_recsim(command, used)
            elif command.startswith("echo "):
                subprocess.run(["bash", "-c", command], check=True, cwd=tmp_path)
            else:
                raise AssertionError(f"README shell line the test does not know how to run: {command!r}")
    assert used == set(SMALL), f"small-size flags no README command uses: {set(SMALL) - used}"
    assert skipped == set(SHELL_LINES_NOT_RUN), f"stale: {set(SHELL_LINES_NOT_RUN) - skipped}"
    assert replaced == set(PYTHON_SMALL), f"stale replacements: {set(PYTHON_SMALL) - replaced}"
    # what the quickstart says it writes
    assert (tmp_path / "runs/ppo/final/agent.json").is_file()
    assert (tmp_path / "reports/bench/results.json").is_file()
    assert (tmp_path / "session.gif").read_bytes()[:3] == b"GIF"
