"""The client's retry policy and concurrency limit around a scripted in-process backend."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from pydantic import ValidationError

from icm_client.backends import Backend, ScoreRequest, ScoreResult, Usage
from icm_client.client import Budget, Retry, ScoringClient
from icm_client.errors import (
    BudgetExhausted,
    ConfigError,
    PermanentBackendError,
    TransientBackendError,
)

REQ = ScoreRequest("Q: 2+2=4. Is it true? A:", (" Yes", " No"))
RESULT = ScoreResult((-0.1, -2.5), (False, False))


class Scripted(Backend):
    """Raises the scripted errors in order, then answers RESULT."""

    identity = "scripted:v1"

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.usage: Usage = Usage()
        self.attempts = 0
        self.closed = False

    async def score(self, request: ScoreRequest) -> ScoreResult:
        self.attempts += 1
        if self.errors:
            raise self.errors.pop(0)
        self.usage.calls += 1
        return RESULT

    async def aclose(self) -> None:
        self.closed = True


class Recorder:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def busy(retry_after: float | None = None) -> TransientBackendError:
    return TransientBackendError(
        "busy", endpoint="http://h/v1/completions", status=503, retry_after=retry_after
    )


@pytest.mark.anyio
async def test_transient_retried_until_success() -> None:
    inner, sleep = Scripted(busy(), busy()), Recorder()
    backend = ScoringClient(
        inner, cache=False, retry=Retry(base_wait=0.5, max_wait=60, sleep=sleep)
    )
    assert await backend.score(REQ) == RESULT
    assert inner.attempts == 3 and backend.usage is inner.usage
    assert backend.usage.retries == 2 and backend.usage.calls == 1
    assert len(sleep.waits) == 2 and all(0 <= w <= 60 for w in sleep.waits)
    assert backend.identity == "scripted:v1"


@pytest.mark.anyio
async def test_retry_after_is_a_floor_and_max_wait_a_cap() -> None:
    inner, sleep = Scripted(busy(retry_after=5.0), busy(retry_after=500.0)), Recorder()
    await ScoringClient(
        inner, cache=False, retry=Retry(base_wait=0.001, max_wait=60, sleep=sleep)
    ).score(REQ)
    assert sleep.waits == [5.0, 60.0]


@pytest.mark.anyio
async def test_exhaustion_reraises_last_error_with_attempt_count() -> None:
    inner, sleep = Scripted(*[busy() for _ in range(10)]), Recorder()
    with pytest.raises(TransientBackendError, match=r"gave up after 4 attempts") as info:
        await ScoringClient(inner, cache=False, retry=Retry(max_attempts=4, sleep=sleep)).score(REQ)
    assert inner.attempts == 4 and len(sleep.waits) == 3
    assert info.value.status == 503 and info.value.endpoint == "http://h/v1/completions"
    assert getattr(info.value, "attempts", None) == 4


@pytest.mark.anyio
async def test_permanent_error_not_retried() -> None:
    inner, sleep = Scripted(PermanentBackendError("bad key", status=401)), Recorder()
    backend = ScoringClient(inner, cache=False, retry=Retry(sleep=sleep))
    with pytest.raises(PermanentBackendError, match="bad key"):
        await backend.score(REQ)
    assert inner.attempts == 1 and sleep.waits == [] and backend.usage.retries == 0


@pytest.mark.anyio
async def test_real_sleep_with_tiny_waits() -> None:
    inner = Scripted(busy(), busy())
    with anyio.fail_after(2):
        retry = Retry(base_wait=0.001, max_wait=0.01)
        assert await ScoringClient(inner, cache=False, retry=retry).score(REQ) == RESULT


@pytest.mark.anyio
async def test_without_a_policy_the_first_transient_error_is_raised_as_is() -> None:
    inner = Scripted(busy())
    with pytest.raises(TransientBackendError) as info:
        await ScoringClient(inner, cache=False, retry=None).score(REQ)
    assert str(info.value).endswith("busy") and inner.attempts == 1


@pytest.mark.anyio
async def test_closing_the_client_closes_the_backend_unless_told_otherwise() -> None:
    inner = Scripted()
    async with ScoringClient(inner, cache=False):
        pass
    assert inner.closed
    kept = Scripted()
    await ScoringClient(kept, cache=False, close_backend=False).aclose()
    assert not kept.closed


@pytest.mark.anyio
async def test_a_request_backing_off_holds_no_slot() -> None:
    """One slot: while the first request waits to retry, the second one is answered."""
    inner = Scripted(busy())
    order: list[str] = []
    second_done = anyio.Event()

    async def sleep(seconds: float) -> None:
        order.append("waiting")
        await second_done.wait()

    client = ScoringClient(inner, cache=False, max_concurrency=1, retry=Retry(sleep=sleep))
    other = ScoreRequest(REQ.prompt + " (2)", REQ.labels)

    async def second() -> None:
        await client.score(other)
        order.append("second answered")
        second_done.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.score, REQ)
            await anyio.sleep(0)
            tg.start_soon(second)
    assert order == ["waiting", "second answered"] and inner.usage.retries == 1


@pytest.mark.anyio
async def test_limited_bounds_concurrency() -> None:
    class Slow(Scripted):
        def __init__(self) -> None:
            super().__init__()
            self.running = self.peak = 0

        async def score(self, request: ScoreRequest) -> ScoreResult:
            self.running += 1
            self.peak = max(self.peak, self.running)
            await anyio.sleep(0.01)
            self.running -= 1
            return RESULT

    inner = Slow()
    backend = ScoringClient(inner, cache=False, max_concurrency=3)
    assert backend.identity == inner.identity
    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(backend.score, ScoreRequest(f"{REQ.prompt} {i}", REQ.labels))
    assert inner.peak == 3


@pytest.mark.parametrize(
    "make",
    [
        lambda: Retry(max_attempts=0),
        lambda: Retry(base_wait=-1),
        lambda: Retry(max_attemps=3),  # type: ignore[call-arg]  # a typo is an error, not a silent default
        lambda: Budget(max_calls=-1),
        lambda: Budget(max_prompt_tokens=-5),
    ],
)
def test_policies_refuse_bad_values(make: Callable[[], object]) -> None:
    with pytest.raises(ValidationError):
        make()


def test_policies_are_frozen_values_and_the_limit_is_checked() -> None:
    policy = Retry(max_attempts=3)
    with pytest.raises(ValidationError):
        policy.max_attempts = 5  # type: ignore[misc]
    assert Retry(max_attempts=3) == policy
    with pytest.raises(ConfigError, match="max_concurrency must be at least 1"):
        ScoringClient(Scripted(), cache=False, max_concurrency=0)


@pytest.mark.anyio
async def test_the_budget_is_checked_before_each_call_and_cache_hits_are_free(
    tmp_path: Path,
) -> None:
    inner = Scripted()
    async with ScoringClient(inner, cache=tmp_path, budget=Budget(max_calls=2)) as client:
        for i in range(2):
            await client.score(ScoreRequest(f"{REQ.prompt} {i}", REQ.labels))
        with pytest.raises(BudgetExhausted, match="call budget spent: 2 of 2 calls"):
            await client.score(ScoreRequest(f"{REQ.prompt} new", REQ.labels))
        assert await client.score(ScoreRequest(f"{REQ.prompt} 0", REQ.labels)) == RESULT
    assert inner.attempts == 2 and client.usage.cache_hits == 1
