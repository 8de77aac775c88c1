"""Every ``icm`` command the documentation shows parses with the real ``icm`` parser: a
renamed or misspelt option in a README or a recipe fails here, not in a reader's shell."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from icm_client.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = [
    ROOT / "README.md",
    ROOT / "examples" / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "providers").glob("*.md")),
]
FENCE = re.compile(r"```(?:bash|sh|console|shell)?\n(.*?)```", re.S)
INLINE = re.compile(r"`(icm [^`]+)`")


def commands(text: str) -> list[tuple[str, bool]]:
    """The ``icm ...`` commands in fenced shell blocks (continuations joined, comments and
    prompts dropped, split at ``&&``, ``;`` and ``|``), whole; and those in inline code
    spans, often a fragment (``icm label --pin pins.jsonl``): (command, whole)."""
    found: list[tuple[str, bool]] = []
    for block in FENCE.findall(text):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = re.sub(r"^\s*\$\s+", "", line)
            line = re.sub(r"\s+#.*$", "", line)
            for part in re.split(r"&&|;|\|", line):
                part = part.strip()
                if part.startswith("icm "):
                    found.append((part, True))
    found += [(re.sub(r"\.\.\.|[][]", "", span), False) for span in INLINE.findall(text)]
    return found


CASES = [
    pytest.param(cmd, whole, id=f"{path.relative_to(ROOT)}:{i}")
    for path in DOCS
    for i, (cmd, whole) in enumerate(commands(path.read_text(encoding="utf-8")))
]
FRAGMENT_OK = ("expected one argument", "invalid choice: '")


def test_the_docs_show_icm_commands() -> None:
    assert len(CASES) >= 20, [c.values for c in CASES]


@pytest.mark.parametrize(("command", "whole"), CASES)
def test_each_documented_command_parses(command: str, whole: bool) -> None:
    """A whole command parses; a fragment (``icm doctor URL [--model M]``, ``icm label
    --top-k``) may lack required arguments or an option's value, never name an option that
    does not exist or give one a value it refuses."""
    argv = shlex.split(command)[1:]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            build_parser().parse_args(argv)
        except SystemExit as exit:
            message = err.getvalue().strip().splitlines()[-1] if err.getvalue() else ""
            if whole or (not message.endswith(FRAGMENT_OK) and "required" not in message):
                assert exit.code == 0, f"{command!r}: {message}"
