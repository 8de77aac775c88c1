"""``icm eval``: test-split accuracy of many-shot prompting with ICM's labels and baselines.

    icm eval DATA --split 0.5 --task cities --labels OUT --out eval.json
    icm eval --train TRAIN --test TEST --task cities --labels OUT --out eval.json

Prints a table (accuracy, its 95% interval over seeds and from the test size, AUROC, the
demonstrations and how accurate their labels were, model calls) and writes it all as JSON.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..backends.base import ScoreRequest
from ..baselines.zero_shot import ChatModel
from ..dataset import Dataset, Example, GoldLabels, load_dataset
from ..errors import ConfigError, DataError
from ..estimate import format_eta
from ..evaluate import CONDITIONS, EvalConfig, evaluate, split_by_group, straddling
from ..evaluate.core import demo_pool
from ..evaluate.demos import longest_prompt
from ..evaluate.plan import EvalPlan, estimate_eval
from ..runs.files import RunFiles, read_labels
from ..runs.outputs import check_outputs
from ..tasks import Task, get_task
from ..tasks.check import check_task
from ._io import check_writable, option_error, write_json, write_jsonl
from .backend_options import add_backend_arguments, backend_config, open_backend
from .inputs import add_relation_argument, input_path, parse_fields, render_all, task_file


def add_parser(sub: Any) -> None:
    p = sub.add_parser("eval", help="accuracy of ICM labels and baselines on a test split")
    # label's search budgets do not apply to an evaluation (it has no best state to keep)
    p.set_defaults(run=run, max_calls=None, max_tokens=None)
    p.add_argument("data", nargs="?", help="one labeled file to split (with --split)")
    p.add_argument("--task", required=True, help="built-in task name or a task config file")
    p.add_argument("--out", required=True, type=Path, help="results JSON to write")
    d = p.add_argument_group("data")
    d.add_argument("--split", type=float, help="test fraction of DATA, split by group")
    d.add_argument("--split-seed", type=int, default=0)
    d.add_argument("--train", help="train file (the demonstrations come from it)")
    d.add_argument("--test", help="test file (needs gold labels)")
    d.add_argument(
        "--write-split",
        metavar="PREFIX",
        type=Path,
        help="also write PREFIX.train.jsonl and PREFIX.test.jsonl (e.g. to icm label the train)",
    )
    d.add_argument("--labels", help="ICM labels: a labels file or run of icm label on the train")
    d.add_argument("--field", action="append", default=[], metavar="FILE_NAME=TASK_NAME")
    d.add_argument("--drop", action="append", default=[], help="input field to discard")
    d.add_argument("--limit", type=int, help="use only the first N records of each file")
    add_relation_argument(d)
    defaults = EvalConfig()  # written once there
    e = p.add_argument_group("evaluation")
    e.add_argument(
        "--conditions",
        default=",".join(defaults.conditions),
        help=f"comma-separated subset of {','.join(CONDITIONS)} (default: all)",
    )
    e.add_argument(
        "--seeds",
        type=int,
        default=defaults.seeds,
        help=f"demonstration draws (default {defaults.seeds})",
    )
    e.add_argument(
        "--max-demo-tokens",
        type=int,
        default=defaults.max_demo_tokens,
        help="demonstration budget in estimated tokens (characters / --chars-per-token)",
    )
    e.add_argument("--max-demos", type=int, help="at most this many demonstrations")
    e.add_argument("--chars-per-token", type=float, default=defaults.chars_per_token)
    e.add_argument(
        "--calibrate", action="store_true", help="contextual calibration (for small models)"
    )
    e.add_argument("--bootstrap-rounds", type=int, default=defaults.bootstrap_rounds)
    e.add_argument(
        "--bootstrap-folds",
        type=int,
        default=defaults.bootstrap_folds,
        help="1: leave-one-out (costly)",
    )
    c = p.add_argument_group("chat baseline (Anthropic)")
    c.add_argument("--chat-model", help="e.g. claude-haiku-4-5; enables the 'chat' condition")
    c.add_argument("--chat-api-key-env", default="ANTHROPIC_API_KEY")
    c.add_argument("--chat-base-url", help="default: $ANTHROPIC_BASE_URL or the public API")
    add_backend_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def _config(args: argparse.Namespace) -> EvalConfig:
    names = tuple(n.strip() for n in args.conditions.split(",") if n.strip())
    unknown = sorted(set(names) - set(CONDITIONS))
    if unknown or not names:
        raise ConfigError(
            f"--conditions: unknown {unknown or 'empty list'}; known: {', '.join(CONDITIONS)}"
        )
    try:
        return EvalConfig(
            conditions=names,
            seeds=args.seeds,
            max_demo_tokens=args.max_demo_tokens,
            max_demos=args.max_demos,
            chars_per_token=args.chars_per_token,
            calibrate=args.calibrate,
            bootstrap_rounds=args.bootstrap_rounds,
            bootstrap_folds=args.bootstrap_folds,
        )
    except ValidationError as exc:
        raise option_error(exc) from None


def _load(spec: str, args: argparse.Namespace, task: Task) -> Dataset:
    path = input_path(spec)
    ds = load_dataset(path, fields=parse_fields(args.field), limit=args.limit, drop=args.drop)
    check_task(task, ds.examples, source=str(path), allow_empty_relation=args.allow_empty_relation)
    render_all(task, ds)  # a field missing from one example fails before any model call
    return ds


def _progress(plan: EvalPlan, calls: Callable[[], int]) -> Callable[[str], None]:
    """Progress lines (a condition, a seed) with the calls so far and an ETA from the plan."""
    started = time.monotonic()

    def say(message: str) -> None:
        made = calls()
        eta = format_eta(plan.eta(made, time.monotonic() - started))
        print(f"icm eval: {message} [calls {made}, ETA {eta}]", file=sys.stderr, flush=True)

    return say


def _merge(*golds: GoldLabels | None) -> GoldLabels | None:
    merged = {k: v for g in golds if g is not None for k, v in g.by_id.items()}
    return GoldLabels(merged) if merged else None


def _records(examples: tuple[Example, ...], gold: GoldLabels | None) -> list[dict[str, Any]]:
    out = []
    for ex in examples:
        label = gold.get(ex.id) if gold is not None else None
        out.append({"id": ex.id, **ex.fields, **({"label": label} if label else {})})
    return out


def _check_outputs(args: argparse.Namespace) -> None:
    """Before any work: no output is an input (``--out`` or ``--write-split`` naming the
    data would replace it) or another output."""
    inputs: dict[str, Path | None] = {
        f"the {name} file": input_path(spec)
        for name, spec in (("DATA", args.data), ("--train", args.train), ("--test", args.test))
        if spec is not None
    }
    inputs["the task file"] = task_file(args.task)
    if args.labels is not None:
        inputs["the --labels file"] = Path(args.labels)
        if Path(args.labels).exists():
            found = RunFiles.locate(args.labels)
            inputs["the labels file"], inputs["the run summary"] = found.labels, found.summary
    outputs = {"--out": args.out}
    if args.write_split is not None:
        for name in ("train", "test"):
            path = args.write_split.with_name(f"{args.write_split.name}.{name}.jsonl")
            outputs[f"--write-split's {name} file"] = path
    check_outputs(inputs, outputs)


async def run(args: argparse.Namespace) -> int:
    config = _config(args)
    _check_outputs(args)
    task = get_task(args.task)
    straddle: int | None = None
    if args.data is not None:
        if args.split is None or args.train or args.test:
            raise ConfigError("give DATA with --split, or --train and --test (not both)")
        ds = _load(args.data, args, task)
        train, test = split_by_group(ds.examples, task, args.split, args.split_seed)
        train_gold = test_gold = ds.gold
    else:
        if not (args.train and args.test) or args.split is not None:
            raise ConfigError("give --train and --test, or DATA with --split")
        train_ds, test_ds = _load(args.train, args, task), _load(args.test, args, task)
        train, test = train_ds.examples, test_ds.examples
        train_gold, test_gold = train_ds.gold, test_ds.gold
        straddle = straddling(train, test, task)
        if straddle:
            print(
                f"icm: warning: {straddle} test examples share a group or a constraint with "
                "train examples; their labels may leak through the demonstrations",
                file=sys.stderr,
            )
    if test_gold is None:
        raise DataError("the test examples have no gold labels: nothing to score against")
    icm = None
    if args.labels is not None:
        labels = read_labels(args.labels)
        if labels.note():
            print(f"icm: {labels.note()}", file=sys.stderr)
        icm = {r.id: r.label for r in labels.rows}
    check_writable(args.out)
    if args.write_split is not None:
        gold = _merge(train_gold, test_gold)
        for name, part in (("train", train), ("test", test)):
            path = args.write_split.with_name(f"{args.write_split.name}.{name}.jsonl")
            check_writable(path)
            write_jsonl(path, _records(part, gold))
            print(f"icm: {len(part)} {name} examples -> {path}", file=sys.stderr)
    plan = estimate_eval(
        task,
        train,
        [ex for ex in test if test_gold.get(ex.id) is not None],
        config,
        icm_labels=icm,
        has_train_gold=train_gold is not None,
    )
    print(f"icm eval: {plan.line()}", file=sys.stderr)
    async with AsyncExitStack() as exits:
        backend = await open_backend(backend_config(args), args, exits)
        say = None if args.quiet else _progress(plan, lambda: backend.usage.calls)
        probe = longest_prompt(
            task,
            demo_pool(train, icm),
            test,
            config.seeds,
            max_tokens=config.max_demo_tokens,
            max_demos=config.max_demos,
            chars_per_token=config.chars_per_token,
        )
        await backend.preflight(
            ScoreRequest(probe, task.labels),
            probe_name="the longest prompt (demonstrations and test example; lower "
            "--max-demo-tokens)",
            labels_of=f"task {task.name!r}",
        )
        chat: ChatModel | None = None
        if args.chat_model:
            from ..backends.anthropic import AnthropicChat

            anthropic = AnthropicChat(
                args.chat_model, api_key_env=args.chat_api_key_env, base_url=args.chat_base_url
            )
            exits.push_async_callback(anthropic.aclose)
            chat = anthropic
        result = await evaluate(
            task,
            backend,
            train,
            test,
            test_gold,
            train_gold=train_gold,
            icm_labels=icm,
            chat=chat,
            config=config,
            on_progress=say,
        )
    result = result.model_copy(update={"straddling": straddle})
    write_json(args.out, result.model_dump(mode="json"))
    print(result.table())
    print(
        f"{result.scored_examples} test examples, {result.demo_pool} demonstration "
        f"candidates; results -> {args.out}"
    )
    return 0
