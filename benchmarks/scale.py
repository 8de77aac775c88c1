"""A 100,000-example file end to end with ``icm scale``, killed midway and resumed.

    .venv/bin/python benchmarks/scale.py [--quick] [--n 100000] [--replicas 4]

The file is made by our own generator (``examples/word_problems.py``: GSM8K verification's
structure, 4 worked solutions per question, about half right). The backend is ``--replicas``
loopback stand-in servers (``_sim.py``, the ``belief`` model: it knows no arithmetic, so
agreement with gold is ~50% by construction; this measures the machinery, not quality),
behind the routing backend. The command, run in a child process as a user would:

    icm scale problems.jsonl --task gsm8k --out labels.jsonl --provider generic \\
        --base-url URL1 ... --seed-examples 1000 --context-size 8 --cache-dir CACHE

is killed (SIGKILL) once propagation has written ``--kill-at`` of its chunks, then run again
unchanged: it resumes from its run directory (finished batches and chunks are kept; the score
cache answers what the killed run had paid for) and finishes. Reported: wall time, calls and
tokens of both runs, examples per second, the resumed run's share of the work, and the peak
memory of the ``icm`` process; the ratio is the resumed run's calls over the killed run's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _sim import SimServer, machine, table, write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
sys.path.insert(0, str(ROOT / "examples"))
from word_problems import problems  # noqa: E402


def command(args: argparse.Namespace, data: Path, work: Path, urls: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "icm_client.cli", "scale", str(data), "--task", "gsm8k"]
    cmd += ["--out", str(work / "labels.jsonl"), "--provider", "generic"]
    for url in urls:
        cmd += ["--base-url", url]
    cmd += ["--seed-examples", str(args.seed_examples), "--context-size", str(args.context_size)]
    cmd += ["--concurrency", str(args.concurrency), "--cache-dir", str(work / "cache")]
    cmd += ["--chunk-size", str(args.chunk_size)]
    return cmd


def chunks_done(work: Path) -> int:
    journal = work / "labels.jsonl.run" / "propagated.jsonl"
    return journal.read_bytes().count(b"\n") if journal.exists() else 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2,000 examples: a smoke run (seconds)")
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--replicas", type=int, default=4)
    p.add_argument("--seed-examples", type=int, default=1000)
    p.add_argument("--context-size", type=int, default=8)
    p.add_argument("--chunk-size", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=16, help="per replica")
    p.add_argument("--kill-at", type=int, default=10, help="chunks done when the run is killed")
    p.add_argument("--work", type=Path, help="keep the file, labels and run directory here")
    p.add_argument("--out", type=Path, default=RESULTS / "scale.json")
    args = p.parse_args()
    if args.quick:
        args.n, args.seed_examples, args.chunk_size, args.kill_at = 2000, 200, 300, 2
    work = args.work or Path(tempfile.mkdtemp(prefix="icm-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / "problems.jsonl"
    with data.open("w", encoding="utf-8") as fh:
        for record in problems(args.n, 0):
            fh.write(json.dumps(record) + "\n")
    servers = [SimServer() for _ in range(args.replicas)]
    for s in servers:
        s.__enter__()
    try:
        cmd = command(args, data, work, [s.base_url for s in servers])
        shown = "icm " + " ".join(cmd[3:]).replace(str(work), "$WORK")
        print(f"$ {shown}", flush=True)
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while chunks_done(work) < args.kill_at and proc.poll() is None:
            time.sleep(0.05)
        if proc.poll() is not None:
            raise SystemExit("the run finished before the kill point: lower --kill-at")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_s = time.perf_counter() - start
        killed_chunks = chunks_done(work)
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        resumed_s = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"the resumed run failed:\n{done.stderr[-3000:]}")
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        summary: dict[str, Any] = json.loads((work / "labels.jsonl.summary.json").read_text())[
            "summary"
        ]
        served = [s.stats() for s in servers]
    finally:
        for s in servers:
            s.__exit__(None, None, None)
    labeled = sum(1 for line in (work / "labels.jsonl").open() if json.loads(line)["label"])
    total_calls = sum(int(x["completions"]) for x in served)
    killed_calls = total_calls - summary["calls"]
    doc = {
        "benchmark": "scale",
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "command": shown,
        "examples": args.n,
        "labeled": labeled,
        "icm_examples": summary["seed_examples"],
        "batches": summary["batches"],
        "chunks": summary["chunks"],
        "killed_after_s": round(killed_s, 1),
        "killed_after_chunks": killed_chunks,
        "killed_run_calls": killed_calls,
        "resumed_s": round(resumed_s, 1),
        "resumed_run_calls": summary["calls"],
        "resumed_run_cache_hits": summary["cache_hits"],
        "resumed_batches": summary["resumed_batches"],
        "resumed_chunks": summary["resumed_chunks"],
        "prompt_tokens_resumed_run": summary["prompt_tokens"],
        "calls_per_replica": [int(x["completions"]) for x in served],
        "examples_per_s": round(args.n / (killed_s + resumed_s), 1),
        "peak_rss_mib_icm_process": round(peak_mib),
        "gold_agreement_icm": summary["gold_agreement_icm"],
        "gold_agreement_propagated": summary["gold_agreement_propagated"],
        "machine": machine(),
    }
    rows = [
        ["killed run", doc["killed_after_s"], killed_calls, f"{killed_chunks} chunks written", ""],
        [
            "resumed run",
            doc["resumed_s"],
            summary["calls"],
            f"{summary['resumed_batches']} batches + {summary['resumed_chunks']} chunks kept",
            f"{summary['cache_hits']:,} cache hits",
        ],
    ]
    print(table(["run", "wall s", "calls", "kept from the killed run", "cache"], rows))
    print(
        f"{labeled:,} of {args.n:,} labeled ({summary['seed_examples']:,} by ICM in "
        f"{summary['batches']} batches, the rest in {summary['chunks']} chunks); "
        f"{doc['examples_per_s']:,} examples/s end to end over {args.replicas} replicas "
        f"(calls per replica {doc['calls_per_replica']}); peak RSS of icm "
        f"{doc['peak_rss_mib_icm_process']} MiB"
    )
    write_json(args.out, doc)


if __name__ == "__main__":
    main()
