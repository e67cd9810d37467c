"""The one YAML loader of the project: safe, with YAML 1.2 numbers.

PyYAML implements YAML 1.1, which reads ``1e-4`` (no dot) as a *string*: a classic hyperparameter trap.
Every YAML the project reads (``--env-config``, ``--hyperparams``/``--env-kwargs`` values, the RL-Zoo
hyperparameter files) goes through :func:`load_yaml`, so ``1e-4`` is the same float everywhere.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from user_models.errors import InputError


class _Loader(yaml.SafeLoader):
    """A SafeLoader (no arbitrary objects) whose floats follow YAML 1.2."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str, source: str) -> Any:
    """``text`` parsed as YAML; an :class:`InputError` naming ``source`` and the line when it is not."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506  (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"{source}:{where} invalid YAML ({problem})") from None


def load_yaml_file(path: str | os.PathLike[str], what: str = "YAML file") -> Any:
    """The YAML document in ``path``; a missing or unreadable file is an :class:`InputError`."""
    source = Path(path)
    try:
        text = source.read_text()
    except FileNotFoundError:
        raise InputError(f"{source}: {what} not found") from None
    except IsADirectoryError:
        raise InputError(f"{source}: is a directory, expected a {what}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise InputError(f"{source}: cannot read {what} ({exc.strerror})") from None
    return parse_yaml(text, str(source))
