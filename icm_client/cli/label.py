"""``icm label``: load, label by ICM, write rows and the run summary."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..backends.base import ScoreRequest
from ..backends.lean import MAX_RESPONSE_BYTES
from ..backends.profiles import PROVIDER_CHOICES
from ..checkpoint import CHECKPOINT, checkpointed_step, clear_run
from ..client import DEFAULT_CONCURRENCY, Budget, ScoringClient
from ..connection import DEFAULT_TIMEOUT, connect
from ..dataset import Dataset, Example, load_dataset
from ..errors import ConfigError, DataError, TaskError
from ..estimate import Eta, estimate_run
from ..evaluate.manyshot import estimate_tokens
from ..injection import normalise_separators, separator_fields, warning_text
from ..ledger import LEDGER, Ledger, load_ledger, remaining
from ..outputs import RunLock, check_outputs, remove_stale_temps
from ..run import LabelConfig, LabelResult, RunSummary, label
from ..runfiles import DIAGNOSTICS
from ..search.anneal import SearchConfig
from ..tasks import Task, get_task
from ..tasks.check import TaskCheck, check_task
from ._io import check_writable, option_error, write_json, write_labels_then_summary
from ._sizes import check_exact, check_prompt, known_window
from .progress import progress_bar, step_reporter
from .report import save_run_diagnostics
from .task import add_relation_argument

SAMPLES = Path(__file__).parents[1] / "samples"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("label", help="label a dataset by Internal Coherence Maximization")
    p.set_defaults(run=run)
    add_input_arguments(p)

    b = add_backend_arguments(p)
    b.add_argument(
        "--max-calls",
        type=int,
        help="budget for the whole run, counted over every invocation that resumed it: stop "
        "the search (keeping its best state) once the run has made this many backend calls",
    )
    b.add_argument("--max-tokens", type=int, help="budget: the same in prompt tokens (run total)")

    s = p.add_argument_group("search")
    s.add_argument("--strategy", choices=["exact", "bounded"], default="exact")
    s.add_argument("--context-size", type=int, default=32, help="demonstrations for 'bounded'")
    s.add_argument(
        "--context-window",
        type=int,
        metavar="TOKENS",
        help="the model's context, to refuse prompts that cannot fit before sending them "
        "(default: what the server reports, if it does)",
    )
    s.add_argument(
        "--calibrate",
        action="store_true",
        help="contextual calibration against a content-free input (for small models)",
    )
    d = {name: f.default for name, f in SearchConfig.model_fields.items()}
    s.add_argument("--seed", type=int, default=d["seed"])
    s.add_argument(
        "--steps",
        type=int,
        help="a fixed number of annealing steps at the paper's schedule, then stop "
        "(default: run until the search has converged; see README)",
    )
    s.add_argument(
        "--max-steps",
        type=int,
        help="cap of a converging run; the summary says when it was hit "
        "(default: 10 x the dataset size + 100)",
    )
    s.add_argument("--alpha", type=float, default=d["alpha"])
    s.add_argument("--objective", choices=["mean", "sum"], default=d["objective"])
    s.add_argument("--initial-labeled", type=int, default=d["initial_labeled"])
    s.add_argument(
        "--fix-iterations",
        type=int,
        default=d["fix_iterations"],
        help="cap of ConsistencyFix repairs per step (default: until no repair raises U)",
    )
    s.add_argument("--initial-temperature", type=float, default=d["initial_temperature"])
    s.add_argument("--final-temperature", type=float, default=d["final_temperature"])
    s.add_argument("--cooling", type=float, default=d["cooling"])
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
    p.add_argument(
        "--normalize-separators",
        action="store_true",
        help="replace blank lines inside fields (which would read as the start of another "
        "labeled demonstration) by one newline",
    )
    add_relation_argument(p)
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
    before any model call), the longest prompt, for the preflight request, and what the task
    check found (every field the task names is in the data; the relation's pairs)."""

    path: Path
    dataset: Dataset
    task: Task
    longest: Example
    check: TaskCheck
    mean_tokens: float  # a demonstration's estimated size, for the plan


