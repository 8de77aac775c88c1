"""``icm label``: load, label by ICM, write rows and the run summary."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..advice import comparison
from ..backends.base import Backend
from ..baselines.zero_shot import zero_shot_argmax
from ..dataset import Dataset
from ..diagnostics import diagnose
from ..errors import BudgetExhausted, ConfigError
from ..estimate import Eta, plan_label
from ..injection import SeparatorWarning
from ..pins import read_pins, resolve_pins
from ..run import LabelConfig, LabelResult, RunSummary, label
from ..runs.journal import SpendJournal
from ..runs.ledger import LEDGER, Ledger, load_ledger, remaining
from ..runs.outputs import remove_stale_temps
from ..runs.rundir import RunDir
from ..search.config import SearchConfig
from ..tasks.base import Task
from ._io import EXIT_CODES, UNFINISHED, option_error, write_labels_then_summary
from ._sizes import check_budget, check_exact, check_prompt, known_window
from .backend_options import (
    add_backend_arguments,
    backend_config,
    cost_line,
    open_backend,
    preflight_backend,
)
from .inputs import add_input_arguments, load_input, output_paths, parse_fields
from .progress import progress_bar, step_reporter
from .report import save_run_diagnostics
from .strategy import add_strategy_arguments, strategy_settings


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "label",
        help="label a dataset by Internal Coherence Maximization",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
    s.add_argument(
        "--pin",
        type=Path,
        metavar="PINS",
        help='JSONL of {"id": ..., "label": ...} rows: labels to fix (demonstrations '
        "from the start, never relabeled, left out of the agreement with gold); icm review "
        "writes one",
    )
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
    backend_settings = backend_config(args)
    for option, value in (("--max-calls", args.max_calls), ("--max-tokens", args.max_tokens)):
        if value is not None and value < 1:
            raise ConfigError(f"{option} must be at least 1, got {value}")
    config = _config(args)
    given = load_input(args)
    path, dataset, task = given.path, given.dataset, given.task
    summary_path, run_dir = output_paths(args, path)
    pins = None
    if args.pin is not None:
        pins = read_pins(args.pin)
        for name, out in (("--out", args.out), ("--summary", summary_path)):
            if out.exists() and os.path.samefile(out, args.pin):
                raise ConfigError(f"{name} {out} is the pins file: choose another output path")
        resolve_pins(pins, dataset.examples, task)  # every bad pin fails before any call
    async with AsyncExitStack() as exits:
        run_files = exits.enter_context(RunDir(run_dir))  # locked until the outputs are written
        remove_stale_temps(args.out, summary_path)
        before = Ledger() if args.restart else load_ledger(run_dir)
        spent = before.total
        left = (
            remaining(args.max_calls, spent.calls),
            remaining(args.max_tokens, spent.prompt_tokens),
        )
        backend = await open_backend(  # sends nothing
            backend_settings, args, exits, max_calls=left[0], max_tokens=left[1]
        )
        plan = plan_label(
            dataset.examples,
            task,
            config,
            mean_prompt_tokens=given.mean_tokens,
            pairs=given.check.pairs,
        )
        print(f"icm: {'; '.join(given.check.lines())}", file=sys.stderr)
        print(f"icm: {plan.line()}", file=sys.stderr)
        if cost := cost_line(backend_settings, args, plan):
            print(f"icm: {cost}", file=sys.stderr)
        spent_pair = (spent.calls, spent.prompt_tokens)
        check_budget(task, given.longest, str(path), plan, left, spent_pair, str(run_dir / LEDGER))
        window = await known_window(
            backend_settings, args.context_window
        )  # before any prompt is sent
        check_prompt(task, given.longest, window, str(path))
        # from here on, every request is in the run's journal before it is sent
        exits.enter_context(SpendJournal(run_dir, backend.usage))
        try:
            await preflight_backend(backend, task, given.longest, path)
        except BudgetExhausted as exc:
            raise ConfigError(
                f"the budget left to the run does not cover the requests before the search "
                f"(the server's probe and the preflight request): {exc}; raise it"
            ) from None
        check_exact(task, dataset.examples, window, args.strategy, str(path))
        if run_files.prepare(restart=args.restart, resume=args.resume):
            print(f"icm: resuming the run in {run_dir}", file=sys.stderr)
        done = run_files.checkpointed_step()
        before_zero_shot = backend.usage.calls
        budgeted = args.max_calls is not None or args.max_tokens is not None
        zero_shot = await _zero_shot(dataset, task, backend, budgeted)
        before_search = backend.usage.calls
        total = None if config.search.steps is None else config.search.steps * config.search.chains
        bar = None if args.quiet else progress_bar(total, done)
        on_step = step_reporter(bar, Eta(plan, done), lambda: backend.usage.calls - before_search)

        try:
            with warnings.catch_warnings():  # load_input said so already
                warnings.simplefilter("ignore", SeparatorWarning)
                result = await label(
                    dataset.examples, task, backend, config, on_step, run_files, pins=pins
                )
        except BaseException:  # Ctrl-C, a failing backend: the run's cost so far is kept
            run_files.write_unfinished_summary(summary_path, before.invocations)
            raise
        finally:
            if bar is not None:
                bar.close()
        zero_calls = before_search - before_zero_shot
        result = _compared(result.with_gold(dataset.gold, zero_shot), zero_calls)
        write_labels_then_summary(
            args.out,
            [r.model_dump() for r in result.rows],
            summary_path,
            {"summary": result.summary.model_dump(), "trajectory": result.trajectory},
        )
        _print_summary(result, args.out, summary_path)
        info = {"input": str(path.resolve()), "task": args.task, "fields": parse_fields(args.field)}
        if args.pin is not None:
            info["pins"] = str(args.pin.resolve())
        save_run_diagnostics(
            run_files, result, {**info, "limit": args.limit}, args.out, summary_path
        )
    s = result.summary
    return UNFINISHED if s.stopped == "budget" or s.unlabeled else 0


async def _zero_shot(
    dataset: Dataset, task: Task, backend: Backend, budgeted: bool
) -> dict[str, str] | None:
    """The model's zero-shot labels (id to label word), to report beside ICM's agreement
    when the data has gold labels (else None: nothing to compare). Its calls go through the
    run's client, so they are cached and counted. Under a budget it is left out: the budget
    is for labeling, and an evaluation must not spend it."""
    if dataset.gold is None or not len(dataset.gold):
        return None
    if budgeted:
        print("icm: no zero-shot baseline under a budget (it would spend it)", file=sys.stderr)
        return None
    print(
        f"icm: zero-shot baseline first ({len(dataset)} calls; evaluation only)",
        file=sys.stderr,
    )
    try:
        labels = await zero_shot_argmax(dataset.examples, task, backend)
    except BudgetExhausted:
        return None
    words = [w.strip() for w in task.labels]
    return {ex.id: words[y] for ex, y in zip(dataset.examples, labels, strict=True)}


def _compared(result: LabelResult, zero_calls: int) -> LabelResult:
    """``result`` with its ``comparison`` line (ICM beside zero-shot) and the zero-shot
    baseline's calls, when it has both agreements."""
    rows = [r.model_dump() for r in result.rows]
    summary = result.summary.model_dump()
    line = comparison(diagnose(summary, result.trajectory, rows), summary)
    if line is None:
        return result
    update = {"comparison": line, "zero_shot_calls": zero_calls}
    return result.model_copy(update={"summary": result.summary.model_copy(update=update)})


