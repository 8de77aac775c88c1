"""Cached re-run: a finished run run again, answered from the score cache.

    python benchmarks/rerun.py [--quick] [--n 256] [--context-size 32]

A synthetic TruthfulQA-shaped dataset of N examples is labeled with the bounded strategy
against the loopback stand-in server (``_sim.py``, no latency) with a fresh cache directory,
then run again with the same cache, two ways (each with its own cache directory):

* API: ``await label(...)`` in this process, each run with a new ``ScoringClient`` (a new
  ``ScoreCache`` opening the directory); the time is the run's own;
* CLI: ``icm label ... --provider generic --cache-dir D --quiet`` in a new process, timed
  from process start (interpreter start-up and imports included): the first run, a re-run
  with ``--restart`` (discards the run's checkpoint, keeps the cache: the whole search is
  replayed from cached scores), and the same command again (it resumes the finished run's
  checkpoint).

Backend calls are the completions the server answered, cross-checked with the run summary;
the labels of every re-run are checked to equal the first run's. The ratio is wall time over
the first run's on the same path. Target (issue 6): 0 calls and under 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import anyio
from _sim import SimServer, machine, table, write_json

from icm_client.backends import OpenAICompletions
from icm_client.client import ScoringClient
from icm_client.run import LabelConfig, LabelResult, label
from icm_client.tasks import get_task
from icm_client.testing.data import synthetic_examples

RESULTS = Path(__file__).parent / "results"
TARGET_S = 2.0


async def api_run(
    sim: SimServer, n: int, config: LabelConfig, cache: Path, concurrency: int
) -> tuple[dict[str, object], LabelResult]:
    examples = synthetic_examples(n, "truthfulqa")
    backend = ScoringClient(
        OpenAICompletions(sim.base_url, provider="generic"),
        cache=cache,
        max_concurrency=concurrency,
    )
    before = sim.stats()
    start, cpu = time.perf_counter(), time.process_time()
    try:
        result = await label(examples, get_task("truthfulqa"), backend, config)
    finally:
        await backend.aclose()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    calls = int(sim.stats()["completions"] - before["completions"])
    if calls != result.summary.calls:
        raise AssertionError(f"server answered {calls}, the summary says {result.summary.calls}")
    return {
        "calls": calls,
        "cache_hits": result.summary.cache_hits,
        "prompt_tokens": result.summary.prompt_tokens,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
    }, result


def cli_run(
    sim: SimServer, data: Path, out: Path, cache: Path, args: argparse.Namespace, *extra: str
) -> tuple[dict[str, object], list[dict[str, object]]]:
    cmd = [
        sys.executable,
        "-m",
        "icm_client.cli",
        "label",
        str(data),
        "--task",
        "truthfulqa",
        "--out",
        str(out),
        "--base-url",
        sim.base_url,
        "--provider",
        "generic",
        "--cache-dir",
        str(cache),
        "--strategy",
        "bounded",
        "--context-size",
        str(args.context_size),
        "--concurrency",
        str(args.concurrency),
        "--quiet",
        *extra,
    ]
    before = sim.stats()
    start, cpu = time.perf_counter(), _children_cpu()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall, cpu = time.perf_counter() - start, _children_cpu() - cpu
    calls = int(sim.stats()["completions"] - before["completions"])
    summary = json.loads(out.with_name(out.name + ".summary.json").read_text())["summary"]
    if calls != summary["calls"]:
        raise AssertionError(f"server answered {calls}, the summary says {summary['calls']}")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    return {
        "calls": calls,
        "cache_hits": summary["cache_hits"],
        "prompt_tokens": summary["prompt_tokens"],
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "run_wall_s": summary["wall_time_s"],
    }, rows


def _children_cpu() -> float:
    """CPU seconds of the finished child processes (the CLI runs; not the live server)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def bench(args: argparse.Namespace) -> dict[str, object]:
    config = LabelConfig(strategy="bounded", context_size=args.context_size)
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp, SimServer() as sim:
        cache = Path(tmp) / "api-cache"
        first, result = await api_run(sim, args.n, config, cache, args.concurrency)
        again, result2 = await api_run(sim, args.n, config, cache, args.concurrency)
        labels = [r.label for r in result.rows]
        if [r.label for r in result2.rows] != labels:
            raise AssertionError("the cached re-run gave other labels")
        rows.append({"path": "API", "run": "first (fresh cache)", **first})
        rows.append({"path": "API", "run": "re-run", **again})
        data = Path(tmp) / "data.jsonl"
        with data.open("w") as f:
            for ex in synthetic_examples(args.n, "truthfulqa"):
                f.write(json.dumps({"id": ex.id, **ex.fields}) + "\n")
        out, cache = Path(tmp) / "labels.jsonl", Path(tmp) / "cli-cache"
        runs = [
            ("first (fresh cache)", ()),
            ("re-run --restart (cache only)", ("--restart",)),
            ("re-run, same command (checkpoint)", ()),
        ]
        for name, extra in runs:
            row, cli_labels = cli_run(sim, data, out, cache, args, *extra)
            if [r["label"] for r in cli_labels] != labels:
                raise AssertionError(f"CLI {name} gave other labels than the API run")
            rows.append({"path": "CLI", "run": name, **row})
    for r in rows:
        base = next(f for f in rows if f["path"] == r["path"])  # the path's first run
        r["wall_over_first"] = round(_num(r["wall_s"]) / _num(base["wall_s"]), 4)
    restart = rows[3]
    return {
        "benchmark": "rerun",
        "machine": machine(),
        "params": {
            "n": args.n,
            "strategy": "bounded",
            "context_size": args.context_size,
            "concurrency": args.concurrency,
            "task": "truthfulqa (synthetic)",
            "server": "benchmarks/_sim.py (belief stand-in, no latency)",
        },
        "results": rows,
        "target": {
            "what": f"re-run: 0 backend calls and under {TARGET_S:g} s",
            "calls": again["calls"],
            "wall_s": again["wall_s"],
            "cli_wall_s": restart["wall_s"],
            "met": again["calls"] == 0 and _num(again["wall_s"]) < TARGET_S,
            "cli_met": restart["calls"] == 0 and _num(restart["wall_s"]) < TARGET_S,
        },
    }


def _num(v: object) -> float:
    assert isinstance(v, int | float)
    return float(v)


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="N = 32, C = 8 (seconds)")
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--context-size", type=int, default=32)
    p.add_argument("--concurrency", type=int, default=8, help="the CLI default")
    p.add_argument("--out", type=Path, default=RESULTS / "rerun.json")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.context_size = 32, 8
    os.environ.pop("ICM_CACHE_DIR", None)
    doc = anyio.run(bench, args)
    rows = doc["results"]
    assert isinstance(rows, list)
    headers = [
        "path",
        "run",
        "calls",
        "cache hits",
        "prompt tokens",
        "wall s",
        "/ first",
        "client CPU s",
    ]
    keys = [
        "path",
        "run",
        "calls",
        "cache_hits",
        "prompt_tokens",
        "wall_s",
        "wall_over_first",
        "cpu_s",
    ]
    print(table(headers, [[r.get(k, "-") for k in keys] for r in rows]))
    t = doc["target"]
    assert isinstance(t, dict)
    print(
        f"target: {t['what']}: API {'met' if t['met'] else 'MISSED'} ({t['wall_s']} s), "
        f"CLI {'met' if t['cli_met'] else 'MISSED'} ({t['cli_wall_s']} s with start-up)"
    )
    write_json(args.out, doc)
    return doc


if __name__ == "__main__":
    main()
