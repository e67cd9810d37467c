"""The layering of the house: who may import whom, read from the source (every import, function-local
ones included), so a cycle cannot hide behind a lazy import.

Layers, bottom up (docs/architecture.md):

1. ``user_models/``: data, the synthetic worlds, the user models. Imports neither other package.
2. ``agents/``: policies and SB3 training. Imports ``user_models/`` only: a policy is built from
   spaces plus what it needs passed in; training takes the env its caller built.
3. ``recsim_env/`` core and env views (everything outside ``offline/``, ``cli/``, ``demo/``): import
   the layers below, never the tools above them.
4. ``recsim_env/offline/``: the rollout harness and the offline tools; never imports ``cli`` or ``demo``.
5. ``recsim_env/cli/`` and ``recsim_env/demo``: the applications.

And no circle of imports between files anywhere.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("user_models", "agents", "recsim_env")
APPS = ("recsim_env.cli", "recsim_env.demo")


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """The project modules ``path`` imports, anywhere in the file (``from a import b`` means ``a.b``
    when that is a module, else ``a``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [
                f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            while name and name not in MODULES:  # `import a.b.c` of a package path: the deepest module
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def _layer(module: str) -> str:
    if module.startswith(APPS):
        return "app"
    if module.startswith("recsim_env.offline"):
        return "offline"
    return module.split(".")[0]


ALLOWED = {
    "user_models": {"user_models"},
    "agents": {"agents", "user_models"},
    "recsim_env": {"recsim_env", "agents", "user_models"},
    "offline": {"offline", "recsim_env", "agents", "user_models"},
    "app": {"app", "offline", "recsim_env", "agents", "user_models"},
}


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_every_import_points_down_the_layers(module: str) -> None:
    wrong = sorted(target for target in GRAPH[module] if _layer(target) not in ALLOWED[_layer(module)])
    assert not wrong, f"{module} ({_layer(module)}) imports {wrong} from a layer above it"


def test_no_import_cycle_between_files() -> None:
    # Tarjan's strongly connected components: any component of two or more files is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles: {cycles}"


def test_the_check_sees_function_local_imports(tmp_path: Path) -> None:
    # The reader must not be fooled by an import inside a function (the way cycles used to hide).
    source = tmp_path / "x.py"
    source.write_text("def f():\n    from agents.policy import act\n    return act\n")
    assert _imports(source) == {"agents.policy"}
