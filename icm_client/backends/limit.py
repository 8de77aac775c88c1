"""Bounding how many requests are in flight at once.

Sits *inside* ``Retrying`` (see ``stack``), so that a request backing off after a 429 does not
hold a slot while it sleeps.
"""

from __future__ import annotations

from typing import Self

import anyio

from ..errors import ConfigError
from .base import Backend, ScoreRequest, ScoreResult, Usage, prepare


class Limited:
    """A ``Backend`` that lets at most ``max_concurrency`` scores reach ``inner`` at once."""

    def __init__(self, inner: Backend, max_concurrency: int = 8) -> None:
        if max_concurrency < 1:
            raise ConfigError(
                f"max_concurrency must be at least 1, got {max_concurrency}",
                field="max_concurrency",
            )
        self.inner = inner
        self.limiter = anyio.CapacityLimiter(max_concurrency)

    @property
    def identity(self) -> str:
        return self.inner.identity

    @property
    def usage(self) -> Usage:
        return self.inner.usage

    async def prepare(self) -> None:
        await prepare(self.inner)

    async def score(self, request: ScoreRequest) -> ScoreResult:
        async with self.limiter:
            return await self.inner.score(request)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.inner.aclose()
