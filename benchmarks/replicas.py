"""Throughput across replicas: one fixed workload over 1, 2, 4 and 8 servers behind routing.

    python benchmarks/replicas.py [--quick] [--replicas 1 2 4 8] [--latency 0.05] [--capacity 4]

Each replica is a loopback stand-in server (``_sim.py``, its own process, model ``canned``)
that answers a completion after ``--latency`` seconds and serves at most ``--capacity``
completions at once, queueing the rest: a GPU server with a fixed number of slots. One
replica's ideal throughput is capacity / latency (80 requests/s at the defaults), R
replicas' is R times that.

The client is the real one: ``ScoringClient(Routing.from_urls(urls, max_concurrency=c),
cache=False)`` (which lets 2 x c x R requests in: c x R in flight, as many waiting in the
routing for a slot on their preferred replica; ``--stack-limit`` sets another number),
as ``icm label --base-url ... (R times) --concurrency c`` builds it, with c = 2 x capacity
by default (the CLI's default 8 at capacity 4), so each server has a queue and never waits
for the client's round trip. One replica goes through ``Routing`` too, so that the speed-up
measures replication, not the routing layer (the CLI drops it for one URL).

The workload is fixed: the same ``--requests`` distinct prompts for every replica count,
made by the real ``ContextScorer`` over synthetic TruthfulQA-shaped examples, all started at
once (as the scorer starts them), after a warm-up round that opens the connections:

* ``bounded C=8``: mid-search prompts (``--labeled`` examples labeled), 8 demonstrations
  each chosen by the keyed hash: nearly every prompt has its own affinity key (its first
  512 characters), so rendezvous hashing spreads them over the replicas;
* ``exact, 16 labeled``: the unlabeled examples, each after the same 16 labeled
  demonstrations (dataset order, as the exact strategy orders them), so every prompt has
  ONE affinity key and prefers one replica: the others get only what spills over when it
  is saturated (the worst case for affinity).

Figures: wall time, requests/s, speed-up against 1 replica (same workload), efficiency =
speed-up / replicas, achieved / ideal throughput, the calls each replica served (the
router's count, checked against each server's), spills (requests served by another replica
than their affinity's, because it was saturated) and the share served by their preferred
replica (where a prefix cache would hold their prefix), each server's slot utilization,
client CPU per request (``time.process_time()`` of this process: the servers are other
processes) and its share of the wall time (near 1: the client, not the servers, limits),
and the share of the wall time that the client's event loop and (on average) each server's
spent ready to run but waiting for a CPU (Linux ``/proc/PID/schedstat``): on a machine
shared with other work, that is time the machine, not the code, took.
Target (issue 5): speed-up >= 0.9 x replicas.
"""

from __future__ import annotations

import argparse
import functools
import random
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import anyio
from _sim import MODEL, SimServer, machine, table, write_json

from icm_client.aio import gather
from icm_client.backends import ScoreRequest, ScoreResult
from icm_client.backends.affinity import DEFAULT_AFFINITY_CHARS
from icm_client.backends.routing import Routing
from icm_client.client import ScoringClient
from icm_client.scoring.context import BoundedContext, ContextScorer, ExactContext
from icm_client.tasks import get_task
from icm_client.testing.data import synthetic_examples

RESULTS = Path(__file__).parent / "results"
TARGET_EFFICIENCY = 0.9
WORKLOADS = ("bounded C=8", "exact, 16 labeled")


