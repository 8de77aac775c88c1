"""Stumble 6 of issue 18: ``icm eval``'s table warns when scores were bounded (a label word
outside the server's top-k), instead of printing bound-based accuracies as if measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fault_server import fault_server

from icm_client.cli import main

# The stand-in server's vocabulary has " True"/" False" but not these: always outside top-k.
RARE = """name = "rare"
template = "{statement}\\nThis statement is"
labels = [" Correct", " Wrong"]
"""


def run_eval(tmp_path: Path, url: str, task: str, words: tuple[str, str]) -> None:
    data = tmp_path / f"{task}.jsonl"
    rows = [{"statement": f"Claim number {i}.", "label": words[i % 2]} for i in range(40)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["eval", str(data), "--split", "0.5", "--task", task, "--seeds", "1"]
    argv += ["--out", str(tmp_path / "eval.json"), "--conditions", "zero-shot", "--quiet"]
    assert main([*argv, "--base-url", url, "--no-cache"]) == 0


def test_bounded_scores_are_flagged_in_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rare = tmp_path / "rare.toml"
    rare.write_text(RARE)
    with fault_server() as server:
        run_eval(tmp_path, server.base_url, str(rare), ("Correct", "Wrong"))
        bounded = capsys.readouterr().out
        plain = tmp_path / "plain.toml"
        plain.write_text(RARE.replace('" Correct", " Wrong"', '" True", " False"'))
        run_eval(tmp_path, server.base_url, str(plain), ("True", "False"))
        measured = capsys.readouterr().out
    assert "* warning: zero-shot: 20 of 20 test scores were bounded" in bounded
    assert "raise --top-k" in bounded
    row = next(line for line in bounded.splitlines() if line.startswith("zero-shot"))
    assert "%*" in row
    assert "warning" not in measured and "%*" not in measured
