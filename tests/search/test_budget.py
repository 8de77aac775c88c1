"""A budget stops the run at the limit and keeps the best state; a rerun with a larger budget
continues from the cache and the checkpoint."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from fault_server import fault_server
from test_search import TRUTH, LatentScorer, make_search

from icm_client.cli import main
from icm_client.cli._io import UNFINISHED
from icm_client.errors import BudgetExhausted
from icm_client.scoring.base import Assignment, Prediction

pytestmark = pytest.mark.anyio


class SpendingScorer(LatentScorer):
    """Each prediction costs one unit; past ``limit`` the scorer refuses (a ``Budget``)."""

    def __init__(self, limit: int) -> None:
        super().__init__(TRUTH)
        self.limit = limit
        self.spent = 0

    async def predict_many(
        self, targets: Sequence[int], labels: Assignment
    ) -> dict[int, Prediction]:
        if self.spent + len(targets) > self.limit:
            raise BudgetExhausted("spent")
        self.spent += len(targets)
        return await super().predict_many(targets, labels)


async def test_search_stops_at_the_budget_with_its_best_state() -> None:
    unlimited = SpendingScorer(10**9)
    full = await make_search(unlimited, len(TRUTH), steps=60, seed=4).run()
    cut = await make_search(
        SpendingScorer(unlimited.spent // 2), len(TRUTH), steps=60, seed=4
    ).run()
    assert full.stopped is None and cut.stopped == "budget"
    assert 0 < len(cut.trajectory) < 60
    accepted = [s.energy for s in cut.trajectory if s.accepted]
    assert cut.energy == max([*accepted, cut.energy])
    assert set(cut.labels) <= set(range(len(TRUTH)))


async def test_a_budget_too_small_to_start_leaves_every_example_unlabeled() -> None:
    """Spent before the seed labels are scored: no state to keep, no label, no error."""
    cut = await make_search(SpendingScorer(3), len(TRUTH), steps=10).run()
    assert cut.stopped == "budget" and cut.labels == {} and cut.trajectory == []


# Behind the benchmark marker: two full CLI runs; a budget stop and its rerun:
# test_a_budget_stop_is_reported_as_one_and_keeps_labels_whatever_the_phase,
# tests/runs/test_ledger.py
@pytest.mark.benchmark
def test_cli_budget_stops_then_a_larger_budget_finishes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "claims.jsonl"
    rows = [
        {"id": f"c{i}", "question": f"Q{i // 4}?", "choice": f"Answer {i}.", "label": i % 2 == 0}
        for i in range(24)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "labels.jsonl"
    with fault_server() as server:
        base = ["label", str(data), "--task", "truthfulqa", "--out", str(out), "--quiet"]
        base += ["--base-url", server.base_url, "--cache-dir", str(tmp_path / "cache")]
        assert main([*base, "--max-calls", "40", "--concurrency", "2"]) == UNFINISHED
        first = json.loads((tmp_path / "labels.jsonl.summary.json").read_text())["summary"]
        assert first["stopped"] == "budget"
        assert 40 <= first["calls"] <= 40 + 1  # one more request may hold the other slot
        labels = [json.loads(line)["label"] for line in out.read_text().splitlines()]
        assert labels.count(None) == first["unlabeled"] > 0
        assert "stopped early" in capsys.readouterr().out

        assert main(base) == 0
        second = json.loads((tmp_path / "labels.jsonl.summary.json").read_text())["summary"]
        assert second["stopped"] is None and second["unlabeled"] == 0
        assert second["cache_hits"] > 0


def claims(tmp_path: Path) -> Path:
    data = tmp_path / "claims.jsonl"
    rows = [
        {"id": f"c{i}", "question": f"Q{i // 4}?", "choice": f"Answer {i}.", "label": i % 2 == 0}
        for i in range(24)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data


@pytest.mark.parametrize(
    "budget",
    [  # the probe of an unknown server counts too: generic, so that the set-up is 1 call
        ["--provider", "generic", "--max-calls", "2"],
        ["--provider", "generic", "--max-calls", "6", "--calibrate"],
        ["--max-calls", "60"],
    ],
    ids=["before-the-seeds", "in-calibration", "mid-search"],
)
def test_a_budget_stop_is_reported_as_one_and_keeps_labels_whatever_the_phase(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], budget: list[str]
) -> None:
    """Whether the budget runs out before the seed labels are scored, while calibrating or
    mid-search, the run writes every row (label null where never reached) and every message
    names the budget, never --max-steps."""
    out = tmp_path / "labels.jsonl"
    with fault_server() as server:
        argv = ["label", str(claims(tmp_path)), "--task", "truthfulqa", "--out", str(out)]
        argv += ["--base-url", server.base_url, "--cache-dir", str(tmp_path / "cache")]
        main([*argv, "--concurrency", "1", *budget])  # (its exit code: documented in --help)
    captured = capsys.readouterr()
    said = captured.out + captured.err
    summary = json.loads((tmp_path / "labels.jsonl.summary.json").read_text())["summary"]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert summary["stopped"] == "budget" and len(rows) == 24
    assert sum(r["label"] is None for r in rows) == summary["unlabeled"]
    assert "--max-steps" not in said and "stopped at its cap" not in said
    assert "search stopped by the budget (--max-calls/--max-tokens)" in said
    assert "stopped the search" in said and "[unfinished]" in said  # the run's warning
    assert main(["report", str(tmp_path / "labels.jsonl.run"), "--no-plot"]) == 0
    report = (tmp_path / "labels.jsonl.run" / "report.md").read_text()
    assert "--max-steps" not in report and "**unfinished**" in report and "budget" in report
