"""Several replicas of one model behind one ``Backend``: affinity, spill-over, failover.

ICM's prompts share long prefixes of demonstrations, and a server's prefix cache only helps
when the requests that share a prefix reach the *same* server. So requests are not spread at
random: each gets an affinity key (by default its first ``affinity_chars`` characters), and
rendezvous hashing of that key ranks the endpoints, the same way in every process and run.
The first healthy endpoint in that ranking takes the request, unless it already has
``max_concurrency`` requests in flight; then the request spills over to the least-loaded
healthy endpoint, because an idle replica is worth more than a warm cache with a queue.
When every endpoint is full, requests wait here, and a freed slot is handed to the
longest-waiting request that prefers that endpoint (else to the longest-waiting one that may
use it): with a queue of requests, affinity holds under saturation too
(``benchmarks/replicas.py``: 96 % of requests on their preferred replica at 8 replicas,
against 19 % when each freed slot went to the next request in line), at the same throughput.

Why the first characters: ICM prompts are demonstrations in dataset order followed by the
target, so two prompts that agree on their first few hundred characters agree on their first
demonstrations, which is the part of the prefix the cache can reuse. A change of label late
in a prompt keeps the key, and the re-scored prompt goes where its old version is cached.
With the exact strategy nearly every prompt has the same key: one replica is preferred and
the others take the overflow. Pass ``affinity=`` to route by something else.

Health: a transient failure (connection refused, timeout, 5xx, 429) marks that endpoint down
for a cool-down (doubling with each consecutive failure, at least the server's Retry-After)
and the request fails over to the next endpoint in its ranking. After the cool-down the
endpoint takes traffic again; one success resets it. When every endpoint is down or has
failed this request, ``TransientBackendError`` says so with ``retry_after`` set to the end of
the earliest cool-down, and the ``ScoringClient``'s retry policy waits for it. Permanent errors
(bad request, bad key) pass straight through: another replica of the same model would answer
the same.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import anyio
from pydantic import BaseModel, ConfigDict

from ..errors import ConfigError, ICMError, TransientBackendError
from .affinity import DEFAULT_AFFINITY_CHARS
from .base import Backend, ScoreRequest, ScoreResult, Usage
from .openai import OpenAICompletions

AffinityKey = Callable[[ScoreRequest], str]

_MAX_BACKOFF_DOUBLINGS = 3  # a flapping endpoint waits at most 8x the cool-down


def prefix_affinity(chars: int = DEFAULT_AFFINITY_CHARS) -> AffinityKey:
    """The affinity key of the default: the prompt's first ``chars`` characters."""
    if chars < 1:
        raise ConfigError(f"affinity_chars must be at least 1, got {chars}", field="affinity_chars")

    def key(request: ScoreRequest) -> str:
        return request.prompt[:chars]

    return key


