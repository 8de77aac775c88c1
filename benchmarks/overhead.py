"""Client overhead: throughput against the ideal, and client CPU per request.

    python benchmarks/overhead.py [--quick] [--latency 0.05] [--concurrency 1 4 16 64 256]

The loopback stand-in server (``_sim.py``) runs in its own process and answers every
completion after a fixed ``--latency``. For each concurrency c the client sends c x rounds
distinct requests through ``ScoringClient(OpenAICompletions(...), max_concurrency=c,
cache=False)``, all started at once (as the scorer starts them), after a warm-up round that
opens the connections. Figures:

* throughput / ideal: the ideal time is requests x latency / c (a server that only waits);
  1.0 means the client adds nothing;
* client CPU per request: ``time.process_time()`` of this process (the client only: the
  server is another process), divided by the requests;
* client CPU share: client CPU time / wall time; near the share of a core the machine's
  load leaves this process, the client is CPU-bound (throughput = share / CPU per request);
* server CPU per request, to show the server is not the bottleneck.

Clients: the client as built (httpx2's transport, the baseline of the "vs httpx2" column), the
same client over aiohttp (``http="aiohttp"``, the ``aiohttp`` extra; left out when it is not
installed), each HTTP client alone (the same bodies through the ``httpx2.AsyncClient`` that
``transport.http_client`` builds), and a minimal asyncio client.

Targets (issue 6): >= 95 % of ideal at concurrency 256, < 0.5 ms client CPU per request.
``--profile FILE`` writes a cProfile of the client at the highest concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import importlib.util
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from _sim import MODEL, SimServer, machine, table, write_json

from icm_client.backends import OpenAICompletions, ScoreRequest
from icm_client.backends.transport import HTTPClient, http_client
from icm_client.client import ScoringClient

RESULTS = Path(__file__).parent / "results"
LABELS = (" True", " False")
TARGET_RATIO = 0.95
TARGET_CPU_MS = 0.5


def prompt(i: int, chars: int) -> str:
    """A distinct prompt of about ``chars`` characters (a bounded-context prompt is ~5,000)."""
    body = "Question: What happens if you read the book?\nClaim: It is read. I think so.\n\n"
    return (body * max(1, chars // len(body)))[:chars] + f"Claim {i}.\nI think this Claim is"


def payload(i: int, chars: int) -> dict[str, object]:
    """The body ``OpenAICompletions`` sends (text mode, k = 20)."""
    return {
        "model": MODEL,
        "prompt": prompt(i, chars),
        "max_tokens": 1,
        "temperature": 0,
        "logprobs": 20,
    }


Run = Callable[[int, int], Awaitable[None]]  # (first request id, count)


@asynccontextmanager
async def icm_stack(
    url: str, c: int, chars: int, *, http: HTTPClient = "httpx"
) -> AsyncIterator[Run]:
    """The measured client: ``ScoringClient(OpenAICompletions(...))``, all requests started at
    once, over the HTTP client it builds itself (httpx2's, or ``http="aiohttp"``)."""
    inner = OpenAICompletions(url, MODEL, provider="generic", http=http)
    backend = ScoringClient(inner, max_concurrency=c, cache=False)

    async def run(first: int, count: int) -> None:
        requests = [ScoreRequest(prompt(i, chars), LABELS) for i in range(first, first + count)]
        await _burst(backend.score, requests)

    try:
        yield run
    finally:
        await backend.aclose()


@asynccontextmanager
async def http_alone(
    url: str, c: int, chars: int, *, http: HTTPClient = "httpx"
) -> AsyncIterator[Run]:
    """The HTTP library alone: the same bodies through the ``httpx2.AsyncClient`` that
    ``OpenAICompletions`` builds (``http_client``), bounded by a ``CapacityLimiter``."""
    limiter = anyio.CapacityLimiter(c)
    async with http_client(120.0, http=http) as client:

        async def one(body: dict[str, object]) -> None:
            async with limiter:
                response = await client.post(f"{url}/completions", json=body)
                json.loads(response.content)

        async def run(first: int, count: int) -> None:
            await _burst(one, [payload(i, chars) for i in range(first, first + count)])

        yield run


@asynccontextmanager
async def minimal(url: str, c: int, chars: int) -> AsyncIterator[Run]:
    """The floor: c keep-alive connections over plain asyncio streams, each sending its
    share one request at a time, with nothing but HTTP/1.1 framing and JSON."""
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(c)]

    async def serve(k: int, ids: range) -> None:
        reader, writer = conns[k]
        for i in ids:
            body = json.dumps(payload(i, chars)).encode()
            writer.write(
                b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body)
            )
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            json.loads(await reader.readexactly(length))

    async def run(first: int, count: int) -> None:
        per = count // c
        await asyncio.gather(
            *(serve(k, range(first + k * per, first + (k + 1) * per)) for k in range(c))
        )

    try:
        yield run
    finally:
        for _, writer in conns:
            writer.close()


async def _burst(fn: Callable[[Any], Coroutine[Any, Any, object]], items: Sequence[Any]) -> None:
    async with anyio.create_task_group() as tg:
        for item in items:
            tg.start_soon(fn, item)


CLIENTS: dict[str, Callable[[str, int, int], AbstractAsyncContextManager[Run]]] = {
    "icm stack": icm_stack,
    "icm stack, aiohttp": functools.partial(icm_stack, http="aiohttp"),
    "httpx2 alone": http_alone,
    "aiohttp alone": functools.partial(http_alone, http="aiohttp"),
    "minimal asyncio": minimal,
}
if importlib.util.find_spec("httpx_aiohttp") is None:  # the aiohttp extra is not installed
    CLIENTS = {name: run for name, run in CLIENTS.items() if "aiohttp" not in name}
