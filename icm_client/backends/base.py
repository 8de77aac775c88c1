"""The one interface every backend implements, and the counters they share.

A backend answers one question: given a prompt and the task's label words, what are the
model's log-probabilities of each label word as the next token(s)? It is its ``identity``
and one async ``score`` method; its optional capabilities are declared on ``Backend``.
Retries, caching, concurrency limits and budgets belong to the ``ScoringClient`` around it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from ..errors import ConfigError

Gate = Callable[["Usage", int, int], None]
"""Called before prompts are sent, with (usage, prompts, estimated prompt tokens): raises
(``BudgetExhausted``) to refuse them. A ``ScoringClient``'s budget is one."""

Recorder = Callable[["Usage"], Awaitable[None]]
"""Awaited after prompts are counted and before they are sent: keeps the figures durably
(a run directory's spending journal)."""

CHARS_PER_TOKEN = 4.0


def estimate_tokens(text: str, chars_per_token: float = CHARS_PER_TOKEN) -> int:
    """Prompt tokens of ``text`` before a server has counted them (about 4 characters each)."""
    return math.ceil(len(text) / chars_per_token)


def prompt_tokens_estimate(prompt: object) -> int:
    """Estimated tokens of one prompt as sent: text, or a list of token ids."""
    if isinstance(prompt, str):
        return estimate_tokens(prompt)
    if isinstance(prompt, list):
        return len(prompt)
    return 0


@dataclass(frozen=True, slots=True)
class ScoreRequest:
    """Score ``labels`` as continuations of ``prompt``.

    ``prompt`` never ends in whitespace; each label word carries its own leading space.
    """

    prompt: str
    labels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """Unnormalised log-probabilities of each label word, in request order.

    A label that the server did not return (absent from the top-k) is not probability zero:
    its entry is an upper bound (see ``missing_label_bound``) and ``bounded`` marks it.
    """

    logprobs: tuple[float, ...]
    bounded: tuple[bool, ...]
    prompt_tokens: int = 0
    cached_tokens: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "logprobs": list(self.logprobs),
            "bounded": list(self.bounded),
            "prompt_tokens": self.prompt_tokens,
            "cached_tokens": self.cached_tokens,
        }

    @classmethod
    def from_json(cls, data: object) -> ScoreResult:
        """Rebuild from ``to_json`` output; raises ``ValueError`` on anything malformed."""
        if not isinstance(data, dict):
            raise ValueError("score result is not an object")
        lp, bd = data.get("logprobs"), data.get("bounded")
        if not isinstance(lp, list) or not isinstance(bd, list) or len(lp) != len(bd):
            raise ValueError("score result has malformed logprobs/bounded")
        if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in lp):
            raise ValueError("score result logprobs are not numbers")
        if not all(isinstance(x, bool) for x in bd):
            raise ValueError("score result bounded flags are not booleans")
        pt, ct = data.get("prompt_tokens", 0), data.get("cached_tokens", 0)
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in (pt, ct)):
            raise ValueError("score result token counts are not integers")
        return cls(tuple(float(x) for x in lp), tuple(bd), pt, ct)


MAX_COUNT = 10**15
"""Far above any real run (a billion calls of a million tokens): a larger count read from a
file is a damaged or planted one."""

Count = Annotated[int, Field(strict=True, ge=0, le=MAX_COUNT)]


