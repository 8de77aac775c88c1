"""``icm label``: load, label by ICM, write rows and the run summary."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from tqdm import tqdm

from ..backends.base import Backend, ScoreRequest
from ..backends.preflight import preflight
from ..backends.profiles import PROVIDER_CHOICES
from ..checkpoint import CHECKPOINT, clear_run
from ..connection import connect
from ..dataset import Dataset, Example, load_dataset
from ..errors import ConfigError, DataError, TaskError
from ..run import LabelConfig, LabelResult, label
from ..search.anneal import SearchConfig, Step
from ..tasks import Task, get_task
from ._io import check_writable, option_error, write_json, write_jsonl
from .report import save_run_diagnostics

SAMPLES = Path(__file__).parents[1] / "samples"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("label", help="label a dataset by Internal Coherence Maximization")
    p.set_defaults(run=run)
    add_input_arguments(p)

    b = add_backend_arguments(p)
    b.add_argument(
        "--max-calls",
        type=int,
        help="budget: stop the search (keeping its best state) after this many backend calls",
    )
    b.add_argument("--max-tokens", type=int, help="budget: the same in prompt tokens")

    s = p.add_argument_group("search")
    s.add_argument("--strategy", choices=["exact", "bounded"], default="exact")
    s.add_argument("--context-size", type=int, default=32, help="demonstrations for 'bounded'")
    s.add_argument(
        "--calibrate",
        action="store_true",
        help="contextual calibration against a content-free input (for small models)",
    )
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--steps", type=int, help="annealing iterations (default: dataset size)")
    s.add_argument("--alpha", type=float, default=50.0)
    s.add_argument("--objective", choices=["mean", "sum"], default="mean")
    s.add_argument("--initial-labeled", type=int, default=8)
    s.add_argument("--fix-iterations", type=int, default=10)
    s.add_argument("--initial-temperature", type=float, default=10.0)
    s.add_argument("--final-temperature", type=float, default=0.01)
    s.add_argument("--cooling", type=float, default=0.99)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_input_arguments(p: Any) -> None:
    """The input, output and run-directory options of ``label`` and ``scale``."""
    p.add_argument("input", help="JSON or JSONL (or CSV) file; 'sample:NAME' for a bundled sample")
    p.add_argument("--task", required=True, help="built-in task name or a task config file")
    p.add_argument("--out", required=True, type=Path, help="labels JSONL to write")
    p.add_argument("--summary", type=Path, help="run summary JSON (default: OUT.summary.json)")
    p.add_argument(
        "--field",
        action="append",
        default=[],
        metavar="FILE_NAME=TASK_NAME",
        help="rename an input field for the task (repeatable)",
    )
    p.add_argument("--limit", type=int, help="use only the first N records")
    r = p.add_argument_group("run directory (a killed run continues where it stopped)")
    r.add_argument(
        "--run-dir",
        type=Path,
        help="default: OUT.run; the same command again resumes there",
    )
    how = r.add_mutually_exclusive_group()
    how.add_argument("--resume", action="store_true", help="fail unless there is a run to resume")
    how.add_argument("--restart", action="store_true", help="discard the run (not the cache)")


@dataclass(frozen=True)
class Input:
    """The loaded input: every example rendered once (a missing template field fails here,
    before any model call), and the longest prompt, for the preflight request."""

    path: Path
    dataset: Dataset
    task: Task
    longest: Example


def load_input(args: argparse.Namespace) -> Input:
    path = _input_path(args.input)
    dataset = load_dataset(path, fields=_fields(args.field), limit=args.limit)
    task = get_task(args.task)
    longest, size = dataset.examples[0], -1
    for ex in dataset.examples:
        try:
            n = len(task.render(ex))
        except TaskError as exc:
            raise DataError(str(exc), location=str(path)) from None
        if n > size:
            longest, size = ex, n
    return Input(path, dataset, task, longest)


def output_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """(summary file, run directory), checked writable before any work."""
    summary_path = args.summary or args.out.with_name(args.out.name + ".summary.json")
    check_writable(args.out)
    check_writable(summary_path)
    return summary_path, args.run_dir or args.out.with_name(args.out.name + ".run")


def prepare_run_dir(
    run_dir: Path, args: argparse.Namespace, marker: str, clear: Callable[[Path], None]
) -> None:
    """``--restart`` clears the run; a run dir holding ``marker`` is resumed (and said so)."""
    if args.restart:
        clear(run_dir)
    elif (run_dir / marker).exists():
        print(f"icm: resuming the run in {run_dir}", file=sys.stderr)
    elif args.resume:
        raise ConfigError(f"--resume: no checkpoint in {run_dir}")


def add_backend_arguments(p: Any) -> Any:
    """The backend options, shared by every subcommand that calls a model (see ``_backend``)."""
    b = p.add_argument_group("backend (default: the embedded local model)")
    b.add_argument(
        "--base-url",
        action="append",
        help="OpenAI-compatible server, e.g. http://localhost:8000/v1; repeat it for replicas "
        "of one model (routed with prefix affinity and failover)",
    )
    b.add_argument("--model", help="model name on the server (default: the server's first)")
    b.add_argument(
        "--provider",
        choices=PROVIDER_CHOICES,
        default="auto",
        help="what the server supports (vllm, llamacpp, a hosted API...); 'auto' (default): "
        "known by its host name, else probed with a few tiny requests",
    )
    b.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        help="environment variable holding the API key (default OPENAI_API_KEY)",
    )
    b.add_argument("--top-k", type=int, default=20, help="logprobs to request per call")
    b.add_argument(
        "--concurrency", type=int, default=8, help="requests in flight at most (per --base-url)"
    )
    b.add_argument(
        "--cache-dir", help="score cache directory (default $ICM_CACHE_DIR or ~/.cache/icm-client)"
    )
    b.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    return b


def _input_path(spec: str) -> Path:
    if spec.startswith("sample:"):
        name = spec.removeprefix("sample:")
        path = SAMPLES / f"{name}_sample.jsonl"
        if not path.exists():
            known = sorted(
                p.name.removesuffix("_sample.jsonl") for p in SAMPLES.glob("*_sample.jsonl")
            )
            raise ConfigError(f"no bundled sample {name!r}; known: {', '.join(known)}")
        return path
    return Path(spec)


def _fields(specs: list[str]) -> dict[str, str]:
    out = {}
    for spec in specs:
        src, sep, dst = spec.partition("=")
        if not sep or not src or not dst:
            raise ConfigError(f"--field expects FILE_NAME=TASK_NAME, got {spec!r}")
        out[src] = dst
    return out


def _config(args: argparse.Namespace) -> LabelConfig:
    try:
        search = SearchConfig(
            alpha=args.alpha,
            initial_temperature=args.initial_temperature,
            final_temperature=args.final_temperature,
            cooling=args.cooling,
            initial_labeled=args.initial_labeled,
            steps=args.steps,
            fix_iterations=args.fix_iterations,
            objective=args.objective,
            seed=args.seed,
        )
        return LabelConfig(
            strategy=args.strategy,
            context_size=args.context_size,
            calibrate=args.calibrate,
            search=search,
        )
    except ValidationError as exc:
        raise option_error(exc) from None


async def run(args: argparse.Namespace) -> int:
    if args.concurrency < 1:
        raise ConfigError(f"--concurrency must be at least 1, got {args.concurrency}")
    config = _config(args)
    given = load_input(args)
    path, dataset, task = given.path, given.dataset, given.task
    summary_path, run_dir = output_paths(args)
    async with AsyncExitStack() as exits:
        backend = await _backend(args, exits)
        await _preflight(backend, task, given.longest, path)
        bar = (
            None
            if args.quiet
            else tqdm(
                total=config.search.steps or len(dataset), desc="icm", unit="step", file=sys.stderr
            )
        )

        def on_step(step: Step) -> None:
            if bar is not None:
                bar.update(1)
                bar.set_postfix(
                    labeled=step.labeled,
                    U=f"{step.energy:.1f}",
                    calls=backend.usage.calls,
                    refresh=False,
                )

        prepare_run_dir(run_dir, args, CHECKPOINT, clear_run)
        try:
            result = await label(dataset.examples, task, backend, config, on_step, run_dir)
        finally:
            if bar is not None:
                bar.close()
    result = result.with_gold(dataset.gold)
    write_jsonl(args.out, [r.model_dump() for r in result.rows])
    write_json(
        summary_path, {"summary": result.summary.model_dump(), "trajectory": result.trajectory}
    )
    _print_summary(result, args.out, summary_path)
    run_info = {"input": str(path.resolve()), "task": args.task, "fields": _fields(args.field)}
    save_run_diagnostics(run_dir, result, {**run_info, "limit": args.limit}, args.out, summary_path)
    return 0


async def _backend(args: argparse.Namespace, exits: AsyncExitStack) -> Backend:
    """The run's backend (``connect``), closed with ``exits``; checked by ``_preflight``."""
    backend = connect(
        args.base_url or None,
        args.model,
        check=False,  # _preflight probes with the longest example, named by its file
        provider=args.provider,
        api_key_env=args.api_key_env,
        top_k=args.top_k,
        max_concurrency=args.concurrency,
        cache_dir=False if args.no_cache else args.cache_dir,
        max_calls=getattr(args, "max_calls", None),  # budgets: ``icm label`` only
        max_prompt_tokens=getattr(args, "max_tokens", None),
    )
    return await exits.enter_async_context(backend)