def _search_line(s: RunSummary) -> str:
    how = {True: "converged", False: "stopped at --max-steps before it converged", None: "ran"}
    stop = f"{how[s.converged]} after {s.steps} steps"
    if s.stopped == "budget":
        stop = f"stopped by the budget (--max-calls/--max-tokens) after {s.steps} steps" + (
            ", before it converged" if s.converged is False else ""
        )
    line = (
        f"search {stop}: {s.accepted} accepted, "
        f"{s.flips} labels changed, {s.free_proposals} proposals answered without a call"
    )
    if s.never_reproposed:
        line += (
            f", {s.never_reproposed} random starting labels never revisited (they may still "
            "hold their random value)"
        )
    if len(s.chains) > 1:
        ends = "; ".join(f"U {c.energy:.3f}, {c.agreement:.0%} the same" for c in s.chains[1:])
        line += f"\n{len(s.chains)} chains (full-context U {s.chains[0].energy:.3f} won; {ends})"
    if s.polished:
        line += f"\n{s.polished} labels changed by the full-context polish"
    return line


def _print_summary(result: LabelResult, out: Path, summary_path: Path) -> None:
    s = result.summary
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(s.label_counts.items()))
    reached = s.examples - s.unlabeled - s.pinned  # pinned rows: given, not found
    lines = [
        f"labeled {s.examples - s.unlabeled} of {s.examples} examples "
        f"({s.labeled_by_search} by the search"
        + (f", {s.pinned} pinned" if s.pinned else "")
        + (
            f", {reached - s.labeled_by_search} predicted at the end given those"
            if reached > s.labeled_by_search
            else ""
        )
        + (f", {s.unlabeled} not reached: label null" if s.unlabeled else "")
        + f") -> {out}",
        f"labels: {counts or 'none'}",
        f"final U = {s.energy:.3f} (the score the search maximises: alpha x how well each label "
        f"is predicted from the others, minus the contradicting pairs), contradicting pairs "
        f"left: {s.inconsistencies} (repairs that relabeled a contradicting pair, kept: "
        f"{s.pairs_fixed})",
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
            f"of {s.gold_examples}" + (" unpinned" if s.pinned else "")
        )
    if s.comparison is not None:
        lines.append(s.comparison)
    print("\n".join(lines))
