"""The simulated-model benchmarks' grid (``quality_sim.py``, ``pins_sim.py``): every cell of
regime x data shape x N x strategy, over seeds, its rows written to the JSON file after
each cell (a long run interrupted keeps its figures), then printed as a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from _sim import machine, table

Row = dict[str, Any]
#: A cell's rows, from its regime, shape, N and strategy; none: the cell is left out.
Cell = Callable[[str, str, int, str], Awaitable[list[Row]]]


def run_grid(
    name: str,
    args: argparse.Namespace,
    cell: Cell,
    headers: list[str],
    columns: Callable[[Row], list[object]],
    **figures: object,
) -> None:
    """Run every cell of the grid ``args`` names (``regimes``, ``shapes``, ``n``,
    ``strategies``), write ``args.out`` (``figures`` beside the rows) and print the rows as a
    table of ``headers``, each row's ``columns``."""
    start = time.perf_counter()

    def save(rows: list[Row]) -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "benchmark": name,
            "command": " ".join(sys.argv),
            "machine": machine(),
            "seeds": args.seeds,
            **figures,
            "wall_s": round(time.perf_counter() - start, 1),
            "rows": rows,
        }
        args.out.write_text(json.dumps(doc, indent=2) + "\n")

    async def sweep() -> list[Row]:
        rows: list[Row] = []
        for regime in args.regimes:
            for shape in args.shapes:
                for n in args.n:
                    for strategy in args.strategies:
                        key = {"regime": regime, "shape": shape, "n": n, "strategy": strategy}
                        rows += [key | row for row in await cell(regime, shape, n, strategy)]
                        save(rows)
        return rows

    rows = anyio.run(sweep)
    print(table(headers, [columns(r) for r in rows]))
    save(rows)
    print(f"wrote {args.out}")
