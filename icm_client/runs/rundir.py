"""One object owns a run's directory, for the CLI and the Python API alike.

``RunDir`` creates the directory (0700; one owned by another user, or writable by group or
others, is refused: ``private.py``), holds its lock for the whole run (``RunLock``: a second
run on the same directory, from the CLI or ``icm.label(run_dir=...)``, fails at once), reads
and checks the search state (``RunStore``: the checkpoint and trajectory are validated and
bounded before they are trusted), writes the unfinished-run summary and the diagnostics,
and knows which files are its own: ``restart`` deletes only those, and refuses a directory
that holds anything else (``--restart --run-dir ~/Documents`` deletes nothing).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from ..errors import ConfigError
from .atomic import write_text
from .checkpoint import CHECKPOINT, STATE, RunStore, checkpointed_step
from .files import DIAGNOSTICS
from .identity import RunIdentity
from .ledger import JOURNAL, LEDGER, load_ledger
from .outputs import HOLDER, LOCK, RunLock, remove_stale_temps

SCALE_HEAD = "scale.json"
PROPAGATED = "propagated.jsonl"
BATCHES = "batches"
SCALE_STATE = (SCALE_HEAD, PROPAGATED, BATCHES)
REPORTS = ("report.md", "report.png")
OWN = frozenset({*STATE, *SCALE_STATE, *REPORTS, DIAGNOSTICS, HOLDER, LOCK, JOURNAL})
"""Every name a run writes in its directory (``label`` and ``scale``). The spending journal
is the invocation's under way (a killed one's is counted into the ledger when the next
opens its own), so ``--restart`` leaves it to the invocation that writes it."""

_TEMP = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}")  # atomic.py's temporaries


class RunDir:
    """A run's directory (see the module docstring); ``with RunDir(path) as run: ...``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock: RunLock | None = None
        self._new_lock = False

    def __enter__(self) -> RunDir:
        lock = RunLock(self.path)
        self._new_lock = not os.path.lexists(self.path / LOCK)
        lock.__enter__()  # private_dir, then the lock
        self._lock = lock
        remove_stale_temps(*(self.path / name for name in sorted(OWN)))
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._lock is None:
            return
        names = set()
        with contextlib.suppress(OSError):
            names = {p.name for p in self.path.iterdir()}
        not_a_run = bool(self.foreign()) or not names & (OWN - {LOCK, HOLDER})
        self._lock.__exit__(kind, exc, tb)
        self._lock = None
        if self._new_lock and not_a_run:  # leave no trace in a directory that is not a run's
            with contextlib.suppress(OSError):
                (self.path / LOCK).unlink()

    def _require_lock(self) -> None:
        if self._lock is None:
            raise RuntimeError("use the RunDir in a with block: it holds the run's lock")

    def foreign(self) -> list[str]:
        """Names in the directory that no run writes (sorted)."""
        out = []
        with contextlib.suppress(OSError):
            for entry in self.path.iterdir():
                temp = _TEMP.fullmatch(entry.name)
                if entry.name not in OWN and not (temp and temp["name"] in OWN):
                    out.append(entry.name)
        return sorted(out)

    def restart(self, state: tuple[str, ...] = STATE) -> None:
        """Forget the run (``--restart``): delete its ``state`` files, nothing else; refuse
        a directory holding files that are not a run's (nothing is deleted then)."""
        self._require_lock()
        foreign = self.foreign()
        if foreign:
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise ConfigError(
                f"--restart: {self.path} is not an icm run directory (it holds {shown}); "
                "nothing was deleted; give the run's own directory with --run-dir"
            )
        for name in state:
            path = self.path / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)

    def prepare(self, *, restart: bool, resume: bool, marker: str = CHECKPOINT) -> bool:
        """``--restart`` / ``--resume`` / neither; True when a run is there to resume."""
        if restart:
            self.restart(STATE if marker == CHECKPOINT else SCALE_STATE)
            return False
        found = (self.path / marker).exists()
        if resume and not found:
            raise ConfigError(f"--resume: no checkpoint in {self.path}")
        return found

    def checkpointed_step(self) -> int:
        return checkpointed_step(self.path)

    def store(
        self,
        identity: RunIdentity,
        *,
        examples: int,
        labels: int,
        pins: Mapping[str, str] | None = None,
    ) -> RunStore:
        """The search state of this run (a checkpoint of another run, or of this one with
        other pins, is refused on load, naming what differs)."""
        self._require_lock()
        return RunStore(
            self.path,
            identity.fingerprint,
            examples=examples,
            labels=labels,
            identity=identity,
            pins=pins,
        )

    def write_json(self, name: str, data: dict[str, Any]) -> Path:
        """One of the run's own files (``diagnostics.json``), written atomically."""
        if name not in OWN:
            raise ValueError(f"{name} is not a run file")
        path = self.path / name
        write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        return path

    def write_unfinished_summary(self, summary_path: Path, before: int) -> None:
        """The summary of an invocation that did not finish: the run's ledger (what it has
        cost so far, this invocation included); no labels. Nothing when the invocation
        stopped before its search began (``before``: the invocations the ledger held at the
        start)."""
        if not (self.path / LEDGER).is_file():
            return
        ledger = load_ledger(self.path)
        if ledger.invocations <= before:
            return
        data = {
            "summary": None,
            "interrupted": True,
            "ledger": ledger.model_dump(),
            "note": "the run did not finish; the same command continues it",
        }
        write_text(summary_path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
