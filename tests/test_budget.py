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


async def test_a_budget_too_small_to_start_is_an_error() -> None:
    with pytest.raises(BudgetExhausted):
        await make_search(SpendingScorer(3), len(TRUTH), steps=10).run()


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
