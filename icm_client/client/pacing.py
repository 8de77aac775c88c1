"""Pacing: keeping a run under a shared API's rate limits before it meets them, not after.

Hosted APIs limit requests and tokens per minute and say where a client stands in every
answer's headers: ``x-ratelimit-remaining-requests`` / ``-tokens`` and
``x-ratelimit-reset-requests`` / ``-tokens`` (OpenAI, Fireworks; durations such as ``1s``,
``6m0s``, ``20ms``), or ``x-ratelimit-remaining`` / ``x-ratelimit-reset`` (seconds; Together).
ICM sends bursts; retrying after a 429 works, but on Together a burst at or below the rate
draws 503s too, and every refused request is time lost. ``Pace`` is the policy (a value);
``Pacer`` is its state, shared by the ``ScoringClient`` (``acquire`` before each request)
and the backends' transports (``observe`` on each answer).

What it does, for each request:

* ``max_rpm`` / ``max_tpm`` (hosts that send no headers): a sliding window of the last
  ``window`` seconds holds at most that many requests / estimated prompt tokens.
* headers: the server's remaining count, less the requests sent since that were not yet
  answered (they may not have been counted), is spent request by request; at 0 the request
  waits until the announced reset, and after it, sends one request at a time until an
  answer says how much is left again.

Waits are bounded: a reset is taken as at most ``max_wait`` seconds away (one announced far
in the future, or a garbled one, is asked again then, by one request).
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping

import anyio
from pydantic import BaseModel, ConfigDict, Field

Sleep = Callable[[float], Awaitable[None]]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_EPOCH = 1e9  # a reset past this is a Unix time, not seconds from now


class Pace(BaseModel):
    """How fast a run may go: ``max_rpm`` requests and ``max_tpm`` prompt tokens per
    ``window`` seconds (None: no limit of our own), and whether the server's
    ``x-ratelimit-*`` headers pace it too (``from_headers``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_rpm: int | None = Field(
        None,
        ge=1,
        description="requests per minute at most (for hosts that send no x-ratelimit-* "
        "headers; hosted APIs known by name are also paced by their headers)",
    )
    max_tpm: int | None = Field(
        None, ge=1, description="prompt tokens per minute at most (estimated)"
    )
    from_headers: bool = True
    window: float = Field(60.0, gt=0)
    max_wait: float = Field(60.0, gt=0)


def parse_reset(value: str, now_unix: float | None = None) -> float | None:
    """Seconds until a reset, from ``1s``/``6m0s``/``20ms``/``1h2m3.5s``, plain seconds, or
    a Unix time; None when it cannot be read."""
    text = value.strip().lower()
    try:
        seconds = float(text)
    except ValueError:
        parts = _DURATION.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            return None
        scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
        seconds = sum(float(n) * scale[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    if seconds > _EPOCH:
        seconds -= now_unix if now_unix is not None else time.time()
    return max(seconds, 0.0)


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return int(number) if math.isfinite(number) else None


PROBE_EVERY = 1.0
"""Seconds between single requests after a reset, until an answer says what is left."""


class _Announced:
    """What the server last said of one limit: how much is left and when it resets.

    ``probe``: after the reset, one request at a time (every ``PROBE_EVERY`` seconds) until
    an answer tells the new count; else (tokens, whose costs are estimates) free until then.
    """

    def __init__(self, *, probe: bool) -> None:
        self.left: int | None = None  # None: nothing said, or its reset has passed
        self.until = 0.0
        self.probe = probe
        self.fresh = True  # the next answer starts a period (else: it may be a stale one)

    def update(self, left: int | None, reset: float | None, now: float, unanswered: int) -> None:
        if left is None:  # this answer says nothing of the limit (another endpoint, no limit)
            if self.fresh:  # nothing known: do not hold requests back on a silent host
                self.left, self.until = None, math.inf
            return
        left -= unanswered
        until = now + (reset if reset is not None else PROBE_EVERY)
        if self.fresh or self.left is None or now >= self.until:
            self.left, self.until, self.fresh = left, until, False
        else:  # within a period, answers may come out of order: what is left only shrinks
            self.left, self.until = min(self.left, left), max(self.until, until)

    def wait(self, now: float, cost: int) -> float:
        """Seconds to wait before spending ``cost`` (0: go now)."""
        if now >= self.until:  # the reset has passed, or nothing was said yet
            if not self.probe:
                self.left = None
                return 0.0
            self.left, self.until, self.fresh = 1, now + PROBE_EVERY, True
        if self.left is None:
            return 0.0
        return 0.0 if self.left >= cost else self.until - now

    def spend(self, cost: int) -> None:
        if self.left is not None:
            self.left -= cost


class Pacer:
    """The state of a ``Pace``: ``await acquire(tokens)`` before a request, ``observe(headers)``
    on its answer. A wait ends early when an answer arrives (it may say more is left);
    ``clock`` and ``sleep`` are injectable (tests on a fake clock: then waits run in full).

    ``usage``-style counters: ``waits`` (times a request waited) and ``waited`` (seconds)."""

    def __init__(
        self,
        pace: Pace | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep | None = None,
    ) -> None:
        self.pace = pace or Pace()
        self._clock, self._sleep = clock, sleep
        self._lock = anyio.Lock()
        self._sent: deque[tuple[float, int]] = deque()  # (time, tokens) within the window
        self._sent_tokens = 0
        self._requests, self._tokens = _Announced(probe=True), _Announced(probe=False)
        self._unanswered = 0
        self._answered: anyio.Event | None = None  # set by the next answer
        self.waits = 0
        self.waited = 0.0

    async def acquire(self, tokens: int = 0) -> None:
        """Wait until a request of about ``tokens`` prompt tokens may go, and count it."""
        async with self._lock:  # one waiter at a time: the others queue behind it, in order
            while (delay := self._delay(tokens)) > 0:
                self.waits += 1
                step = min(delay, self.pace.max_wait)
                self.waited += step
                await self._pause(step)
            now = self._clock()
            self._sent.append((now, tokens))
            self._sent_tokens += tokens
            self._requests.spend(1)
            self._tokens.spend(tokens)
            self._unanswered += 1

    async def _pause(self, seconds: float) -> None:
        if self._sleep is not None:
            await self._sleep(seconds)
            return
        self._answered = anyio.Event()
        with anyio.move_on_after(seconds):
            await self._answered.wait()

    def observe(self, headers: Mapping[str, str]) -> None:
        """Read an answer's rate-limit headers (any answer: a 429 carries them too)."""
        self._unanswered = max(self._unanswered - 1, 0)
        if self._answered is not None:
            self._answered.set()
        if not self.pace.from_headers:
            return
        now, wall = self._clock(), time.time()

        def reset(name: str) -> float | None:  # capped: a far or garbled reset is re-asked
            value = headers.get(name)
            seconds = parse_reset(value, wall) if value is not None else None
            return None if seconds is None else min(seconds, self.pace.max_wait)

        left = _int(headers.get("x-ratelimit-remaining-requests"))
        when = reset("x-ratelimit-reset-requests")
        if left is None:  # Together's names
            left, when = _int(headers.get("x-ratelimit-remaining")), reset("x-ratelimit-reset")
        self._requests.update(left, when, now, self._unanswered)
        self._tokens.update(
            _int(headers.get("x-ratelimit-remaining-tokens")),
            reset("x-ratelimit-reset-tokens"),
            now,
            0,  # tokens in flight are estimates: the server's count is taken as it is
        )

    def _delay(self, tokens: int) -> float:
        now = self._clock()
        pace = self.pace
        horizon = now - pace.window
        while self._sent and self._sent[0][0] <= horizon:
            self._sent_tokens -= self._sent.popleft()[1]
        delays = [0.0]
        if pace.max_rpm is not None and len(self._sent) >= pace.max_rpm:
            delays.append(self._sent[len(self._sent) - pace.max_rpm][0] + pace.window - now)
        if pace.max_tpm is not None and self._sent and self._sent_tokens + tokens > pace.max_tpm:
            excess, leaves = self._sent_tokens + tokens - pace.max_tpm, now
            for sent_at, n in self._sent:  # the time by which enough tokens leave the window
                excess -= n
                leaves = sent_at
                if excess <= 0:
                    break
            delays.append(leaves + pace.window - now)
        if pace.from_headers:
            delays.append(self._requests.wait(now, 1))
            if tokens:
                delays.append(self._tokens.wait(now, tokens))
        return max(delays)
