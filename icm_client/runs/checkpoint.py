"""A run directory: what lets a labeling run that was killed continue where it stopped.

    RUN_DIR/checkpoint.json   the search's last checkpoint (atomic rename; never partial)
    RUN_DIR/trajectory.jsonl  one line per annealing step, appended as the run goes

The paid-for part of a run, the scores, lives in the disk cache; the checkpoint only holds
the labels and the RNG state, so that a resumed search replays nothing it had decided and
asks the backend for nothing it had already been answered. A fingerprint of the inputs,
the task's prompts, the settings and the backend identity guards against resuming a
different run into the same directory. A run's pins (``pins.py``) are stored beside the
fingerprint, so that a resume with other pins is refused with what changed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from ..errors import ConfigError
from ..search.anneal import Checkpoint
from .atomic import append, atomic, refuse_link
from .identity import RESTART_HINT, RunIdentity, refuse
from .ledger import LEDGER
from .private import private_dir, read_bounded

FORMAT_VERSION = 1
CHECKPOINT = "checkpoint.json"
TRAJECTORY = "trajectory.jsonl"


STATE = (CHECKPOINT, TRAJECTORY, LEDGER, f".{TRAJECTORY}.tmp")
"""The files that make a label run resumable: what ``--restart`` deletes."""

MAX_CHECKPOINT_BYTES = 1 << 28
MAX_STEP_BYTES = 1 << 12


class StepLine(BaseModel):
    """One line of ``trajectory.jsonl`` (``run._step_json``), checked before it is trusted."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n: StrictInt = Field(ge=1)
    temperature: float
    example: StrictInt = Field(ge=0)
    changed: StrictBool
    accepted: StrictBool
    energy: float
    candidate_energy: float | None
    labeled: StrictInt = Field(ge=0)
    inconsistencies: StrictInt = Field(ge=0)


def checkpointed_step(path: str | os.PathLike[str]) -> int:
    """The step a run in ``path`` would resume after (0: none, or unreadable: the run
    itself then says why); for a progress bar that starts where the run stands."""
    try:
        data = json.loads(read_bounded(Path(path) / CHECKPOINT, MAX_CHECKPOINT_BYTES))
        n = data["checkpoint"]["n"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError, ConfigError):
        return 0
    return n if type(n) is int and n >= 0 else 0


