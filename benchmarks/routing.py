"""Label through the routing backend over one vs two local model servers, in one run.

    .venv/bin/python benchmarks/routing.py [--limit 40] [--context-size 8] [--rounds 2]

Each configuration starts its own embedded llama.cpp server(s) (cold caches), labels the
bundled cities sample with the bounded strategy (no disk cache), and stops them; the same
as ``icm label sample:cities --task cities --strategy bounded --context-size 8 --limit 40
--no-cache --base-url A [--base-url B] --concurrency 1``. The configurations:

* ``1 x 2 threads``: one server with every core (the fair baseline on a small machine);
* ``2 x 1 thread``: two servers, a core each, behind ``Routing`` (same cores in all);
* ``1 x 1 thread``: one server on one core (what one replica of the pair does alone).

On a CPU, replicas split the same cores, so the fair comparison is the first two; the third
shows how the pair scales against one of its members. On GPUs each replica brings its own
device, and the speed-up is that of the third comparison. The configurations run in rounds,
in alternating order (ABC, CBA, ...), and the summary takes medians, so that a background
load that drifts during the run (other work on a shared machine) does not favour one of them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from contextlib import AsyncExitStack
from pathlib import Path

import anyio

from icm_client.backends.routing import Routing
from icm_client.client import ScoringClient
from icm_client.dataset import load_dataset
from icm_client.local import EmbeddedServer
from icm_client.run import LabelConfig, label
from icm_client.search.config import SearchConfig
from icm_client.tasks import get_task

SAMPLE = Path(__file__).parents[1] / "icm_client" / "samples" / "cities_sample.jsonl"
CONFIGS = (("1 x 2 threads", 1, 2), ("2 x 1 thread", 2, 1), ("1 x 1 thread", 1, 1))


async def one_config(replicas: int, threads: int, args: argparse.Namespace) -> dict[str, object]:
    dataset = load_dataset(SAMPLE, limit=args.limit)
    task = get_task("cities")
    config = LabelConfig(
        strategy="bounded", context_size=args.context_size, search=SearchConfig(seed=args.seed)
    )
    async with AsyncExitStack() as exits:
        servers = [
            await exits.enter_async_context(
                EmbeddedServer(n_parallel=1, threads=threads, ctx_per_slot=4096)
            )
            for _ in range(replicas)
        ]
        routing = Routing.from_urls(
            [s.base_url for s in servers],
            servers[0].model_name,
            max_concurrency=args.concurrency,
        )
        backend = ScoringClient(routing, cache=False, max_concurrency=args.concurrency * replicas)
        exits.push_async_callback(backend.aclose)
        start = time.perf_counter()
        result = await label(dataset.examples, task, backend, config)
        wall = time.perf_counter() - start
        s = result.summary
        return {
            "wall": wall,
            "calls": s.calls,
            "prompt": s.prompt_tokens,
            "cached": s.cached_tokens,
            "split": "/".join(str(e.calls) for e in routing.stats()),
            "spills": sum(e.spills for e in routing.stats()),
        }


async def main(args: argparse.Namespace) -> None:
    configs = CONFIGS[: args.configs]
    print(
        f"cities sample, {args.limit} examples, bounded context {args.context_size}, "
        f"concurrency {args.concurrency} per replica; {os.cpu_count()} CPUs, "
        f"load average at start {os.getloadavg()[0]:.2f}"
    )
    print(
        "| round | servers | wall s | calls | prompt tok | server-cached | computed tok/s | "
        "calls per replica | spills | load avg |"
    )
    print("|---" * 10 + "|", flush=True)
    walls: dict[str, list[float]] = {name: [] for name, _, _ in configs}
    for n in range(args.rounds):  # ABC, CBA, ...: a drifting background load evens out
        for name, replicas, threads in configs if n % 2 == 0 else configs[::-1]:
            r = await one_config(replicas, threads, args)
            wall, prompt, cached = r["wall"], r["prompt"], r["cached"]
            assert isinstance(wall, float) and isinstance(prompt, int) and isinstance(cached, int)
            walls[name].append(wall)
            print(
                f"| {n + 1} | {name} | {wall:.1f} | {r['calls']} | {prompt} | {cached} | "
                f"{(prompt - cached) / wall:.0f} | {r['split']} | {r['spills']} | "
                f"{os.getloadavg()[0]:.1f} |",
                flush=True,
            )
    first = statistics.median(walls[configs[0][0]])
    print(f"\nmedian wall time, relative to {configs[0][0]}:")
    for name, times in walls.items():
        median = statistics.median(times)
        print(f"  {name}: {median:.1f} s = {median / first:.2f}x (speed-up {first / median:.2f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--context-size", type=int, default=8)
    parser.add_argument(
        "--concurrency", type=int, default=1, help="requests in flight per replica (1 slot each)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--configs", type=int, default=len(CONFIGS), help="run only the first N configurations"
    )
    parser.add_argument("--rounds", type=int, default=2, help="runs of each configuration")
    anyio.run(main, parser.parse_args())
