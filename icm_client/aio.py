"""Concurrency helpers shared by the backends, the scorer and the search."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import anyio

T = TypeVar("T")


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
