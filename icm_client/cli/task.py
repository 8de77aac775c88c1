"""``icm task check TASK [DATA]``: a task file checked, and against data, without a model.

Every field the task names must be in the data (else the error names the field, the fields
there are and the closest one); the relation's constrained pairs are counted and printed.
``icm label``, ``scale`` and ``eval`` run the same check before their first model call.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..dataset import load_dataset
from ..tasks import get_task
from ..tasks.check import label_warnings, task_fields
from .inputs import add_relation_argument, checked, input_path, parse_fields


def add_parser(sub: Any) -> None:
    p = sub.add_parser("task", help="check a task (file) against data, without a model call")
    actions = p.add_subparsers(dest="action", required=True)
    c = actions.add_parser("check", help="every field the task names is in DATA; pairs found")
    c.set_defaults(run=run)
    c.add_argument("task", help="built-in task name or a task config file")
    c.add_argument("data", nargs="?", help="JSON, JSONL or CSV file (or 'sample:NAME')")
    c.add_argument("--field", action="append", default=[], metavar="FILE_NAME=TASK_NAME")
    c.add_argument("--limit", type=int, help="use only the first N records")
    add_relation_argument(c)


async def run(args: argparse.Namespace) -> int:
    task = get_task(args.task)
    if args.data is None:
        named = ", ".join(f"{role}={name}" for role, name in task_fields(task)) or "none"
        print(f"task {task.name!r}: labels {list(task.labels)}; fields {named}")
        for warning in label_warnings(task):
            print(f"icm: warning: {warning}", file=sys.stderr)
        return 0
    path = input_path(args.data)
    dataset = load_dataset(path, fields=parse_fields(args.field), limit=args.limit)
    found, _ = checked(task, dataset, path, args.allow_empty_relation)
    print("\n".join(found.lines()))
    return 0
