"""CI (``.ci/run``) runs exactly the README's test command and the project's own checks."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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
