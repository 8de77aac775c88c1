"""Edges of the CLI: output files (checked before any work, written atomically after it)
and option errors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import ConfigError
from ..runs.atomic import atomic

UNFINISHED = 3
"""Exit status of a run that stopped before labeling every example (a budget ran out), and
of ``icm report --fail-on-warning`` on such a run or one with warnings."""

EXIT_CODES = f"""exit status:
  0    every example labeled
  1    the backend failed (after its retries)
  2    bad input or options (nothing was sent, or the run stopped before its search)
  {UNFINISHED}    the run stopped before labeling every example (a budget ran out): the
       labels file holds label null for those; the same command with a larger budget
       continues from the run directory
  130  interrupted (Ctrl-C); the same command continues the run"""


def check_writable(path: Path) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise ConfigError(f"cannot write {path}: {parent} is a file, not a directory")
    if not parent.is_dir():
        raise ConfigError(f"cannot write {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"cannot write {path}: directory {parent} is not writable")
    if path.is_dir():
        raise ConfigError(f"cannot write {path}: it is a directory")


_LINE_BREAKS = str.maketrans({c: f"\\u{ord(c):04x}" for c in "\x85\u2028\u2029"})


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """One JSON object a line, UTF-8; the characters other tools take for line breaks
    (U+0085, U+2028, U+2029) are written escaped, so any JSONL reader gets the rows back."""
    with atomic(path) as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False).translate(_LINE_BREAKS) + "\n")


def write_json(path: Path, data: dict[str, Any]) -> None:
    with atomic(path) as fh:
        json.dump(data, fh, indent=2, ensure_ascii=False)
        fh.write("\n")


def write_labels_then_summary(
    labels: Path, rows: list[dict[str, Any]], summary: Path, data: dict[str, Any]
) -> None:
    """The old summary goes first: a kill at any point leaves labels without a summary,
    never new labels beside the summary of the run before."""
    summary.unlink(missing_ok=True)
    write_jsonl(labels, rows)
    write_json(summary, data)


def option_error(exc: ValidationError) -> ConfigError:
    """The first validation error of a settings model, named as the command-line option."""
    err = exc.errors()[0]
    where = ".".join(str(x) for x in err["loc"])
    return ConfigError(f"--{where.replace('_', '-')}: {err['msg']}")
