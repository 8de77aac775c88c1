"""``icm label``: load, label by ICM, write rows and the run summary."""

from __future__ import annotations

import argparse
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import ConfigError
from ..estimate import Eta, estimate_run
from ..run import LabelConfig, LabelResult, RunSummary, label
from ..runs.checkpoint import CHECKPOINT, checkpointed_step, clear_run
from ..runs.files import DIAGNOSTICS
from ..runs.ledger import LEDGER, Ledger, load_ledger, remaining
from ..runs.outputs import RunLock, remove_stale_temps
from ..search.anneal import SearchConfig
from ._io import option_error, write_json, write_labels_then_summary
from ._sizes import check_exact, check_prompt, known_window
from .backend_options import add_backend_arguments, open_backend, preflight_backend
from .inputs import add_input_arguments, load_input, output_paths, parse_fields, prepare_run_dir
from .progress import progress_bar, step_reporter
from .report import save_run_diagnostics
from .strategy import add_strategy_arguments, strategy_settings


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

    defaults = LabelConfig()  # written once there
    s = p.add_argument_group("search")
    add_strategy_arguments(s, defaults)
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
    d = defaults.search
    s.add_argument("--seed", type=int, default=d.seed)
    s.add_argument(
        "--chains",
        type=int,
        default=d.chains,
        metavar="K",
        help="independent searches over the same scores (annealing from seeds, and one "
        "from the model's zero-shot labels); the labeling of highest full-context U wins, and "
        "the run warns when two end on different labelings with nearly equal U "
        f"(default: {d.chains}; 1: the paper's single run)",
    )
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
    s.add_argument("--alpha", type=float, default=d.alpha)
    s.add_argument("--objective", choices=["mean", "sum"], default=d.objective)
    s.add_argument("--initial-labeled", type=int, default=d.initial_labeled)
    s.add_argument(
        "--fix-iterations",
        type=int,
        default=d.fix_iterations,
        help="cap of ConsistencyFix repairs per step (default: until no repair raises U)",
    )
    s.add_argument("--initial-temperature", type=float, default=d.initial_temperature)
    s.add_argument("--final-temperature", type=float, default=d.final_temperature)
    s.add_argument("--cooling", type=float, default=d.cooling)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


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
            chains=args.chains,
        )
        return LabelConfig(
            **strategy_settings(args),
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
        backend = await open_backend(  # checks the options; sends nothing
            args,
            exits,
            max_calls=remaining(args.max_calls, spent.calls),
            max_tokens=remaining(args.max_tokens, spent.prompt_tokens),
        )
        # a converging run: 2N steps to label and cool, then sweeps, whose proposals are free
        # until a label changes; 4N steps matched the calls of the README demo
        steps = (config.search.steps or 4 * len(dataset)) * config.search.chains
        plan = estimate_run(
            examples=len(dataset),
            steps=steps,
            strategy=config.strategy,
            context_size=config.context_size,
            context_share=config.context_share,
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
        await preflight_backend(backend, task, given.longest, path)
        check_exact(task, dataset.examples, window, args.strategy, str(path))
        prepare_run_dir(run_dir, args, CHECKPOINT, clear_run)
        done = 0 if args.restart else checkpointed_step(run_dir)
        total = None if config.search.steps is None else config.search.steps * config.search.chains
        bar = None if args.quiet else progress_bar(total, done)
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
        info = {"input": str(path.resolve()), "task": args.task, "fields": parse_fields(args.field)}
        save_run_diagnostics(run_dir, result, {**info, "limit": args.limit}, args.out, summary_path)
    return 0


def _search_line(s: RunSummary) -> str:
    how = {True: "converged", False: "stopped at --max-steps before it converged", None: "ran"}
    line = (
        f"search {how[s.converged]} after {s.steps} steps: {s.accepted} accepted, "
        f"{s.flips} labels changed, {s.free_proposals} proposals answered without a call"
    )
    if s.never_reproposed:
        line += f", {s.never_reproposed} initial labels never proposed again"
    if len(s.chains) > 1:
        ends = "; ".join(f"U {c.energy:.3f}, {c.agreement:.0%} the same" for c in s.chains[1:])
        line += f"\n{len(s.chains)} chains (full-context U {s.chains[0].energy:.3f} won; {ends})"
    if s.polished:
        line += f"\n{s.polished} labels changed by the full-context polish"
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
