"""Pacing under rate limits: the headers read, the client's own caps, and a loopback server
whose fixed-window limit a paced run stays under (counted by the server, not timed)."""

from __future__ import annotations

from typing import Literal

import anyio
import pytest

import icm_client as icm
from icm_client.backends.base import ScoreRequest
from icm_client.client import Pace, Pacer
from icm_client.client.pacing import parse_reset
from icm_client.errors import BackendError
from icm_client.testing import CompletionsApp, LoopbackServer, RateLimitedApp
from icm_client.testing.protocol import belief_logprobs

LABELS = (" True", " False")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("12.5", 12.5)],
)
def test_reset_durations(text: str, seconds: float) -> None:
    assert parse_reset(text) == pytest.approx(seconds)


def test_reset_as_unix_time_and_garbage() -> None:
    assert parse_reset("2000000010", now_unix=2_000_000_000.0) == pytest.approx(10.0)
    assert parse_reset("soon") is None and parse_reset("-3") is None and parse_reset("1x") is None


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def _sent_times(pace: Pace, n: int, tokens: int = 0) -> tuple[list[float], Pacer]:
    t = FakeTime()
    pacer = Pacer(pace, clock=t.clock, sleep=t.sleep)
    times: list[float] = []

    async def go() -> None:
        for _ in range(n):
            await pacer.acquire(tokens)
            times.append(t.now)

    anyio.run(go)
    return times, pacer


def test_max_rpm_is_a_sliding_window() -> None:
    times, pacer = _sent_times(Pace(max_rpm=3, window=60, from_headers=False), 10)
    for i, start in enumerate(times):
        assert sum(start <= u < start + 60 for u in times[i:]) <= 3
    assert times[:3] == [0.0, 0.0, 0.0] and times[3] == 60.0 and pacer.waits == 3


def test_max_tpm_counts_estimated_tokens() -> None:
    times, _ = _sent_times(Pace(max_tpm=1000, window=60, from_headers=False), 6, tokens=400)
    assert times == [0.0, 0.0, 60.0, 60.0, 120.0, 120.0]


def test_headers_spend_what_is_left_then_wait_for_the_reset() -> None:
    t = FakeTime()
    pacer = Pacer(Pace(), clock=t.clock, sleep=t.sleep)

    async def go() -> list[float]:
        await pacer.acquire()
        pacer.observe({"x-ratelimit-remaining-requests": "2", "x-ratelimit-reset-requests": "5s"})
        sent = []
        for _ in range(4):
            await pacer.acquire()
            sent.append(t.now)
        return sent

    # 2 left: two go at once, the third waits for the reset (then probes one at a time)
    assert anyio.run(go) == [0.0, 0.0, 5.0, 6.0]


def test_before_the_first_answer_one_request_at_a_time() -> None:
    times, _ = _sent_times(Pace(), 3)
    assert times == [0.0, 1.0, 2.0]  # no answer came: one probe a second


def test_a_host_without_headers_or_with_garbled_ones_is_not_paced() -> None:
    for headers in ({}, {"x-ratelimit-remaining-requests": "lots"}):
        t = FakeTime()
        pacer = Pacer(Pace(), clock=t.clock, sleep=t.sleep)

        async def go(h: dict[str, str] = headers, p: Pacer = pacer) -> None:
            await p.acquire()
            p.observe(h)
            for _ in range(5):
                await p.acquire()

        anyio.run(go)
        assert pacer.waits == 0


@pytest.mark.parametrize("names", ["openai", "together"])
def test_paced_run_stays_under_a_servers_advertised_limit(
    names: Literal["openai", "together"],
) -> None:
    """16 concurrent scores against 4 requests per 0.4 s window: paced from the headers, the
    server refuses none; unpaced (the control), the same burst is refused."""
    requests = [ScoreRequest(f"Statement {i} is", LABELS) for i in range(16)]

    async def burst(app: RateLimitedApp, pace: Pace | None) -> int:
        failures = 0
        with LoopbackServer(app) as server:
            async with icm.connect(
                server.base_url,
                app.name,
                provider="generic",
                api="completions",
                check=False,
                cache=False,
                retry=None,
                pace=pace,
                max_concurrency=8,
            ) as client:

                async def one(request: ScoreRequest) -> None:
                    nonlocal failures
                    try:
                        await client.score(request)
                    except BackendError:
                        failures += 1

                async with anyio.create_task_group() as tg:
                    for request in requests:
                        tg.start_soon(one, request)
        return failures

    paced = RateLimitedApp(CompletionsApp(belief_logprobs), limit=4, window=0.4, names=names)
    assert anyio.run(burst, paced, Pace()) == 0
    assert paced.refused == 0 and sum(paced.served.values()) == 16
    assert max(paced.served.values()) <= 4

    unpaced = RateLimitedApp(CompletionsApp(belief_logprobs), limit=4, window=0.4, names=names)
    assert anyio.run(burst, unpaced, None) > 0
    assert unpaced.refused > 0


def test_a_far_reset_is_asked_again_after_max_wait() -> None:
    t = FakeTime()
    pacer = Pacer(Pace(max_wait=10), clock=t.clock, sleep=t.sleep)

    async def go() -> float:
        await pacer.acquire()
        pacer.observe({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "9h"})
        await pacer.acquire()
        return t.now

    assert anyio.run(go) == 10.0  # then one request asks where the limit stands
