"""Stumble 4 of issue 18: a run's summary is a ledger over its whole life. Re-running a
finished command keeps the cost record (totals across invocations plus the last one's own
figures), an interrupted run writes its summary too, and budgets are totals for the run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fault_server import PERMANENT, fault_server
from processes import HANG_S, ctrl_c_reaches_it

from icm_client.cli import main
from icm_client.cli._io import UNFINISHED
from icm_client.runs.ledger import Figures, Ledger, load_ledger, record, remaining


def claims(tmp_path: Path, n: int = 16) -> Path:
    path = tmp_path / "claims.jsonl"
    rows = [{"id": f"c{i}", "question": f"Q{i // 4}?", "choice": f"Answer {i}."} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def summary_of(out: Path) -> dict[str, object]:
    data = json.loads(out.with_name(out.name + ".summary.json").read_text())
    assert isinstance(data, dict)
    return data


def test_ledger_adds_invocations(tmp_path: Path) -> None:
    first = record(tmp_path, Figures(calls=10, prompt_tokens=100, wall_time_s=1.5), finished=False)
    second = record(tmp_path, Figures(calls=0, cache_hits=7, wall_time_s=0.25), finished=True)
    assert first.invocations == 1 and first.unfinished == 1
    assert second == load_ledger(tmp_path)
    assert second.invocations == 2 and second.unfinished == 1
    assert second.total == Figures(calls=10, prompt_tokens=100, cache_hits=7, wall_time_s=1.75)
    assert second.last == Figures(calls=0, cache_hits=7, wall_time_s=0.25)
    assert load_ledger(tmp_path / "new") == Ledger()
    assert remaining(40, 45) == 0 and remaining(40, 10) == 30 and remaining(None, 9) is None


def test_rerunning_a_finished_command_keeps_the_cost_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "labels.jsonl"
    with fault_server() as server:
        argv = ["label", str(claims(tmp_path)), "--task", "truthfulqa", "--out", str(out)]
        argv += ["--base-url", server.base_url, "--cache-dir", str(tmp_path / "cache")]
        argv += ["--quiet", "--allow-empty-relation"]
        assert main(argv) == 0
        first = summary_of(out)["summary"]
        assert isinstance(first, dict) and first["calls"] > 0
        assert main(argv) == 0
    again = summary_of(out)["summary"]
    assert isinstance(again, dict)
    assert again["calls"] == 0  # this invocation's own figures: all from the cache
    ledger = again["ledger"]
    assert ledger["invocations"] == 2 and ledger["total"]["calls"] == first["calls"]
    assert ledger["last"]["calls"] == 0
    printed = capsys.readouterr().out
    assert f"over 2 invocations: backend calls {first['calls']}" in printed
    assert main(["report", str(out), "--no-plot"]) == 0
    assert f"over 2 invocations (the figures above: the last one): calls {first['calls']}" in (
        capsys.readouterr().out
    )


def test_max_calls_is_a_total_for_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "labels.jsonl"
    with fault_server() as server:
        argv = ["label", str(claims(tmp_path, 24)), "--task", "truthfulqa", "--out", str(out)]
        argv += ["--base-url", server.base_url, "--cache-dir", str(tmp_path / "cache")]
        argv += ["--quiet", "--allow-empty-relation", "--concurrency", "1"]
        assert main([*argv, "--max-calls", "30"]) == UNFINISHED  # stopped by its budget
        first = summary_of(out)["summary"]
        assert isinstance(first, dict) and first["stopped"] == "budget"
        assert first["calls"] == 30 == server.prompts_received  # probes and preflight included
        capsys.readouterr()
        # the run's budget is spent already: said before anything is sent
        assert main([*argv, "--max-calls", "30"]) == 2
        assert "has spent its budget already (30 calls" in capsys.readouterr().err
        assert server.prompts_received == 30
        code = main([*argv, "--max-calls", "45"])  # 15 more for the run
        third = summary_of(out)["summary"]
        assert isinstance(third, dict) and third["calls"] == 15
        assert code == (UNFINISHED if third["unlabeled"] else 0)
        assert third["ledger"]["total"]["calls"] == 45 == server.prompts_received


# Behind the benchmark marker: two full runs at concurrency 1; ledger totals across invocations:
# test_rerunning_a_finished_command_keeps_the_cost_record
@pytest.mark.benchmark
def test_an_interrupted_run_writes_its_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "labels.jsonl"
    with fault_server(after=25, rate=1.0, kinds=PERMANENT[:1]) as server:
        argv = ["label", str(claims(tmp_path)), "--task", "truthfulqa", "--out", str(out)]
        argv += ["--base-url", server.base_url, "--cache-dir", str(tmp_path / "cache")]
        argv += ["--quiet", "--allow-empty-relation", "--concurrency", "1"]
        assert main(argv) == 1  # the backend failed part-way
        data = summary_of(out)
        assert data["interrupted"] is True and not out.exists()
        ledger = Ledger.model_validate(data["ledger"])
        assert ledger.invocations == 1 and ledger.unfinished == 1 and ledger.total.calls > 0
        assert main(["report", str(out.with_name(out.name + ".run")), "--no-plot"]) == 0
        assert "did not finish" in capsys.readouterr().out
        server.rate = 0.0
        assert main(argv) == 0
    done = summary_of(out)["summary"]
    assert isinstance(done, dict)
    assert done["ledger"]["invocations"] == 2
    assert done["ledger"]["total"]["calls"] == ledger.total.calls + done["calls"]


# Behind the benchmark marker: two full CLI runs in subprocesses; Ctrl-C: test_interrupt, ledger
# totals: the tests above
@pytest.mark.benchmark
def test_ctrl_c_writes_the_summary_and_the_next_run_totals_it(tmp_path: Path) -> None:
    out = tmp_path / "labels.jsonl"
    with fault_server() as server:
        argv = [sys.executable, "-m", "icm_client.cli", "label", str(claims(tmp_path, 40))]
        argv += ["--task", "truthfulqa", "--out", str(out), "--base-url", server.base_url]
        argv += ["--cache-dir", str(tmp_path / "cache"), "--quiet", "--allow-empty-relation"]
        argv += ["--concurrency", "1", "--strategy", "bounded", "--context-size", "8"]
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=ctrl_c_reaches_it,
        )
        checkpoint = out.with_name(out.name + ".run") / "checkpoint.json"
        deadline = time.monotonic() + HANG_S
        while not checkpoint.exists() and proc.poll() is None:
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=HANG_S)
        if proc.returncode == 0:
            pytest.skip("the run finished before the interrupt")  # a very fast machine
        assert proc.returncode == 130, err
        data = summary_of(out)
        assert data["interrupted"] is True
        first = Ledger.model_validate(data["ledger"])
        assert first.unfinished == 1 and first.total.calls > 0
        assert subprocess.run(argv, capture_output=True, timeout=HANG_S).returncode == 0
    done = summary_of(out)["summary"]
    assert isinstance(done, dict)
    assert done["ledger"]["invocations"] == 2
    assert done["ledger"]["total"]["calls"] == first.total.calls + done["calls"]
