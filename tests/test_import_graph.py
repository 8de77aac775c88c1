"""The backends import no module that imports them back: the graph of their imports (late
ones inside functions, and ``TYPE_CHECKING`` ones, included) has no cycle, and each module of
``backends.openai`` imports on its own in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import icm_client

ROOT = Path(icm_client.__file__).parent
BACKENDS = ROOT / "backends"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The ``icm_client`` modules ``path`` imports anywhere in its code."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_the_backends_import_graph_has_no_cycle() -> None:
    modules = {module_name(p): p for p in BACKENDS.rglob("*.py")}
    graph = {
        name: sorted(t for t in imports(path) if t in modules and t != name)
        for name, path in modules.items()
    }
    # a package imports its own modules (its __init__ re-exports): not a cycle through them
    for name in graph:
        graph[name] = [t for t in graph[name] if not name.startswith(t + ".")]
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
    names = sorted(module_name(p) for p in (BACKENDS / "openai").glob("*.py"))
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n"
    code += "    for m in [m for m in sys.modules if m.startswith('icm_client')]:\n"
    code += "        del sys.modules[m]\n    importlib.import_module(name)\n"
    done = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
