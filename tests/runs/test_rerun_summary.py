"""A no-op re-run (everything checkpointed and cached) keeps the search's figures: the summary
reports the whole search, not the steps the re-run replayed, and ``icm report`` shows them;
the ledger keeps the run's totals."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from fault_server import fault_server

from icm_client.cli import main
from icm_client.search.anneal import Checkpoint

SEARCH = ("steps", "accepted", "flips", "pairs_fixed", "free_proposals", "never_reproposed")


def summary(tmp_path: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((tmp_path / "l.jsonl.summary.json").read_text())
    return data


@pytest.mark.parametrize(
    "steps",
    [
        # the default run to convergence, twice as long: behind the benchmark marker
        pytest.param([], id="converging", marks=pytest.mark.benchmark),
        pytest.param(["--steps", "12"], id="fixed-steps"),
    ],
)
def test_a_no_op_re_run_keeps_the_search_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], steps: list[str]
) -> None:
    data = tmp_path / "claims.jsonl"
    rows = [{"id": f"c{i}", "question": f"Q{i // 4}?", "choice": f"Answer {i}."} for i in range(12)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with fault_server() as server:
        argv = ["label", str(data), "--task", "truthfulqa", "--out", str(tmp_path / "l.jsonl")]
        argv += ["--base-url", server.base_url, "--cache-dir", str(tmp_path / "cache")]
        argv += ["--quiet", "--concurrency", "1", *steps]
        assert main(argv) == 0
        first = summary(tmp_path)
        assert main(argv) == 0
        again = summary(tmp_path)
    s1, s2 = first["summary"], again["summary"]
    assert isinstance(s1, dict) and isinstance(s2, dict)
    assert s1["steps"] > 0 and s1["accepted"] > 0 and s2["calls"] == 0
    assert {k: s2[k] for k in SEARCH} == {k: s1[k] for k in SEARCH}
    assert s2["converged"] == s1["converged"] and again["trajectory"] == first["trajectory"]
    assert s2["ledger"]["total"]["calls"] == s1["calls"]  # the run's totals
    assert s2["ledger"]["invocations"] == 2
    capsys.readouterr()
    assert main(["report", str(tmp_path / "l.jsonl.run"), "--no-plot"]) == 0
    report = capsys.readouterr().out
    assert f"- steps: {s1['steps']}; " in report and f"accepted: {s1['accepted']}" in report


def test_a_checkpoint_keeps_the_search_counts_and_refuses_malformed_ones() -> None:
    rng = random.Random(1).getstate()
    tally = {"flips": 2, "pairs_fixed": 1, "free_proposals": 5, "proposed": [0, 3], "seeds": [3]}
    point = Checkpoint(4, {0: 1, 3: 0}, rng, tally)
    assert Checkpoint.from_json(json.loads(json.dumps(point.to_json()))) == point
    old = point.to_json()
    del old["tally"]  # a checkpoint from before the counts were kept still resumes
    assert Checkpoint.from_json(old).tally is None
    for bad in ({**tally, "flips": -1}, {**tally, "proposed": "0"}, {"flips": 1}, [1]):
        with pytest.raises(ValueError, match="tally"):
            Checkpoint.from_json({**point.to_json(), "tally": bad})
