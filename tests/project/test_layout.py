"""The tests' layout: each test module in the folder of the part of the package it exercises,
the helpers they share at ``tests/``, every test path the docs name existing, and the tests
type-checked with the package."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
#: Where the docs and sources may name a test file.
DOCS = ["README.md", "benchmarks", "docs", "examples", "icm_client", "providers"]


def test_every_test_module_sits_in_a_folder() -> None:
    at_root = sorted(p.name for p in TESTS.glob("test_*.py"))
    assert at_root == [], f"move these into the folder of what they test: {at_root}"
    folders = {p.parent.name for p in TESTS.glob("*/test_*.py")}
    assert folders, "no test folders found"
    # Module names stay unique: the folders are not packages, pytest and mypy import by name.
    names = [p.name for p in TESTS.rglob("test_*.py")]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_every_test_path_the_docs_name_exists() -> None:
    named: set[str] = set()
    for entry in DOCS:
        path = ROOT / entry
        files = [path] if path.is_file() else [*path.rglob("*.md"), *path.rglob("*.py")]
        for file in files:
            named |= set(re.findall(r"tests/[\w/]+\.py", file.read_text(encoding="utf-8")))
    assert named, "the docs name no test file (the pattern is wrong?)"
    missing = sorted(n for n in named if not (ROOT / n).is_file())
    assert missing == [], f"docs name test files that do not exist: {missing}"


def test_mypy_checks_the_tests_and_benchmarks() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    mypy = config["tool"]["mypy"]
    assert mypy["strict"] is True
    assert {"icm_client", "tests", "benchmarks"} <= set(mypy["files"])
