"""``aio.SingleFlight``: concurrent calls for one key run once; the table holds only the keys
in flight, whatever way their calls end (answer, error, cancellation)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import pytest

from icm_client.aio import SingleFlight


class Calls:
    """An ``fn`` factory that counts the calls it runs and waits for ``release``."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.release = anyio.Event()

    def fn(self, name: str, outcome: object = None) -> Callable[[], Awaitable[object]]:
        async def call() -> object:
            self.ran.append(name)
            await self.release.wait()
            if isinstance(outcome, Exception):
                raise outcome
            return outcome if outcome is not None else f"from {name}"

        return call


async def _settle() -> None:
    for _ in range(10):
        await anyio.sleep(0)


@pytest.mark.anyio
async def test_concurrent_calls_for_one_key_run_once_and_share_the_answer() -> None:
    flights: SingleFlight[str, object] = SingleFlight()
    calls = Calls()
    out: list[tuple[object, bool]] = []

    async def ask(name: str) -> None:
        out.append(await flights.run("k", calls.fn(name)))

    async with anyio.create_task_group() as tg:
        for name in ("a", "b", "c"):
            tg.start_soon(ask, name)
        await _settle()
        assert len(flights) == 1
        calls.release.set()
    assert calls.ran == ["a"]
    assert sorted(out, key=lambda o: o[1]) == [("from a", False)] + [("from a", True)] * 2
    assert len(flights) == 0


@pytest.mark.anyio
async def test_other_keys_do_not_wait() -> None:
    flights: SingleFlight[str, object] = SingleFlight()
    calls = Calls()
    calls.release.set()
    got = [await flights.run(k, calls.fn(k)) for k in ("x", "y", "x")]
    assert calls.ran == ["x", "y", "x"]  # nothing remembered once a call has ended
    assert [shared for _, shared in got] == [False, False, False]


@pytest.mark.anyio
@pytest.mark.parametrize("share_errors", [True, False])
async def test_an_error_is_shared_or_the_next_caller_tries(share_errors: bool) -> None:
    flights: SingleFlight[str, object] = SingleFlight(share_errors=share_errors)
    calls = Calls()
    outcomes: dict[str, object] = {}

    async def ask(name: str, outcome: object) -> None:
        try:
            outcomes[name] = await flights.run("k", calls.fn(name, outcome))
        except ValueError as exc:
            outcomes[name] = exc

    async with anyio.create_task_group() as tg:
        tg.start_soon(ask, "a", ValueError("a failed"))
        await _settle()
        tg.start_soon(ask, "b", None)
        await _settle()
        calls.release.set()
    assert isinstance(outcomes["a"], ValueError)
    if share_errors:
        assert outcomes["b"] is outcomes["a"] and calls.ran == ["a"]
    else:
        assert outcomes["b"] == ("from b", False) and calls.ran == ["a", "b"]
    assert len(flights) == 0


@pytest.mark.anyio
async def test_a_cancelled_leader_hands_the_call_to_a_waiter() -> None:
    flights: SingleFlight[str, object] = SingleFlight()
    calls = Calls()
    got: list[tuple[object, bool]] = []

    async def waiter() -> None:
        got.append(await flights.run("k", calls.fn("b")))

    leader_scope = anyio.CancelScope()

    async def leader() -> None:
        with leader_scope:
            await flights.run("k", calls.fn("a"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(leader)
        await _settle()
        tg.start_soon(waiter)
        await _settle()
        leader_scope.cancel()
        await _settle()
        assert len(flights) == 1  # the waiter leads now
        calls.release.set()
    assert calls.ran == ["a", "b"]
    assert got == [("from b", False)]
    assert len(flights) == 0


@pytest.mark.anyio
async def test_an_answer_of_none_is_an_answer() -> None:
    flights: SingleFlight[str, None] = SingleFlight()
    ran: list[int] = []
    release = anyio.Event()

    async def call() -> None:
        ran.append(1)
        await release.wait()

    out: list[tuple[None, bool]] = []

    async def ask() -> None:
        out.append(await flights.run("k", call))

    async with anyio.create_task_group() as tg:
        tg.start_soon(ask)
        tg.start_soon(ask)
        await _settle()
        release.set()
    assert ran == [1] and sorted(out) == [(None, False), (None, True)]
