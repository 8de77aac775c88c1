"""Retrying transient backend failures, with backoff that honours the server's Retry-After.

Only ``TransientBackendError`` is retried: the transport already decided, per status code and
exception, what trying again can fix. Permanent errors (bad key, unknown model, no logprobs)
pass straight through, because retrying them only delays the message the user needs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Self, TypeVar

import anyio
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from ..errors import ConfigError, TransientBackendError
from .base import Backend, ScoreRequest, ScoreResult, Usage, prepare

T = TypeVar("T")


class Retrying:
    """A ``Backend`` that retries ``inner`` on ``TransientBackendError``.

    The wait before retry n is ``max(retry_after, full-jitter exponential(base_wait))``, capped
    at ``max_wait``. After ``max_attempts`` attempts the last error is raised again, its
    message extended with the attempt count (also in its ``attempts`` attribute). ``sleep`` is
    injectable so that tests can record the waits instead of sleeping them.
    """

    def __init__(
        self,
        inner: Backend,
        *,
        max_attempts: int = 8,
        base_wait: float = 0.5,
        max_wait: float = 60.0,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        never: tuple[type[TransientBackendError], ...] = (),
    ) -> None:
        if max_attempts < 1:
            raise ConfigError(f"max_attempts must be at least 1, got {max_attempts}")
        self.inner = inner
        self.max_attempts = max_attempts
        self.max_wait = max_wait
        self._jitter = wait_random_exponential(multiplier=base_wait, max=max_wait)
        self._sleep: Callable[[float], Awaitable[None]] = sleep or anyio.sleep
        self._never = never  # transient errors this caller does not retry

    @property
    def identity(self) -> str:
        return self.inner.identity

    @property
    def usage(self) -> Usage:
        return self.inner.usage

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        retry_after = getattr(exc, "retry_after", None) or 0.0
        return float(min(max(retry_after, self._jitter(state)), self.max_wait))

    def _count_retry(self, state: RetryCallState) -> None:
        self.usage.retries += 1

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """``fn()``; on a transient failure, tenacity's loop, whose first attempt re-raises
        that failure (same waits and counts), so that a call that succeeds at once costs no
        retry machinery (it was a third of the client's CPU per prompt)."""
        try:
            return await fn()
        except TransientBackendError as exc:
            failed: list[TransientBackendError] = [exc]

        async def again() -> T:
            if failed:
                raise failed.pop()
            return await fn()

        return await self._retry(again)

    async def _retry(self, fn: Callable[[], Awaitable[T]]) -> T:
        retrying = AsyncRetrying(
            sleep=self._sleep,
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type(TransientBackendError)
            & retry_if_not_exception_type(self._never),
            before_sleep=self._count_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await fn()
        except TransientBackendError as exc:
            attempts = retrying.statistics.get("attempt_number", self.max_attempts)
            setattr(exc, "attempts", attempts)  # noqa: B010 (not a declared attribute)
            exc.args = (f"{exc} (gave up after {attempts} attempts)",)
            raise
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    async def prepare(self) -> None:
        await self._call(lambda: prepare(self.inner))

    async def score(self, request: ScoreRequest) -> ScoreResult:
        return await self._call(lambda: self.inner.score(request))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.inner.aclose()
