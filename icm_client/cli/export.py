"""``icm export RUN --format FORMAT --out PATH``: labels as training data.

RUN is a run directory, labels file or summary of ``icm label``; the input file and task
are read from the run's ``diagnostics.json`` unless ``--data``/``--task`` say otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..dataset import Example, load_dataset
from ..errors import ConfigError
from ..export import (
    chat_records,
    join,
    labeled_records,
    preference_pairs,
    to_hf_dataset,
)
from ..runs.files import RunFiles, read_labels
from ..runs.outputs import check_outputs
from ..tasks import get_task
from ..tasks.check import check_task
from ._io import check_writable, write_jsonl
from .inputs import input_path, parse_fields, task_file

FORMATS = {
    "labels": "JSONL: id, the input fields, label, confidence",
    "preference": 'JSONL for DPO / reward models: {"prompt", "chosen", "rejected"}',
    "chat": 'JSONL for chat fine-tuning: {"messages": [system, user, assistant]}',
    "hf": "a Hugging Face datasets.Dataset of the labels format, saved with save_to_disk",
}


def add_parser(sub: Any) -> None:
    p = sub.add_parser("export", help="export labels for fine-tuning or reward models")
    p.set_defaults(run=run)
    p.add_argument("run_path", metavar="RUN", help="run directory, labels file or summary file")
    p.add_argument(
        "--format",
        required=True,
        choices=sorted(FORMATS),
        help="; ".join(f"{k}: {v}" for k, v in FORMATS.items()),
    )
    p.add_argument("--out", required=True, type=Path, help="file to write (hf: a directory)")
    p.add_argument("--data", help="the labeled input file (default: the run's)")
    p.add_argument("--task", help="the task (default: the run's)")
    p.add_argument(
        "--field",
        action="append",
        metavar="FILE_NAME=TASK_NAME",
        help="rename an input field (default: the run's renames)",
    )
    p.add_argument("--min-confidence", type=float, help="leave out labels below this")


async def run(args: argparse.Namespace) -> int:
    files = RunFiles.locate(args.run_path)
    if files.labels is None:
        raise ConfigError(f"no labels file found for {args.run_path}")
    labels = read_labels(files.labels)
    if labels.note():
        print(f"icm: {labels.note()}", file=sys.stderr)
    rows = labels.rows
    rec = files.recorded
    data_spec = args.data or rec.get("input")
    task_spec = args.task or rec.get("task")
    fields = parse_fields(args.field) if args.field is not None else dict(rec.get("fields") or {})
    examples: tuple[Example, ...] = ()
    if data_spec is not None:
        limit = None if args.data else rec.get("limit")
        examples = load_dataset(input_path(str(data_spec)), fields=fields, limit=limit).examples
    elif args.format != "labels":
        raise ConfigError(f"--format {args.format} needs the input file: pass --data")
    if args.format in ("preference", "chat") and task_spec is None:
        raise ConfigError(f"--format {args.format} needs the task: pass --task")
    if args.format in ("preference", "chat") and examples:  # the fields it renders are there
        check_task(
            get_task(str(task_spec)), examples, source=str(data_spec), allow_empty_relation=True
        )
    inputs = {
        "the labels file": files.labels,
        "the run summary": files.summary,
        "the run diagnostics": files.diagnostics,
        "the input data": input_path(str(data_spec)) if data_spec is not None else None,
        "the task file": task_file(task_spec),
    }
    check_outputs(inputs, {"--out": args.out})
    if args.format == "hf" and args.out.exists():
        raise ConfigError(f"--out {args.out} exists; a dataset is saved into a new directory")
    check_writable(args.out)
    pairs = join(examples, rows, args.min_confidence) if examples else []
    if args.format == "labels":
        if examples:
            records = labeled_records(pairs)
        else:  # no input at hand: the rows as they are
            records = [r.model_dump(exclude_none=True) for r in rows]
            if args.min_confidence is not None:
                records = [r for r in records if r.get("confidence", 0) >= args.min_confidence]
        write_jsonl(args.out, records)
        note = f"{len(records)} labeled examples"
    elif args.format == "chat":
        records = chat_records(get_task(str(task_spec)), pairs)
        write_jsonl(args.out, records)
        note = f"{len(records)} chat examples"
    elif args.format == "preference":
        records, stats = preference_pairs(get_task(str(task_spec)), pairs)
        write_jsonl(args.out, records)
        note = (
            f"{stats.pairs} preference pairs ({stats.duplicates} swapped duplicates merged, "
            f"{stats.conflicts} contradictory pairs dropped)"
        )
    else:
        dataset = to_hf_dataset(labeled_records(pairs))
        dataset.save_to_disk(str(args.out))
        note = f"a datasets.Dataset of {len(dataset)} rows"
    print(f"{note} -> {args.out}", file=sys.stderr)
    return 0
