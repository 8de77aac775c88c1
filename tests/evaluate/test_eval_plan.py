"""``icm eval`` says what it will cost before its first call and gives an ETA as it goes, like
``icm label`` (issue 28, point 5); the plan counts the calls each condition makes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fault_server import fault_server

from icm_client.cli import main


@pytest.mark.parametrize("calibrate", [False, True])
def test_icm_eval_prints_its_plan_then_progress_with_an_eta(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], calibrate: bool
) -> None:
    out = tmp_path / "eval.json"
    args = ["eval", "sample:cities", "--split", "0.5", "--task", "cities", "--out", str(out)]
    args += ["--conditions", "zero-shot,gold,random,bootstrap", "--seeds", "2", "--no-cache"]
    args += ["--max-demo-tokens", "300", "--bootstrap-rounds", "1", "--bootstrap-folds", "2"]
    args += ["--calibrate"] if calibrate else []
    with fault_server() as server:
        assert main([*args, "--base-url", server.base_url]) == 0
    err = capsys.readouterr().err
    plan = re.search(
        r"icm eval: plan: zero-shot, gold, random, bootstrap on (\d+) test "
        r"examples, 2 seeds of about \d+ demonstrations: about ([\d,]+) model calls",
        err,
    )
    assert plan is not None, err
    assert plan.start() < err.index("condition zero-shot")  # before the first call
    assert re.search(r"condition bootstrap \[calls \d+, ETA \d+:\d\d\]", err)  # timed by then
    result = json.loads(out.read_text())
    made = sum(c["usage"].get("calls", 0) for c in result["conditions"])
    planned = int(plan.group(2).replace(",", ""))
    # The plan counts one call per prediction, exactly for the zero-shot and many-shot
    # conditions; the stand-in model often leaves a label word out of its top-k, which costs
    # a second, larger-k call (about a third more here; a real model's top 20 holds both).
    assert planned <= made <= 1.5 * planned, (planned, made)