class Spent(BaseModel):
    """What scoring has cost, as one frozen value: the figures a run's summary reports, its
    ledger and journal keep, and its budget is spent against. The one list of them: the
    others take theirs from here (``Usage.spent``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    calls: Count = 0  # prompt requests sent to a model server: every attempt, probes included
    prompt_tokens: Count = 0  # prompt tokens of the answered calls, as the server counted them
    cached_tokens: Count = 0  # of which the server's prefix cache served this many
    cache_hits: Count = 0  # scores answered from our disk cache, no call made
    retries: Count = 0  # transient failures that were retried

    def counts(self) -> dict[str, int]:
        """The figures by name, in declaration order."""
        return {name: getattr(self, name) for name in Spent.model_fields}


@dataclass
class Usage:
    """What a run cost. A backend that counts its own requests holds one; the
    ``ScoringClient`` around it counts cache hits and retries into the same instance.

    ``calls`` is counted before a request is sent (``sending``), so it holds every attempt
    that may have reached a server: failed and retried ones, and a probe's, as a hosted API
    bills them. ``gates`` may refuse a send (a budget), ``recorders`` keep the figures
    durably before it goes out (a run's journal): both are set by their owners, not here.
    """

    calls: int = 0  # the figures of ``Spent``, counted as they happen
    prompt_tokens: int = 0
    cached_tokens: int = 0
    cache_hits: int = 0
    retries: int = 0
    bounded_labels: int = 0  # label logprobs that are upper bounds (absent from top-k)
    extra: dict[str, int] = field(default_factory=dict)
    in_flight_tokens: int = 0  # estimated prompt tokens of calls sent and not yet answered
    gates: list[Gate] = field(default_factory=list, repr=False, compare=False)
    recorders: list[Recorder] = field(default_factory=list, repr=False, compare=False)

    @asynccontextmanager
    async def sending(self, calls: int, tokens: int) -> AsyncIterator[None]:
        """Count ``calls`` requests of about ``tokens`` prompt tokens as sent, before they
        are: each gate may refuse them (nothing is counted then), each recorder keeps the
        new figures. The estimate counts as in flight until the block ends; the caller adds
        the server's token counts inside the block, from the answers.

            async with usage.sending(1, estimate):
                answer = await post(prompt)
                usage.prompt_tokens += tokens_of(answer)
        """
        if calls:  # a request that is no call (a tokenizer's) passes as it is
            for gate in self.gates:
                gate(self, calls, tokens)
        self.calls += calls
        self.in_flight_tokens += tokens
        try:
            for recorder in self.recorders if calls else ():
                await recorder(self)
            yield
        finally:
            self.in_flight_tokens -= tokens

    def count(self, counter: str, n: int = 1) -> None:
        """Add ``n`` to a backend's own counter (``extra``: HTTP requests, probes...)."""
        self.extra[counter] = self.extra.get(counter, 0) + n

    def mark(self, flag: str) -> None:
        """Note in ``extra`` that something happened (1), however often."""
        self.extra[flag] = 1

    def spent(self, *, in_flight: bool = False) -> Spent:
        """The figures now, frozen; ``in_flight``: with the estimated prompt tokens of the
        calls sent and not answered yet (they may be billed)."""
        figures = {name: getattr(self, name) for name in Spent.model_fields}
        if in_flight:
            figures["prompt_tokens"] += self.in_flight_tokens
        return Spent(**figures)

    def as_dict(self) -> dict[str, int]:
        return {**self.spent().counts(), "bounded_labels": self.bounded_labels, **self.extra}


class Backend(ABC):
    """Scores label words after a prompt: its ``identity`` and one async ``score``.

    ``identity`` names what the scores depend on (API format, model, scoring parameters) but
    not where the server runs: replicas of one model share cached scores. The rest is
    optional, declared here with the defaults that mean "not supported", so that callers
    call them instead of asking whether they exist.
    """

    usage: Usage | None = None
    """Where the backend counts the requests it sends, each gated before it goes
    (``Usage.sending``); None: it counts nothing, and a ``ScoringClient`` around it counts
    one call per score."""

    note: str = ""
    """How it scores, where it chose (``AutoRoute``: which wire API, and why); '' if not."""

    @property
    @abstractmethod
    def identity(self) -> str: ...

    @abstractmethod
    async def score(self, request: ScoreRequest) -> ScoreResult: ...

    async def prepare(self) -> None:
        """Finish lazy set-up (e.g. discover the served model) so that ``identity`` is
        final. Nothing to do by default: ready as built."""
        return None

    async def aclose(self) -> None:
        """Release what the backend holds (connections). Nothing by default."""
        return None

    async def tokenize(self, text: str, *, add_special: bool = False) -> list[int] | None:
        """``text``'s token ids by the served model's tokenizer (BOS only if
        ``add_special``); None where there is none to ask (the default)."""
        return None

    @property
    def multi_token_labels(self) -> bool:
        """Whether a label word of several tokens is scored exactly; by default not: only
        single-token label words can be read off a next-token top-k."""
        return False

    @property
    def capacity(self) -> int | None:
        """Requests it takes in flight at once over all its endpoints (a ``Routing``), or
        None where it does not say (the default)."""
        return None

    @property
    def url(self) -> str | None:
        """Where its requests go, without credentials (``Routing`` names an endpoint by it),
        or None (the default)."""
        return None

    def counted(self) -> Usage:
        """``usage``; ``ConfigError`` where the backend counts nothing (score through a
        ``ScoringClient``, which counts for it)."""
        if self.usage is None:
            raise ConfigError(
                f"{type(self).__name__} counts no usage: score through a ScoringClient",
                field="backend",
            )
        return self.usage
