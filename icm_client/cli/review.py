"""``icm review RUN``: the least-certain labels of a run, to check by hand, as a pins file.

RUN is the run directory, the labels file or the summary file of an ``icm label`` run (as
for ``icm report``). The pins file holds the run's own pins first (a re-run keeps them),
then the ``--count`` least-certain labels (``pins.least_certain``) with their current
labels and input fields, for a person to correct or delete; ``icm label ... --pin FILE``
then re-runs with them, from the score cache wherever a prompt is unchanged.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..dataset import FieldValue, load_dataset
from ..errors import ConfigError, DataError, InputError
from ..pins import least_certain
from ..runs.files import RunFiles, read_labels
from ._io import check_writable, write_jsonl

DESCRIPTION = """\
List the labels of an icm label run that the model was least sure of (those that are not
its own prediction given the other labels first, then by confidence) and write them to a
pins file, pre-filled with their current labels. Check each one by hand: correct its
label, or delete the line if you cannot tell. Then re-run with the pins:

    icm label INPUT --task TASK --pin PINS --out NEW.jsonl  (and the run's backend options)

Pinned labels are demonstrations from the start, never relabeled, and left out of the
agreement with gold. A re-run sends only the prompts the pins change: every other score
comes from the cache. The run's own pins, if any, are copied into PINS first.
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "review",
        help="the least-certain labels of a run, written as a pins file to check by hand",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(run=run)
    p.add_argument("run_path", metavar="RUN", help="run directory, labels file or summary file")
    p.add_argument(
        "-n", "--count", type=int, default=10, help="labels to list (default: %(default)s)"
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="PINS",
        help="pins file to write (JSONL); an existing file is never overwritten",
    )


async def run(args: argparse.Namespace) -> int:
    if args.count < 1:
        raise ConfigError(f"--count must be at least 1, got {args.count}")
    files = RunFiles.locate(args.run_path)
    labels = read_labels(args.run_path)
    if args.out.exists():
        raise ConfigError(
            f"--out {args.out} exists: review never overwrites a file (it may be a pins file "
            "you edited, or the run's own input); choose another path"
        )
    check_writable(args.out)
    rows = [r.model_dump() for r in labels.rows]
    if all(r.get("confidence") is None for r in rows):
        raise DataError(
            "no row has a confidence: review takes the labels file of an icm label run",
            location=str(labels.path),
        )
    if labels.note():
        print(f"icm: {labels.note()}", file=sys.stderr)
    before = [r for r in rows if r.get("pinned")]
    chosen = least_certain(rows, args.count)
    inputs = _inputs(files.recorded, {r["id"] for r in chosen})
    out = [{"id": r["id"], "label": r["label"], "note": "pinned in this run"} for r in before]
    for r in chosen:
        row = {"id": r["id"], "label": r["label"], "confidence": r["confidence"]}
        row["agrees"] = r.get("agrees")
        if r["id"] in inputs:
            row["input"] = inputs[r["id"]]
        out.append(row)
    write_jsonl(args.out, out)

    print(f"{len(chosen)} least-certain labels of {len(rows)} (model's P(label | the others)):")
    for k, r in enumerate(chosen, start=1):
        flag = "  not the model's prediction" if r.get("agrees") is False else ""
        text = " | ".join(str(v) for v in inputs.get(r["id"], {}).values())
        text = text if len(text) <= 72 else text[:71] + "…"
        print(f"{k:4}. {r['id']}  {r['label']}  P={r['confidence']:.3f}{flag}")
        if text:
            print(f"      {text}")
    carried = f" and the run's {len(before)} pins" if before else ""
    task = files.recorded.get("task") or "TASK"
    given = files.recorded.get("input") or "INPUT"
    print(
        f"pins -> {args.out} ({len(chosen)} labels to check{carried}); correct the labels "
        "there (delete a line you cannot decide), then re-run:\n"
        f"  icm label {given} --task {task} --pin {args.out} --out NEW.jsonl "
        "(with the run's backend options; unchanged prompts come from the cache)"
    )
    return 0


def _inputs(recorded: dict[str, Any], ids: set[str]) -> dict[str, dict[str, FieldValue]]:
    """The input fields of ``ids``, from the input the run recorded (``diagnostics.json``);
    empty, with a note, when it cannot be read any more."""
    path = recorded.get("input")
    if not isinstance(path, str) or not ids:
        return {}
    fields = recorded.get("fields")
    limit = recorded.get("limit")
    try:
        data = load_dataset(
            path,
            fields=fields if isinstance(fields, dict) else None,
            limit=limit if isinstance(limit, int) else None,
        )
    except InputError as exc:
        print(f"icm: note: the run's input is not shown ({exc})", file=sys.stderr)
        return {}
    return {ex.id: dict(ex.fields) for ex in data.examples if ex.id in ids}
