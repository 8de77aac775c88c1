"""Search CPU: time per annealing step with an instant scorer.

    python benchmarks/search_cpu.py [--quick] [--n 2560] [--baseline-n 256] [--profile FILE]

The scorer answers every ``predict_many`` at once with a fixed prediction per example (a
belief about each example, 80 % confident on average, independent of the context), so the
search makes progress as over a real model and all the time measured is the search's own:
sampling, bookkeeping, the energy, ConsistencyFix. Steps = N (the default). The figure is
CPU time per step at N (``time.process_time``: the search's own, whatever else the machine
runs; the wall time is beside it), target under 1 ms at N = 2,560, and its ratio to the
same at the baseline N (how the step cost scales). ``scorer share`` is the part spent in
the instant scorer (building the dict it must return). Both tasks: ``truthfulqa``
(synthetic, no constraints between distinct claims) and ``gsm8k`` (answer constraints:
ConsistencyFix runs). ``--profile FILE`` writes a cProfile of each task's N run.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import math
import time
from collections.abc import Sequence
from pathlib import Path

import anyio
from _sim import machine, table, write_json

from icm_client.scoring.base import Assignment, Prediction
from icm_client.search.anneal import ICMSearch
from icm_client.search.config import SearchConfig
from icm_client.search.consistency import Consistency
from icm_client.search.inputs import SearchInputs
from icm_client.tasks import get_task
from icm_client.testing.data import synthetic_examples

RESULTS = Path(__file__).parent / "results"
TARGET_MS = 1.0


class InstantScorer:
    """A fixed prediction per example; counts calls and the time spent answering."""

    def __init__(self, n: int) -> None:
        self.table = []
        for i in range(n):
            h = hashlib.sha256(str(i).encode()).digest()
            p = 0.6 + 0.39 * h[0] / 255  # confidence in the believed label
            lp = (math.log(p), math.log(1 - p))
            self.table.append(Prediction(lp if h[1] % 2 else lp[::-1]))
        self.calls = 0
        self.targets = 0
        self.seconds = 0.0

    async def predict_many(
        self, targets: Sequence[int], labels: Assignment
    ) -> dict[int, Prediction]:
        start = time.perf_counter()
        table = self.table
        out = {t: table[t] for t in targets}
        self.calls += 1
        self.targets += len(targets)
        self.seconds += time.perf_counter() - start
        return out


async def one(task_name: str, n: int, seed: int, profile: Path | None) -> dict[str, object]:
    task = get_task(task_name)
    examples = synthetic_examples(n, task_name, seed)
    scorer = InstantScorer(n)
    consistency = Consistency(task.constraints(examples), n)
    search = ICMSearch(
        SearchInputs(
            scorer,
            consistency,
            [task.group(ex) for ex in examples],
            len(task.labels),
            SearchConfig(seed=seed, steps=n),  # N steps of the paper's loop: CPU per step
        )
    )
    profiler = cProfile.Profile() if profile is not None else None
    cpu, wall = time.process_time(), time.perf_counter()
    if profiler is not None:
        profiler.enable()
    result = await search.run()
    if profiler is not None:
        profiler.disable()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if profiler is not None and profile is not None:
        profiler.dump_stats(str(profile))
    steps = len(result.trajectory)
    return {
        "task": task_name,
        "n": n,
        "constraints": len(consistency.constraints),
        "steps": steps,
        "changed_steps": sum(s.changed for s in result.trajectory),
        "accepted": sum(s.accepted for s in result.trajectory),
        "labeled_by_search": len(result.searched),
        "scorer_calls": scorer.calls,
        "predictions": scorer.targets,
        "wall_s": round(wall, 4),
        "cpu_s": round(cpu, 4),
        "ms_per_step": round(wall * 1000 / steps, 4),
        "cpu_ms_per_step": round(cpu * 1000 / steps, 4),
        "scorer_share": round(scorer.seconds / wall, 3),
    }


async def bench(args: argparse.Namespace) -> dict[str, object]:
    rows: list[dict[str, object]] = []
    ratios: list[dict[str, object]] = []
    for task_name in args.tasks:
        base = await one(task_name, args.baseline_n, args.seed, None)
        profile = None
        if args.profile is not None:
            profile = args.profile.with_name(
                f"{args.profile.stem}-{task_name}{args.profile.suffix}"
            )
        big = await one(task_name, args.n, args.seed, profile)
        rows += [base, big]
        ratios.append(
            {
                "task": task_name,
                "n": args.n,
                "baseline_n": args.baseline_n,
                "ms_per_step": _num(big["ms_per_step"]) / _num(base["ms_per_step"]),
                "cpu_ms_per_step": _num(big["cpu_ms_per_step"]) / _num(base["cpu_ms_per_step"]),
            }
        )
    # CPU time (``time.process_time``): the search's own cost, not the waits of a shared
    # machine's scheduler; the wall time per step is in the rows beside it.
    at = {str(r["task"]): _num(r["cpu_ms_per_step"]) for r in rows if r["n"] == args.n}
    return {
        "benchmark": "search_cpu",
        "machine": machine(),
        "params": {
            "n": args.n,
            "baseline_n": args.baseline_n,
            "seed": args.seed,
            "tasks": args.tasks,
            "search": "N steps of the paper's loop (steps = N)",
        },
        "results": rows,
        "ratios": ratios,
        "target": {
            "what": f"under {TARGET_MS:g} ms of search CPU per step at N={args.n}",
            "cpu_ms_per_step": at,
            "met": {task: v < TARGET_MS for task, v in at.items()},
        },
    }


def _num(v: object) -> float:
    assert isinstance(v, int | float)
    return float(v)


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="N = 256 against 64 (seconds)")
    p.add_argument("--n", type=int, default=2560)
    p.add_argument("--baseline-n", type=int, default=256)
    p.add_argument(
        "--tasks", nargs="+", default=["truthfulqa", "gsm8k"], choices=["truthfulqa", "gsm8k"]
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", type=Path, help="cProfile of the N run, per task (FILE-TASK)")
    p.add_argument("--out", type=Path, default=RESULTS / "search_cpu.json")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.baseline_n = 256, 64
    doc = anyio.run(bench, args)
    rows = doc["results"]
    assert isinstance(rows, list)
    headers = [
        "task",
        "N",
        "constraints",
        "steps",
        "changed",
        "accepted",
        "labeled",
        "predictions",
        "wall s",
        "ms/step",
        "CPU ms/step",
        "scorer share",
    ]
    keys = [
        "task",
        "n",
        "constraints",
        "steps",
        "changed_steps",
        "accepted",
        "labeled_by_search",
        "predictions",
        "wall_s",
        "ms_per_step",
        "cpu_ms_per_step",
        "scorer_share",
    ]
    print(table(headers, [[r[k] for k in keys] for r in rows]))
    ratios = doc["ratios"]
    assert isinstance(ratios, list)
    for r in ratios:
        print(
            f"{r['task']}: CPU ms/step at N={r['n']} / at N={r['baseline_n']}: "
            f"{r['cpu_ms_per_step']:.2f}x (wall: {r['ms_per_step']:.2f}x)"
        )
    t = doc["target"]
    assert isinstance(t, dict)
    print(
        f"target: {t['what']}: "
        + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in t["met"].items())
    )
    write_json(args.out, doc)
    return doc


if __name__ == "__main__":
    main()
