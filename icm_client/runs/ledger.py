"""What a run has cost over its whole life, across the invocations that resumed it.

A run directory outlives a single ``icm label`` command: one is stopped by a budget, by
Ctrl-C or SIGTERM, or killed outright; the next continues it, a third re-runs it from the
cache. ``RUN_DIR/ledger.json`` holds the totals of the invocations that ended, and
``RUN_DIR/spending.jsonl`` the running figures of the one under way, appended (and
fsync'd) before each request is sent (``journal.py``). An invocation that ends, however it
ends, adds its figures to the ledger and removes its journal; one that was killed leaves its
journal, which the next invocation counts as an unfinished invocation. So the summary can
say what the run cost in total and what the last invocation did, and budgets
(``--max-calls``/``--max-tokens``) are spent against totals that no kill can reset.

Both files are read as untrusted input: bounded in size, validated (counts are non-negative
integers below 10^15), and any malformed one is a ``ConfigError`` naming it.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..backends.base import Count, Spent, Usage
from ..errors import ConfigError
from .atomic import atomic

LEDGER = "ledger.json"
JOURNAL = "spending.jsonl"

MAX_LEDGER_BYTES = 1 << 20
MAX_JOURNAL_LINE = 4096
JOURNAL_TAIL_BYTES = 64 * 1024  # the last lines are all a reader needs

Seconds = Annotated[float, Field(ge=0, le=1e10, allow_inf_nan=False)]


class Figures(Spent):
    """What scoring cost (``Spent``) and the wall time: of one invocation or a total."""

    wall_time_s: Seconds = 0.0

    @classmethod
    def of(cls, usage: Usage, wall_time_s: float, *, in_flight: bool = False) -> Figures:
        """``usage``'s figures; ``in_flight``: with the estimated tokens of the calls sent
        and not answered yet (a journal entry: they may be billed)."""
        spent = usage.spent(in_flight=in_flight).counts()
        return cls(**spent, wall_time_s=round(max(wall_time_s, 0.0), 3))

    def __add__(self, other: Figures) -> Figures:
        mine, theirs = self.counts(), other.counts()
        return Figures(
            **{name: mine[name] + theirs[name] for name in mine},
            wall_time_s=round(self.wall_time_s + other.wall_time_s, 3),
        )


class JournalEntry(Figures):
    """One line of ``spending.jsonl``: the running figures of invocation ``id``."""

    id: str = Field(pattern=r"^[0-9a-f]{32}$")


class Ledger(BaseModel):
    """A run's totals over ``invocations`` commands, and the last invocation's own figures.
    ``unfinished`` counts invocations that ended early (Ctrl-C, SIGTERM, a failing backend,
    a kill); ``journal`` is the id of the last journal counted (so that a journal left
    behind by a kill between the two writes is not counted twice)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    invocations: Count = 0
    unfinished: Count = 0
    total: Figures = Figures()
    last: Figures = Figures()
    journal: str | None = Field(None, pattern=r"^[0-9a-f]{32}$")

    @model_validator(mode="after")
    def _consistent(self) -> Ledger:
        if self.unfinished > self.invocations:
            raise ValueError("more unfinished invocations than invocations")
        return self

    def add(self, figures: Figures, *, finished: bool, journal: str | None = None) -> Ledger:
        return Ledger(
            invocations=self.invocations + 1,
            unfinished=self.unfinished + (not finished),
            total=self.total + figures,
            last=figures,
            journal=journal or self.journal,
        )


def load_ledger(run_dir: str | os.PathLike[str], *, running: str | None = None) -> Ledger:
    """The run's ledger so far (an empty one for a new run), with the journal of a killed
    invocation counted as an unfinished one (not that of the invocation ``running``, which
    is under way). Reads, never writes."""
    ledger = _read_ledger(Path(run_dir) / LEDGER)
    left = read_journal(Path(run_dir) / JOURNAL)
    if left is not None and left.id not in (ledger.journal, running):
        figures = Figures.model_validate(left.model_dump(exclude={"id"}))
        ledger = ledger.add(figures, finished=False, journal=left.id)
    return ledger


def settle(run_dir: str | os.PathLike[str]) -> Ledger:
    """Write the journal a killed invocation left into the ledger and remove it, so that a
    new invocation can start its own; the ledger."""
    ledger = load_ledger(run_dir)
    journal = Path(run_dir) / JOURNAL
    if os.path.lexists(journal):
        _write(Path(run_dir), ledger)
        journal.unlink()
    return ledger


