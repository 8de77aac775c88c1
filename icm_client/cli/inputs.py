"""The input and output options of ``icm label`` and ``icm scale``, and what other commands
share of them: the input path (``sample:NAME``), ``--field`` renames, loading and checking
the input before any model call, the output paths and the run directory."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..dataset import Dataset, Example, load_dataset, resolve_input
from ..errors import ConfigError, DataError, TaskError
from ..estimate import demonstration_tokens
from ..injection import normalise_separators, separator_fields, warning_text
from ..runs.outputs import check_outputs
from ..tasks import Task, get_task
from ..tasks.check import TaskCheck, check_task
from ._io import check_writable


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


def add_relation_argument(p: Any) -> None:
    p.add_argument(
        "--allow-empty-relation",
        action="store_true",
        help="go on when the task's relation finds no constrained pair in the data "
        "(else an error: usually a wrong group or key field)",
    )


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
    path = input_path(args.input)
    dataset = load_dataset(path, fields=parse_fields(args.field), limit=args.limit)
    forged = separator_fields(dataset.examples)
    if forged and getattr(args, "normalize_separators", False):
        dataset = replace(dataset, examples=normalise_separators(dataset.examples))
    elif forged:
        print(f"icm: warning: {path}: {warning_text(forged)}", file=sys.stderr)
    task = get_task(args.task)
    found, prompts = checked(task, dataset, path, args.allow_empty_relation)
    longest, size = dataset.examples[0], -1
    for ex, prompt in zip(dataset.examples, prompts, strict=True):
        if len(prompt) > size:
            longest, size = ex, len(prompt)
    mean_tokens = demonstration_tokens(task, prompts)
    return Input(path, dataset, task, longest, found, mean_tokens)


def checked(
    task: Task, dataset: Dataset, path: Path, allow_empty_relation: bool
) -> tuple[TaskCheck, list[str]]:
    """The task checked against the data (``check_task``: a field in no example names the
    closest one; then every example rendered: one lacking a field is named by its line;
    then the relation's pairs), its warnings printed, and every prompt."""
    found = check_task(task, dataset.examples, source=str(path), allow_empty_relation=True)
    prompts = render_all(task, dataset)
    if not allow_empty_relation:
        found = check_task(task, dataset.examples, source=str(path))
    for warning in found.warnings:
        print(f"icm: warning: {warning}", file=sys.stderr)
    return found, prompts


def render_all(task: Task, dataset: Dataset) -> list[str]:
    """Every example's prompt; a field missing from one example is a ``DataError`` naming
    its record's line (a content id alone would not say which row it is)."""
    prompts = []
    for ex in dataset.examples:
        try:
            prompts.append(task.render(ex))
        except TaskError as exc:
            raise DataError(exc.message, location=dataset.where(ex), field=exc.field) from None
    return prompts


def output_paths(args: argparse.Namespace, input_path: Path) -> tuple[Path, Path]:
    """(summary file, run directory), checked writable, and neither the input nor each
    other, before any work."""
    summary_path = args.summary or args.out.with_name(args.out.name + ".summary.json")
    run_dir = args.run_dir or args.out.with_name(args.out.name + ".run")
    check_writable(args.out)
    check_writable(summary_path)
    outputs = {"--out": args.out, "--summary": summary_path, "--run-dir": run_dir}
    check_outputs({"the input file": input_path, "the task file": task_file(args.task)}, outputs)
    return summary_path, run_dir


def task_file(spec: object) -> Path | None:
    """The file a ``--task`` names, if it names one (not a built-in task): an input too."""
    if not isinstance(spec, str) or not spec:
        return None
    path = Path(spec)
    return path if path.is_file() else None


def input_path(spec: str) -> Path:
    """The file an input argument names: a path, or ``sample:NAME`` for a bundled sample."""
    return resolve_input(spec)


def parse_fields(specs: list[str]) -> dict[str, str]:
    """``--field FILE_NAME=TASK_NAME`` options as a rename map for ``load_dataset``."""
    out = {}
    for spec in specs:
        src, sep, dst = spec.partition("=")
        if not sep or not src or not dst:
            raise ConfigError(f"--field expects FILE_NAME=TASK_NAME, got {spec!r}")
        out[src] = dst
    return out
