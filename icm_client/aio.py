"""Concurrency helpers shared by the backends, the client, the scorer and the search."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

import anyio

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


async def gather(calls: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
    """Run ``calls`` concurrently; results in order. The first error cancels the others and
    is raised as itself (not wrapped in an ``ExceptionGroup``), so that callers and the
    client's retry policy see a plain ``BackendError``."""
    if len(calls) == 1:
        return [await calls[0]()]
    out: list[T | None] = [None] * len(calls)
    errors: list[Exception] = []

    async def one(i: int) -> None:
        try:
            out[i] = await calls[i]()
        except Exception as exc:  # not BaseException: cancellation must propagate
            errors.append(exc)
            tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        for i in range(len(calls)):
            tg.start_soon(one, i)
    if errors:
        raise errors[0]
    return out  # type: ignore[return-value]  # every slot was filled


class _Flight(Generic[T]):
    """One call under way. The event is made by the first caller to wait: most calls have no
    twin in flight, and the hot path (the client's scores) then makes none."""

    __slots__ = ("done", "error", "finished", "value")

    def __init__(self) -> None:
        self.done: anyio.Event | None = None
        self.finished = False  # with a value
        self.value: T | None = None
        self.error: Exception | None = None


class SingleFlight(Generic[K, T]):
    """Concurrent calls for one key share one outcome: the first caller runs its ``fn``,
    the others wait for it instead of running theirs (a request paid once, not N times).

    It remembers nothing: a key leaves the table when its call ends, however it ends, so
    the table holds only the keys in flight. Memory of finished answers is the caller's
    (a cache, a bounded dict). A waiter whose leader was cancelled runs its own ``fn``.
    On an error, waiters raise the same error (``share_errors=True``) or run their own
    ``fn`` (``False``: the next one tries, as a lock around the call would have it).
    """

    def __init__(self, *, share_errors: bool = True) -> None:
        self.share_errors = share_errors
        self._flights: dict[K, _Flight[T]] = {}

    def __len__(self) -> int:
        """Keys in flight now."""
        return len(self._flights)

    async def run(self, key: K, fn: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """(the outcome of the call for ``key``, whether another caller's call gave it)."""
        while (flight := self._flights.get(key)) is not None:
            if flight.done is None:
                flight.done = anyio.Event()
            await flight.done.wait()
            if flight.finished:
                return flight.value, True  # type: ignore[return-value]  # set with finished
            if flight.error is not None and self.share_errors:
                raise flight.error
            # the leader was cancelled (or failed, not shared): loop, and lead
        flight = self._flights[key] = _Flight()
        try:
            flight.value = value = await fn()
            flight.finished = True
            return value, False
        except Exception as exc:
            flight.error = exc
            raise
        finally:
            del self._flights[key]
            if flight.done is not None:
                flight.done.set()
