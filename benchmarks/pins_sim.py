"""Pinned labels on simulated models: how many pins reach gold where the search alone does not?

    .venv/bin/python benchmarks/pins_sim.py [--quick] [--n 32 128] [--seeds 0 1 2]

For each regime, data shape, strategy, N and seed: one unsupervised ``label()`` run, then
for each pin count k, a re-run with k pins: the k least-certain labels of the unsupervised
run (``icm review``'s rule, ``pins.least_certain``) pinned to their gold labels, as a
careful person would. All runs of a seed share one score cache, as ``icm review`` and a
re-run with ``--pin`` do. Reported per cell: agreement with gold over the unpinned
examples (mean and worst seed), how many seeds reach 95%, and the backend calls a pinned
re-run makes as a share of the unsupervised run's (the rest come from the cache).

``in-context-inverted`` is ``InContext`` with a zero-shot prior that is right on 30% of
the examples: its in-context learning carries the concept, but the sign is left to a prior
that points the wrong way, so the unsupervised search settles on the complement of gold.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from _grid import Row, run_grid

from icm_client.backends import OpenAICompletions
from icm_client.client import ScoringClient
from icm_client.pins import least_certain
from icm_client.run import LabelConfig, LabelResult, label
from icm_client.search.config import SearchConfig
from icm_client.tasks import get_task
from icm_client.testing import (
    MOCK_URL,
    REGIMES,
    SHAPES,
    CompletionsApp,
    InContext,
    mock_client,
)
from icm_client.testing.harness import ModelFactory

RESULTS = Path(__file__).parent / "results"
EXTRA: dict[str, ModelFactory] = {
    "in-context-inverted": lambda task, data, seed: InContext(
        task, data.examples, data.gold, seed=seed, prior_accuracy=0.3
    ),
}
MODELS = {**REGIMES, **EXTRA}
STRATEGIES = {
    "exact": {"strategy": "exact"},
    "bounded 8": {"strategy": "bounded", "context_size": 8},
}


async def one_seed(
    regime: str, shape: str, n: int, strategy: str, seed: int, pins: list[int]
) -> list[dict[str, Any]]:
    data = SHAPES[shape](n, seed)
    task = get_task(data.task)
    app = CompletionsApp(MODELS[regime](task, data, seed))
    words = [w.strip() for w in task.labels]
    gold = {ex.id: words[y] for ex, y in zip(data.examples, data.gold, strict=True)}
    config = LabelConfig(**STRATEGIES[strategy], search=SearchConfig(seed=seed))  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as cache:

        async def run(pinned: dict[str, str]) -> LabelResult:
            backend = OpenAICompletions(MOCK_URL, app.name, client=mock_client(app))
            async with ScoringClient(backend, cache=cache) as client:
                return await label(data.examples, task, client, config, pins=pinned)

        free = await run({})
        out = []
        for k in pins:
            chosen = least_certain([r.model_dump() for r in free.rows], k)
            result = free if k == 0 else await run({r["id"]: gold[r["id"]] for r in chosen})
            rows = [r for r in result.rows if not r.pinned]
            agreement = sum(r.label == gold[r.id] for r in rows) / len(rows)
            out.append(
                {
                    "pins": k,
                    "agreement": agreement,
                    "calls": result.summary.calls,
                    "cache_hits": result.summary.cache_hits,
                    "calls_vs_unpinned": result.summary.calls / max(1, free.summary.calls),
                }
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N=32, one seed, 0 and 2 pins (CI)")
    parser.add_argument("--n", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pins", type=int, nargs="+", default=[0, 1, 2, 4, 8])
    parser.add_argument(
        "--regimes", nargs="+", default=["in-context-inverted"], choices=list(MODELS)
    )
    parser.add_argument("--shapes", nargs="+", default=["truthfulqa"], choices=list(SHAPES))
    parser.add_argument(
        "--strategies", nargs="+", default=["exact", "bounded 8"], choices=list(STRATEGIES)
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "pins_sim.json")
    args = parser.parse_args()
    if args.quick:
        args.n, args.seeds, args.pins, args.strategies = [32], [0], [0, 2], ["exact"]
    args.pins = sorted(set(args.pins) | {0})

    async def cell(regime: str, shape: str, n: int, strategy: str) -> list[Row]:
        per_seed = [
            await one_seed(regime, shape, n, strategy, seed, args.pins) for seed in args.seeds
        ]
        rows = []
        for j, k in enumerate(args.pins):
            cells = [s[j] for s in per_seed]
            row = {
                "pins": k,
                "agreement": statistics.mean(c["agreement"] for c in cells),
                "worst": min(c["agreement"] for c in cells),
                "seeds_at_gold": sum(c["agreement"] >= 0.95 for c in cells),
                "per_seed": [c["agreement"] for c in cells],
                "calls_vs_unpinned": statistics.mean(c["calls_vs_unpinned"] for c in cells),
            }
            rows.append(row)
            print(
                f"{regime:20} {shape:10} N={n:<4} {strategy:9} pins {k:<3} "
                f"agreement {row['agreement']:.3f} (worst {row['worst']:.3f})",
                file=sys.stderr,
                flush=True,
            )
        return rows

    headers = ["regime", "shape", "N", "strategy", "pins", "agreement", "worst seed"]
    headers += ["seeds >= 95%", "calls vs unpinned"]
    run_grid(
        "pins_sim",
        args,
        cell,
        headers,
        lambda r: [
            r["regime"],
            r["shape"],
            r["n"],
            r["strategy"],
            r["pins"],
            f"{r['agreement']:.1%}",
            f"{r['worst']:.1%}",
            f"{r['seeds_at_gold']}/{len(args.seeds)}",
            f"{r['calls_vs_unpinned']:.2f}",
        ],
    )


if __name__ == "__main__":
    main()