def runqueue_wait(pid: int | str | None) -> float | None:
    """Seconds the process's main thread (the event loop) has spent ready to run but waiting
    for a CPU (Linux ``schedstat``); None where the kernel does not say."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def _share(before: list[float | None], after: list[float | None], wall: float) -> float | None:
    """The mean fraction of ``wall`` that the processes spent waiting for a CPU."""
    pairs = [(b, a) for b, a in zip(before, after, strict=True) if a is not None and b is not None]
    if not pairs:
        return None
    return round(sum(a - b for b, a in pairs) / len(pairs) / wall, 3)


def workload(name: str, n: int, labeled: int, seed: int) -> list[str]:
    """``n`` distinct prompts, exactly as the scorer would send them."""
    task = get_task("truthfulqa")
    rng = random.Random(seed)
    strategy: BoundedContext | ExactContext
    if name == "bounded C=8":  # mid-search: any target, ``labeled`` examples labeled
        examples = synthetic_examples(n, "truthfulqa", seed)
        strategy = BoundedContext([ex.id for ex in examples], size=8, seed=seed)
        chosen, targets = rng.sample(range(n), min(labeled, n)), range(n)
    else:  # the unlabeled examples after the first 16, all with the same 16 before them
        examples = synthetic_examples(n + 16, "truthfulqa", seed)
        strategy, chosen, targets = ExactContext(), list(range(16)), range(16, n + 16)
    labels = {j: rng.randrange(len(task.labels)) for j in chosen}
    # prompt() never calls the backend: the requests go out in measure().
    scorer = ContextScorer(task, examples, None, strategy)  # type: ignore[arg-type]
    ordered = sorted(labels)
    prompts = [scorer.prompt(t, labels, ordered) for t in targets]
    if len(set(prompts)) != n:
        raise AssertionError(f"{name}: the workload's prompts are not distinct")
    return prompts


async def measure(
    sims: Sequence[SimServer], name: str, prompts: list[str], args: argparse.Namespace
) -> dict[str, object]:
    replicas, c = len(sims), args.concurrency
    labels = get_task("truthfulqa").labels
    routing = Routing.from_urls(
        [s.base_url for s in sims], MODEL, max_concurrency=c, provider="generic"
    )
    backend = ScoringClient(routing, max_concurrency=args.stack_limit, cache=False)

    async def burst(texts: Sequence[str]) -> list[ScoreResult]:
        return await gather(
            [functools.partial(backend.score, ScoreRequest(p, labels)) for p in texts]
        )

    try:
        # Warm-up: c x R requests with distinct keys; each replica takes c (the router's
        # limit), so every connection is open before the clock starts.
        await burst([f"warm-up {i}\n\n{prompts[0]}" for i in range(c * replicas)])
        warm = routing.stats()
        before = [s.stats() for s in sims]
        waits = [runqueue_wait("self"), *(runqueue_wait(s.pid) for s in sims)]
        cpu, wall = time.process_time(), time.perf_counter()
        await burst(prompts)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        waited = [runqueue_wait("self"), *(runqueue_wait(s.pid) for s in sims)]
        after = [s.stats() for s in sims]
        stats = routing.stats()
    finally:
        await backend.aclose()
    n = len(prompts)
    calls = [e.calls - w.calls for e, w in zip(stats, warm, strict=True)]
    spills = sum(e.spills - w.spills for e, w in zip(stats, warm, strict=True))
    served = [int(a["completions"] - b["completions"]) for a, b in zip(after, before, strict=True)]
    if served != calls or sum(calls) != n:
        raise AssertionError(f"{name}: sent {n}, the router counted {calls}, servers {served}")
    ideal_rps = replicas * args.capacity / args.latency
    return {
        "workload": name,
        "replicas": replicas,
        "requests": n,
        "affinity_keys": len({p[:DEFAULT_AFFINITY_CHARS] for p in prompts}),
        "wall_s": round(wall, 4),
        "throughput_rps": round(n / wall, 1),
        "ideal_rps": round(ideal_rps, 1),
        "achieved_over_ideal": round(n / wall / ideal_rps, 4),
        "calls_per_replica": calls,
        "spills": spills,
        "preferred_share": round(1 - spills / n, 4),
        "slot_utilization": [
            round((a["busy_s"] - b["busy_s"]) / (args.capacity * wall), 3)
            for a, b in zip(after, before, strict=True)
        ],
        "in_service_peak": max(int(a["in_service_peak"]) for a in after),
        "client_cpu_ms_per_request": round(cpu * 1000 / n, 4),
        "client_cpu_share": round(cpu / wall, 3),
        "client_cpu_wait_share": _share(waits[:1], waited[:1], wall),
        "server_cpu_wait_share": _share(waits[1:], waited[1:], wall),
        "server_cpu_ms_per_request": round(
            sum(a["cpu_s"] - b["cpu_s"] for a, b in zip(after, before, strict=True)) * 1000 / n, 4
        ),
    }


async def bench(args: argparse.Namespace) -> dict[str, object]:
    rows: list[dict[str, object]] = []
    load_start = machine()["load_average_1m"]
    with ExitStack() as exits:
        sims = [
            exits.enter_context(
                SimServer(latency=args.latency, model="canned", capacity=args.capacity)
            )
            for _ in range(max(args.replicas))
        ]
        for name in args.workloads:
            prompts = workload(name, args.requests, args.labeled, args.seed)
            for r in args.replicas:
                rows.append(await measure(sims[:r], name, prompts, args))
    for row in rows:
        one = next(x for x in rows if x["workload"] == row["workload"] and x["replicas"] == 1)
        speedup = _num(one["wall_s"]) / _num(row["wall_s"])
        row["speedup"] = round(speedup, 3)
        row["efficiency"] = round(speedup / _num(row["replicas"]), 3)
        row["target_met"] = _num(row["efficiency"]) >= TARGET_EFFICIENCY
    missed = [f"{r['workload']} x{r['replicas']}" for r in rows if not r["target_met"]]
    return {
        "benchmark": "replicas",
        "machine": {**machine(), "load_average_1m_start": load_start},
        "params": {
            "replicas": args.replicas,
            "latency_s": args.latency,
            "capacity": args.capacity,
            "concurrency_per_replica": args.concurrency,
            "requests": args.requests,
            "labeled": args.labeled,
            "seed": args.seed,
            "server": "benchmarks/_sim.py --model canned --capacity N in a child process per "
            "replica (asyncio, HTTP/1.1 keep-alive, one fixed answer)",
            "client": "ScoringClient(Routing.from_urls(urls, max_concurrency=c), "
            f"max_concurrency={args.stack_limit}, cache=False)",
        },
        "results": rows,
        "target": {
            "what": f"speed-up >= {TARGET_EFFICIENCY} x replicas",
            "efficiency_min": TARGET_EFFICIENCY,
            "met": not missed,
            "missed": missed,
        },
    }


def _num(v: object) -> float:
    assert isinstance(v, int | float)
    return float(v)


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="replicas 1 and 2, 64 requests")
    p.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--latency", type=float, default=0.05, help="seconds per completion")
    p.add_argument("--capacity", type=int, default=4, help="completions each server serves at once")
    p.add_argument(
        "--concurrency", type=int, help="requests in flight per replica (default 2 x capacity)"
    )
    p.add_argument("--requests", type=int, default=1536, help="prompts in the workload")
    p.add_argument(
        "--stack-limit",
        type=int,
        help="requests let into the routing at once (default: the client's, 2 x the slots)",
    )
    p.add_argument("--labeled", type=int, default=256, help="labeled examples (bounded workload)")
    p.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS / "replicas.json")
    args = p.parse_args(argv)
    if args.quick:
        args.replicas, args.requests, args.labeled = [1, 2], 64, 32
    if 1 not in args.replicas:
        p.error("--replicas must include 1 (the baseline of the speed-up)")
    args.replicas = sorted(set(args.replicas))
    if args.concurrency is None:
        args.concurrency = 2 * args.capacity
    doc = anyio.run(bench, args)
    rows = doc["results"]
    assert isinstance(rows, list)
    headers = [
        "workload",
        "replicas",
        "wall s",
        "req/s",
        "speed-up",
        "efficiency",
        "ideal req/s",
        "achieved/ideal",
        "calls per replica",
        "spills",
        "preferred",
        "client CPU ms/req",
        "client CPU share",
        "client CPU wait",
        "server CPU wait",
    ]
    print(
        table(
            headers,
            [
                [
                    r["workload"],
                    r["replicas"],
                    r["wall_s"],
                    r["throughput_rps"],
                    r["speedup"],
                    r["efficiency"],
                    r["ideal_rps"],
                    r["achieved_over_ideal"],
                    "/".join(str(c) for c in r["calls_per_replica"]),
                    r["spills"],
                    r["preferred_share"],
                    r["client_cpu_ms_per_request"],
                    r["client_cpu_share"],
                    r["client_cpu_wait_share"],
                    r["server_cpu_wait_share"],
                ]
                for r in rows
            ],
        )
    )
    t = doc["target"]
    assert isinstance(t, dict)
    print(f"target: {t['what']}: " + ("met" if t["met"] else "MISSED at " + ", ".join(t["missed"])))
    write_json(args.out, doc)
    return doc


if __name__ == "__main__":
    main()
