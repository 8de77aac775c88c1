"""Pinned labels: a few human labels for what the model alone cannot decide.

A pin fixes one example's label for a whole run: the search starts with the pinned
examples labeled (they are demonstrations from the first prompt on), never proposes them,
and never relabels them (see ``search.anneal``). Pins are keyed by example id, the ``id``
that ``icm label`` writes in its labels file, and name a label by its word as written
there (``"True"``). ``icm review`` writes a pins file of the least-certain labels of a run
for a person to check (``least_certain`` is its rule).

A pins file is JSONL, one ``{"id": ..., "label": ...}`` object a line; other keys (the
confidence and input fields ``icm review`` adds for the reader) are ignored. Blank lines
are skipped. The same id twice with the same label is one pin; with different labels, an
error.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from .dataset import Example
from .errors import DataError
from .tasks.base import Label, Task


class _PinRow(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)

    id: str
    label: str


@dataclass(frozen=True)
class PinFile:
    """The pins of one file: ``labels`` maps example id to label word, and ``where`` says
    on which line of the file each was set, for error messages."""

    path: Path
    labels: dict[str, str]
    lines: dict[str, int] = field(default_factory=dict)

    def where(self, example_id: str) -> str:
        line = self.lines.get(example_id)
        return f"{self.path}:{line}" if line is not None else str(self.path)


def read_pins(path: str | os.PathLike[str]) -> PinFile:
    """Read a pins file; a bad line is a ``DataError`` naming ``path:LINE``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError("pins file not found", location=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read pins: {exc}", location=str(path)) from None
    labels: dict[str, str] = {}
    lines: dict[str, int] = {}
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            row = _PinRow.model_validate_json(line)
        except ValidationError as exc:
            err = exc.errors()[0]
            name = ".".join(str(x) for x in err["loc"]) or None
            raise DataError(
                f'not a pin (want {{"id": "...", "label": "..."}}): {err["msg"]}',
                location=where,
                field=name,
            ) from None
        previous = labels.get(row.id)
        if previous is not None and previous.strip() != row.label.strip():
            raise DataError(
                f"id {row.id!r} is pinned to {previous!r} on line {lines[row.id]} and to "
                f"{row.label!r} here",
                location=where,
            )
        if previous is None:
            labels[row.id], lines[row.id] = row.label, n
    if not labels:
        raise DataError("pins file holds no pins", location=str(path))
    return PinFile(path, labels, lines)


def resolve_pins(
    pins: Mapping[str, str] | PinFile, examples: Sequence[Example], task: Task
) -> dict[int, Label]:
    """Example index -> label index of ``pins`` (id -> label word, or a ``PinFile``).

    Raises ``DataError`` for an id that is not one of ``examples``, a word that is not one
    of the task's labels (leading and trailing spaces do not matter), and for two pins that
    violate one of the task's consistency constraints together (the search could not keep
    both)."""
    given, source = (pins.labels, pins) if isinstance(pins, PinFile) else (pins, None)

    def where(example_id: str) -> str | None:
        return None if source is None else source.where(example_id)

    words = [w.strip() for w in task.labels]
    index = {ex.id: i for i, ex in enumerate(examples)}
    out: dict[int, Label] = {}
    for example_id, word in given.items():
        i = index.get(example_id)
        if i is None:
            raise DataError(
                f"pin for unknown example id {example_id!r} (pins name the ids of the "
                "labels file of icm label)",
                location=where(example_id),
            )
        if not isinstance(word, str) or word.strip() not in words:
            raise DataError(
                f"pin of {example_id!r}: label {word!r} is not one of the task's labels "
                f"({', '.join(words)})",
                location=where(example_id),
            )
        out[i] = words.index(word.strip())
    for c in task.constraints(examples):
        if c.i in out and c.j in out and (out[c.i], out[c.j]) not in c.allowed:
            a, b = examples[c.i].id, examples[c.j].id
            lines = "" if source is None else f" (lines {source.lines[a]} and {source.lines[b]})"
            raise DataError(
                f"pins {a!r} = {words[out[c.i]]} and {b!r} = {words[out[c.j]]}{lines} break "
                f"the task's consistency relation ({c.reason or 'a constrained pair'}): "
                "the search could not keep both",
                location=None if source is None else str(source.path),
            )
    return out


def pin_words(
    pinned: Mapping[int, Label], examples: Sequence[Example], task: Task
) -> dict[str, str]:
    """``pinned`` back as id -> label word (sorted by id): a run's pins as its identity."""
    words = [w.strip() for w in task.labels]
    return {
        examples[i].id: words[y] for i, y in sorted(pinned.items(), key=lambda p: examples[p[0]].id)
    }


def least_certain(rows: Iterable[Mapping[str, Any]], n: int) -> list[Mapping[str, Any]]:
    """The ``n`` rows of a labels file to check by hand first: unpinned rows with a label
    and a confidence; those whose label is not the model's own prediction given the others
    (``agrees`` false) first, then by confidence, lowest first; ties in file order."""
    open_rows = [
        r
        for r in rows
        if not r.get("pinned") and r.get("label") is not None and r.get("confidence") is not None
    ]
    ranked = sorted(open_rows, key=lambda r: (r.get("agrees") is not False, r["confidence"]))
    return ranked[:n]
