"""Running a call under a ``Retry`` policy, with tenacity."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from ..errors import TransientBackendError
from .policies import Retry

T = TypeVar("T")


async def retrying(
    policy: Retry | None, fn: Callable[[], Awaitable[T]], on_retry: Callable[[], None]
) -> T:
    """``fn()``, retried on ``TransientBackendError`` as ``policy`` says (None: once).

    ``on_retry`` is called before each wait. A call that succeeds at once costs no retry
    machinery: tenacity's loop starts only after a failure (``after_failure``).
    """
    try:
        return await fn()
    except TransientBackendError as exc:
        if policy is None:
            raise
        return await after_failure(policy, exc, fn, on_retry)


async def after_failure(
    policy: Retry,
    first: TransientBackendError,
    fn: Callable[[], Awaitable[T]],
    on_retry: Callable[[], None],
) -> T:
    """The rest of ``retrying`` once ``fn()`` failed with ``first``: tenacity's loop, whose
    first attempt re-raises ``first`` (so the waits and counts are the same as if tenacity
    had made that attempt)."""
    failed: list[TransientBackendError] = [first]

    async def again() -> T:
        if failed:
            raise failed.pop()
        return await fn()

    jitter = wait_random_exponential(multiplier=policy.base_wait, max=policy.max_wait)

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        retry_after = getattr(error, "retry_after", None) or 0.0
        return float(min(max(retry_after, jitter(state)), policy.max_wait))

    loop = AsyncRetrying(
        sleep=policy.sleep or anyio.sleep,
        stop=stop_after_attempt(policy.max_attempts),
        wait=wait,
        retry=retry_if_exception_type(TransientBackendError)
        & retry_if_not_exception_type(policy.give_up_on),
        before_sleep=lambda state: on_retry(),
        reraise=True,
    )
    try:
        async for attempt in loop:
            with attempt:
                return await again()
    except TransientBackendError as error:
        attempts = loop.statistics.get("attempt_number", policy.max_attempts)
        setattr(error, "attempts", attempts)  # noqa: B010 (not a declared attribute)
        error.args = (f"{error} (gave up after {attempts} attempts)",)
        raise
    raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover
