"""The files of a finished ``icm label`` run, found from any one of them.

``icm label --out OUT`` writes ``OUT`` (labels JSONL), ``OUT.summary.json`` and the run
directory ``OUT.run/`` (checkpoint, trajectory, ``diagnostics.json``). ``diagnostics.json``
records where the other files and the input are (relative to the run directory, so the
three move together), which is how ``--summary`` elsewhere or a renamed run is still found;
without it the sibling names above are assumed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import DataError

DIAGNOSTICS = "diagnostics.json"
RUN_SUFFIX = ".run"
SUMMARY_SUFFIX = ".summary.json"


class LabelLine(BaseModel):
    """One labeled line of a labels file: ``id`` and ``label`` at least (``icm label`` also
    writes ``confidence``, ``agrees``, ``searched`` and ``bounded``, ``icm scale`` ``source``
    and ``part``, ``icm export --format labels`` the input fields; other keys are kept)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    id: str
    label: str
    confidence: float | None = None
    bounded: bool | None = None


class _AnyLine(LabelLine):
    label: str | None  # type: ignore[assignment]  # null: a budget-stopped run never got there


@dataclass(frozen=True)
class LabelFile:
    """The labeled rows of a labels file, and the ids of the rows without a label (``icm
    label`` writes ``label: null`` for examples a budget-stopped search never reached)."""

    path: Path
    rows: list[LabelLine]
    unlabeled: list[str]

    def note(self) -> str | None:
        """What was skipped, for the user, or None."""
        if not self.unlabeled:
            return None
        return (
            f"{len(self.unlabeled)} of {len(self.rows) + len(self.unlabeled)} rows of "
            f"{self.path} have no label (a budget stopped the run before them); skipped"
        )


def read_labels(path: str | os.PathLike[str], *, all_null: bool = False) -> LabelFile:
    """The one reader of label rows, for every command: a labels JSONL written by ``icm
    label``, ``icm scale`` or ``icm export --format labels``, or a run directory or summary
    file of a run (its labels file is found with ``RunFiles``). Rows with a null label are
    skipped and counted; a bad line is a ``DataError`` naming ``path:LINE``. A file whose
    every row is null (a budget spent before the first label) is an error unless
    ``all_null`` (``icm report``, which reports such a run)."""
    path = Path(path)
    if path.is_dir() or path.name.endswith(SUMMARY_SUFFIX):
        found = RunFiles.locate(path).labels
        if found is None:
            raise DataError("no labels file found for this run", location=str(path))
        path = found
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError("labels file not found", location=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read labels: {exc}", location=str(path)) from None
    rows: list[LabelLine] = []
    unlabeled: list[str] = []
    seen: set[str] = set()
    for n, line in enumerate(text.split("\n"), start=1):  # not splitlines(): U+2028 is text
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            row = _AnyLine.model_validate_json(line)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(x) for x in err["loc"]) or None
            raise DataError(f"not a label row: {err['msg']}", location=where, field=field) from None
        if row.id in seen:
            raise DataError(f"duplicate id {row.id!r}", location=where, field="id")
        seen.add(row.id)
        if row.label is None:
            unlabeled.append(row.id)
        else:
            rows.append(LabelLine.model_validate(row.model_dump()))
    if not rows and not (all_null and unlabeled):
        what = "no labeled rows" if unlabeled else "no rows"
        raise DataError(f"labels file holds {what}", location=str(path))
    return LabelFile(path, rows, unlabeled)


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError("file not found", location=str(path)) from None
    except (OSError, ValueError, RecursionError) as exc:  # JSON, UTF-8, huge ints
        raise DataError(f"cannot read JSON: {exc}", location=str(path)) from None
    if not isinstance(data, dict):
        raise DataError("not a JSON object", location=str(path))
    return data


@dataclass(frozen=True)
class RunFiles:
    """Paths of one run's files; None where the file does not exist."""

    labels: Path | None
    summary: Path | None
    run_dir: Path | None
    recorded: dict[str, Any]  # diagnostics.json's "run" entry (input, task...), or {}

    @property
    def diagnostics(self) -> Path | None:
        if self.run_dir is None:
            return None
        path = self.run_dir / DIAGNOSTICS
        return path if path.exists() else None

    @classmethod
    def locate(cls, path: str | os.PathLike[str]) -> RunFiles:
        """From a run directory, a labels file or a summary file."""
        path = Path(path)
        if not path.exists():
            raise DataError("no such run directory or file", location=str(path))
        if path.is_dir():
            run_dir: Path = path
            labels = path.with_name(path.name.removesuffix(RUN_SUFFIX))
        elif path.name.endswith(SUMMARY_SUFFIX):
            labels = path.with_name(path.name.removesuffix(SUMMARY_SUFFIX))
            run_dir = labels.with_name(labels.name + RUN_SUFFIX)
        else:
            labels = path
            run_dir = labels.with_name(labels.name + RUN_SUFFIX)
        summary = path if path.name.endswith(SUMMARY_SUFFIX) else None
        summary = summary or labels.with_name(labels.name + SUMMARY_SUFFIX)
        recorded: dict[str, Any] = {}
        diag = run_dir / DIAGNOSTICS
        if diag.is_file():
            run = read_json(diag).get("run") or {}
            if not isinstance(run, dict):
                raise DataError(
                    "not an icm run's diagnostics: 'run' is not an object", location=str(diag)
                )
            recorded = dict(run)
            for key in ("labels", "summary"):
                rel = recorded.get(key)
                if isinstance(rel, str) and (run_dir / rel).exists():
                    if key == "labels" and not path.is_file():
                        labels = run_dir / rel
                    elif key == "summary" and summary != path:
                        summary = run_dir / rel
        return cls(
            labels=labels if labels.is_file() else None,
            summary=summary if summary.is_file() else None,
            run_dir=run_dir if run_dir.is_dir() else None,
            recorded=recorded,
        )


def relative_to_run(target: Path, run_dir: Path) -> str:
    return os.path.relpath(target.resolve(), run_dir.resolve())
