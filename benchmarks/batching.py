"""Client CPU per scored prompt with many prompts in flight: one prompt per request against
batched prompts (``prompt`` a list), in one run.

    python benchmarks/batching.py [--quick] [--latency 0.05] [--in-flight 256] [--rounds 8]

The loopback stand-in server (``_sim.py``, model ``canned``: the cheapest answers, in its own
process) answers every completion request after ``--latency`` seconds, whatever the number
of prompts it carries. ``--in-flight`` x ``--rounds`` distinct prompts are scored through
``ScoringClient(OpenAICompletions(...), max_concurrency=in_flight, cache=False)``, all started
at once (as the scorer starts them), after a warm-up round. Clients:

* ``one prompt per request`` (the baseline): ``batch_size=1``, httpx2's transport;
* ``batched``: a host profile that takes prompt lists, ``batch_size`` prompts at most per
  request (default 32), httpx2's transport;
* ``batched, aiohttp``: the same over aiohttp (``http="aiohttp"``; left out when the
  ``aiohttp`` extra is not installed).

Figures: client CPU per prompt (``time.process_time()`` of this process; the server is
another), HTTP requests per prompt, and throughput over the ideal (prompts x latency /
in-flight: a client that adds nothing). Target (issue 16): <= 0.1 ms client CPU per prompt
at 256 in flight against a 50 ms server.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path
from typing import Any

import anyio
from _sim import MODEL, SimServer, machine, table, write_json

from icm_client.backends import OpenAICompletions, ScoreRequest
from icm_client.backends.openai.profiles import Profile
from icm_client.client import ScoringClient

RESULTS = Path(__file__).parent / "results"
LABELS = (" True", " False")
TARGET_CPU_MS = 0.1
LISTS = Profile(name="sim-lists", prompt_lists=True)


def prompt(i: int, chars: int) -> str:
    body = "Question: What happens if you read the book?\nClaim: It is read. I think so.\n\n"
    return (body * max(1, chars // len(body)))[:chars] + f"Claim {i}.\nI think this Claim is"


CLIENTS: dict[str, dict[str, Any]] = {
    "one prompt per request": {"provider": "generic", "batch_size": 1},
    "batched": {"provider": LISTS},
    "batched, aiohttp": {"provider": LISTS, "http": "aiohttp"},
}
if importlib.util.find_spec("httpx_aiohttp") is None:  # the aiohttp extra is not installed
    del CLIENTS["batched, aiohttp"]


async def measure(url: str, name: str, args: argparse.Namespace) -> dict[str, object]:
    options = dict(CLIENTS[name])
    if "batch_size" not in options:
        options["batch_size"] = args.batch_size
    inner = OpenAICompletions(url, MODEL, **options)
    backend = ScoringClient(inner, max_concurrency=args.in_flight, cache=False)
    n = args.in_flight * args.rounds

    async def burst(first: int, count: int) -> None:
        async with anyio.create_task_group() as tg:
            for i in range(first, first + count):
                tg.start_soon(backend.score, ScoreRequest(prompt(i, args.chars), LABELS))

    async with backend:
        await burst(10**6, args.in_flight)  # warm-up: connections open
        usage = backend.usage
        http0 = usage.extra.get("http_requests", 0)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await burst(0, n)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        http = usage.extra.get("http_requests", 0) - http0
    ideal = n * args.latency / args.in_flight
    return {
        "client": name,
        "prompts": n,
        "http_requests": http,
        "http_requests_per_prompt": http / n,
        "client_cpu_ms_per_prompt": 1000 * cpu / n,
        "wall_s": wall,
        "throughput_over_ideal": ideal / wall,
    }


async def bench(args: argparse.Namespace) -> dict[str, object]:
    rows: list[dict[str, object]] = []
    with SimServer(latency=args.latency, model="canned") as sim:
        for name in CLIENTS:
            rows.append(await measure(sim.base_url, name, args))
    base = float(rows[0]["client_cpu_ms_per_prompt"])  # type: ignore[arg-type]
    for r in rows:
        r["cpu_vs_baseline"] = float(r["client_cpu_ms_per_prompt"]) / base  # type: ignore[arg-type]
    headers = ["client", "prompts", "HTTP/prompt", "CPU ms/prompt", "vs baseline", "tput/ideal"]
    print(
        f"{args.in_flight} prompts in flight, {args.latency * 1000:g} ms server latency, "
        f"batches of {args.batch_size} at most"
    )
    print(
        table(
            headers,
            [
                [
                    r["client"],
                    r["prompts"],
                    r["http_requests_per_prompt"],
                    r["client_cpu_ms_per_prompt"],
                    r["cpu_vs_baseline"],
                    r["throughput_over_ideal"],
                ]
                for r in rows
            ],
        )
    )
    best = min(float(r["client_cpu_ms_per_prompt"]) for r in rows)  # type: ignore[arg-type]
    print(f"client CPU per prompt: {base:.3f} -> {best:.3f} ms (target <= {TARGET_CPU_MS})")
    return {
        "benchmark": "batching",
        "machine": machine(),
        "params": {
            "latency_s": args.latency,
            "in_flight": args.in_flight,
            "rounds": args.rounds,
            "batch_size": args.batch_size,
            "prompt_chars": args.chars,
        },
        "target_cpu_ms_per_prompt": TARGET_CPU_MS,
        "results": rows,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="32 in flight, 2 rounds (seconds)")
    p.add_argument("--latency", type=float, default=0.05)
    p.add_argument("--in-flight", type=int, default=256)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--chars", type=int, default=1000, help="prompt length")
    p.add_argument("--out", type=Path, default=RESULTS / "batching.json")
    args = p.parse_args()
    if args.quick:
        args.in_flight, args.rounds = 32, 2
    write_json(args.out, anyio.run(bench, args))


if __name__ == "__main__":
    main()
