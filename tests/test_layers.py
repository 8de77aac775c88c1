"""The package's layers import only downwards: read from the source with ``ast`` (imports
inside functions count), so a new import that runs back up fails here, not in review."""

from __future__ import annotations

import ast
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