BASELINE = "icm stack"
"""The "vs httpx2" column: CPU per request over the stack's on httpx2's transport."""


async def measure(
    sim: SimServer,
    client: str,
    c: int,
    rounds: int,
    latency: float,
    chars: int,
    profile: Path | None,
) -> dict[str, object]:
    n = c * rounds
    async with CLIENTS[client](sim.base_url, c, chars) as run:
        await run(0, c)  # warm-up: the connections are open before the clock starts
        server_before = sim.stats()
        profiler = cProfile.Profile() if profile is not None else None
        cpu, wall = time.process_time(), time.perf_counter()
        if profiler is not None:
            profiler.enable()
        await run(c, n)
        if profiler is not None:
            profiler.disable()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        server_after = sim.stats()
    if profiler is not None and profile is not None:
        profiler.dump_stats(str(profile))
    served = int(server_after["completions"] - server_before["completions"])
    if served != n:
        raise AssertionError(f"{client}: sent {n} requests, the server answered {served}")
    ideal = n * latency / c
    return {
        "client": client,
        "concurrency": c,
        "requests": n,
        "wall_s": round(wall, 4),
        "ideal_s": round(ideal, 4),
        "throughput_rps": round(n / wall, 1),
        "ideal_rps": round(c / latency, 1),
        "throughput_over_ideal": round(ideal / wall, 4),
        "client_cpu_ms_per_request": round(cpu * 1000 / n, 4),
        "client_cpu_share": round(cpu / wall, 3),
        "server_cpu_ms_per_request": round(
            (server_after["cpu_s"] - server_before["cpu_s"]) * 1000 / n, 4
        ),
    }


async def bench(args: argparse.Namespace) -> dict[str, object]:
    rows = []
    top = max(args.concurrency)
    with SimServer(latency=args.latency, model="canned") as sim:
        for c in args.concurrency:
            for client in args.clients:
                profile = args.profile if c == top and client == "icm stack" else None
                row = await measure(sim, client, c, args.rounds, args.latency, args.chars, profile)
                rows.append(row)
    by = {(r["client"], r["concurrency"]): r for r in rows}
    for r in rows:
        base = by.get((BASELINE, r["concurrency"]))
        r["cpu_over_httpx2"] = (
            round(_num(r["client_cpu_ms_per_request"]) / _num(base["client_cpu_ms_per_request"]), 3)
            if base is not None
            else None
        )
    at = by[("icm stack", top)]
    ratio, cpu = _num(at["throughput_over_ideal"]), _num(at["client_cpu_ms_per_request"])
    return {
        "benchmark": "overhead",
        "machine": machine(),
        "params": {
            "latency_s": args.latency,
            "rounds": args.rounds,
            "prompt_chars": args.chars,
            "server": "benchmarks/_sim.py --model canned in a child process (asyncio, "
            "HTTP/1.1 keep-alive, one fixed answer)",
            "clients": {
                "icm stack": "ScoringClient(OpenAICompletions(provider='generic'), "
                "max_concurrency=c, cache=False): the measured client, on httpx2's transport "
                "(the baseline)",
                "icm stack, aiohttp": "the same client with http='aiohttp'",
                "httpx2 alone": "the same requests through transport.http_client()",
                "aiohttp alone": "the same requests through transport.http_client(http='aiohttp')",
                "minimal asyncio": "floor: plain asyncio streams, c keep-alive connections",
            },
        },
        "results": rows,
        "target": {
            "what": f"throughput >= {TARGET_RATIO:.0%} of ideal and < {TARGET_CPU_MS} ms client "
            f"CPU per request at concurrency {top}",
            "concurrency": top,
            "throughput_over_ideal": ratio,
            "client_cpu_ms_per_request": cpu,
            "throughput_met": ratio >= TARGET_RATIO,
            "cpu_met": cpu < TARGET_CPU_MS,
        },
    }


def _num(v: object) -> float:
    assert isinstance(v, int | float)
    return float(v)


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="concurrency 1, 8, 32; 3 rounds")
    p.add_argument("--latency", type=float, default=0.05, help="seconds per completion")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64, 256])
    p.add_argument("--rounds", type=int, default=20, help="requests per slot")
    p.add_argument("--chars", type=int, default=5000, help="prompt length")
    p.add_argument("--clients", nargs="+", choices=list(CLIENTS), default=list(CLIENTS))
    p.add_argument("--profile", type=Path, help="cProfile of the client at the top concurrency")
    p.add_argument("--out", type=Path, default=RESULTS / "overhead.json")
    args = p.parse_args(argv)
    if args.quick:
        args.concurrency, args.rounds = [1, 8, 32], 3
    doc = anyio.run(bench, args)
    rows = doc["results"]
    assert isinstance(rows, list)
    headers = [
        "client",
        "concurrency",
        "requests",
        "wall s",
        "ideal s",
        "req/s",
        "throughput/ideal",
        "client CPU ms/req",
        "vs httpx2",
        "CPU share",
        "server CPU ms/req",
    ]
    keys = [
        "client",
        "concurrency",
        "requests",
        "wall_s",
        "ideal_s",
        "throughput_rps",
        "throughput_over_ideal",
        "client_cpu_ms_per_request",
        "cpu_over_httpx2",
        "client_cpu_share",
        "server_cpu_ms_per_request",
    ]
    print(table(headers, [[r[k] for k in keys] for r in rows]))
    t = doc["target"]
    assert isinstance(t, dict)
    print(
        f"target: {t['what']}: throughput {'met' if t['throughput_met'] else 'MISSED'}, "
        f"CPU {'met' if t['cpu_met'] else 'MISSED'}"
    )
    write_json(args.out, doc)
    return doc


if __name__ == "__main__":
    main()
