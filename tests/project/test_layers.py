"""The package's layers import only downwards, and the backends import no module that imports
them back: read from the source with ``ast`` (imports inside functions and ``TYPE_CHECKING``
ones count), so a new import that runs back up fails here, not in review. Each module of
``backends.openai`` also imports on its own in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import icm_client

ROOT = Path(icm_client.__file__).parent


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The ``icm_client`` modules that ``path`` imports (relative imports resolved)."""
    module = _module(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            out.add(name)
            out.update(f"{name}.{a.name}" for a in node.names)  # ``from . import cli``
    return {m for m in out if m == "icm_client" or m.startswith("icm_client.")}


GRAPH = {_module(p): _imports(p) for p in sorted(ROOT.rglob("*.py"))}


def _layer(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def _offenders(layer: str, forbidden: set[str]) -> list[str]:
    return sorted(
        f"{mod} imports {imp}"
        for mod, imports in GRAPH.items()
        if _layer(mod) == layer
        for imp in imports
        if _layer(imp) in forbidden
    )


def test_the_graph_is_read() -> None:
    assert "icm_client.search.anneal" in GRAPH
    assert "icm_client.scoring.base" in GRAPH["icm_client.search.anneal"]


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        # The search sees scores and labels only: no backend, no file, no dataset loading.
        ("search", {"backends", "runs", "dataset", "run", "scale", "evaluate", "local", "cli"}),
        ("scoring", {"search", "runs", "run", "scale", "evaluate", "cli"}),
        ("tasks", {"backends", "scoring", "search", "runs", "run", "scale", "evaluate", "cli"}),
        ("scale", {"evaluate", "cli"}),
        ("evaluate", {"search", "run", "runs", "scale", "cli"}),
        ("dataset", {"tasks", "backends", "scoring", "search", "runs", "run", "scale", "cli"}),
        ("runs", {"run", "scale", "evaluate", "cli"}),
        ("backends", {"scoring", "search", "runs", "run", "scale", "evaluate", "cli"}),
    ],
)
def test_a_layer_does_not_import_the_layers_above_it(layer: str, forbidden: set[str]) -> None:
    assert _offenders(layer, forbidden) == []


def test_nothing_outside_the_cli_imports_it() -> None:
    users = [
        f"{mod} imports {imp}"
        for mod, imports in GRAPH.items()
        if _layer(mod) != "cli"
        for imp in imports
        if _layer(imp) == "cli"
    ]
    assert users == []


def test_the_backends_import_graph_has_no_cycle() -> None:
    graph = {
        name: sorted(t for t in imports if t in GRAPH and t != name)
        for name, imports in GRAPH.items()
        if _layer(name) == "backends"
    }
    # a package imports its own modules (its __init__ re-exports): not a cycle through them
    for name in graph:
        graph[name] = [t for t in graph[name] if t in graph and not name.startswith(t + ".")]
    seen: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        seen[name] = 1
        for target in graph[name]:
            assert seen.get(target) != 1, f"import cycle: {' -> '.join([*path, target])}"
            if target not in seen:
                visit(target, [*path, target])
        seen[name] = 2

    for name in sorted(graph):
        if name not in seen:
            visit(name, [name])
    assert "icm_client.backends.openai.completions" not in graph["icm_client.backends.openai.probe"]


def test_each_openai_module_imports_alone() -> None:
    names = sorted(_module(p) for p in (ROOT / "backends" / "openai").glob("*.py"))
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n"
    code += "    for m in [m for m in sys.modules if m.startswith('icm_client')]:\n"
    code += "        del sys.modules[m]\n    importlib.import_module(name)\n"
    done = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
