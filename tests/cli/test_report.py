"""Diagnostics of a run: what each degenerate run looks like, and ``icm report`` on the
files a real ``icm label`` run (over a loopback server) leaves behind."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from fault_server import FaultServer

from icm_client.cli import main
from icm_client.diagnostics import diagnose, markdown

SUMMARY: dict[str, Any] = {
    "task": "cities",
    "backend": "stand-in",
    "strategy": "exact",
    "seed": 0,
    "inconsistencies": 0,
    "labeled_by_search": 20,
    "calls": 100,
    "prompt_tokens": 5000,
    "cached_tokens": 1000,
    "cache_hits": 3,
    "retries": 0,
    "wall_time_s": 1.5,
}


def rows(labels: str, confidence: float = 0.9, bounded: int = 0) -> list[dict[str, Any]]:
    return [
        {"id": f"e{i}", "label": "True" if c == "T" else "False", "confidence": confidence,
         "bounded": i < bounded}
        for i, c in enumerate(labels)
    ]  # fmt: skip


def steps(energies: list[float], accepted: list[bool] | None = None) -> list[dict[str, Any]]:
    accepted = accepted or [True] * len(energies)
    return [
        {"n": n + 1, "energy": e, "candidate_energy": e, "changed": True, "accepted": a}
        for n, (e, a) in enumerate(zip(energies, accepted, strict=True))
    ]


def codes(summary: dict[str, Any], trajectory: list[dict[str, Any]], r: list[Any]) -> set[str]:
    return {f.code for f in diagnose(summary, trajectory, r).warnings}


HEALTHY = steps([-50.0 + 2 * k for k in range(20)])


def test_a_healthy_run_has_no_warnings() -> None:
    d = diagnose(SUMMARY, HEALTHY, rows("TF" * 10))
    assert d.warnings == [] and d.collapse == "none"
    assert d.label_share == {"False": 0.5, "True": 0.5}
    assert d.trajectory.accepted == 20 and d.trajectory.energy_end == -12.0
    assert d.usage["calls"] == 100
    text = markdown(d, SUMMARY)
    assert "| True | 10 | 50.0% |" in text and "- none" in text


@pytest.mark.parametrize(
    ("summary", "trajectory", "labels", "expected"),
    [
        ({}, HEALTHY, rows("T" * 20), {"all-same"}),
        ({}, HEALTHY, rows("T" * 19 + "F"), {"near-constant"}),
        ({}, steps([-5.0] * 12, [False] * 12), rows("TF" * 10), {"no-accepted-steps"}),
        ({}, steps([-5.0] * 12), rows("TF" * 10), {"flat-energy"}),
        ({"inconsistencies": 3}, HEALTHY, rows("TF" * 10), {"inconsistent"}),
        ({}, HEALTHY, rows("TF" * 10, bounded=5), {"bounded"}),
        ({}, HEALTHY, rows("TF" * 10, confidence=0.52), {"low-confidence"}),
        ({"gold_agreement": 0.3}, HEALTHY, rows("TF" * 10), {"below-chance"}),
    ],
    ids=["all-same", "near-constant", "none-accepted", "flat", "inconsistent", "bounded",
         "low-confidence", "below-chance"],
)  # fmt: skip
def test_degenerate_runs_are_flagged(
    summary: dict[str, Any],
    trajectory: list[dict[str, Any]],
    labels: list[dict[str, Any]],
    expected: set[str],
) -> None:
    assert codes({**SUMMARY, **summary}, trajectory, labels) == expected


@pytest.mark.parametrize("calibrated", [False, True])
@pytest.mark.parametrize("labels", ["T" * 20, "T" * 19 + "F"], ids=["all-same", "near-constant"])
def test_collapse_advice_suggests_calibrate_only_when_the_run_was_not(
    calibrated: bool, labels: str
) -> None:
    d = diagnose({**SUMMARY, "calibrate": calibrated}, HEALTHY, rows(labels))
    (finding,) = d.warnings
    assert ("--calibrate" in finding.message) is not calibrated
    assert "a larger model" in finding.message


def test_few_searched_is_a_note_not_a_warning() -> None:
    d = diagnose({**SUMMARY, "labeled_by_search": 3}, HEALTHY, rows("TF" * 10))
    assert d.warnings == [] and [f.code for f in d.findings] == ["few-searched"]


def _label_run(tmp_path: Path, server: FaultServer) -> Path:
    out = tmp_path / "labels.jsonl"
    args = ["label", "sample:cities", "--task", "cities", "--out", str(out), "--limit", "16"]
    args += ["--steps", "12", "--base-url", server.base_url, "--no-cache", "--quiet"]
    assert main(args) == 0
    return out


def test_label_saves_diagnostics_and_report_reads_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FaultServer() as server:
        out = _label_run(tmp_path, server)
    capsys.readouterr()
    run_dir = tmp_path / "labels.jsonl.run"
    saved = json.loads((run_dir / "diagnostics.json").read_text())
    assert saved["run"]["task"] == "cities" and saved["run"]["limit"] == 16
    assert saved["run"]["labels"] == "../labels.jsonl"
    assert saved["diagnostics"]["examples"] == 16
    assert saved["diagnostics"]["trajectory"]["steps"] == 12
    summary = json.loads((tmp_path / "labels.jsonl.summary.json").read_text())["summary"]
    assert sum(saved["diagnostics"]["label_counts"].values()) == summary["examples"]

    for target in (run_dir, out, tmp_path / "labels.jsonl.summary.json"):
        assert main(["report", str(target), "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["label_counts"] == saved["diagnostics"]["label_counts"]
    report = (run_dir / "report.md").read_text()
    assert report.startswith("# ICM run report: cities")
    if importlib.util.find_spec("matplotlib") is not None:
        assert (run_dir / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "![trajectory" in report


def test_report_of_an_older_run_without_diagnostics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FaultServer() as server:
        _label_run(tmp_path, server)
    run_dir = tmp_path / "labels.jsonl.run"
    (run_dir / "diagnostics.json").unlink()
    assert main(["report", str(run_dir), "--no-plot", "--out-dir", str(tmp_path)]) == 0
    assert "## Search" in capsys.readouterr().out
    assert (tmp_path / "report.md").exists() and not (tmp_path / "report.png").exists()
    assert (run_dir / "diagnostics.json").exists()  # refreshed for the next tools


def test_report_fails_on_warning_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "collapsed.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows("T" * 10)))
    summary = {"summary": SUMMARY, "trajectory": steps([-9.0] * 10, [False] * 10)}
    (tmp_path / "collapsed.jsonl.summary.json").write_text(json.dumps(summary))
    assert main(["report", str(out), "--no-plot"]) == 0
    assert main(["report", str(out), "--no-plot", "--fail-on-warning"]) == 3
    text = capsys.readouterr().out
    assert "**all-same**" in text and "**no-accepted-steps**" in text
    assert (tmp_path / "collapsed.jsonl.report.md").exists()


def test_report_of_an_unfinished_run_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "out.jsonl.run"
    run_dir.mkdir()
    assert main(["report", str(run_dir)]) == 2
    assert "has it finished?" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nothing")]) == 2


def test_label_over_aiohttp_gives_the_same_labels(tmp_path: Path) -> None:
    """``--http aiohttp`` reaches the same server through aiohttp under httpx2's API."""
    outs = []
    for http in ("httpx", "aiohttp"):
        with FaultServer() as server:
            out = tmp_path / f"{http}.jsonl"
            args = ["label", "sample:cities", "--task", "cities", "--out", str(out)]
            args += ["--limit", "12", "--steps", "8", "--base-url", server.base_url]
            args += ["--no-cache", "--quiet", "--http", http]
            assert main(args) == 0
            assert server.answered["/v1/completions"] > 0
            assert set(server.host_header_names) == {"Host" if http == "httpx" else "host"}
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


def test_an_unknown_http_client_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["label", "sample:cities", "--task", "cities", "--http", "curl"])
    assert exc.value.code == 2 and "--http" in capsys.readouterr().err
