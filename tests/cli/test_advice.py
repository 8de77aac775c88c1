"""Stumble 5 of issue 18: the end of a run turns its diagnostics into plain advice, and rows
carry a documented probability and whether the label is the model's own prediction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fault_server import fault_server

from icm_client.advice import COPIES, advise, copies_demonstrations
from icm_client.cli import main
from icm_client.diagnostics import Diagnostics, diagnose


def rows(labels: list[str], confidence: list[float], agrees: list[bool]) -> list[dict[str, object]]:
    return [
        {"id": f"r{i}", "label": y, "confidence": c, "agrees": a}
        for i, (y, c, a) in enumerate(zip(labels, confidence, agrees, strict=True))
    ]


def diag(r: list[dict[str, object]], **summary: object) -> Diagnostics:
    return diagnose({"task": "t", "inconsistencies": 0, **summary}, [], r)


def test_a_collapsed_run_is_a_model_that_copies_its_demonstrations() -> None:
    d = diag(rows(["False"] * 40, [0.9] * 40, [True] * 40), calibrate=False)
    assert d.collapse == "all-same" and copies_demonstrations(d)
    advice = advise(d, {"calibrate": False})
    assert advice[0].startswith(COPIES) and "--base-url" in advice[0]
    assert "--calibrate" in advice[0]
    assert "--calibrate" not in advise(d, {"calibrate": True})[0]


def test_balanced_labels_at_chance_that_the_model_would_not_predict_are_copying() -> None:
    """The demo's shape: a calibrated 270M model, labels 20/20, confidence around 0.5 and a
    third of the labels not the model's own prediction."""
    n = 40
    labels = ["True", "False"] * (n // 2)
    confidence = [0.3 if i % 3 == 0 else 0.6 for i in range(n)]
    d = diag(rows(labels, confidence, [i % 3 != 0 for i in range(n)]))
    assert d.collapse == "none" and d.disagreeing == 14
    assert copies_demonstrations(d)
    assert advise(d, {})[0] == COPIES


def test_a_coherent_confident_run_gets_no_advice() -> None:
    labels = ["True", "False"] * 20
    d = diag(rows(labels, [0.92] * 40, [True] * 40))
    assert not copies_demonstrations(d) and advise(d, {}) == []


def test_other_findings_become_what_to_do() -> None:
    labels = ["True", "False"] * 20
    sound = rows(labels, [0.9] * 40, [True] * 40)
    inconsistent = diag(sound, inconsistencies=3)
    assert any("3 related pairs" in a and "--steps" in a for a in advise(inconsistent, {}))
    converged = advise(inconsistent, {"converged": True})
    assert any("3 related pairs" in a and "lowers U" in a for a in converged)
    budget = diag([*sound, {"id": "x", "label": None, "confidence": None}])
    assert budget.unlabeled == 1 and budget.examples == 40
    assert any("--max-calls" in a and "totals for the run" in a for a in advise(budget, {}))
    bounded = diag([{**r, "bounded": i < 10} for i, r in enumerate(sound)])
    assert any("--top-k" in a for a in advise(bounded, {}))
    unsettled = diag(rows(labels, [0.9] * 40, [i % 2 == 0 for i in range(40)]))
    assert not copies_demonstrations(unsettled)  # confident: not a copier, just unsettled
    assert any("20 of 40 labels" in a for a in advise(unsettled, {}))


def test_rows_carry_agrees_and_the_run_ends_with_its_advice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "labels.jsonl"
    with fault_server() as server:
        argv = ["label", "sample:cities", "--task", "cities", "--limit", "20", "--out", str(out)]
        argv += ["--steps", "30", "--chains", "1"]  # the hash model never converges: a short run
        assert main([*argv, "--base-url", server.base_url, "--no-cache", "--quiet"]) == 0
    err = capsys.readouterr().err
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(isinstance(r["agrees"], bool) and 0 <= r["confidence"] <= 1 for r in written)
    # two labels: agrees iff P >= 0.5 (an exact tie goes to the first label either way)
    assert all(
        r["agrees"] == (r["confidence"] >= 0.5)
        for r in written
        if abs(r["confidence"] - 0.5) > 1e-9
    )
    saved = json.loads((tmp_path / "labels.jsonl.run" / "diagnostics.json").read_text())
    for line in saved["advice"]:
        assert f"icm: advice: {line}" in err
    summary = json.loads(out.with_name(out.name + ".summary.json").read_text())
    d = diagnose(summary["summary"], summary["trajectory"], written)
    assert saved["advice"] == advise(d, summary["summary"])