def record(
    run_dir: str | os.PathLike[str],
    figures: Figures,
    *,
    finished: bool,
    journal: str | None = None,
) -> Ledger:
    """Add one invocation to the run's ledger (written atomically) and return it;
    ``journal``: the id of that invocation's journal, removed once the ledger holds it."""
    ledger = load_ledger(run_dir, running=journal).add(figures, finished=finished, journal=journal)
    _write(Path(run_dir), ledger)
    if journal is not None:
        left = Path(run_dir) / JOURNAL
        if os.path.lexists(left):
            left.unlink()
    return ledger


def remaining(budget: int | None, spent: int) -> int | None:
    """What is left of a budget for the whole run after ``spent`` (never below 0)."""
    return None if budget is None else max(budget - spent, 0)


def _write(run_dir: Path, ledger: Ledger) -> None:
    run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with atomic(run_dir / LEDGER) as fh:
        fh.write(ledger.model_dump_json(indent=2) + "\n")


def _read_ledger(path: Path) -> Ledger:
    raw = read_bounded(path, MAX_LEDGER_BYTES, "the run's ledger")
    if raw is None:
        return Ledger()
    try:
        return Ledger.model_validate_json(raw)
    except ValidationError as exc:
        raise ConfigError(
            f"the run's ledger is damaged ({describe(exc)}); it is not trusted: restore it, "
            "or start the run afresh with --restart (its spending so far is then forgotten)",
            location=str(path),
        ) from None


def read_journal(path: Path) -> JournalEntry | None:
    """The last complete entry of a journal, or None (no journal, or only a line cut by a
    kill while it was written: that request was not sent yet)."""
    raw = read_bounded(path, None, "the run's spending journal", tail=JOURNAL_TAIL_BYTES)
    if not raw:
        return None
    lines = raw.split(b"\n")
    cut = lines.pop()  # after the last newline: empty, or a line whose write was cut short
    if cut:
        try:
            return _entry(cut)
        except (ValidationError, ValueError) as exc:
            if not _cut_short(exc):
                raise _damaged(path, exc) from None
    last = next((line for line in reversed(lines) if line.strip()), None)
    if last is None:
        return None
    try:
        return _entry(last)
    except (ValidationError, ValueError) as exc:
        raise _damaged(path, exc) from None


def _entry(line: bytes) -> JournalEntry:
    if len(line) > MAX_JOURNAL_LINE:
        raise ValueError(f"a line of {len(line):,} bytes")
    return JournalEntry.model_validate_json(line)


def _damaged(path: Path, exc: Exception) -> ConfigError:
    why = describe(exc) if isinstance(exc, ValidationError) else str(exc)
    return ConfigError(
        f"the run's spending journal is damaged ({why}); it is not trusted: restore it, or "
        "start the run afresh with --restart",
        location=str(path),
    )


def _cut_short(exc: Exception) -> bool:
    """Whether a line failed as a write cut short fails: JSON that ends too soon."""
    if not isinstance(exc, ValidationError):
        return False
    return all(
        e["type"] == "json_invalid" and "EOF" in str(e.get("ctx", {}).get("error", ""))
        for e in exc.errors()
    )


def read_bounded(
    path: Path, limit: int | None, what: str, *, tail: int | None = None
) -> bytes | None:
    """The bytes of a regular file (never through a symlink), at most ``limit`` (larger:
    ``ConfigError``) or its last ``tail``; None when there is no such file."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        why = "a symbolic link" if exc.errno == errno.ELOOP else exc.strerror or str(exc)
        raise ConfigError(f"cannot read {what}: {why}", location=str(path)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{what} is not a regular file", location=str(path))
        if limit is not None and info.st_size > limit:
            raise ConfigError(
                f"{what} is {info.st_size:,} bytes, larger than any real one ({limit:,})",
                location=str(path),
            )
        start = max(info.st_size - tail, 0) if tail is not None else 0
        os.lseek(fd, start, os.SEEK_SET)
        chunks: list[bytes] = []
        size = 0
        cap = (limit if limit is not None else tail or 0) + 1
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > cap:
                raise ConfigError(f"{what} grew while it was read", location=str(path))
        return b"".join(chunks)
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise ConfigError(f"cannot read {what}: {why}", location=str(path)) from None
    finally:
        os.close(fd)


def describe(exc: ValidationError) -> str:
    """The first problem of a validation error, in a line: where and what."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "the file"
    message = str(first["msg"])
    if first["type"] == "json_invalid":
        message = f"not valid JSON: {first.get('ctx', {}).get('error', message)}"
    return f"{where}: {message}"
