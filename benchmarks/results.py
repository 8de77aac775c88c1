"""Make ``docs/results.md``: ICM and every baseline on several tasks, with the embedded model.

    .venv/bin/python benchmarks/results.py                # the full document (hours on a CPU)
    .venv/bin/python benchmarks/results.py --quick        # tiny sizes: checks the pipeline

For each task the script (1) draws a sample of whole consistency groups from the shared data
(seeded; gold-derived columns dropped), split into train and test by group, and writes both
as JSONL into the work directory; then runs, in this process, exactly the commands the
document lists: (2) ``icm label`` on the train split and (3) ``icm eval`` with those labels,
which evaluates every condition (zero-shot, ICM, gold, random, perturbed, bootstrap, and chat
with ``--chat-model``). The document reports the numbers as they are, near chance included.

Data: ``$ICM_SHARED_DATA`` or ``--data``, else ``../shared/data`` beside the repository.
Backend: the embedded model, or ``--base-url`` (any OpenAI-compatible completions server).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icm_client.cli import main as icm
from icm_client.dataset import Example, GoldLabels, load_dataset
from icm_client.evaluate import split_by_group
from icm_client.tasks import get_task
from icm_client.tasks.components import components

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Spec:
    """A task of the document: where its data comes from and how it is split."""

    name: str
    task: str
    files: tuple[str, ...]  # one file: split by group; two: train, test
    drop: tuple[str, ...] = ()
    note: str = ""


SPECS = {
    s.name: s
    for s in (
        Spec(
            "cities",
            "cities",
            ("geometry-of-truth/cities.csv",),
            ("correct_country",),
            "city-country statements; split by city",
        ),
        Spec(
            "cities+neg",
            "cities",
            ("geometry-of-truth/cities.csv", "geometry-of-truth/neg_cities.csv"),
            ("correct_country",),
            "cities and their negations in one file ('is in' / 'is not in'); split by city",
        ),
        Spec(
            "larger+smaller",
            "larger_than",
            ("geometry-of-truth/larger_than.csv", "geometry-of-truth/smaller_than.csv"),
            ("diff", "abs_diff"),
            "number comparisons in both directions; split by pair of numbers",
        ),
        Spec(
            "truthfulqa",
            "truthfulqa",
            ("icm-paper/data/train_truthfulqa.json", "icm-paper/data/test_truthfulqa.json"),
            ("consistency_id",),
            "the paper's train and test files",
        ),
        Spec(
            "gsm8k",
            "gsm8k",
            ("icm-paper/data/test_gsm8k.json",),
            ("ref_cot", "ref_answer", "consistency_id", "difficulty", "category"),
            "GSM8K verification, the paper's test file split by question",
        ),
        Spec(
            "alpaca",
            "comparison",
            ("icm-paper/data/test_alpaca.json",),
            ("candidate_label", "confidence", "consistency_id", "hh_type"),
            "Alpaca comparisons, the paper's test file split by pair (a pair and its swap)",
        ),
    )
}
PAIRED = {"cities+neg", "larger+smaller"}  # two files that form one dataset


def settings(quick: bool) -> dict[str, Any]:
    if quick:
        return {
            "tasks": "cities,truthfulqa,gsm8k,alpaca",
            "examples": 16,
            "seeds": 2,
            "steps": 8,
            "context_size": 4,
            "max_demo_tokens": 512,
            "bootstrap_rounds": 1,
            "bootstrap_folds": 2,
        }
    return {
        "tasks": ",".join(SPECS),
        "examples": 200,
        "seeds": 3,
        "steps": None,  # the train split's size
        "context_size": 16,
        "max_demo_tokens": 1024,
        "bootstrap_rounds": 2,
        "bootstrap_folds": 4,
    }


def sample(examples: Sequence[Example], task_name: str, n: int, seed: int) -> list[Example]:
    """About ``n`` examples made of whole components (groups joined by constraints)."""
    comps = components(examples, get_task(task_name))
    random.Random(f"icm-results:{seed}").shuffle(comps)
    chosen: list[int] = []
    for comp in comps:
        if len(chosen) >= n:
            break
        chosen += comp
    return [examples[i] for i in sorted(chosen)]


def load(spec: Spec, data: Path, n: int) -> tuple[list[Example], list[Example], GoldLabels]:
    sets = [load_dataset(data / f, id_field=None, drop=spec.drop) for f in spec.files]
    gold = GoldLabels({k: v for ds in sets for k, v in (ds.gold.by_id if ds.gold else {}).items()})
    if len(sets) == 2 and spec.name not in PAIRED:  # given train and test files
        train = sample(sets[0].examples, spec.task, n // 2, 0)
        test = sample(sets[1].examples, spec.task, n // 2, 1)
        return train, test, gold
    picked = sample([ex for ds in sets for ex in ds.examples], spec.task, n, 0)
    tr, te = split_by_group(picked, get_task(spec.task), 0.5, 0)
    return list(tr), list(te), gold


def write(path: Path, examples: Sequence[Example], gold: GoldLabels) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for ex in examples:
            row = {"id": ex.id, **ex.fields, "label": gold.by_id[ex.id]}
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def run_cli(argv: list[str], shown: list[str], subst: dict[str, str]) -> None:
    text = "icm " + shlex.join(argv)
    for value, name in subst.items():
        text = text.replace(value, name)
    shown.append(text)
    print(f"$ {text}", file=sys.stderr, flush=True)
    code = icm(argv)
    if code != 0:
        raise SystemExit(f"command failed with exit code {code}: {text}")


def pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}%"


def acc_cell(c: dict[str, Any]) -> str:
    if c.get("skipped"):
        return "—"
    ci = c.get("ci95")
    return pct(c["accuracy"]) + ("" if ci is None else f" ± {100 * ci:.1f}")


def commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True
        )
        return out.stdout.strip() + (" (uncommitted changes)" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (minutes): a smoke run")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "results.md")
    p.add_argument("--data", type=Path, default=None, help="the shared data folder")
    p.add_argument("--work", type=Path, help="keep the splits, labels and results here")
    p.add_argument("--tasks", help=f"comma-separated subset of {','.join(SPECS)}")
    p.add_argument("--examples", type=int, help="examples per task (train + test)")
    p.add_argument("--seeds", type=int)
    p.add_argument("--steps", type=int, help="annealing steps (default: train size)")
    p.add_argument("--context-size", type=int, help="ICM bounded context")
    p.add_argument("--max-demo-tokens", type=int)
    p.add_argument("--no-calibrate", action="store_true", help="raw (uncalibrated) scores")
    p.add_argument("--chat-model", help="also the chat zero-shot baseline (Anthropic)")
    p.add_argument("--base-url", help="an OpenAI-compatible server instead of the embedded one")
    p.add_argument("--cache-dir", help="score cache (default: icm's)")
    args = p.parse_args()
    cfg = settings(args.quick)
    for key in ("tasks", "examples", "seeds", "steps", "context_size", "max_demo_tokens"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    data = args.data or Path(os.environ.get("ICM_SHARED_DATA") or ROOT.parent / "shared" / "data")
    work = args.work or Path(tempfile.mkdtemp(prefix="icm-results-"))
    work.mkdir(parents=True, exist_ok=True)
    subst = {str(work): "$WORK", str(data): "$DATA"}
    backend = ["--base-url", args.base_url] if args.base_url else []
    backend += ["--cache-dir", args.cache_dir] if args.cache_dir else []
    calibrate = [] if args.no_calibrate else ["--calibrate"]
    started = time.time()
    sections: list[str] = []
    summary_rows: list[tuple[str, dict[str, Any]]] = []
    for name in cfg["tasks"].split(","):
        spec = SPECS[name]
        train, test, gold = load(spec, data, cfg["examples"])
        stem = work / name.replace("+", "_")
        train_path, test_path = Path(f"{stem}.train.jsonl"), Path(f"{stem}.test.jsonl")
        write(train_path, train, gold)
        write(test_path, test, gold)
        labels, result = Path(f"{stem}.labels.jsonl"), Path(f"{stem}.eval.json")
        commands: list[str] = []
        t0 = time.time()
        label_argv = ["label", str(train_path), "--task", spec.task, "--out", str(labels)]
        label_argv += ["--strategy", "bounded", "--context-size", str(cfg["context_size"])]
        label_argv += ["--steps", str(cfg["steps"])] if cfg["steps"] else []
        run_cli([*label_argv, *calibrate, "--quiet", *backend], commands, subst)
        eval_argv = ["eval", "--train", str(train_path), "--test", str(test_path)]
        eval_argv += ["--task", spec.task, "--labels", str(labels), "--out", str(result)]
        eval_argv += [
            "--seeds",
            str(cfg["seeds"]),
            "--max-demo-tokens",
            str(cfg["max_demo_tokens"]),
        ]
        eval_argv += ["--bootstrap-rounds", str(cfg["bootstrap_rounds"])]
        eval_argv += ["--bootstrap-folds", str(cfg["bootstrap_folds"])]
        eval_argv += ["--chat-model", args.chat_model] if args.chat_model else []
        run_cli([*eval_argv, *calibrate, "--quiet", *backend], commands, subst)
        minutes = (time.time() - t0) / 60
        ev = json.loads(result.read_text())
        run = json.loads(Path(f"{labels}.summary.json").read_text())["summary"]
        diag = json.loads((Path(f"{labels}.run") / "diagnostics.json").read_text())["diagnostics"]
        summary_rows.append((name, ev))
        sections.append(section(spec, ev, run, diag, commands, len(train), len(test), minutes))
    text = document(cfg, args, summary_rows, sections, data, time.time() - started)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}; work files in {work}", file=sys.stderr)


def section(
    spec: Spec,
    ev: dict[str, Any],
    run: dict[str, Any],
    diag: dict[str, Any],
    commands: list[str],
    n_train: int,
    n_test: int,
    minutes: float,
) -> str:
    from icm_client.evaluate import EvalResult

    table = EvalResult.model_validate(ev).table("markdown")
    counts = ", ".join(f"{k} {v}" for k, v in run["label_counts"].items())
    warnings = [f"`{f['code']}`" for f in diag["findings"] if f["severity"] == "warning"]
    icm_cost = f"{run['calls']} calls, {run['prompt_tokens']} prompt tokens"
    boot = next((c for c in ev["conditions"] if c["name"] == "bootstrap"), None)
    boot_cost = (
        ""
        if not boot or boot.get("skipped")
        else (
            f"; bootstrap labels + evaluation: {boot['usage'].get('calls', 0)} calls, "
            f"{boot['usage'].get('prompt_tokens', 0)} prompt tokens"
        )
    )
    lines = [
        f"## {spec.name}",
        "",
        f"{spec.note[:1].upper()}{spec.note[1:]}. Task `{spec.task}`; "
        f"{n_train} train / {n_test} test examples "
        f"(columns dropped, gold-derived or unused: {', '.join(spec.drop) or 'none'}). "
        f"{minutes:.1f} min.",
        "",
        "```sh",
        *commands,
        "```",
        "",
        f"ICM on the train split: agreement with gold {pct(run.get('gold_agreement'))}; "
        f"labels {counts}; {run['inconsistencies']} inconsistencies left; "
        f"{run['accepted']} of {run['steps']} steps accepted; cost {icm_cost}{boot_cost}. "
        f"Warnings: {', '.join(warnings) or 'none'}.",
        "",
        table,
        "",
    ]
    return "\n".join(lines)


def document(
    cfg: dict[str, Any],
    args: argparse.Namespace,
    rows: list[tuple[str, dict[str, Any]]],
    sections: list[str],
    data: Path,
    seconds: float,
) -> str:
    names = ["zero-shot", "icm", "gold", "random", "perturbed", "bootstrap", "chat"]
    head = "| task | majority | " + " | ".join(names) + " |"
    table = [head, "|" + "---|" * (len(names) + 2)]
    for name, ev in rows:
        by = {c["name"]: c for c in ev["conditions"]}
        cells = [acc_cell(by[n]) if n in by else "—" for n in names]
        table.append(f"| {name} | {pct(ev['majority_accuracy'])} | " + " | ".join(cells) + " |")
    named = ((args.work, "$WORK"), (args.data, "$DATA"))
    placeholders = {str(p): n for p, n in named if p is not None}
    argv = [placeholders.get(a) or shlex.quote(a) for a in sys.argv[1:]]
    command = " ".join(["python benchmarks/results.py", *argv])
    mode = (
        "**Quick mode**: a handful of examples per task, to check the pipeline end to end. "
        "These numbers are noise; run without `--quick` for the real document."
        if args.quick
        else "Sizes as in the settings below (the script's defaults are larger: 200 examples "
        "per task, 16 demonstrations, hours on a CPU)."
    )
    return "\n".join(
        [
            "# Results: ICM and its baselines with the embedded model",
            "",
            f"Made by `{command}` (commit {commit()}; {time.strftime('%Y-%m-%d')}; "
            f"{platform.machine()}, {os.cpu_count()} CPUs; {seconds / 60:.0f} min). {mode}",
            "",
            "Model: "
            + (
                "the server at `--base-url`"
                if args.base_url
                else "the embedded Gemma 3 270M base (Q4_K_M, llama.cpp on the CPU)"
            )
            + ". "
            f"Settings: {json.dumps(cfg)}; calibration {'off' if args.no_calibrate else 'on'}. "
            "ICM labels the train split (bounded context); `icm eval` then predicts the test "
            "split by many-shot prompting with the demonstrations labeled each way. Accuracy "
            "is the mean over seeds ± the 95% t-interval over seeds (which demonstrations, in "
            "which order); `±test` in the tables is the test split's own sampling error. "
            "AUROC ranks by the label margin and ignores the model's True/False bias. "
            f"Data: `$DATA` = `{data}`; `$WORK` holds the splits written by the script.",
            "",
            "## Summary (accuracy on the test split)",
            "",
            *table,
            "",
            *sections,
        ]
    )


if __name__ == "__main__":
    main()