async def _preflight(backend: Backend, task: Task, longest: Example, path: Path) -> None:
    """A wrong URL, key or model, or an example the model cannot hold, fails here in seconds
    (exit 2) instead of after minutes of retries or hours into the run."""
    await preflight(
        backend,
        ScoreRequest(task.render(longest), task.labels),
        probe_name=f"example {longest.id!r} of {path} (the longest prompt)",
        labels_of=f"task {task.name!r}",
    )


def _print_summary(result: LabelResult, out: Path, summary_path: Path) -> None:
    s = result.summary
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(s.label_counts.items()))
    lines = [
        f"labeled {s.examples} examples ({s.labeled_by_search} by the search) -> {out}",
        f"labels: {counts}",
        f"final U = {s.energy:.3f}, inconsistencies left: {s.inconsistencies}",
        f"backend calls: {s.calls}, prompt tokens: {s.prompt_tokens} "
        f"(server-cached {s.cached_tokens}), cache hits: {s.cache_hits}, retries: {s.retries}",
        f"wall time: {s.wall_time_s:.1f} s; summary -> {summary_path}",
    ]
    if s.stopped == "budget":
        lines.append(
            f"stopped early: the budget ran out; {s.unlabeled} examples were not reached "
            "(label null); the same command with a larger budget continues from the cache"
        )
    if s.gold_agreement is not None:
        lines.append(
            f"agreement with gold labels (evaluation only): {s.gold_agreement:.1%} "
            f"of {s.gold_examples}"
        )
    print("\n".join(lines))
