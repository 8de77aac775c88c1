"""Cost of each scoring strategy against the reference implementation's call pattern.

    python benchmarks/cost.py [--quick] [--n 64 256] [--tasks truthfulqa gsm8k] [--out PATH]

Default grid: truthfulqa at N = 64 and 256, gsm8k at N = 64 (``DEFAULT_GRID``); giving
``--n`` or ``--tasks`` runs every task at every size.

Every strategy labels the same synthetic dataset (``icm_client.testing.synthetic_examples``)
through the real client stack (``ScoringClient(OpenAICompletions(...), cache=False)``) against
the loopback stand-in server (``_sim.py``), with the search at its API/CLI defaults (it runs
until converged). Calls and
prompt tokens are what the server counted (cross-checked against the client's ``Usage``).
No disk cache: within one run the scorer's memo already answers every repeated prompt, so a
cache only pays across runs (see ``rerun.py``).

The **naive exact** baseline is the reference's call pattern: every prediction the search
asks for is a fresh call (no memo, no cache) with every other labeled example in context. It
is counted, not run: a wrapper ``Scorer`` around the exact run's ``ContextScorer`` counts
every target of every ``predict_many`` call and the prompt tokens of its exact prompt (the
sum of its demonstrations' and its own toy-token counts; checked against tokenizing whole
prompts). The same count is taken on every strategy's own search (``naive_same_search``):
what the reference would pay for that trajectory.

Ratios are naive exact / strategy, both at the same task and N. The issue's target: prompt
tokens per final label at least 20x below naive exact at N = 256.

``prefix-cached`` is the share of the prompt tokens that an unbounded automatic prefix cache
of 16-token blocks (vLLM's) would have served (the server's ``cached_tokens``; each run
starts on an empty cache), and ``uncached tokens/label`` what is left to compute: a server
with prefix caching bills or spends its time on those. No such figure exists for the naive
baseline (it is counted, not sent).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import anyio
from _sim import SimServer, machine, table, write_json

from icm_client.backends import OpenAICompletions
from icm_client.client import ScoringClient
from icm_client.dataset import Example
from icm_client.run import LabelConfig, make_strategy
from icm_client.scoring.base import Assignment, Prediction, Scorer
from icm_client.scoring.context import ContextScorer
from icm_client.search.anneal import ICMSearch
from icm_client.search.consistency import Consistency
from icm_client.search.inputs import SearchInputs
from icm_client.tasks import Task, get_task
from icm_client.testing.data import synthetic_examples
from icm_client.testing.protocol import toy_tokenize

RESULTS = Path(__file__).parent / "results"
TARGET_RATIO = 20.0
TARGET_N = 256

#: (task, N). gsm8k (ConsistencyFix at work) stops at 64 by default: its exact runs at 256
#: make ~80k calls of ~8k tokens (minutes, and GBs for the scorer's prompt memo) on 2 cores.
DEFAULT_GRID = [("truthfulqa", 64), ("truthfulqa", 256), ("gsm8k", 64)]
QUICK_GRID = [("truthfulqa", 16), ("gsm8k", 8)]

STRATEGIES: dict[str, LabelConfig] = {
    "exact": LabelConfig(strategy="exact"),
    "bounded C=8": LabelConfig(strategy="bounded", context_size=8),
    "bounded C=16": LabelConfig(strategy="bounded", context_size=16),
    "bounded C=32": LabelConfig(strategy="bounded", context_size=32),
    "exact +calibrate": LabelConfig(strategy="exact", calibrate=True),
    "bounded C=32 +calibrate": LabelConfig(strategy="bounded", context_size=32, calibrate=True),
}


class NaiveCount:
    """A ``Scorer`` that passes every call on and counts what the reference would have paid:
    one call per target, each with all other labeled examples in context, nothing reused."""

    def __init__(self, inner: Scorer, task: Task, examples: Sequence[Example]) -> None:
        self.inner = inner
        self.task = task
        self.rendered = [task.render(ex) for ex in examples]
        self.own = [len(toy_tokenize(r)) for r in self.rendered]
        self.demo = [
            [len(toy_tokenize(self._demo(j, y))) for y in range(len(task.labels))]
            for j in range(len(examples))
        ]
        self.calls = 0
        self.tokens = 0
        self.checked = 0  # whole prompts tokenized to check the additive count

    def _demo(self, j: int, y: int) -> str:
        return f"{self.rendered[j]}{self.task.labels[y]}\n\n"  # ContextScorer's format

    async def predict_many(
        self, targets: Sequence[int], labels: Assignment
    ) -> dict[int, Prediction]:
        total = sum(self.demo[j][y] for j, y in labels.items())
        for t in targets:
            tokens = total - (self.demo[t][labels[t]] if t in labels else 0) + self.own[t]
            if self.checked < 20 and len(labels) > 1:
                self._check(t, labels, tokens)
            self.tokens += tokens
        self.calls += len(targets)
        return await self.inner.predict_many(targets, labels)

    def _check(self, t: int, labels: Assignment, tokens: int) -> None:
        prompt = "".join(self._demo(j, labels[j]) for j in sorted(labels) if j != t)
        whole = len(toy_tokenize(prompt + self.rendered[t]))
        if whole != tokens:
            raise AssertionError(f"additive token count {tokens} != {whole} for the prompt")
        self.checked += 1


async def run_one(
    sim: SimServer, task: Task, examples: list[Example], config: LabelConfig, concurrency: int
) -> dict[str, object]:
    """One search, built as ``run.label`` builds it, with ``NaiveCount`` around the scorer."""
    backend = ScoringClient(
        OpenAICompletions(sim.base_url, provider="generic"),
        cache=False,
        max_concurrency=concurrency,
    )
    try:
        await backend.prepare()
        scorer = ContextScorer(
            task, examples, backend, make_strategy(config, examples), calibrate=config.calibrate
        )
        naive = NaiveCount(scorer, task, examples)
        search = ICMSearch(
            SearchInputs(
                naive,
                Consistency(task.constraints(examples), len(examples)),
                [task.group(ex) for ex in examples],
                len(task.labels),
                config.search,
            )
        )
        sim.reset()  # each run starts on a fresh server: an empty prefix cache
        before = sim.stats()
        start = time.perf_counter()
        result = await search.run()
        wall = time.perf_counter() - start
        after = sim.stats()
    finally:
        await backend.aclose()
    calls = int(after["completions"] - before["completions"])
    tokens = int(after["prompt_tokens"] - before["prompt_tokens"])
    cached = int(after["cached_tokens"] - before["cached_tokens"])
    usage = backend.usage
    if (usage.calls, usage.prompt_tokens, usage.cached_tokens) != (calls, tokens, cached):
        raise AssertionError(f"client counted {usage.as_dict()}, server {calls}/{tokens}/{cached}")
    n = len(examples)
    return {
        "calls": calls,
        "prompt_tokens": tokens,
        "tokens_per_label": tokens / n,
        "calls_per_label": calls / n,
        "prefix_cached_tokens": cached,
        "prefix_cached_share": cached / tokens if tokens else 0.0,
        "uncached_tokens_per_label": (tokens - cached) / n,
        "predictions": scorer.stats.predictions,
        "memo_hits": scorer.stats.memo_hits,
        "naive_same_search": {"calls": naive.calls, "prompt_tokens": naive.tokens},
        "steps": len(result.trajectory),
        "accepted": sum(s.accepted for s in result.trajectory),
        "labeled_by_search": len(result.searched),
        "inconsistencies": len(result.violated),
        "wall_s": round(wall, 3),
    }


async def bench(args: argparse.Namespace) -> dict[str, object]:
    runs: list[dict[str, object]] = []
    baseline: list[dict[str, object]] = []
    ratios: list[dict[str, object]] = []
    with SimServer() as sim:
        for task_name, n in args.grid:
            task = get_task(task_name)
            examples = synthetic_examples(n, task_name, args.seed)
            naive: dict[str, object] | None = None
            for name in args.strategies:
                config = STRATEGIES[name]
                search = config.search.model_copy(update={"seed": args.seed})
                config = config.model_copy(update={"search": search})
                row = await run_one(sim, task, examples, config, args.concurrency)
                row = {"task": task_name, "n": n, "strategy": name, **row}
                runs.append(row)
                print(
                    f"  {task_name} N={n} {name}: {row['calls']:,} calls, "
                    f"{row['prompt_tokens']:,} tokens, {row['wall_s']} s",
                    file=sys.stderr,
                )
                if name == "exact":
                    same = row["naive_same_search"]
                    assert isinstance(same, dict)
                    naive = {
                        "task": task_name,
                        "n": n,
                        "calls": same["calls"],
                        "prompt_tokens": same["prompt_tokens"],
                        "tokens_per_label": same["prompt_tokens"] / n,
                    }
                    baseline.append(naive)
                assert naive is not None
                ratios.append(
                    {
                        "task": task_name,
                        "n": n,
                        "strategy": name,
                        "calls": _ratio(naive["calls"], row["calls"]),
                        "prompt_tokens": _ratio(naive["prompt_tokens"], row["prompt_tokens"]),
                        "tokens_per_label": _ratio(
                            naive["tokens_per_label"], row["tokens_per_label"]
                        ),
                    }
                )
    at = [r for r in ratios if r["n"] == TARGET_N]
    return {
        "benchmark": "cost",
        "machine": machine(),
        "params": {
            "grid": [{"task": t, "n": n} for t, n in args.grid],
            "seed": args.seed,
            "concurrency": args.concurrency,
            "server": "benchmarks/_sim.py (stand-in model of tests/fault_server.py, toy tokens)",
            "search": "API/CLI defaults (runs until converged)",
            "cache": "none (cache_dir=False); the scorer's in-run memo only",
        },
        "runs": runs,
        "baseline": baseline,
        "ratios": ratios,
        "target": {
            "what": f"prompt tokens per final label >= {TARGET_RATIO:g}x below naive exact "
            f"at N={TARGET_N}",
            "n": TARGET_N,
            "ratio_min": TARGET_RATIO,
            "measured": {f"{r['task']} {r['strategy']}": r["tokens_per_label"] for r in at},
            "met_by": [f"{r['task']} {r['strategy']}" for r in at if _met(r)],
        },
    }


def _ratio(a: object, b: object) -> float | None:
    assert isinstance(a, int | float) and isinstance(b, int | float)
    return a / b if b else None


def _met(r: dict[str, object]) -> bool:
    v = r["tokens_per_label"]
    return isinstance(v, float) and v >= TARGET_RATIO


def report(doc: dict[str, object]) -> str:
    runs = doc["runs"]
    baseline = doc["baseline"]
    ratios = doc["ratios"]
    assert isinstance(runs, list) and isinstance(baseline, list) and isinstance(ratios, list)
    rows: list[list[object]] = []
    for b in baseline:
        rows.append(
            [
                b["task"],
                b["n"],
                "naive exact (baseline)",
                b["calls"],
                b["prompt_tokens"],
                b["tokens_per_label"],
                1.0,
                1.0,
                "-",
                "-",
                "-",
            ]
        )
        for r, q in zip(runs, ratios, strict=True):
            if (r["task"], r["n"]) == (b["task"], b["n"]):
                rows.append(
                    [
                        r["task"],
                        r["n"],
                        r["strategy"],
                        r["calls"],
                        r["prompt_tokens"],
                        r["tokens_per_label"],
                        q["calls"],
                        q["tokens_per_label"],
                        f"{r['prefix_cached_share']:.0%}",
                        r["uncached_tokens_per_label"],
                        r["wall_s"],
                    ]
                )
    headers = [
        "task",
        "N",
        "strategy",
        "calls",
        "prompt tokens",
        "tokens/label",
        "naive/ calls",
        "naive/ tokens/label",
        "prefix-cached",
        "uncached tokens/label",
        "wall s",
    ]
    return table(headers, rows)


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--quick", action="store_true", help="truthfulqa N = 16 and gsm8k N = 8 (seconds)"
    )
    p.add_argument("--n", type=int, nargs="+", help="sizes (default: see DEFAULT_GRID)")
    p.add_argument("--tasks", nargs="+", choices=["truthfulqa", "gsm8k"])
    p.add_argument(
        "--strategies",
        nargs="+",
        default=list(STRATEGIES),
        choices=list(STRATEGIES),
        help="(exact is always run first: it gives the naive baseline)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--concurrency", type=int, default=8, help="the CLI default")
    p.add_argument("--out", type=Path, default=RESULTS / "cost.json")
    args = p.parse_args(argv)
    if args.quick:
        args.grid = QUICK_GRID
    elif args.n is None and args.tasks is None:
        args.grid = DEFAULT_GRID
    else:
        tasks, sizes = args.tasks or ["truthfulqa", "gsm8k"], args.n or [64, 256]
        args.grid = [(t, n) for t in tasks for n in sizes]
    args.strategies = ["exact", *(s for s in args.strategies if s != "exact")]
    doc = anyio.run(bench, args)
    print(report(doc))
    target = doc["target"]
    assert isinstance(target, dict)
    if target["measured"]:
        print(f"target: {target['what']}; met by: {', '.join(target['met_by']) or 'none'}")
    write_json(args.out, doc)
    return doc


if __name__ == "__main__":
    main()
