"""The run directory of a large run: what lets a killed ``icm scale`` continue.

    RUN_DIR/scale.json           the fingerprint of the inputs, settings and model
    RUN_DIR/batches/0007/        the checkpoint of batch 7's search (see ``checkpoint``)
    RUN_DIR/batches/0007.json    batch 7's labels, once its search finished
    RUN_DIR/propagated.jsonl     one line per finished chunk (a torn last line is dropped)

Finished batches are written by atomic rename; chunks are appended and fsync'd, so a kill
loses at most the chunk being written, which the next run labels again (its scores are in
the disk cache).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .atomic import append, atomic, refuse_link
from .identity import RunIdentity, refuse
from .private import private_dir

FORMAT_VERSION = 1


class ScaleStore:
    """The run directory of a large run (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str], identity: RunIdentity) -> None:
        self.path = Path(path)
        private_dir(self.path, "run directory")
        private_dir(self.path / "batches", "run directory")
        head = self.path / "scale.json"
        if head.exists():
            try:
                data = json.loads(head.read_text(encoding="utf-8"))
            except (OSError, ValueError, RecursionError) as exc:  # JSON, UTF-8, huge ints
                raise ConfigError(f"cannot read: {exc}", location=str(head)) from None
            if not isinstance(data, dict) or data.get("fingerprint") != identity.fingerprint:
                recorded = data.get("identity") if isinstance(data, dict) else None
                raise refuse(str(head), identity, recorded)
        else:
            _atomic_json(
                head,
                {
                    "format": FORMAT_VERSION,
                    "fingerprint": identity.fingerprint,
                    "identity": identity.to_json(),
                },
            )

    def batch_dir(self, b: int) -> Path:
        return self.path / "batches" / f"{b:04d}"

    def batch(self, b: int) -> dict[str, Any] | None:
        path = self.path / "batches" / f"{b:04d}.json"
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            return None  # written by atomic rename, so only a hand-edited file: search again
        if not isinstance(data, dict) or type(data.get("steps")) is not int:
            return None  # the same
        return data

    def save_batch(self, b: int, done: dict[str, Any]) -> None:
        _atomic_json(self.path / "batches" / f"{b:04d}.json", done)

    def chunks(self) -> dict[int, dict[str, Any]]:
        path = self.path / "propagated.jsonl"
        refuse_link(path)
        if not path.exists():
            return {}
        out: dict[int, dict[str, Any]] = {}
        good = 0
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror}", location=str(path)) from None
        with open(fd, "rb+") as fh:
            for raw in fh:
                try:
                    line = json.loads(raw)
                except (ValueError, RecursionError):
                    break  # cut short by a kill: this chunk is done again
                if not raw.endswith(b"\n"):
                    break
                try:
                    out[int(line["chunk"])] = line
                except (TypeError, KeyError, ValueError):
                    raise ConfigError(
                        f"line {len(out) + 1} is not a finished chunk; start again with --restart",
                        location=str(path),
                    ) from None
                good += len(raw)
            if good != os.fstat(fh.fileno()).st_size:
                fh.truncate(good)
        return out

    def save_chunk(self, line: dict[str, Any]) -> None:
        append(
            self.path / "propagated.jsonl", json.dumps(line, ensure_ascii=False) + "\n", sync=True
        )


def _atomic_json(path: Path, data: dict[str, Any]) -> None:
    with atomic(path) as fh:
        json.dump(data, fh)
