"""The spending of the invocation under way, kept durably before each request is sent.

``SpendJournal`` is a recorder of a ``Usage`` (``Usage.sending``): before a call goes out, the
run's running figures are appended to ``RUN_DIR/spending.jsonl`` and fsync'd, so that no
SIGKILL, crash or power cut can make the run forget a request that may have reached a
server (and be billed). Concurrent requests share one write (group commit): while one
append is being synced, the calls admitted meanwhile wait and go out with the next one, so
a busy run pays one fsync per small batch of requests, not one each. The journal is
compacted to its last line when it grows past ``COMPACT_BYTES``.

When the invocation ends (``finish``), its figures go into ``ledger.json`` and the journal
is removed; a journal left by a killed invocation is counted by the next one
(``ledger.load_ledger``, ``ledger.settle``).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path
from typing import Self

import anyio
import anyio.to_thread

from ..backends.base import Usage
from .atomic import atomic, write_error
from .ledger import JOURNAL, Figures, JournalEntry, Ledger, record, settle
from .outputs import HOLDER, LOCK
from .rundir import OWN, RunDir

COMPACT_BYTES = 256 * 1024


class SpendJournal:
    """``with SpendJournal(run_dir, usage) as journal: ...; journal.finish(finished=True)``.

    Entering settles a journal left by a killed invocation and attaches this one to
    ``usage``; the file (mode 0600, never through a symlink) is created by the first call.
    Leaving detaches it and, if ``finish`` was not called and anything was sent, finishes
    the invocation as unfinished, when the run directory held a run already: a new run that
    fails before its search began (a wrong model, a label word of two tokens) leaves
    nothing behind, its few set-up requests uncounted, as bad input writes nothing.
    """

    def __init__(self, run_dir: str | os.PathLike[str], usage: Usage) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / JOURNAL
        self.usage = usage
        self.id = uuid.uuid4().hex
        self.before = Ledger()
        self._start = time.perf_counter()
        self._fd: int | None = None
        # Writes run in a worker thread; closing waits for the one under way and ends them
        # (batches of ``icm scale`` share one usage: another's call may be writing here).
        self._io = threading.Lock()
        self._closed = False
        self._writing: anyio.Event | None = None  # set when the write under way is done
        self._admitted = 0  # calls to ``record`` so far
        self._durable = 0  # of which the journal holds the figures
        self._calls_at_start = usage.calls
        self.ledger: Ledger | None = None  # once finished
        self._run_exists = False

    @staticmethod
    def attached(usage: Usage, run_dir: str | os.PathLike[str]) -> SpendJournal | None:
        """The open journal of ``run_dir`` recording ``usage``, if there is one."""
        for recorder in usage.recorders:
            owner = getattr(recorder, "__self__", None)
            if isinstance(owner, SpendJournal) and owner.run_dir == Path(run_dir):
                return owner
        return None

    def __enter__(self) -> Self:
        self.before = settle(self.run_dir)
        self._run_exists = self.before.invocations > 0 or _holds_a_run(self.run_dir)
        self._start = time.perf_counter()
        self.usage.recorders.append(self.write)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.ledger is not None:
            return
        if self.usage.calls > self._calls_at_start and self._run_exists:
            self.finish(finished=False)
            return
        self._close()
        self.path.unlink(missing_ok=True)

    def figures(self, wall_time_s: float | None = None, *, in_flight: bool = False) -> Figures:
        """This invocation's figures so far (``usage`` is assumed fresh for it)."""
        wall = time.perf_counter() - self._start if wall_time_s is None else wall_time_s
        return Figures.of(self.usage, wall, in_flight=in_flight)

    def finish(self, *, finished: bool, wall_time_s: float | None = None) -> Ledger:
        """Add this invocation to the ledger and remove the journal; the ledger (once)."""
        if self.ledger is not None:
            return self.ledger
        self._close()
        self.ledger = record(
            self.run_dir, self.figures(wall_time_s), finished=finished, journal=self.id
        )
        return self.ledger

    async def write(self, usage: Usage) -> None:
        """The recorder: the figures, appended and synced before the admitted call goes out.
        One call writes at a time; the calls admitted meanwhile wait for the next write,
        which carries all of them."""
        self._admitted += 1
        mine = self._admitted
        while self._durable < mine:
            if self._writing is not None:
                await self._writing.wait()
                continue
            self._writing = done = anyio.Event()
            try:
                covers = self._admitted
                entry = JournalEntry(id=self.id, **self.figures(in_flight=True).model_dump())
                await anyio.to_thread.run_sync(self._append, entry.model_dump_json() + "\n")
                self._durable = covers
            finally:
                self._writing = None
                done.set()

    def _append(self, line: str) -> None:
        with self._io:
            if not self._closed:
                self._append_open(line)

    def _append_open(self, line: str) -> None:
        if self._fd is None:
            self.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._fd = self._open(os.O_CREAT | os.O_EXCL)
        try:
            if os.fstat(self._fd).st_size > COMPACT_BYTES:
                with atomic(self.path) as fh:  # the last line is all a reader needs
                    fh.write(line)
                os.close(self._fd)
                self._fd = self._open(0)
                return
            os.write(self._fd, line.encode())
            os.fsync(self._fd)
        except OSError as exc:
            raise write_error(self.path, exc) from None

    def _open(self, extra: int) -> int:
        flags = os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0) | extra
        try:
            return os.open(self.path, flags, 0o600)
        except OSError as exc:
            raise write_error(self.path, exc) from None

    def _close(self) -> None:
        """Detach from ``usage`` and close the file."""
        if self.write in self.usage.recorders:
            self.usage.recorders.remove(self.write)
        with self._io:
            self._closed = True
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _holds_a_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a run: some of a run's files beside the lock of the one
    starting, and nothing else (a directory of other files is not written into)."""
    state = OWN - {LOCK, HOLDER, JOURNAL}
    try:
        return not RunDir(run_dir).foreign() and any(p.name in state for p in run_dir.iterdir())
    except OSError:
        return False