def load_input(args: argparse.Namespace) -> Input:
    path = _input_path(args.input)
    dataset = load_dataset(path, fields=_fields(args.field), limit=args.limit)
    forged = separator_fields(dataset.examples)
    if forged and getattr(args, "normalize_separators", False):
        dataset = replace(dataset, examples=normalise_separators(dataset.examples))
    elif forged:
        print(f"icm: warning: {path}: {warning_text(forged)}", file=sys.stderr)
    task = get_task(args.task)
    longest, size, chars = dataset.examples[0], -1, 0
    for ex in dataset.examples:
        try:
            n = len(task.render(ex))
        except TaskError as exc:
            raise DataError(str(exc), location=str(path)) from None
        chars += n
        if n > size:
            longest, size = ex, n
    found = check_task(
        task, dataset.examples, source=str(path), allow_empty_relation=args.allow_empty_relation
    )
    label_tokens = estimate_tokens(max(task.labels, key=len) + "\n\n")
    mean_tokens = chars / len(dataset) / 4 + label_tokens  # estimate_tokens' 4 chars a token
    return Input(path, dataset, task, longest, found, mean_tokens)


def output_paths(args: argparse.Namespace, input_path: Path) -> tuple[Path, Path]:
    """(summary file, run directory), checked writable, and neither the input nor each
    other, before any work."""
    summary_path = args.summary or args.out.with_name(args.out.name + ".summary.json")
    run_dir = args.run_dir or args.out.with_name(args.out.name + ".run")
    check_writable(args.out)
    check_writable(summary_path)
    outputs = {"--out": args.out, "--summary": summary_path, "--run-dir": run_dir}
    check_outputs(input_path, outputs)
    return summary_path, run_dir


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
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"the most one request may take, whole (default {DEFAULT_TIMEOUT:g})",
    )
    b.add_argument(
        "--max-response-mb",
        type=float,
        default=MAX_RESPONSE_BYTES / 2**20,
        metavar="MB",
        help=f"refuse a server answer larger than this (default {MAX_RESPONSE_BYTES // 2**20})",
    )
    b.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help="requests in flight at most (per --base-url)",
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
            max_steps=args.max_steps,
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
    for option, value in (("--max-calls", args.max_calls), ("--max-tokens", args.max_tokens)):
        if value is not None and value < 1:
            raise ConfigError(f"{option} must be at least 1, got {value}")
    config = _config(args)
    given = load_input(args)
    path, dataset, task = given.path, given.dataset, given.task
    summary_path, run_dir = output_paths(args, path)
    async with AsyncExitStack() as exits:
        exits.enter_context(RunLock(run_dir))  # held until the outputs are written
        remove_stale_temps(args.out, summary_path, run_dir / CHECKPOINT, run_dir / DIAGNOSTICS)
        before = Ledger() if args.restart else load_ledger(run_dir)
        spent = before.total
        backend = await _backend(  # checks the options; sends nothing
            args,
            exits,
            max_calls=remaining(args.max_calls, spent.calls),
            max_tokens=remaining(args.max_tokens, spent.prompt_tokens),
        )
        # a converging run: 2N steps to label and cool, then sweeps, whose proposals are free
        # until a label changes; 4N steps matched the calls of the README demo
        steps = config.search.steps or 4 * len(dataset)
        plan = estimate_run(
            examples=len(dataset),
            steps=steps,
            strategy=config.strategy,
            context_size=config.context_size,
            calibrate=config.calibrate,
            initial_labeled=config.search.initial_labeled,
            mean_prompt_tokens=given.mean_tokens,
            pairs=given.check.pairs,
            converging=config.search.steps is None,
        )
        print(f"icm: {'; '.join(given.check.lines())}", file=sys.stderr)
        print(f"icm: {plan.line()}", file=sys.stderr)
        window = await known_window(args)  # before any prompt is sent
        check_prompt(task, given.longest, window, str(path))
        await _preflight(backend, task, given.longest, path)
        check_exact(task, dataset.examples, window, args.strategy, str(path))
        prepare_run_dir(run_dir, args, CHECKPOINT, clear_run)
        done = 0 if args.restart else checkpointed_step(run_dir)
        bar = None if args.quiet else progress_bar(config.search.steps, done)
        on_step = step_reporter(bar, Eta(plan, done), lambda: backend.usage.calls)

        try:
            result = await label(dataset.examples, task, backend, config, on_step, run_dir)
        except BaseException:  # Ctrl-C, a failing backend: the run's cost so far is kept
            _write_unfinished_summary(summary_path, run_dir, before.invocations)
            raise
        finally:
            if bar is not None:
                bar.close()
        result = result.with_gold(dataset.gold)
        write_labels_then_summary(
            args.out,
            [r.model_dump() for r in result.rows],
            summary_path,
            {"summary": result.summary.model_dump(), "trajectory": result.trajectory},
        )
        _print_summary(result, args.out, summary_path)
        info = {"input": str(path.resolve()), "task": args.task, "fields": _fields(args.field)}
        save_run_diagnostics(run_dir, result, {**info, "limit": args.limit}, args.out, summary_path)
    return 0


