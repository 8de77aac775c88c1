"""``ScoringClient``: one backend made fit for long runs by policies given as values.

    budget = Budget(max_calls=500)
    async with ScoringClient(backend, retry=Retry(max_attempts=4), budget=budget) as client:
        result = await label(examples, task, client)

For each score, in this order: identical requests in flight wait for the first one's answer
(one request, not several); the disk cache answers a prompt it knows (no request, free of
the budget); otherwise the request takes a concurrency slot and the backend is asked; a
transient failure is retried outside the slot (a request backing off holds none), with the
server's Retry-After honoured; the answer is stored in the cache. The budget is checked
before every request that goes out (``Usage.sending``): retries, the probe of an unknown
server and the preflight request count as calls like any other.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Self

import anyio

from ..aio import SingleFlight
from ..backends.base import Backend, ScoreRequest, ScoreResult, Usage, estimate_tokens
from ..errors import ConfigError, TransientBackendError
from .cache import ScoreCache, cache_key
from .pacing import Pacer
from .policies import DEFAULT_CONCURRENCY, DEFAULT_RETRY, PREFLIGHT_RETRY, Budget, Retry
from .preflight import preflight
from .retry import after_failure, retrying

"""The pacer's estimate of a prompt's tokens (English BPE: about four characters each)."""

CacheSetting = ScoreCache | str | os.PathLike[str] | bool | None


class ScoringClient(Backend):
    """Scores through ``backend`` with a cache, retries, a concurrency limit and a budget.

    ``cache``: True (default) for the default directory (``$ICM_CACHE_DIR``, else
    ``~/.cache/icm-client``), a directory, an open ``ScoreCache`` (shared; the caller closes
    it), or None/False for none. ``retry``: a ``Retry`` policy, or None to fail at the first
    transient error. ``max_concurrency``: requests in flight at most; by default
    ``DEFAULT_CONCURRENCY``, and over a backend that has a ``capacity`` (a ``Routing``: the sum
    of its endpoints' limits) twice that: the endpoints are full and as many requests again
    wait inside the routing, where each freed slot goes to a request that prefers that
    endpoint. ``budget``: a ``Budget`` on calls and prompt tokens, or None; it is checked
    before each request is sent (a gate on ``usage``, see ``Usage.sending``), so every
    attempt counts and none is sent past the limit. ``pacer``: a ``Pacer`` (``pacing.py``)
    that each request waits on, in its slot, before it is sent (``connect`` builds one from
    a ``Pace`` and hands its ``observe`` to the transports).

    ``usage`` holds the run's figures. A backend that counts its own requests has a
    ``Usage`` as ``usage`` (calls, tokens, and its own counters in ``extra``: batching's
    prompts and HTTP requests, routing's endpoints); the client then counts cache hits and
    retries into that same object. For a backend without one, the client counts one call
    per score, with the tokens and bounded labels of its result.

    Closing the client (leaving ``async with``, or ``aclose``) closes the cache it opened
    and, unless ``close_backend=False``, the backend.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        cache: CacheSetting = True,
        retry: Retry | None = DEFAULT_RETRY,
        max_concurrency: int | None = None,
        budget: Budget | None = None,
        close_backend: bool = True,
        pacer: Pacer | None = None,
    ) -> None:
        if max_concurrency is None:
            capacity = backend.capacity
            max_concurrency = 2 * capacity if capacity is not None else DEFAULT_CONCURRENCY
        if max_concurrency < 1:
            raise ConfigError(
                f"max_concurrency must be at least 1, got {max_concurrency}",
                field="max_concurrency",
            )
        self.backend = backend
        self.retry = retry
        self.budget = budget if budget != Budget() else None
        self.pacer = pacer
        self.max_concurrency = max_concurrency
        self.close_backend = close_backend
        self._counts_calls = backend.usage is None
        self.usage: Usage = backend.usage if backend.usage is not None else Usage()
        if self.budget is not None:
            self.usage.gates.append(self.budget.admit)
        self._owns_cache = not isinstance(cache, ScoreCache)
        if isinstance(cache, ScoreCache) or cache is None or cache is False:
            self.cache = cache or None
        else:
            self.cache = ScoreCache(None if cache is True else cache)
        self._limiter = anyio.CapacityLimiter(max_concurrency)
        self._in_flight: SingleFlight[ScoreRequest, ScoreResult] = SingleFlight()
        self._prepared = False

    @property
    def identity(self) -> str:
        """The backend's identity: what its scores depend on (part of every cache key)."""
        return self.backend.identity

    @property
    def multi_token_labels(self) -> bool:
        return self.backend.multi_token_labels

    async def tokenize(self, text: str, *, add_special: bool = False) -> list[int] | None:
        """The backend's tokenizer, unmetered (a tokenizer's answer is no call)."""
        return await self.backend.tokenize(text, add_special=add_special)

    async def prepare(self, retry: Retry | None = None) -> None:
        """Let the backend finish lazy set-up (e.g. discover its served model) so that
        ``identity`` is final; once, retried under ``retry`` (default: the client's)."""
        if self._prepared:
            return
        await retrying(retry or self.retry, self.backend.prepare, self._count_retry)
        self._prepared = True

    async def score(self, request: ScoreRequest) -> ScoreResult:
        """The score of ``request``: shared with an identical request in flight, from the
        cache, or from the backend (see the module docstring)."""
        if not self._prepared:
            await self.prepare()  # identity must be final before it goes into a key
        result, shared = await self._in_flight.run(request, functools.partial(self._fetch, request))
        if shared:  # an identical request's answer (or its error, raised): no call of its own
            self.usage.cache_hits += 1
        return result

    async def _fetch(self, request: ScoreRequest) -> ScoreResult:
        key = None
        if self.cache is not None:
            key = cache_key(self.identity, request)
            result = await self.cache.get(key, request)
            if result is not None:
                self.usage.cache_hits += 1
                return result
        try:  # retrying(), inlined: the common case, an answer at once, is the hot path
            result = await self._call(request)
        except TransientBackendError as exc:
            if self.retry is None:
                raise
            call = functools.partial(self._call, request)
            result = await after_failure(self.retry, exc, call, self._count_retry)
        if key is not None and self.cache is not None:
            await self.cache.put(key, result)
        return result

    async def _call(self, request: ScoreRequest, *, gated: bool = True) -> ScoreResult:
        """The backend's answer; ``gated``: in a concurrency slot, paced. Every attempt is
        within the budget: a backend that counts its own calls is gated where it sends them;
        one that does not is counted here, one call per attempt, before it is asked."""
        if self.budget is not None:  # refused here at no cost when nothing is left
            self.budget.admit(self.usage, 1, 0)
        if not gated:
            return await self._ask(request)
        async with self._limiter:
            if self.pacer is not None:
                await self.pacer.acquire(estimate_tokens(request.prompt))
            return await self._ask(request)

    async def _ask(self, request: ScoreRequest) -> ScoreResult:
        if not self._counts_calls:
            return await self.backend.score(request)
        used = self.usage
        async with used.sending(1, estimate_tokens(request.prompt)):
            result = await self.backend.score(request)
            used.prompt_tokens += result.prompt_tokens
        used.cached_tokens += result.cached_tokens
        used.bounded_labels += sum(result.bounded)
        return result

    def _count_retry(self) -> None:
        self.usage.retries += 1

    async def cached(self, request: ScoreRequest) -> ScoreResult | None:
        """The cached score of ``request`` (counted as a hit), or None; asks no backend."""
        if self.cache is None:
            return None
        await self.prepare()
        result = await self.cache.get(cache_key(self.identity, request), request)
        if result is not None:
            self.usage.cache_hits += 1
        return result

    async def score_now(self, request: ScoreRequest, retry: Retry = PREFLIGHT_RETRY) -> ScoreResult:
        """Ask the backend for ``request`` under ``retry``, outside the concurrency limit (but
        within the budget: it reaches the server), and store the answer in the cache: for a
        check before a run, which must neither wait behind the run's requests nor skip the
        cache."""
        await self.prepare(retry)
        result = await retrying(retry, lambda: self._call(request, gated=False), self._count_retry)
        if self.cache is not None:
            await self.cache.put(cache_key(self.identity, request), result)
        return result

    async def preflight(self, probe: ScoreRequest, **options: Any) -> ScoreResult | None:
        """One quick real request before a long run: ``preflight.preflight(self, probe,
        **options)`` (``probe_name``, ``labels_of``, ``check_labels``, ``retry``)."""
        return await preflight(self, probe, **options)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the cache this client opened, then the backend (unless ``close_backend``
        is False)."""
        if self.cache is not None and self._owns_cache:
            self.cache.close()
        if self.budget is not None and self.budget.admit in self.usage.gates:
            self.usage.gates.remove(self.budget.admit)
        if self.close_backend:
            await self.backend.aclose()
