"""A fixed set of runs on simulated models whose outputs must not change under a refactor.

Each case is a ``simulate()`` run (labels, confidences, summary, trajectory, server counts)
or an ``icm`` CLI run on a loopback server (the files it writes and its exit code). Times,
paths and ports are removed; everything else is written as sorted JSON, so two snapshots of
two commits compare byte for byte:

    python benchmarks/behaviour_snapshot.py --out before.json
    ...change the code...
    python benchmarks/behaviour_snapshot.py --out after.json && cmp before.json after.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio

from icm_client.cli import main
from icm_client.run import LabelConfig
from icm_client.search.config import SearchConfig
from icm_client.testing import LoopbackServer, simulate, simulated_model, truthfulqa_like
from icm_client.testing.protocol import CompletionsApp

# timing, a random id, and HTTP requests (how many prompts share one request depends on timing)
TIMING = {
    "wall_time_s",
    "elapsed_s",
    "started",
    "finished",
    "updated",
    "time",
    "seconds",
    "journal",
    "http_requests",
}


def scrub(value: Any, tmp: str, port: str) -> Any:
    """Drop timing fields; replace the temporary directory and the server's port."""
    if isinstance(value, dict):
        return {k: scrub(v, tmp, port) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [scrub(v, tmp, port) for v in value]
    if isinstance(value, str):
        value = value.replace(tmp, "<tmp>")
        return value.replace(port, "<port>") if port else value
    return value


SIM_CASES: list[tuple[str, str, int, int, dict[str, Any]]] = [
    (shape, regime, n, seed, config)
    for shape in ("truthfulqa", "gsm8k", "comparison")
    for regime in ("oracle", "noisy", "in-context", "two-concept")
    for seed in (0, 1)
    for n, config in (
        (12, {"strategy": "exact", "search": {"chains": 1}}),
        (12, {"strategy": "exact"}),
        (24, {"strategy": "bounded", "context_size": 8}),
        (
            24,
            {"strategy": "bounded", "context_size": 8, "calibrate": True, "search": {"steps": 30}},
        ),
    )
]


async def sim_case(shape: str, regime: str, n: int, seed: int, raw: dict[str, Any]) -> Any:
    search = SearchConfig(**{"seed": seed, **raw.get("search", {})})
    config = LabelConfig(**{**{k: v for k, v in raw.items() if k != "search"}, "search": search})
    run = await simulate(shape, regime, n, config, seed=seed)
    result = run.result.model_dump(mode="json")
    return {
        "result": scrub(result, "\0", ""),
        "server_prompts": run.server_prompts,
        "server_requests": run.server_requests,
        "agreement": run.agreement,
        "energy": run.energy,
    }


def cli_cases(tmp: Path) -> dict[str, Any]:
    """``icm label`` (several options), ``review``, ``export`` and a resumed run on one
    loopback server; every file they write, read back."""
    sim = truthfulqa_like(16, 0)
    _, model = simulated_model("truthfulqa", "in-context", 16, 0)
    data = tmp / "data.jsonl"
    words = {
        ex.id: "True" if y == 0 else "False" for ex, y in zip(sim.examples, sim.gold, strict=True)
    }
    data.write_text(
        "".join(
            json.dumps({"id": ex.id, **ex.fields, "label": words[ex.id] == "True"}) + "\n"
            for ex in sim.examples
        )
    )
    pins = tmp / "pins.jsonl"
    first = sim.examples[0].id
    pins.write_text(json.dumps({"id": first, "label": words[first]}) + "\n")
    out: dict[str, Any] = {}
    with LoopbackServer(CompletionsApp(model)) as server:
        port = server.base_url.split(":")[-1].split("/")[0]
        base = ["--task", "truthfulqa", "--base-url", server.base_url, "--quiet"]
        runs = {
            "exact-1-chain": ["--chains", "1"],
            "exact": [],
            "bounded": ["--strategy", "bounded", "--context-size", "6"],
            "bounded-calibrated-pinned": [
                *("--strategy", "bounded", "--context-size", "6", "--calibrate"),
                *("--pin", str(pins), "--steps", "24"),
            ],
            "budget-stop": ["--max-calls", "40", "--concurrency", "1"],  # one at a time: which
            # prompts go out before the budget ends is otherwise a matter of timing
        }
        for name, extra in runs.items():
            target = tmp / name / "labels.jsonl"
            target.parent.mkdir()
            cache = ["--cache-dir", str(tmp / name / "cache")]
            argv = ["label", str(data), *base, *cache, "--out", str(target), *extra]
            out[name] = {"exit": quiet(argv)}
            if name == "budget-stop":  # resumed with a larger budget, from its cache
                out[name]["resumed_exit"] = quiet([*argv, "--max-calls", "400"])
            if name == "exact":
                review = tmp / name / "review.jsonl"
                out[name]["review_exit"] = quiet(
                    ["review", str(target), "-n", "3", "--out", str(review)]
                )
                export = tmp / name / "export.jsonl"
                out[name]["export_exit"] = quiet(
                    ["export", str(target), "--format", "labels", "--out", str(export)]
                )
            for path in sorted((tmp / name).rglob("*")):
                if (
                    path.is_file()
                    and "cache" not in path.parts
                    and path.suffix in {".json", ".jsonl"}
                ):
                    text = path.read_text()
                    if path.suffix == ".json":
                        rows = json.loads(text)
                    else:
                        rows = [json.loads(line) for line in text.splitlines() if line]
                    key = str(path.relative_to(tmp / name))
                    out[name][key] = scrub(rows, str(tmp), port)
    return out


def quiet(argv: list[str]) -> int:
    """Run ``icm argv``; its exit code (its error output is shown when it is a usage error)."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else 2
    if code == 2:
        print(err.getvalue(), file=sys.stderr)
    return code


async def snapshot() -> dict[str, Any]:
    sims = {}
    for shape, regime, n, seed, config in SIM_CASES:
        key = f"{shape}/{regime}/n{n}/seed{seed}/{json.dumps(config, sort_keys=True)}"
        sims[key] = await sim_case(shape, regime, n, seed, config)
    return {"simulate": sims}


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only", choices=["simulate", "cli"], default=None)
    parser.add_argument(
        "--compare", type=Path, help="an earlier snapshot: name the cases that differ"
    )
    args = parser.parse_args()
    result: dict[str, Any] = {}
    if args.only in (None, "simulate"):
        result.update(anyio.run(snapshot))
    if args.only in (None, "cli"):
        with tempfile.TemporaryDirectory() as tmp:
            result["cli"] = cli_cases(Path(tmp))
    text = json.dumps(result, sort_keys=True, indent=1)
    text = re.sub(r"\s+\n", "\n", text)
    args.out.write_text(text + "\n")
    print(
        f"{args.out}: {len(result.get('simulate', {}))} simulate() runs, "
        f"{len(result.get('cli', {}))} CLI runs",
        file=sys.stderr,
    )
    if args.compare:
        before = json.loads(args.compare.read_text())
        now = json.loads(text)
        differ = [
            f"{part}: {case}"
            for part in now
            for case in sorted(set(now[part]) | set(before.get(part, {})))
            if now[part].get(case) != before.get(part, {}).get(case)
        ]
        print("\n".join(differ) or f"identical to {args.compare}", file=sys.stderr)
        sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main_()