class EndpointStats(BaseModel):
    """One endpoint's counters, for the run summary."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    calls: int  # scores this endpoint answered
    failures: int  # transient failures (each one started a cool-down)
    spills: int  # scores it took although another endpoint was preferred (saturation)
    failovers: int  # scores it took after another endpoint failed them
    in_flight: int
    healthy: bool


@dataclass(eq=False)
class _Endpoint:
    backend: Backend
    name: str
    index: int
    capacity: int
    in_flight: int = 0
    calls: int = 0
    failures: int = 0
    spills: int = 0
    failovers: int = 0
    consecutive_failures: int = 0
    down_until: float = 0.0
    ready: bool = False
    last_error: str = ""


@dataclass(eq=False)
class _Waiter:
    """A request waiting for a slot: it may use the endpoints in ``usable``."""

    seq: int
    usable: frozenset[_Endpoint]
    event: anyio.Event = field(default_factory=anyio.Event)
    granted: _Endpoint | None = None


def _endpoint_name(backend: Backend, index: int) -> str:
    return backend.url or f"endpoint-{index}"  # no credentials in a backend's url


class Routing(Backend):
    """A ``Backend`` over replicas of one model; see the module docstring for the policy.

    ``backends``: the replicas, e.g. ``OpenAICompletions(url, model, usage=shared)`` each.
    They must share one ``Usage`` (pass ``usage=`` to each) and, once prepared, report the
    same ``identity``: the cache is shared between replicas, so they must be one model.
    ``from_urls`` builds them for you.

    ``max_concurrency``: requests in flight per endpoint (an int for all, or one per
    endpoint); a saturated preferred endpoint spills requests over to the others.
    ``ScoringClient(routing)`` lets twice their sum (``capacity``) in by default, so that
    requests wait here, where a freed slot can go to one that prefers it; a client's
    ``max_concurrency`` below ``capacity`` caps all the endpoints together and leaves
    replicas idle.
    ``cooldown``: seconds an endpoint rests after a transient failure.
    ``affinity``: the routing key of a request (default ``prefix_affinity(affinity_chars)``).
    ``names``: endpoint names for stats and hashing (default: each backend's URL); changing
    a name moves that endpoint's keys, so keep them stable across runs.
    ``clock`` is the test seam for cool-downs.

    Counters per endpoint: ``stats()``; they are also mirrored into the shared
    ``usage.extra`` as ``endpoint{i}_calls`` / ``endpoint{i}_failures`` (``i`` in the order
    given) and ``routing_spills`` / ``routing_failovers``, so the summary sees them.
    """

    def __init__(
        self,
        backends: Sequence[Backend],
        *,
        max_concurrency: int | Sequence[int] = 8,
        cooldown: float = 10.0,
        affinity: AffinityKey | None = None,
        affinity_chars: int = DEFAULT_AFFINITY_CHARS,
        names: Sequence[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not backends:
            raise ConfigError("routing needs at least one endpoint", field="base_url")
        capacities = (
            [max_concurrency] * len(backends)
            if isinstance(max_concurrency, int)
            else list(max_concurrency)
        )
        if len(capacities) != len(backends) or any(c < 1 for c in capacities):
            raise ConfigError(
                f"max_concurrency must be >= 1 per endpoint, got {max_concurrency!r}",
                field="max_concurrency",
            )
        if cooldown < 0:
            raise ConfigError(f"cooldown must be >= 0, got {cooldown}", field="cooldown")
        labels = (
            list(names)
            if names is not None
            else [_endpoint_name(b, i) for i, b in enumerate(backends)]
        )
        if len(labels) != len(backends) or len(set(labels)) != len(labels):
            raise ConfigError(f"endpoint names must be unique, got {labels}", field="base_url")
        usage = backends[0].usage
        if usage is None or any(b.usage is not usage for b in backends):
            raise ConfigError(
                "the routed backends must share one Usage (pass usage= to each)", field="usage"
            )
        self.usage: Usage = usage
        self._capacity = sum(capacities)
        self._endpoints = [
            _Endpoint(b, n, i, c)
            for i, (b, n, c) in enumerate(zip(backends, labels, capacities, strict=True))
        ]
        self._cooldown = cooldown
        self._affinity = affinity or prefix_affinity(affinity_chars)
        self._clock = clock
        self._identity: str | None = None
        self._queues: dict[_Endpoint, deque[_Waiter]] = {}  # waiting, by preferred endpoint
        self._order = itertools.count()

    @classmethod
    def from_urls(
        cls,
        base_urls: Sequence[str],
        model: str | None = None,
        *,
        max_concurrency: int | Sequence[int] = 8,
        cooldown: float = 10.0,
        affinity: AffinityKey | None = None,
        affinity_chars: int = DEFAULT_AFFINITY_CHARS,
        **options: Any,
    ) -> Routing:
        """One ``OpenAICompletions`` per URL, sharing a ``Usage``; ``options`` go to each
        (``api_key_env``, ``top_k``, ``client``...)."""
        usage = Usage()
        backends = [OpenAICompletions(url, model, usage=usage, **options) for url in base_urls]
        return cls(
            backends,
            max_concurrency=max_concurrency,
            cooldown=cooldown,
            affinity=affinity,
            affinity_chars=affinity_chars,
        )

    # -- Backend ----------------------------------------------------------------------

    @property
    def identity(self) -> str:
        if self._identity is not None:
            return self._identity
        return self._endpoints[0].backend.identity

    @property
    def capacity(self) -> int:
        """Requests in flight over all endpoints."""
        return self._capacity

    def __repr__(self) -> str:
        names = ", ".join(ep.name for ep in self._endpoints)
        return f"Routing([{names}])"

    async def prepare(self) -> None:
        """Prepare every endpoint (model discovery), so that ``identity`` is final and the
        replicas are checked to be one model. Endpoints that are down now are marked so and
        checked when they come back; if all are down, the error is transient."""
        down: list[TransientBackendError] = []
        fatal: list[ICMError] = []

        async def one(ep: _Endpoint) -> None:
            try:
                await self._ready(ep)
            except TransientBackendError as exc:
                self._failed(ep, exc)
                down.append(exc)
            except ICMError as exc:  # raised below, plainly: a task group would wrap it
                fatal.append(exc)

        async with anyio.create_task_group() as tg:
            for ep in self._endpoints:
                tg.start_soon(one, ep)
        if fatal:
            raise fatal[0]
        if len(down) == len(self._endpoints):
            raise self._all_down(down[-1])

    async def score(self, request: ScoreRequest) -> ScoreResult:
        ranking = self.ranking(request)
        tried: set[_Endpoint] = set()
        last: TransientBackendError | None = None
        while True:
            ep = await self._acquire(ranking, tried)
            if ep is None:
                raise self._all_down(last)
            try:
                await self._ready(ep)
                result = await ep.backend.score(request)
            except TransientBackendError as exc:
                self._failed(ep, exc)
                tried.add(ep)
                last = exc
                continue
            finally:
                self._release(ep)
            ep.calls += 1
            ep.consecutive_failures = 0
            if tried:
                ep.failovers += 1
                self._count("routing_failovers")
            self._count(f"endpoint{ep.index}_calls")
            return result

    @property
    def multi_token_labels(self) -> bool:
        """Whether every replica scores label words of several tokens exactly."""
        return all(ep.backend.multi_token_labels for ep in self._endpoints)

    async def tokenize(self, text: str, *, add_special: bool = False) -> list[int] | None:
        """``text``'s token ids from a healthy replica (replicas of one model tokenize
        alike), failing over like ``score``; None when the replicas have no tokenizer."""
        now, last = self._clock(), None
        for ep in sorted(self._endpoints, key=lambda ep: ep.down_until > now):
            try:
                tokens = await ep.backend.tokenize(text, add_special=add_special)
            except TransientBackendError as exc:
                self._failed(ep, exc)
                last = exc
            else:
                return tokens  # None: the replicas have no tokenizer
        raise self._all_down(last)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        errors: list[BaseException] = []
        for ep in self._endpoints:
            try:
                await ep.backend.aclose()
            except Exception as exc:  # close the others all the same
                errors.append(exc)
        if errors:
            raise errors[0]

    # -- inspection -------------------------------------------------------------------

    def ranking(self, request: ScoreRequest) -> list[str]:
        """Endpoint names in this request's order of preference (rendezvous hashing)."""
        return [ep.name for ep in self._ranked(self._affinity(request))]

    def stats(self) -> list[EndpointStats]:
        now = self._clock()
        return [
            EndpointStats(
                name=ep.name,
                calls=ep.calls,
                failures=ep.failures,
                spills=ep.spills,
                failovers=ep.failovers,
                in_flight=ep.in_flight,
                healthy=ep.down_until <= now,
            )
            for ep in self._endpoints
        ]

    # -- internals --------------------------------------------------------------------

    def _ranked(self, key: str) -> list[_Endpoint]:
        def weight(ep: _Endpoint) -> int:
            data = f"{ep.name}\x00{key}".encode()
            return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")

        return sorted(self._endpoints, key=weight, reverse=True)

    async def _acquire(self, ranking: list[str], tried: set[_Endpoint]) -> _Endpoint | None:
        """Take a slot on the best endpoint for this request, waiting while all candidates
        are saturated; None when no healthy endpoint is left to try.

        A waiting request queues on its preferred endpoint. A freed slot is handed over
        (never released and raced for): to the longest-waiting request that prefers that
        endpoint, else to the longest-waiting one that may use it (a spill, so that no slot
        stays idle while requests wait). Without the hand-over, whichever request ran first
        took each freed slot, and under saturation requests reached their preferred replica
        little more often than at random (1/R); with it, one wake-up per freed slot.
        """
        by_name = {ep.name: ep for ep in self._endpoints}
        order = [by_name[n] for n in ranking]
        waiter: _Waiter | None = None
        try:
            while True:
                now = self._clock()
                healthy = [ep for ep in order if ep not in tried and ep.down_until <= now]
                if not healthy:
                    return None
                chosen = healthy[0]
                if chosen.in_flight >= chosen.capacity:
                    free = [ep for ep in healthy if ep.in_flight < ep.capacity]
                    if not free:
                        waiter = _Waiter(next(self._order), frozenset(healthy))
                        self._queues.setdefault(chosen, deque()).append(waiter)
                        await waiter.event.wait()
                        if waiter.granted is not None:  # handed over, already counted
                            ep, waiter = waiter.granted, None
                            return ep
                        waiter = None  # its endpoint went down: choose again
                        continue
                    chosen = min(free, key=lambda ep: ep.in_flight / ep.capacity)  # stable
                    self._spilled(chosen)
                chosen.in_flight += 1
                return chosen
        finally:
            if waiter is not None:  # cancelled while waiting
                if waiter.granted is not None:
                    self._release(waiter.granted)  # pass the slot on
                else:
                    for queue in self._queues.values():
                        if waiter in queue:
                            queue.remove(waiter)

    def _release(self, ep: _Endpoint) -> None:
        if ep.down_until > self._clock():  # its waiters choose again, elsewhere
            ep.in_flight -= 1
            for waiter in self._queues.pop(ep, ()):
                waiter.event.set()
            return
        queue = self._queues.get(ep)
        if queue:
            waiter = queue.popleft()
        else:  # nobody prefers it: the longest-waiting request that may use it
            heads = [q[0] for q in self._queues.values() if q and ep in q[0].usable]
            if not heads:
                ep.in_flight -= 1
                return
            waiter = min(heads, key=lambda w: w.seq)
            next(q for q in self._queues.values() if q and q[0] is waiter).popleft()
            self._spilled(ep)
        waiter.granted = ep  # the slot passes on: in_flight stays as it is
        waiter.event.set()

    def _spilled(self, ep: _Endpoint) -> None:
        ep.spills += 1
        self._count("routing_spills")

    async def _ready(self, ep: _Endpoint) -> None:
        if ep.ready:
            return
        await ep.backend.prepare()
        identity = ep.backend.identity
        if self._identity is None:
            self._identity = identity
        elif identity != self._identity:
            first = next(e for e in self._endpoints if e.ready)
            raise ConfigError(
                f"the endpoints are not replicas of one model: {first.name} is "
                f"{self._identity!r}, {ep.name} is {identity!r}",
                field="base_url",
            )
        ep.ready = True

    def _failed(self, ep: _Endpoint, exc: TransientBackendError) -> None:
        ep.failures += 1
        ep.consecutive_failures += 1
        doublings = min(ep.consecutive_failures - 1, _MAX_BACKOFF_DOUBLINGS)
        rest = max(self._cooldown * 2**doublings, exc.retry_after or 0.0)
        ep.down_until = self._clock() + rest
        ep.last_error = str(exc)
        self._count(f"endpoint{ep.index}_failures")

    def _all_down(self, last: TransientBackendError | None) -> TransientBackendError:
        now = self._clock()
        wait = min(ep.down_until for ep in self._endpoints) - now
        details = "; ".join(
            f"{ep.name}: {ep.last_error or 'failed'}" for ep in self._endpoints if ep.last_error
        )
        error = TransientBackendError(
            f"all {len(self._endpoints)} endpoints are unavailable"
            + (f" ({details})" if details else ""),
            endpoint=", ".join(ep.name for ep in self._endpoints),
            retry_after=max(wait, 0.0),
        )
        error.__cause__ = last
        return error

    def _count(self, key: str) -> None:
        self.usage.count(key)
