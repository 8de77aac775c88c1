"""The policies of a ``ScoringClient``, as values: how it retries, what it may spend, and
how many requests it lets in flight. Each default is defined here once (the concurrency's
beside the backend's settings, ``backends/config.py``); ``connect`` and the CLI read them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pydantic import BaseModel, ConfigDict, Field

from ..backends.base import Usage
from ..backends.config import DEFAULT_CONCURRENCY
from ..errors import BudgetExhausted, NoAnswerError, TransientBackendError

__all__ = ["DEFAULT_CONCURRENCY", "DEFAULT_RETRY", "PREFLIGHT_RETRY", "Budget", "Retry"]


Sleep = Callable[[float], Awaitable[None]]


class Retry(BaseModel):
    """Retry ``TransientBackendError`` (the transport decided what trying again can fix);
    permanent errors pass straight through.

    The wait before retry n is ``max(retry_after, full-jitter exponential(base_wait))``,
    capped at ``max_wait``: a server's Retry-After is honoured. After ``max_attempts``
    attempts the last error is raised again, its message extended with the attempt count
    (also in its ``attempts`` attribute). ``give_up_on``: transient errors not retried all
    the same. ``sleep`` is injectable, so that tests record the waits instead of sleeping.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    max_attempts: int = Field(8, ge=1)
    base_wait: float = Field(0.5, ge=0)
    max_wait: float = Field(60.0, ge=0)
    give_up_on: tuple[type[TransientBackendError], ...] = ()
    sleep: Sleep | None = None


DEFAULT_RETRY = Retry()
"""A run's: patient (a busy server recovers), up to 8 attempts and waits of a minute."""

PREFLIGHT_RETRY = Retry(max_attempts=3, base_wait=0.25, max_wait=2.0, give_up_on=(NoAnswerError,))
"""The preflight's: few and quick (a wrong URL should fail in seconds); a server that does
not answer at all is said at once, not after three timeouts."""


class Budget(BaseModel):
    """A spending limit on what reaches a model server: calls and prompt tokens.

    Every call counts, as it is sent: failed and retried attempts, the probe of an unknown
    server and the preflight request included (a hosted API bills them). Answers from the
    score cache cost nothing. A ``ScoringClient`` checks its budget before each request goes
    out (``admit``), so the limit is never passed: a request that would pass it is not sent
    and ``BudgetExhausted`` stops the run instead. Tokens are the server's counts of the
    answered calls plus an estimate (4 characters a token) of those in flight and of the
    prompt to send; a single prompt larger than what is left is never sent. 0 is a spent
    budget (a resumed run's total).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_calls: int | None = Field(None, ge=0)
    max_prompt_tokens: int | None = Field(None, ge=0)

    def admit(self, used: Usage, calls: int = 1, tokens: int = 0) -> None:
        """Raise ``BudgetExhausted`` unless ``calls`` more calls of about ``tokens`` prompt
        tokens fit in what ``used`` has left."""
        if self.max_calls is not None and used.calls + calls > self.max_calls:
            raise BudgetExhausted(f"call budget spent: {used.calls} of {self.max_calls} calls")
        if self.max_prompt_tokens is None:
            return
        committed = used.prompt_tokens + used.in_flight_tokens
        left = self.max_prompt_tokens - committed
        if tokens > left or left <= 0:
            what = (
                f"the next prompt (about {tokens:,} tokens) is larger than what is left, {left:,}"
                if left > 0
                else "spent"
            )
            raise BudgetExhausted(
                f"token budget {what}: {committed:,} of {self.max_prompt_tokens:,} prompt "
                "tokens used (the server's counts, and estimates of the calls in flight); the "
                "next prompt was not sent"
            )
