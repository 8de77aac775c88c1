"""Kill -9 at random points, resume, and end exactly where an uninterrupted run ends.

The CLI runs in a real subprocess against the loopback stand-in model (``fault_server``, no
faults injected), so the kill lands wherever the process happens to be: mid-request,
mid-checkpoint write, mid-trajectory line.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fault_server import FaultServer, fault_server
from processes import HANG_S

STEPS = 40


def write_claims(path: Path, n: int = 16) -> None:
    rows = [
        {
            "id": f"q{i // 4}-{i % 4}",
            "question": f"Which colour is the flag of country {i // 4}?",
            "choice": f"The flag is colour number {i}.",
            "label": i % 3 == 0,
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def command(data: Path, server: FaultServer, work: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "icm_client.cli",
        "label",
        str(data),
        "--task",
        "truthfulqa",
        "--base-url",
        server.base_url,
        "--out",
        str(work / "labels.jsonl"),
        "--cache-dir",
        str(work / "cache"),
        "--steps",
        str(STEPS),
        "--seed",
        "7",
        "--concurrency",
        "1",
        "--quiet",
        *extra,
    ]


def steps_done(work: Path) -> int:
    path = work / "labels.jsonl.run" / "trajectory.jsonl"
    return path.read_bytes().count(b"\n") if path.exists() else 0


def run_to_end(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_S)
    assert done.returncode == 0, done.stderr
    return done


# Behind the benchmark marker: six CLI runs in subprocesses, four killed at random points; a run
# resumes to the labels of an uninterrupted one: tests/scale/test_scale.py,
# tests/runs/test_checkpointer.py
@pytest.mark.benchmark
def test_killed_runs_resume_to_the_labels_of_an_uninterrupted_run(tmp_path: Path) -> None:
    data = tmp_path / "claims.jsonl"
    write_claims(data)
    with fault_server() as server:
        reference = tmp_path / "reference"
        reference.mkdir()
        run_to_end(command(data, server, reference))
        expected = (reference / "labels.jsonl").read_text()
        reference_calls = server.answered["/v1/completions"]

        work = tmp_path / "killed"
        work.mkdir()
        rng = random.Random(2024)
        kill_points = sorted(rng.sample(range(1, STEPS), 4))
        asked_before: set[str] = set()
        repeated = 0
        for point in kill_points:
            before = dict(server.attempts)
            proc = subprocess.Popen(
                command(data, server, work), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            deadline = time.monotonic() + HANG_S
            while steps_done(work) < point and proc.poll() is None:
                assert time.monotonic() < deadline, "the run made no progress"
                time.sleep(0.002)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            asked_now = {k for k, v in server.attempts.items() if v > before.get(k, 0)}
            repeated += len(asked_now & asked_before)
            asked_before |= set(server.attempts)
            assert not (work / "labels.jsonl").exists(), "a killed run left an output file"

        before = dict(server.attempts)
        done = run_to_end(command(data, server, work))
        asked_now = {k for k, v in server.attempts.items() if v > before.get(k, 0)}
        repeated += len(asked_now & asked_before)

    assert "resuming" in done.stderr
    assert (work / "labels.jsonl").read_text() == expected
    summary = json.loads((work / "labels.jsonl.summary.json").read_text())
    assert [s["n"] for s in summary["trajectory"]] == list(range(1, STEPS + 1))
    # With one request in flight, a kill can lose at most the answer being received.
    assert repeated <= len(kill_points)
    print(
        f"kill points {kill_points}: {repeated} repeated calls; "
        f"reference run {reference_calls} calls"
    )


# Behind the benchmark marker: three full CLI runs in subprocesses; refusal naming the difference:
# tests/runs/test_run_identity.py
@pytest.mark.benchmark
def test_resume_refuses_a_different_run_and_restart_starts_over(tmp_path: Path) -> None:
    data = tmp_path / "claims.jsonl"
    write_claims(data)
    with fault_server() as server:
        run_to_end(command(data, server, tmp_path))
        write_claims(data, n=12)  # the input changed: the checkpoint is not for this run
        other = subprocess.run(
            command(data, server, tmp_path), capture_output=True, text=True, timeout=HANG_S
        )
        assert other.returncode == 2
        assert "checkpoint.json" in other.stderr and "different run" in other.stderr
        run_to_end(command(data, server, tmp_path, "--restart"))
        rows = (tmp_path / "labels.jsonl").read_text().splitlines()
        assert len(rows) == 12

        missing = subprocess.run(
            command(data, server, tmp_path, "--resume", "--run-dir", str(tmp_path / "nothing")),
            capture_output=True,
            text=True,
            timeout=HANG_S,
        )
        assert missing.returncode == 2 and "--resume: no checkpoint" in missing.stderr


@pytest.mark.parametrize("garbage", [b"", b"{", b'{"format": 1}', b"\xff\xfe"])
def test_a_damaged_checkpoint_is_reported_not_trusted(tmp_path: Path, garbage: bytes) -> None:
    data = tmp_path / "claims.jsonl"
    write_claims(data)
    with fault_server() as server:
        run_dir = tmp_path / "labels.jsonl.run"
        run_dir.mkdir()
        (run_dir / "checkpoint.json").write_bytes(garbage)
        done = subprocess.run(
            command(data, server, tmp_path), capture_output=True, text=True, timeout=HANG_S
        )
    assert done.returncode == 2
    assert str(run_dir / "checkpoint.json") in done.stderr
    assert not (tmp_path / "labels.jsonl").exists()