async def _backend(
    args: argparse.Namespace,
    exits: AsyncExitStack,
    *,
    max_calls: int | None = None,
    max_tokens: int | None = None,
) -> ScoringClient:
    """The run's client (``connect``), closed with ``exits``; checked by ``_preflight``."""
    backend = connect(
        args.base_url or None,
        args.model,
        check=False,  # _preflight probes with the longest example, named by its file
        provider=args.provider,
        api_key_env=args.api_key_env,
        top_k=args.top_k,
        max_concurrency=args.concurrency,
        cache=False if args.no_cache else (args.cache_dir or True),
        # budgets: ``icm label`` only, what is left of the run's
        budget=Budget(max_calls=max_calls, max_prompt_tokens=max_tokens),
        timeout=args.timeout,
        max_response_bytes=int(args.max_response_mb * 2**20),
    )
    return await exits.enter_async_context(backend)


async def _preflight(client: ScoringClient, task: Task, longest: Example, path: Path) -> None:
    """A wrong URL, key or model, or an example the model cannot hold, fails here in seconds
    (exit 2) instead of after minutes of retries or hours into the run."""
    await client.preflight(
        ScoreRequest(task.render(longest), task.labels),
        probe_name=f"example {longest.id!r} of {path} (the longest prompt)",
        labels_of=f"task {task.name!r}",
    )


def _search_line(s: RunSummary) -> str:
    how = {True: "converged", False: "stopped at --max-steps before it converged", None: "ran"}
    line = (
        f"search {how[s.converged]} after {s.steps} steps: {s.accepted} accepted, "
        f"{s.flips} labels changed, {s.free_proposals} proposals answered without a call"
    )
    if s.never_reproposed:
        line += f", {s.never_reproposed} initial labels never proposed again"
    return line


def _write_unfinished_summary(summary_path: Path, run_dir: Path, before: int) -> None:
    """The summary of an invocation that did not finish: the run's ledger (what it has
    cost so far, this invocation included); no labels. Nothing when the invocation stopped
    before its search began (``before``: the invocations the ledger held at the start)."""
    if not (run_dir / LEDGER).is_file() or load_ledger(run_dir).invocations <= before:
        return
    write_json(
        summary_path,
        {
            "summary": None,
            "interrupted": True,
            "ledger": load_ledger(run_dir).model_dump(),
            "note": "the run did not finish; the same command continues it",
        },
    )


def _print_summary(result: LabelResult, out: Path, summary_path: Path) -> None:
    s = result.summary
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(s.label_counts.items()))
    lines = [
        f"labeled {s.examples - s.unlabeled} of {s.examples} examples "
        f"({s.labeled_by_search} by the search"
        + (f", {s.unlabeled} not reached: label null" if s.unlabeled else "")
        + f") -> {out}",
        f"labels: {counts}",
        f"final U = {s.energy:.3f}, inconsistencies left: {s.inconsistencies} "
        f"(ConsistencyFix repairs kept: {s.pairs_fixed})",
        _search_line(s),
        f"backend calls: {s.calls}, prompt tokens: {s.prompt_tokens} "
        f"(server-cached {s.cached_tokens}), cache hits: {s.cache_hits}, retries: {s.retries}",
        f"wall time: {s.wall_time_s:.1f} s; summary -> {summary_path}",
    ]
    if s.ledger is not None and s.ledger.invocations > 1:
        t = s.ledger.total
        lines.append(
            f"the run in total, over {s.ledger.invocations} invocations: backend calls "
            f"{t.calls}, prompt tokens {t.prompt_tokens}, cache hits {t.cache_hits}, "
            f"wall time {t.wall_time_s:.1f} s (the figures above: this invocation)"
        )
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