class RunStore:
    """Reads and writes the search state in one run directory (``private_dir``: created
    0700, refused when another user owns it or others can write it).

    ``examples`` and ``labels`` (the run's sizes) bound what a checkpoint may hold: an index
    out of range is a clear error naming the file, never a crash later in the search.
    ``pins`` (example id -> label word) are the run's pinned labels, part of its identity.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fingerprint: str,
        *,
        examples: int | None = None,
        labels: int | None = None,
        identity: RunIdentity | None = None,
        pins: Mapping[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.identity = identity  # recorded beside the checkpoint: a refusal names what differs
        self.examples, self.labels = examples, labels
        self.pins = dict(pins or {})
        private_dir(self.path, "run directory")

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def trajectory_path(self) -> Path:
        return self.path / TRAJECTORY

    def load(self) -> tuple[Checkpoint | None, list[dict[str, Any]]]:
        """The last checkpoint (None for a new run) and the trajectory up to it.

        Steps recorded after the checkpoint were not final (the run stopped before the next
        accepted step) and are dropped: the resumed search replays them from the cache.
        """
        for path in (self.checkpoint_path, self.trajectory_path):
            refuse_link(path)
            if path.exists() and not path.is_file():
                raise ConfigError("is not a regular file", location=str(path))
        if not self.checkpoint_path.exists():
            self.trajectory_path.unlink(missing_ok=True)
            return None, []
        where = str(self.checkpoint_path)
        try:
            data = json.loads(read_bounded(self.checkpoint_path, MAX_CHECKPOINT_BYTES))
        except (OSError, ValueError, RecursionError) as exc:  # JSON, UTF-8, huge ints
            raise ConfigError(f"cannot read checkpoint: {exc}", location=where) from None
        if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION:
            raise ConfigError("not a checkpoint of this version of icm-client", location=where)
        if data.get("fingerprint") != self.fingerprint:
            if self.identity is not None:
                raise refuse(where, self.identity, data.get("identity"))
            raise ConfigError(
                f"this run directory belongs to a different run; {RESTART_HINT}", location=where
            )
        changed = _pins_changed(data.get("pins") or {}, self.pins)
        if changed:
            raise ConfigError(
                f"this run directory holds a run with other pins ({changed}); re-run with "
                "--restart (every score is in the cache: only the prompts the pins change "
                "are sent) or use another --out or --run-dir",
                location=where,
            )
        try:
            checkpoint = Checkpoint.from_json(data.get("checkpoint"))
        except ValueError as exc:
            raise ConfigError(str(exc), location=where) from None
        self._check_bounds(checkpoint, where)
        steps = self._read_steps(checkpoint.n)
        self._write_steps(steps)
        return checkpoint, steps

    def save(self, checkpoint: Checkpoint) -> None:
        data: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            "checkpoint": checkpoint.to_json(),
        }
        if self.identity is not None:
            data["identity"] = self.identity.to_json()
        if self.pins:
            data["pins"] = self.pins
        with atomic(self.checkpoint_path) as fh:
            json.dump(data, fh)

    def record(self, step: dict[str, Any]) -> None:
        append(self.trajectory_path, json.dumps(step) + "\n")

    def _check_bounds(self, checkpoint: Checkpoint, where: str) -> None:
        for i, y in checkpoint.labels.items():
            if (self.examples is not None and i >= self.examples) or (
                self.labels is not None and y >= self.labels
            ):
                raise ConfigError(
                    f"checkpoint labels example {i} with label {y}, outside this run's "
                    f"{self.examples} examples and {self.labels} labels: not this run's "
                    "checkpoint; start again with --restart",
                    location=where,
                )

    def _read_steps(self, n: int) -> list[dict[str, Any]]:
        if n == 0 or not self.trajectory_path.exists():
            return []
        steps: list[dict[str, Any]] = []
        where = str(self.trajectory_path)
        try:
            fd = os.open(self.trajectory_path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror}", location=where) from None
        with open(fd, encoding="utf-8", errors="replace") as fh:
            while len(steps) < n:
                line = fh.readline(MAX_STEP_BYTES)
                if not line.endswith("\n"):
                    if len(line) >= MAX_STEP_BYTES:
                        raise ConfigError(
                            f"line {len(steps) + 1} is longer than {MAX_STEP_BYTES} "
                            "characters: not a trajectory step",
                            location=where,
                        )
                    break  # a line cut short by the kill: everything after it is gone too
                try:
                    step = json.loads(line)
                except (ValueError, RecursionError):
                    break  # a line cut short by the kill: everything after it is gone too
                if not isinstance(step, dict) or step.get("n") != len(steps) + 1:
                    got = step.get("n") if isinstance(step, dict) else None
                    raise ConfigError(
                        f"line {len(steps) + 1} records step {got!r}, expected "
                        f"{len(steps) + 1}: this trajectory is not one run's (did two runs "
                        "write this directory?); start again with --restart",
                        location=where,
                    )
                try:
                    checked = StepLine.model_validate(step)
                except ValidationError as exc:
                    err = exc.errors()[0]
                    raise ConfigError(
                        f"line {len(steps) + 1} is not a trajectory step: {err['msg']}",
                        location=where,
                        field=".".join(str(x) for x in err["loc"]) or None,
                    ) from None
                if self.examples is not None and checked.example >= self.examples:
                    raise ConfigError(
                        f"line {len(steps) + 1} names example {checked.example} of "
                        f"{self.examples}: not this run's trajectory; use --restart",
                        location=where,
                    )
                steps.append(checked.model_dump())
        if len(steps) < n:
            raise ConfigError(
                f"trajectory has {len(steps)} complete steps, the checkpoint needs {n}",
                location=str(self.trajectory_path),
            )
        return steps

    def _write_steps(self, steps: list[dict[str, Any]]) -> None:
        with atomic(self.trajectory_path) as fh:
            fh.write("".join(json.dumps(s) + "\n" for s in steps))


def _pins_changed(stored: object, now: Mapping[str, str]) -> str:
    """What differs between the stored pins and ``now``, in words ("" when nothing)."""
    old = {str(k): str(v) for k, v in stored.items()} if isinstance(stored, dict) else {}
    added = len(now.keys() - old.keys())
    removed = len(old.keys() - now.keys())
    relabeled = sum(old[k] != v for k, v in now.items() if k in old)
    parts = [
        f"{k} {what}"
        for k, what in ((added, "added"), (removed, "removed"), (relabeled, "relabeled"))
        if k
    ]
    return ", ".join(parts)


class Checkpointer:
    """Saves a search's checkpoints to ``store``, but not after every step of a replay.

    A checkpoint is an fsync'd file (several ms on a slow disk); a run re-run from its cache
    (``--restart``) accepts a step every few ms. A checkpoint is written at once when the
    backend answered a call since the last one (``calls`` counts them), else when the last
    one is ``every_s`` old, and at ``flush``. A kill can then lose only steps that asked the
    backend nothing: a resumed run replays them from the cache, which is cheap, and decides
    them as before. The file on disk is always a whole, fsync'd checkpoint.
    """

    def __init__(self, store: RunStore, calls: Callable[[], int], every_s: float = 1.0) -> None:
        self.store = store
        self.calls = calls
        self.every_s = every_s
        self._calls = calls()
        self._written = time.monotonic()
        self._pending: Checkpoint | None = None

    def save(self, checkpoint: Checkpoint) -> None:
        calls, now = self.calls(), time.monotonic()
        if calls == self._calls and now - self._written < self.every_s:
            self._pending = checkpoint
            return
        self.store.save(checkpoint)
        self._calls, self._written, self._pending = calls, now, None

    def flush(self) -> None:
        """Write the checkpoint held back, if any (at the end of a run, or when it fails)."""
        if self._pending is not None:
            self.store.save(self._pending)
            self._pending = None
