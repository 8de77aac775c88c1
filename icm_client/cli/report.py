"""``icm report RUN``: a finished run's diagnostics, warnings, markdown and plot.

RUN is the run directory (``OUT.run``), the labels file or the summary file of an
``icm label`` run. ``icm label`` itself saves the diagnostics (``save_run_diagnostics``)
and prints the warnings as the run ends.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..advice import advise
from ..diagnostics import Diagnostics, diagnose, markdown
from ..errors import DataError
from ..plot import INSTALL_HINT, have_matplotlib, plot_run
from ..run import LabelResult
from ..runs.atomic import write_text
from ..runs.files import DIAGNOSTICS, RunFiles, read_labels, relative_to_run
from ..runs.outputs import check_outputs
from ..runs.rundir import RunDir
from ._io import UNFINISHED, check_writable, write_json
from ._summary import read_summary


def add_parser(sub: Any) -> None:
    p = sub.add_parser("report", help="diagnostics, warnings and a plot of an icm label run")
    p.set_defaults(run=run)
    p.add_argument("run_path", metavar="RUN", help="run directory, labels file or summary file")
    p.add_argument(
        "--out-dir",
        type=Path,
        help="where to write report.md and report.png (default: the run directory)",
    )
    p.add_argument("--no-plot", action="store_true", help="no PNG")
    p.add_argument("--json", action="store_true", help="print the diagnostics as JSON")
    p.add_argument(
        "--fail-on-warning",
        action="store_true",
        help=f"exit {UNFINISHED} when the run has warnings, or did not finish (interrupted, or "
        "stopped by a budget before labeling every example)",
    )


def save_run_diagnostics(
    run: RunDir, result: LabelResult, run_info: dict[str, Any], labels: Path, summary: Path
) -> Diagnostics:
    """Write ``RUN_DIR/diagnostics.json`` (with where the run's files and input are) and
    print the warnings to stderr."""
    d = diagnose(
        result.summary.model_dump(), result.trajectory, [r.model_dump() for r in result.rows]
    )
    info = {
        **run_info,
        "labels": relative_to_run(labels, run.path),
        "summary": relative_to_run(summary, run.path),
    }
    advice = advise(d, result.summary.model_dump())
    run.write_json(DIAGNOSTICS, {"run": info, "diagnostics": d.model_dump(), "advice": advice})
    for finding in d.warnings:
        print(f"icm: warning: {finding.message} [{finding.code}]", file=sys.stderr)
    for line in advice:
        print(f"icm: advice: {line}", file=sys.stderr)
    return d


async def run(args: argparse.Namespace) -> int:
    files = RunFiles.locate(args.run_path)
    if files.summary is not None:
        ledger = read_summary(files.summary).unfinished
        if ledger is not None:
            t = ledger.total
            print(
                f"the run did not finish (the same command continues it); so far, over "
                f"{ledger.invocations} invocations: backend calls {t.calls}, prompt tokens "
                f"{t.prompt_tokens}, cache hits {t.cache_hits}, wall time {t.wall_time_s:.1f} s"
            )
            return UNFINISHED if args.fail_on_warning else 0
    if files.labels is None or files.summary is None:
        missing = "labels file" if files.labels is None else "summary file"
        raise DataError(
            f"no {missing} for this run (has it finished?); give the run directory, the "
            "labels file or the summary of an icm label run",
            location=str(args.run_path),
        )
    read = read_summary(files.summary)
    summary, trajectory = read.summary, read.trajectory
    labels = read_labels(files.labels, all_null=True)
    if labels.note():
        print(f"icm: {labels.note()}", file=sys.stderr)
    rows = [r.model_dump() for r in labels.rows] + [
        {"id": i, "label": None} for i in labels.unlabeled
    ]
    d = diagnose(summary, trajectory, rows)
    advice = advise(d, summary)
    text = markdown(d, summary)
    if advice:
        text += "\n## What to do\n\n" + "".join(f"- {line}\n" for line in advice)
    out_dir = args.out_dir or files.run_dir or files.labels.parent
    prefix = "" if args.out_dir or files.run_dir else f"{files.labels.name}."
    md_path, png_path = out_dir / f"{prefix}report.md", out_dir / f"{prefix}report.png"
    check_writable(md_path)
    inputs = {"the labels file": files.labels, "the summary": files.summary}
    if files.diagnostics is not None:
        inputs["the diagnostics"] = files.diagnostics
    check_outputs(inputs, {"report.md": md_path, "report.png": png_path})
    note = f"report -> {md_path}"
    if args.no_plot:
        pass
    elif have_matplotlib():
        plot_run(png_path, trajectory, d.label_counts, title=f"{d.task}: {d.examples} examples")
        note += f", plot -> {png_path}"
        text += f"\n![trajectory and label balance]({png_path.name})\n"
    else:
        note += f" (no plot: matplotlib is not installed; {INSTALL_HINT})"
    write_text(md_path, text)
    if files.run_dir is not None:  # refresh the saved diagnostics (older runs have none)
        info = {
            **files.recorded,
            "labels": relative_to_run(files.labels, files.run_dir),
            "summary": relative_to_run(files.summary, files.run_dir),
        }
        write_json(
            files.run_dir / DIAGNOSTICS,
            {"run": info, "diagnostics": d.model_dump(), "advice": advice},
        )
    if args.json:
        print(json.dumps(d.model_dump(), indent=2))
    else:
        print(text, end="")
    print(note, file=sys.stderr)
    return UNFINISHED if args.fail_on_warning and d.warnings else 0
