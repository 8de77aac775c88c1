"""A spending limit on a backend: calls and prompt tokens that reach a model server.

Sits *inside* the cache and the concurrency limit (see ``stack``): answers from the disk cache
cost nothing and never count, and the check happens when a request already holds a slot, so
requests in flight may finish past the limit: at most ``max_concurrency - 1`` extra calls.
"""

from __future__ import annotations

from typing import Self

from ..errors import BudgetExhausted, ConfigError
from .base import Backend, ScoreRequest, ScoreResult, Usage, prepare


class Budgeted:
    """A ``Backend`` that refuses new requests once ``inner`` has spent the budget."""

    def __init__(
        self, inner: Backend, *, max_calls: int | None = None, max_prompt_tokens: int | None = None
    ) -> None:
        for name, value in (("max_calls", max_calls), ("max_prompt_tokens", max_prompt_tokens)):
            if value is not None and value < 0:  # 0: spent (a resumed run's total budget)
                raise ConfigError(f"{name} must be at least 0, got {value}", field=name)
        self.inner = inner
        self.max_calls = max_calls
        self.max_prompt_tokens = max_prompt_tokens

    @property
    def identity(self) -> str:
        return self.inner.identity

    @property
    def usage(self) -> Usage:
        return self.inner.usage

    async def prepare(self) -> None:
        await prepare(self.inner)

    async def score(self, request: ScoreRequest) -> ScoreResult:
        used = self.inner.usage
        if self.max_calls is not None and used.calls >= self.max_calls:
            raise BudgetExhausted(f"call budget spent: {used.calls} of {self.max_calls} calls")
        if self.max_prompt_tokens is not None and used.prompt_tokens >= self.max_prompt_tokens:
            raise BudgetExhausted(
                f"token budget spent: {used.prompt_tokens} of {self.max_prompt_tokens} "
                "prompt tokens"
            )
        return await self.inner.score(request)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.inner.aclose()
