"""Running the README's and the examples' commands at the repository root leaves nothing for
``git status`` to show: their outputs are in ``.gitignore`` (issue 28, point 10)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def outputs() -> set[str]:
    """Every ``--out FILE`` of a command in README.md and examples/README.md, with the files
    an ``icm label`` run writes beside it."""
    names: set[str] = set()
    for doc in (ROOT / "README.md", ROOT / "examples" / "README.md"):
        for out in re.findall(r"--out ([\w./-]+)", doc.read_text(encoding="utf-8")):
            names |= {out, f"{out}.summary.json", f"{out}.run/checkpoint.json"}
    return names


def test_the_documented_commands_outputs_are_ignored() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    names = sorted(outputs())
    assert {"labels.jsonl", "sums.jsonl", "problems.jsonl"} <= set(names)
    done = subprocess.run(
        ["git", "check-ignore", "--no-index", "--verbose", "--non-matching", *names],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    not_ignored = [
        line.split("\t")[1] for line in done.stdout.splitlines() if line.startswith("::")
    ]
    assert not not_ignored, not_ignored
    # the project's own files stay tracked
    tracked = ["examples/arithmetic.jsonl", "icm_client/samples/cities_sample.jsonl"]
    kept = subprocess.run(["git", "check-ignore", "--no-index", *tracked], cwd=ROOT)
    assert kept.returncode == 1  # none of them is ignored
