"""Faults of a real HTTP server (``fault_server.py``): each is classified as transient
(retried, with capped backoff) or permanent (the run stops, saying which endpoint said
what), and a whole labeling run under 30% transient faults ends with the fault-free labels."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from fault_server import PERMANENT, TRANSIENT, FaultServer
from processes import HANG_S

from icm_client.backends import OpenAICompletions, ScoreRequest
from icm_client.cli import main
from icm_client.client import Retry, ScoringClient
from icm_client.dataset import load_dataset
from icm_client.errors import (
    CapabilityError,
    PermanentBackendError,
    TransientBackendError,
)
from icm_client.run import LabelConfig, LabelResult, label
from icm_client.search.config import SearchConfig
from icm_client.tasks import get_task
from icm_client.testing.protocol import hash_logprobs as model_logprobs

pytestmark = pytest.mark.anyio

REQ = ScoreRequest("Claim: the sea is salty.\nI think this Claim is", (" True", " False"))
EXPECTED = tuple(dict(model_logprobs(REQ.prompt))[w] for w in REQ.labels)
SAMPLES = Path(__file__).parents[2] / "icm_client" / "samples"


class Recorder:
    """Records the backoff waits instead of sleeping them."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def client(server: FaultServer, timeout: float = 2.0, **kw: object) -> OpenAICompletions:
    return OpenAICompletions(server.base_url, "stand-in-1", timeout=timeout, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", TRANSIENT)
async def test_each_transient_fault_is_retried_with_capped_backoff(kind: str) -> None:
    with FaultServer(rate=1.0, kinds=(kind,), max_streak=2, slow_s=1.0) as server:
        inner = client(server, timeout=0.3)
        sleep = Recorder()
        backend = ScoringClient(
            inner,
            cache=False,
            retry=Retry(max_attempts=3, base_wait=0.01, max_wait=0.05, sleep=sleep),
        )
        result = await backend.score(REQ)
        await backend.aclose()
    assert result.logprobs == pytest.approx(EXPECTED)
    assert server.injected == Counter({kind: 2})
    assert inner.usage.retries == 2 and inner.usage.extra["prompts"] == 1  # one answer
    assert inner.usage.calls == 3 == server.prompts_received  # every attempt is a call
    assert len(sleep.waits) == 2 and all(0 <= w <= 0.05 for w in sleep.waits)
    if kind == "429":  # Retry-After: 1 is honoured, up to the cap
        assert sleep.waits == [0.05, 0.05]


async def test_retry_after_below_the_cap_is_waited_in_full() -> None:
    with FaultServer(rate=1.0, kinds=("429",), max_streak=1, retry_after="0.5") as server:
        sleep = Recorder()
        backend = ScoringClient(
            client(server), cache=False, retry=Retry(base_wait=0.001, max_wait=10, sleep=sleep)
        )
        await backend.score(REQ)
        await backend.aclose()
    assert sleep.waits == [0.5]


@pytest.mark.parametrize("kind", PERMANENT)
async def test_each_permanent_fault_stops_at_once_with_a_clear_message(kind: str) -> None:
    with FaultServer(rate=1.0, kinds=(kind,)) as server:
        backend = ScoringClient(
            client(server),
            cache=False,
            retry=Retry(max_attempts=5, base_wait=0.001, sleep=Recorder()),
        )
        with pytest.raises(PermanentBackendError) as info:
            await backend.score(REQ)
        await backend.aclose()
    assert server.requests["/v1/completions"] == 1  # not retried
    message = str(info.value)
    assert message.startswith(f"{server.base_url}/completions: ")  # which endpoint
    if kind == "no_logprobs":
        assert isinstance(info.value, CapabilityError) and "no logprobs" in message
    else:
        assert info.value.status == int(kind) and f"HTTP {kind}" in message
        said = {"400": "Invalid value for 'temperature'", "401": "Invalid authentication"}
        assert said.get(kind, "Not Found") in message  # what it said
        assert {"401": "check the API key", "404": "unknown model"}.get(kind, "") in message


async def test_endless_transient_faults_give_up_with_the_attempt_count() -> None:
    with FaultServer(rate=1.0, kinds=("503",)) as server:
        backend = ScoringClient(
            client(server),
            cache=False,
            retry=Retry(max_attempts=4, base_wait=0.001, sleep=Recorder()),
        )
        with pytest.raises(TransientBackendError, match=r"HTTP 503.*gave up after 4 attempts"):
            await backend.score(REQ)
        await backend.aclose()
    assert server.requests["/v1/completions"] == 4


async def test_model_discovery_is_retried_too() -> None:
    with FaultServer(
        rate=1.0, kinds=("502", "drop"), max_streak=3, fault_paths=("/v1/models",)
    ) as server:
        inner = OpenAICompletions(server.base_url, timeout=2.0)
        backend = ScoringClient(
            inner, cache=False, retry=Retry(max_attempts=4, base_wait=0.001, sleep=Recorder())
        )
        result = await backend.score(REQ)
        await backend.aclose()
    assert inner.model == "stand-in-1" and result.logprobs == pytest.approx(EXPECTED)
    assert server.requests["/v1/models"] == 4


# -- whole runs ----------------------------------------------------------------------------

CONFIG = LabelConfig(
    strategy="bounded", context_size=6, search=SearchConfig(steps=60, seed=3, initial_labeled=4)
)


def run_stack(server: FaultServer, timeout: float) -> ScoringClient:
    """The CLI's client without the cache (every score reaches the server), fast waits.
    ``timeout`` must be below the server's ``slow_s`` for a slow answer to be a fault, and
    well above a clean answer's time on a busy machine, so that only injected faults retry."""
    inner = OpenAICompletions(server.base_url, timeout=timeout)
    # More attempts than the servers' streak cap of 6 faults per prompt: a request of
    # several prompts, or a score of two requests, meets the faults of each of them.
    retry = Retry(max_attempts=16, base_wait=0.001, max_wait=0.01)
    return ScoringClient(inner, cache=False, retry=retry, max_concurrency=8)


async def labeled(server: FaultServer, timeout: float = 2.0) -> LabelResult:
    dataset = load_dataset(SAMPLES / "cities_sample.jsonl", limit=32)
    backend = run_stack(server, timeout)
    try:
        return await label(dataset.examples, get_task("cities"), backend, CONFIG)
    finally:
        await backend.aclose()


# Behind the benchmark marker: a stress run; each fault kind is retried:
# test_each_transient_fault_is_retried_with_capped_backoff
@pytest.mark.benchmark
async def test_thirty_percent_transient_faults_change_no_label() -> None:
    with FaultServer() as clean_server:
        clean = await labeled(clean_server, timeout=HANG_S)
    assert clean.summary.retries == 0 and sum(clean_server.injected.values()) == 0

    with FaultServer(rate=0.3, seed=11, max_streak=6, slow_s=4.0) as server:
        faulty = await labeled(server)
    injected = sum(server.injected.values())
    attempts = sum(server.requests.values())
    print(f"\n{injected} faults in {attempts} requests, all survived: {dict(server.injected)}")
    assert set(server.injected) == set(TRANSIENT)  # every kind was survived
    assert 0.2 < injected / attempts < 0.35
    assert faulty.summary.retries >= injected
    assert faulty.rows == clean.rows
    assert faulty.trajectory == clean.trajectory
    # (summary.calls may be higher: a fault in a score's second, larger-k request repeats
    # the first, successful one when the whole score is retried)


def first_leaf(exc: BaseException) -> BaseException:
    """Concurrent scores fail together: ``label`` may raise them as a task group's group."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


async def test_permanent_fault_mid_run_stops_the_run_naming_endpoint_and_status() -> None:
    with (
        FaultServer(rate=0.05, kinds=("401",), seed=1) as server,
        pytest.raises(Exception) as info,
    ):
        await labeled(server)
    error = first_leaf(info.value)
    assert isinstance(error, PermanentBackendError) and error.status == 401
    assert str(error).startswith(f"{server.base_url}/completions: HTTP 401: not authorised")
    assert server.injected["401"] >= 1
    assert max(server.attempts.values()) == 1  # nothing was retried


def test_cli_exits_1_on_a_permanent_fault_mid_run_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "labels.jsonl"
    # the preflight (model, host probe, test score) passes; faults start once the run is under way
    with FaultServer(rate=0.3, kinds=("400",), seed=2, after=8) as server:
        args = ["label", "sample:cities", "--task", "cities", "--limit", "16", "--quiet"]
        args += ["--out", str(out), "--base-url", server.base_url, "--no-cache"]
        args += ["--strategy", "bounded", "--context-size", "4", "--steps", "30"]
        code = main(args)
    err = capsys.readouterr().err
    assert code == 1, err
    assert f"icm: error: {server.base_url}/completions: HTTP 400: request rejected" in err
    # no labels; only the run's summary, which says it did not finish (a run state may stay)
    files = [p for p in tmp_path.iterdir() if p.is_file()]
    assert [p.name for p in files if p.suffix == ".jsonl"] == []
    for summary in files:
        assert json.loads(summary.read_text())["interrupted"] is True


def test_summary_counts_retries(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Through the CLI's own stack (real waits, so few and short faults)."""
    out = tmp_path / "labels.jsonl"
    with FaultServer(rate=0.1, kinds=("500", "drop"), max_streak=1, retry_after="0") as server:
        args = ["label", "sample:cities", "--task", "cities", "--limit", "8", "--quiet"]
        args += ["--out", str(out), "--base-url", server.base_url, "--no-cache"]
        args += ["--strategy", "bounded", "--context-size", "4", "--steps", "8"]
        code = main(args)
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "labels.jsonl.summary.json").read_text())["summary"]
    # retries count scores: a failed request that carried n batched prompts is n retries
    assert summary["retries"] == sum(server.failed_prompts.values()) > 0
