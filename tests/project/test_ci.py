"""CI (``.ci/run``) runs exactly the README's test command and the project's own checks."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ci_runs_the_readme_test_command_and_the_checks() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"Run the tests[^\n]*\n+```(?:bash|sh)?\n(.*?)```", readme, re.DOTALL)
    assert block is not None, "README.md has no code block after 'Run the tests'"
    commands = [line for line in block.group(1).splitlines() if line.strip()]
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    for command in commands:
        assert command in lines
    for check in ("ruff check .", "ruff format --check .", "mypy"):
        assert check in lines
    # The README's command closes the log; the benchmarks' step runs before it.
    assert [line for line in lines if line.strip() and not line.startswith("#")][-1] == commands[-1]
    assert lines.index("python -m pytest -q -m benchmark") < lines.index(commands[-1])


def test_the_default_test_run_leaves_out_the_benchmarks() -> None:
    """``python -m pytest -q`` (the README's command) deselects the ``benchmark`` marker: the
    scripts re-run in full are slow and their time depends on the machine's load."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pytest_options = config["tool"]["pytest"]["ini_options"]
    assert "-m 'not benchmark'" in pytest_options["addopts"]
    assert any(m.startswith("benchmark:") for m in pytest_options["markers"])
    benchmarks = (ROOT / "tests" / "project" / "test_benchmarks.py").read_text(encoding="utf-8")
    for name in re.findall(r"run_quick\(\"(\w+)\"", benchmarks):
        test = re.search(rf"((?:@pytest\.mark\.\w+\n)*)def test_{name}\(", benchmarks)
        assert test is not None and "@pytest.mark.benchmark" in test.group(1), name


def test_the_plugins_the_default_options_need_are_in_the_dev_extra() -> None:
    """The default options run tests in worker processes (``-n``): the extra the README's
    test command installs must bring pytest-xdist, or a fresh machine fails at the options."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    addopts = config["tool"]["pytest"]["ini_options"]["addopts"].split()
    dev = [
        re.split(r"[<>=\[ ]", req)[0] for req in config["project"]["optional-dependencies"]["dev"]
    ]
    assert "-n" in addopts and "pytest-xdist" in dev
