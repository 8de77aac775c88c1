"""Budgets count what reaches a server (issue 24, rows 5-8): every attempt, retried ones and
the set-up requests included, recorded before it is sent, so that SIGTERM, SIGKILL or a
crash cannot reset a run's totals; a prompt larger than the tokens left is never sent; a
tampered ledger or journal is refused with a message naming it.

The server side counts what arrives (``FaultServer.prompts_received``): the budgets are
checked against it, not against the client's own figures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from fault_server import TRANSIENT, FaultServer

from icm_client.backends import Backend, OpenAICompletions, ScoreRequest, ScoreResult, Usage
from icm_client.cli import main
from icm_client.cli._io import UNFINISHED
from icm_client.client import Budget, Retry, ScoringClient
from icm_client.errors import BudgetExhausted, ConfigError
from icm_client.runs.journal import SpendJournal
from icm_client.runs.ledger import JOURNAL, LEDGER, Figures, load_ledger, read_journal

FAST = [k for k in TRANSIENT if k != "slow"]


def claims(tmp_path: Path, n: int = 24) -> Path:
    path = tmp_path / "claims.jsonl"
    rows = [{"id": f"c{i}", "question": f"Q{i // 4}?", "choice": f"Answer {i}."} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def label_argv(server: FaultServer, tmp_path: Path, data: Path, *extra: str) -> list[str]:
    argv = ["label", str(data), "--task", "truthfulqa", "--out", str(tmp_path / "labels.jsonl")]
    argv += ["--base-url", server.base_url, "--cache-dir", str(tmp_path / "cache")]
    return [*argv, "--quiet", "--allow-empty-relation", *extra]


def summary(tmp_path: Path) -> dict[str, object]:
    data = json.loads((tmp_path / "labels.jsonl.summary.json").read_text())
    assert isinstance(data, dict)
    return data


# -- row 6: retried attempts count ------------------------------------------------------------


def test_max_calls_bounds_what_reaches_a_faulty_server(tmp_path: Path) -> None:
    with FaultServer(rate=0.4, kinds=FAST, max_streak=3) as server:
        argv = label_argv(server, tmp_path, claims(tmp_path), "--max-calls", "40")
        assert main(argv) == UNFINISHED
    s = summary(tmp_path)["summary"]
    assert isinstance(s, dict) and s["stopped"] == "budget"
    assert sum(server.injected.values()) > 0 and s["retries"] > 0  # retries happened...
    assert server.prompts_received <= 40  # ...and were counted: the budget held
    assert server.prompts_received <= s["calls"] <= 40  # a call admitted may go unsent


# -- row 5: SIGTERM and SIGKILL cannot reset the run's totals --------------------------------


def test_killed_invocations_cannot_reset_the_budget(tmp_path: Path) -> None:
    data = claims(tmp_path, 40)
    run = tmp_path / "labels.jsonl.run"
    with FaultServer(latency_s=0.02) as server:
        argv = label_argv(server, tmp_path, data, "--max-calls", "60", "--concurrency", "2")
        command = [sys.executable, "-m", "icm_client.cli", *argv]
        signals = (signal.SIGTERM, signal.SIGTERM, signal.SIGTERM, signal.SIGKILL)
        for n, sig in enumerate(signals, 1):
            before = server.prompts_received
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 120
            while server.prompts_received < before + 8 and proc.poll() is None:
                assert time.monotonic() < deadline, "the run made no progress"
                time.sleep(0.01)
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=60)
            if sig == signal.SIGTERM:
                assert proc.returncode == 143, err
                assert b"terminated (SIGTERM)" in err and b"Traceback" not in err
                assert summary(tmp_path)["interrupted"] is True  # written like Ctrl-C's
                ledger = load_ledger(run)
                # every prompt received is counted; a call admitted may have been cancelled
                # before it went out (at most one per slot: --concurrency 2)
                received = server.prompts_received
                assert received <= ledger.total.calls <= received + 2 * n
            else:
                assert proc.returncode == -signal.SIGKILL
                assert (run / JOURNAL).exists()  # what it sent is on disk all the same
        killed = load_ledger(run)  # the killed invocation is counted as unfinished
        assert killed.invocations == killed.unfinished == 4
        assert killed.total.calls >= server.prompts_received >= 32
        assert main(argv) == UNFINISHED  # the last invocation spends what is left, no more
    assert server.prompts_received <= 60
    done = summary(tmp_path)["summary"]
    assert isinstance(done, dict) and done["stopped"] == "budget"
    assert done["ledger"]["invocations"] == 5 and done["ledger"]["total"]["calls"] <= 60
    assert not (run / JOURNAL).exists()


@pytest.mark.anyio
async def test_the_journal_holds_each_call_before_it_is_sent(tmp_path: Path) -> None:
    """A backend that reads the journal when asked: the call it is answering is there."""

    class Witness(Backend):
        identity = "witness"

        def __init__(self) -> None:
            self.usage: Usage = Usage()
            self.sent = 0
            self.short: list[tuple[int, int]] = []  # (recorded, sent) where it fell behind

        async def score(self, request: ScoreRequest) -> ScoreResult:
            async with self.usage.sending(1, 10):
                self.sent += 1  # every call sent so far must be in the journal already
                entry = read_journal(tmp_path / JOURNAL)
                recorded = entry.calls if entry is not None else 0
                if recorded < self.sent:
                    self.short.append((recorded, self.sent))
                await anyio.sleep(0)
                return ScoreResult((-1.0, -2.0), (False, False))

    backend = Witness()
    with SpendJournal(tmp_path, backend.usage) as journal:
        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(backend.score, ScoreRequest(f"p{i}", (" a", " b")))
        lines = (tmp_path / JOURNAL).read_bytes().count(b"\n")
        ledger = journal.finish(finished=True)
    assert backend.sent == 50 and backend.short == []
    assert 1 <= lines < 50  # concurrent calls shared their writes (group commit)
    assert ledger.total.calls == 50 and ledger.unfinished == 0
    assert not (tmp_path / JOURNAL).exists()


def test_a_journal_cut_by_a_kill_counts_its_last_whole_line(tmp_path: Path) -> None:
    run = tmp_path
    line = '{"id": "%s", "calls": %d, "prompt_tokens": 90}\n'
    ident = "ab" * 16
    (run / JOURNAL).write_text(line % (ident, 3) + line % (ident, 7) + '{"id": "ab')
    ledger = load_ledger(run)
    assert ledger.invocations == ledger.unfinished == 1
    assert ledger.total == Figures(calls=7, prompt_tokens=90)


# -- row 7: --max-tokens before the first call ------------------------------------------------


def test_a_prompt_larger_than_the_token_budget_is_never_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = claims(tmp_path, 8)
    rows = data.read_text().splitlines()
    huge = {"id": "big", "question": "Q?", "choice": "x" * 5_000_000}
    data.write_text("\n".join([*rows, json.dumps(huge)]) + "\n")
    with FaultServer() as server:
        assert main(label_argv(server, tmp_path, data, "--max-tokens", "1000")) == 2
    err = capsys.readouterr().err
    assert "example 'big'" in err and "field 'choice'" in err and "not sent" in err
    assert "Traceback" not in err
    assert server.prompts_received == 0


@pytest.mark.anyio
async def test_the_client_refuses_a_prompt_larger_than_what_is_left() -> None:
    with FaultServer() as server:
        backend = OpenAICompletions(server.base_url)
        budget = Budget(max_prompt_tokens=100)
        async with ScoringClient(backend, cache=False, budget=budget) as c:
            await c.score(ScoreRequest("a short prompt", (" a", " b")))
            before = server.prompts_received
            with pytest.raises(BudgetExhausted, match="larger than what is left"):
                await c.score(ScoreRequest("y" * 2000, (" a", " b")))
    assert server.prompts_received == before == c.usage.calls  # the large one was not sent


def test_the_plan_is_checked_against_the_budget_before_any_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FaultServer() as server:
        argv = label_argv(server, tmp_path, claims(tmp_path), "--max-calls", "3")
        assert main(argv) == 2  # cannot cover the probe and the preflight: said, exit 2
        err = capsys.readouterr().err
        assert "the budget left covers 3 of the ~" in err  # the plan, before any call
        assert "budget left to the run does not cover the requests before the search" in err
        assert server.prompts_received <= 3 and "Traceback" not in err
    with FaultServer() as server:
        argv = label_argv(server, tmp_path / "b", claims(tmp_path), "--max-tokens", "2000")
        (tmp_path / "b").mkdir()
        assert main(argv) in (0, UNFINISHED)
        assert "the budget left covers" in capsys.readouterr().err  # said, then run


# -- row 8: a tampered ledger is refused, never trusted ---------------------------------------

TAMPERED = {
    "negative": '{"invocations": 1, "total": {"calls": -1000000}}',
    "huge int": '{"invocations": 1, "total": {"calls": ' + "9" * 5000 + "}}",
    "deep": '{"invocations": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "bool": '{"invocations": true}',
    "string": '{"invocations": 1, "total": {"calls": "12"}}',
    "nan": '{"invocations": 1, "total": {"wall_time_s": NaN}}',
    "unfinished": '{"invocations": 1, "unfinished": 5}',
    "not json": "\x00\xff garbage",
    "too big": " " * (2 << 20) + "{}",
}


@pytest.mark.parametrize("kind", TAMPERED)
def test_a_tampered_ledger_is_a_clear_error(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "labels.jsonl.run"
    run.mkdir(mode=0o700)
    (run / LEDGER).write_text(TAMPERED[kind], encoding="utf-8", errors="surrogateescape")
    with FaultServer() as server:
        assert main(label_argv(server, tmp_path, claims(tmp_path), "--max-calls", "10")) == 2
    err = capsys.readouterr().err
    assert str(run / LEDGER) in err and "Traceback" not in err
    assert server.prompts_received == 0
    with pytest.raises(ConfigError, match="ledger"):
        load_ledger(run)


@pytest.mark.parametrize("kind", ["directory", "symlink"])
def test_a_ledger_that_is_not_a_file_is_refused(kind: str, tmp_path: Path) -> None:
    if kind == "directory":
        (tmp_path / LEDGER).mkdir()
    else:
        (tmp_path / "elsewhere.json").write_text("{}")
        os.symlink(tmp_path / "elsewhere.json", tmp_path / LEDGER)
    with pytest.raises(ConfigError, match="ledger"):
        load_ledger(tmp_path)


def test_a_tampered_journal_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / JOURNAL).write_text('{"id": "' + "ab" * 16 + '", "calls": -5}\n')
    with pytest.raises(ConfigError, match="spending journal is damaged") as info:
        load_ledger(tmp_path)
    assert str(tmp_path / JOURNAL) in str(info.value)


@pytest.mark.anyio
async def test_retries_of_a_budgeted_client_count() -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    completions = ["/v1/completions"]
    with FaultServer(rate=1.0, kinds=["500"], max_streak=2, fault_paths=completions) as server:
        client = ScoringClient(
            OpenAICompletions(server.base_url),
            cache=False,
            retry=Retry(sleep=sleep),
            budget=Budget(max_calls=2),
        )
        async with client:
            with pytest.raises(BudgetExhausted):
                await client.score(ScoreRequest("a prompt", (" a", " b")))
    assert server.prompts_received == 2 == client.usage.calls and len(waits) == 2
