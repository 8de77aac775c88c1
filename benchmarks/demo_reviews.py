"""The README's first command over seeds: ICM's agreement beside zero-shot, calls, time.

    python benchmarks/demo_reviews.py [--seeds 0 1 2 3 4] [--baseline] [--quick]
                                      [--fresh-clone SOURCE] [--out FILE]

Runs the README's first ``icm label`` command (read from the README, so the figures are the
command's) as a user runs it, a subprocess of ``icm``, once per ``--seed``, each with an
empty score cache of its own (no run reuses another's scores), on the embedded model and
the engine a fresh clone runs (the prebuilt wheel: ``ICM_LOCAL_ENGINE=prebuilt``). From
each run's summary: agreement with gold, the zero-shot agreement the run printed beside
it, backend calls, prompt tokens (and those llama.cpp served from its prefix cache), the
labeling's seconds (the summary's ``wall_time_s``) and the whole command's, and the 1-minute
load average before and after.

``--baseline`` also runs the previous README demo (``sample:cities``, 40 statements, the
same strategy and steps) once in the same session: on a loaded machine the seconds per call
of the two, measured back to back, give the estimate for a quiet one, each run's labeling
seconds scaled by ``--quiet-ms-per-call`` (the cities demo's cost per call at load 1.6-2.0,
132-139 ms: benchmarks/README.md, "Shared contexts") over the baseline's in this session.

``--fresh-clone SOURCE`` first clones SOURCE (a path or URL of the repository) into a
temporary folder, installs it as the README says (``python3 -m venv .venv && pip install
-e '.[local]'``, timed) and runs the command with that install, from that folder: the
fresh-clone timing. The re-encoded weights stay cached in ``~/.cache/icm-client/models``
between runs (the first run on a machine adds 20-45 s of re-encoding to its command, not
to its labeling).

    # the lead's fresh-clone timing, seeds 0-4, on a quiet machine:
    python benchmarks/demo_reviews.py --fresh-clone /work/main --baseline
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _sim import machine, table, write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
CITIES = (
    "icm label sample:cities --task cities --limit 40 --strategy bounded --context-size 8 "
    "--calibrate --steps 40 --out labels.jsonl"
)


def readme_command(root: Path) -> str:
    """The README's first ``icm label`` command (the one after the install)."""
    for line in (root / "README.md").read_text().splitlines():
        if "pip install -e '.[local]' && icm label" in line:
            return line[line.index("icm label") :].strip()
    raise SystemExit(f"no first 'icm label' command in {root / 'README.md'}")


def install(source: str, into: Path) -> tuple[Path, float]:
    """Clone ``source`` into ``into`` and install it as the README says; the clone and
    the install's seconds."""
    clone = into / "clone"
    start = time.perf_counter()
    subprocess.run(["git", "clone", "-q", source, str(clone)], check=True)
    subprocess.run([sys.executable, "-m", "venv", str(clone / ".venv")], check=True)
    pip = clone / ".venv" / "bin" / "pip"
    subprocess.run([str(pip), "install", "-q", "-e", ".[local]"], cwd=clone, check=True)
    return clone, time.perf_counter() - start


def one_run(icm: Path, root: Path, command: str, seed: int | None, work: Path) -> dict[str, Any]:
    argv = shlex.split(command)[1:]
    name = "baseline" if seed is None else f"seed-{seed}"
    out = work / f"{name}.jsonl"
    argv[argv.index("--out") + 1] = str(out)
    argv += ["--cache-dir", str(work / f"cache-{name}"), "--quiet"]
    if seed is not None:
        argv += ["--seed", str(seed)]
    env = {**os.environ, "ICM_LOCAL_ENGINE": "prebuilt"}
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run([str(icm), *argv], cwd=root, env=env, capture_output=True, text=True)
    whole = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{name} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    s = json.loads(out.with_name(out.name + ".summary.json").read_text())["summary"]
    return {
        "run": name,
        "seed": s["seed"],
        "agreement": s["gold_agreement"],
        "zero_shot": s["zero_shot_agreement"],
        "comparison": s["comparison"],
        "labels": s["label_counts"],
        "calls": s["calls"],
        "zero_shot_calls": s["zero_shot_calls"],
        "prompt_tokens": s["prompt_tokens"],
        "server_cached": s["cached_tokens"],
        "labeling_s": s["wall_time_s"],
        "command_s": round(whole, 1),
        # the labeling's seconds per call of its own (the zero-shot calls come before it)
        "ms_per_call": round(1000 * s["wall_time_s"] / (s["calls"] - s["zero_shot_calls"])),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }


def main(args: argparse.Namespace) -> None:
    doc: dict[str, Any] = {"benchmark": "demo_reviews", "machine": machine(), "engine": "prebuilt"}
    with tempfile.TemporaryDirectory(prefix="icm-demo-") as tmp:
        work = Path(tmp)
        root, icm = ROOT, Path(sys.executable).with_name("icm")
        if args.fresh_clone:
            root, seconds = install(args.fresh_clone, work)
            icm = root / ".venv" / "bin" / "icm"
            doc["fresh_clone"] = {"source": args.fresh_clone, "install_s": round(seconds, 1)}
            print(f"installed a fresh clone in {seconds:.0f} s", flush=True)
        doc["command"] = command = readme_command(root)
        runs: list[dict[str, Any]] = []
        if args.baseline:
            doc["baseline_command"] = CITIES
            runs.append(row := one_run(icm, root, CITIES, None, work))
            print(json.dumps(row), flush=True)
        for seed in args.seeds:
            runs.append(row := one_run(icm, root, command, seed, work))
            print(json.dumps(row), flush=True)
    doc["runs"] = runs
    demo = [r for r in runs if r["run"] != "baseline"]
    agreements = [r["agreement"] for r in demo]
    doc["agreement_range"] = [min(agreements), max(agreements)]
    doc["seeds_at_least_90"] = sum(a >= 0.9 for a in agreements)
    doc["seeds_above_zero_shot"] = sum(r["agreement"] > r["zero_shot"] for r in demo)
    base = next((r for r in runs if r["run"] == "baseline"), None)
    if base is not None:
        # what the cities demo's labeling took on a quiet machine, per its seconds per call
        ratios = [r["ms_per_call"] / base["ms_per_call"] for r in demo]
        doc["ms_per_call_ratio_to_baseline"] = [round(x, 3) for x in ratios]
        scale = args.quiet_ms_per_call / base["ms_per_call"]
        doc["quiet_ms_per_call_of_baseline"] = args.quiet_ms_per_call
        doc["estimated_quiet_labeling_s"] = [round(r["labeling_s"] * scale, 1) for r in demo]
    headers = ["run", "agreement", "zero-shot", "calls", "tokens", "cached", "labeling s"]
    headers += ["command s", "ms/call", "load"]
    keys = ["run", "agreement", "zero_shot", "calls", "prompt_tokens", "server_cached"]
    keys += ["labeling_s", "command_s", "ms_per_call", "load_after"]
    print(table(headers, [[r[k] for k in keys] for r in runs]))
    write_json(args.out, doc)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--baseline", action="store_true", help="also the cities demo, once")
    parser.add_argument("--fresh-clone", metavar="SOURCE", help="clone and install it first")
    parser.add_argument("--out", type=Path, default=RESULTS / "demo_reviews.json")
    parser.add_argument("--quiet-ms-per-call", type=float, default=135.0)
    parser.add_argument("--quick", action="store_true", help="seed 0 only (~1 min quiet)")
    args = parser.parse_args()
    if args.quick:
        args.seeds = [0]
    main(args)
