"""Quality vs cost: each scoring strategy on real data with the real local model, 3 seeds.

    .venv/bin/python benchmarks/quality.py [--quick] [--n 16] [--tasks truthfulqa cities]

For each task, N examples made of whole consistency groups are drawn from the shared data
(``$ICM_SHARED_DATA`` or ``../shared/data``; gold-derived columns dropped) and labeled by
ICM with the embedded model (Gemma 3 270M, llama.cpp on the CPU), once per strategy and
search seed, with no disk cache (every score is paid for). Reported per strategy: agreement
of the final labels with gold (mean and range over seeds), backend calls, prompt tokens,
the tokens the server's prefix cache served, and wall time; each cost also as a ratio to
``exact`` measured in the same run. The strategies:

* ``exact``: the paper's objective, every other labeled example in context;
* ``bounded C``: C demonstrations per example (C = 8 and 4).

Every configuration runs on the same server, one after another, in alternating order per
seed, so that a background load that drifts does not favour one strategy.
Target (issue 6): agreement within 1 point of ``exact``.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
from _sim import machine, table, write_json

from icm_client.backends import OpenAICompletions
from icm_client.client import ScoringClient
from icm_client.dataset import Example, GoldLabels, load_dataset
from icm_client.local import EmbeddedServer
from icm_client.run import LabelConfig, label
from icm_client.search.config import SearchConfig
from icm_client.tasks import get_task
from icm_client.tasks.components import components

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
TASKS = {  # task: (file under the shared data, gold-derived columns)
    "truthfulqa": ("icm-paper/data/train_truthfulqa.json", ("consistency_id",)),
    "cities": ("geometry-of-truth/cities.csv", ("correct_country",)),
    "gsm8k": (
        "icm-paper/data/test_gsm8k.json",
        ("ref_cot", "ref_answer", "consistency_id", "difficulty", "category"),
    ),
}
STRATEGIES: dict[str, LabelConfig] = {
    "exact": LabelConfig(strategy="exact"),
    "bounded 8": LabelConfig(strategy="bounded", context_size=8),
    "bounded 4": LabelConfig(strategy="bounded", context_size=4),
}


def draw(task: str, data: Path, n: int) -> tuple[list[Example], GoldLabels]:
    """About ``n`` examples made of whole components, the same for every strategy and seed."""
    path, drop = TASKS[task]
    ds = load_dataset(data / path, id_field=None, drop=drop)
    comps = components(ds.examples, get_task(task))
    random.Random(f"icm-quality:{task}").shuffle(comps)
    chosen: list[int] = []
    for comp in comps:
        if len(chosen) >= n:
            break
        chosen += comp
    assert ds.gold is not None
    return [ds.examples[i] for i in sorted(chosen)], ds.gold


async def one(
    server: EmbeddedServer,
    examples: list[Example],
    gold: GoldLabels,
    task: str,
    config: LabelConfig,
) -> dict[str, Any]:
    backend = ScoringClient(
        OpenAICompletions(server.base_url, model=server.model_name, provider="llamacpp"),
        cache=False,
        max_concurrency=2,
    )
    start = time.perf_counter()
    try:
        result = await label(examples, get_task(task), backend, config)
    finally:
        await backend.aclose()
    s = result.with_gold(gold).summary
    return {
        "agreement": s.gold_agreement,
        "calls": s.calls,
        "prompt_tokens": s.prompt_tokens,
        "cached_tokens": s.cached_tokens,
        "wall_s": round(time.perf_counter() - start, 2),
        "inconsistencies": s.inconsistencies,
        "label_counts": s.label_counts,
    }


def summarize(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    agree = [r["agreement"] for r in runs]
    return {
        "agreement_mean": statistics.fmean(agree),
        "agreement_min": min(agree),
        "agreement_max": max(agree),
        **{
            k: statistics.fmean(r[k] for r in runs)
            for k in ("calls", "prompt_tokens", "cached_tokens", "wall_s")
        },
    }


async def run(args: argparse.Namespace, data: Path) -> dict[str, Any]:
    names = list(STRATEGIES)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    out: dict[str, Any] = {
        "benchmark": "quality",
        "settings": settings | {"data": str(data)},
        "tasks": {},
    }
    async with EmbeddedServer(n_parallel=2, ctx_per_slot=8192) as server:
        for task in args.tasks:
            examples, gold = draw(task, data, args.n)
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
            for seed in range(args.seeds):
                for name in names if seed % 2 == 0 else names[::-1]:
                    cfg = STRATEGIES[name]
                    cfg = cfg.model_copy(
                        update={"calibrate": args.calibrate, "search": SearchConfig(seed=seed)}
                    )
                    r = await one(server, examples, gold, task, cfg)
                    runs[name].append(r | {"seed": seed})
                    print(
                        f"  {task} {name} seed {seed}: agreement {r['agreement']:.3f}, "
                        f"{r['calls']} calls, {r['prompt_tokens']} tokens, {r['wall_s']} s",
                        file=sys.stderr,
                        flush=True,
                    )
            summary = {name: summarize(rs) for name, rs in runs.items()}
            base = summary["exact"]
            for s in summary.values():
                s["agreement_vs_exact_points"] = 100 * (
                    s["agreement_mean"] - base["agreement_mean"]
                )
                for k in ("calls", "prompt_tokens", "wall_s"):
                    s[f"{k}_ratio"] = s[k] / base[k] if base[k] else None
            out["tasks"][task] = {
                "examples": len(examples),
                "majority": max(
                    sum(gold.by_id[e.id] == v for e in examples) for v in {"True", "False"}
                )
                / len(examples),
                "summary": summary,
                "runs": runs,
            }
            print_task(task, out["tasks"][task])
    return out


def print_task(task: str, doc: dict[str, Any]) -> None:
    rows = []
    for name, s in doc["summary"].items():
        rows.append(
            [
                name,
                f"{100 * s['agreement_mean']:.1f}%",
                f"{100 * s['agreement_min']:.0f}-{100 * s['agreement_max']:.0f}%",
                f"{s['agreement_vs_exact_points']:+.1f}",
                round(s["calls"]),
                f"{s['calls_ratio']:.2f}x",
                round(s["prompt_tokens"]),
                f"{s['prompt_tokens_ratio']:.2f}x",
                round(s["cached_tokens"]),
                s["wall_s"],
                f"{s['wall_s_ratio']:.2f}x",
            ]
        )
    print(
        f"\n{task}: N = {doc['examples']}, majority class {100 * doc['majority']:.1f}%, "
        "means over seeds"
    )
    headers = ["strategy", "agreement", "range", "vs exact (pt)", "calls", "ratio"]
    headers += ["prompt tok", "ratio", "prefix-cached", "wall s", "ratio"]
    print(table(headers, rows), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="N = 6, 1 seed, one task: a smoke run")
    p.add_argument("--n", type=int, default=16, help="examples per task (whole groups)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=["truthfulqa", "cities"])
    p.add_argument("--calibrate", action="store_true", help="calibrated scores for every run")
    p.add_argument("--data", type=Path, help="the shared data folder")
    p.add_argument("--out", type=Path, default=RESULTS / "quality.json")
    args = p.parse_args()
    if args.quick:
        args.n, args.seeds, args.tasks = 6, 1, ["cities"]
    data = args.data or Path(os.environ.get("ICM_SHARED_DATA") or ROOT.parent / "shared" / "data")
    if not data.is_dir():
        raise SystemExit(f"shared data not found at {data} (set ICM_SHARED_DATA or --data)")
    started = time.perf_counter()
    doc = anyio.run(run, args, data)
    doc["machine"] = machine()
    doc["total_s"] = round(time.perf_counter() - started, 1)
    write_json(args.out, doc)


if __name__ == "__main__":
    main()
