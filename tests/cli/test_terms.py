"""The run's own words are explained where they are printed (``icm label``'s last lines,
``icm report``) and in the README, one line each (issue 28, point 9)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fault_server import fault_server

from icm_client.cli import main

ROOT = Path(__file__).parents[2]


def test_the_runs_terms_are_explained_where_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "claims.jsonl"
    rows = [{"id": f"c{i}", "question": f"Q{i // 4}?", "choice": f"Answer {i}."} for i in range(16)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with fault_server() as server:
        argv = ["label", str(data), "--task", "truthfulqa", "--out", str(tmp_path / "l.jsonl")]
        argv += ["--base-url", server.base_url, "--cache-dir", str(tmp_path / "cache")]
        assert main([*argv, "--quiet", "--steps", "10", "--chains", "1"]) == 0  # short, one chain
    printed = capsys.readouterr()
    out = printed.out
    summary = json.loads((tmp_path / "l.jsonl.summary.json").read_text())["summary"]
    reached = summary["examples"] - summary["labeled_by_search"]
    assert summary["never_reproposed"] > 0 and reached > 0
    assert f"{reached} predicted at the end given those" in out
    assert "the score the search maximises" in out and "contradicting pairs" in out
    assert "random starting labels never revisited" in out
    assert "ConsistencyFix repairs kept" not in out and "never proposed again" not in out
    assert "pairs of examples whose labels the relation restricts" in printed.err
    assert main(["report", str(tmp_path / "l.jsonl.run"), "--no-plot"]) == 0
    report = capsys.readouterr().out
    for explained in (
        "U is the score the search maximises",
        "the rest were predicted at the end",
        "consistency repairs kept",
        "starting labels never revisited",
    ):
        assert explained in report, explained


def test_the_cities_relation_is_named_in_words(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["task", "check", "cities", "sample:cities", "--limit", "12"]) == 0
    out = capsys.readouterr().out
    assert "relation propositions (statements about one subject, which must agree): " in out
    assert "constrained pairs (pairs of examples whose labels the relation restricts)" in out


def test_the_readme_explains_the_runs_last_lines() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("**The run's last lines.**", 1)[1].split("\n\n", 1)[0]
    for term in ("by the search", "final U", "contradicting pairs", "repairs", "never revisited"):
        assert term in section, term
    assert "constrained pairs" in readme
