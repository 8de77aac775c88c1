"""A summary file read back (``icm report``): checked field by field before it is used.

A summary may have been edited, truncated or planted. Every field it holds must have the
type ``RunSummary`` gives it (absent fields are allowed: older runs and hand-made summaries
hold fewer), the trajectory must be a list of steps of the types ``run._step_json``
writes, and an unfinished run's ledger must be a ``Ledger``. Anything else is a
``DataError`` naming the file and the field, never a traceback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, ValidationError, create_model

from ..errors import ConfigError, DataError
from ..run import RunSummary
from ..runs.ledger import Ledger
from ..runs.private import read_bounded

MAX_SUMMARY_BYTES = 1 << 28

SummaryView: type[BaseModel] = create_model(
    "SummaryView",
    __config__=ConfigDict(frozen=True, extra="allow"),
    **{  # type: ignore[call-overload]
        name: (cast(Any, field.annotation) | None, None)
        for name, field in RunSummary.model_fields.items()
    },
)


class StepView(BaseModel):
    """A trajectory step as ``diagnose`` and the plot read it."""

    model_config = ConfigDict(frozen=True, extra="allow")

    n: StrictInt
    energy: float | None = None
    candidate_energy: float | None = None
    changed: StrictBool | None = None
    accepted: StrictBool | None = None


class _Unfinished(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    interrupted: StrictBool
    ledger: Ledger = Ledger()


@dataclass(frozen=True)
class SummaryFile:
    """A summary: finished (``summary`` and ``trajectory``) or not (``unfinished``)."""

    summary: dict[str, Any]
    trajectory: list[dict[str, Any]]
    unfinished: Ledger | None = None


def _error(exc: ValidationError, where: str, prefix: str = "") -> DataError:
    err = exc.errors()[0]
    field = prefix + ".".join(str(x) for x in err["loc"])
    return DataError(f"not an icm label summary: {err['msg']}", location=where, field=field)


def read_summary(path: Path) -> SummaryFile:
    """The summary at ``path``, checked (see the module docstring)."""
    where = str(path)
    try:
        data = json.loads(read_bounded(path, MAX_SUMMARY_BYTES))
    except FileNotFoundError:
        raise DataError("file not found", location=where) from None
    except ConfigError as exc:
        raise DataError(str(exc)) from None
    except (OSError, ValueError, RecursionError) as exc:  # JSON, UTF-8, huge ints
        raise DataError(f"cannot read JSON: {exc}", location=where) from None
    if not isinstance(data, dict):
        raise DataError("not an icm label summary: not a JSON object", location=where)
    if data.get("interrupted") is not None:
        try:
            return SummaryFile({}, [], _Unfinished.model_validate(data).ledger)
        except ValidationError as exc:
            raise _error(exc, where) from None
    summary, trajectory = data.get("summary"), data.get("trajectory", [])  # scale: none
    if not isinstance(summary, dict) or not isinstance(trajectory, list):
        raise DataError("not an icm label summary", location=where)
    try:
        checked = SummaryView.model_validate(summary)
    except ValidationError as exc:
        raise _error(exc, where, "summary.") from None
    steps = []
    for i, step in enumerate(trajectory):
        try:
            steps.append(StepView.model_validate(step).model_dump())
        except ValidationError as exc:
            raise _error(exc, where, f"trajectory.{i}.") from None
    return SummaryFile(checked.model_dump(exclude_unset=True), steps)
