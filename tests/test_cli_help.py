"""Every ``recsim ... --help`` states its options' defaults, renders no stray ``%%``, and matches
``docs/cli.md``."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

from recsim_env.cli import build_parser

_SPEC = importlib.util.spec_from_file_location(
    "cli_reference", Path(__file__).resolve().parents[1] / "scripts" / "cli_reference.py"
)
assert _SPEC is not None and _SPEC.loader is not None
cli_reference = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(cli_reference)


def _commands(parser: argparse.ArgumentParser, name: str = "recsim"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _commands(sub, f"{name} {sub_name}")


COMMANDS = dict(_commands(build_parser()))


def _value_text(default: object) -> list[str]:
    """What the help must show of a default: each element of a sequence, else its str()."""
    if isinstance(default, list | tuple):
        return [str(v) for v in default] or ["none"]
    return [str(default)]


def test_the_walk_reaches_every_leaf_command() -> None:
    assert {"recsim agent eval", "recsim agent train", "recsim demo", "recsim data prepare",
            "recsim env calibrate", "recsim benchmark", "recsim user-model profile"} <= set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_with_a_default_states_it(command: str) -> None:
    parser = COMMANDS[command]
    formatter = parser._get_formatter()
    missing = []
    for action in parser._actions:
        default = action.default
        if default is None or default is argparse.SUPPRESS or action.help == argparse.SUPPRESS:
            continue
        text = formatter._expand_help(action)  # the help line as --help prints it (after %-formatting)
        states = "default" in text.lower() and (
            isinstance(default, bool) or all(value in text for value in _value_text(default)))
        if not states:
            name = "/".join(action.option_strings) or action.dest
            missing.append(f"{name} (default {default!r}): {text!r}")
    assert not missing, f"{command} --help does not state these defaults: {missing}"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_renders_without_escaped_percent(command: str) -> None:
    text = COMMANDS[command].format_help()
    assert "%%" not in text and "%(" not in text, text


def test_agent_eval_help_says_95_percent_once_escaped_right() -> None:
    text = COMMANDS["recsim agent eval"].format_help()
    assert "95% bootstrap confidence intervals" in text.replace("\n", " ").replace("  ", " ")


def test_user_model_flags_state_the_dataclass_defaults() -> None:
    """``user-model train``'s model flags default to None (the dataclass decides); their help states the
    dataclass's value, so it cannot drift from TransformerConfig / TrainConfig."""
    from user_models.train import TrainConfig
    from user_models.transformer import TransformerConfig

    parser = COMMANDS["recsim user-model train"]
    formatter = parser._get_formatter()
    checked = 0
    for action in parser._actions:
        for config in (TransformerConfig(), TrainConfig()):
            if action.default is None and hasattr(config, action.dest):
                value = getattr(config, action.dest)
                assert f"default: {value})" in formatter._expand_help(action), (action.dest, value)
                checked += 1
    assert checked >= 10


def test_docs_cli_md_help_blocks_are_current() -> None:
    _, stale = cli_reference.regenerate(cli_reference.REFERENCE.read_text(encoding="utf-8"))
    assert not stale, f"docs/cli.md is stale for {stale}: run python scripts/cli_reference.py"
