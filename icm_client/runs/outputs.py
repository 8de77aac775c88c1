"""A run's output files: never the input, never each other, one writer, no litter.

* ``check_outputs`` refuses an output path that is the input or another output (the same
  file by ``os.path.samefile``, so hard and symbolic links count): writing labels over the
  dataset would destroy it.
* ``RunLock`` holds a lock on the run directory for the whole run, so that a second run on
  the same outputs fails at once, naming the process that holds it, instead of paying for
  every call again and interleaving its trajectory with the first one's.
* ``remove_stale_temps`` removes the temporary files a killed atomic write left beside an
  output (``atomic.py`` names them ``.NAME.XXXXXXXX``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import filelock

from ..errors import ConfigError
from .atomic import refuse_link, write_text
from .private import private_dir, read_bounded

LOCK = ".lock"
HOLDER = "lock.json"


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)  # through links: a link to the input is the input
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


def _same(a: Path, b: Path) -> bool:
    """The same file: one inode (so a symbolic or hard link to it counts), or the same path."""
    ia, ib = _identity(a), _identity(b)
    if ia is not None and ib is not None:
        return ia == ib
    try:
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError):
        return False


def check_outputs(
    inputs: Path | Mapping[str, Path | None] | None, outputs: Mapping[str, Path]
) -> None:
    """``ConfigError`` (exit 2) if an output is an input or another output: checked before
    any work, so that a command never replaces the file it reads."""
    if isinstance(inputs, Mapping):
        named_inputs = [(k, v) for k, v in inputs.items() if v is not None]
    else:
        named_inputs = [] if inputs is None else [("the input file", inputs)]
    named = list(outputs.items())
    for i, (name, path) in enumerate(named):
        for what, source in named_inputs:
            if _same(path, source):
                raise ConfigError(
                    f"{name} {path} is {what}"
                    + ("" if what == "the input file" else f" {source}")
                    + ": the command would overwrite its own input; choose another output path"
                )
        for other, other_path in named[:i]:
            if _same(path, other_path):
                raise ConfigError(
                    f"{name} {path} is the same file as {other} {other_path}; "
                    "choose different paths"
                )


class RunLock:
    """An exclusive lock on ``run_dir`` for one process (``with RunLock(run_dir): ...``).

    The lock is ``RUN_DIR/.lock`` (``filelock``: released by the OS when the process dies,
    so a killed run never leaves a stale lock); who holds it is in ``RUN_DIR/lock.json``.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._lock = filelock.FileLock(str(run_dir / LOCK), timeout=0)
        self._created = False

    def __enter__(self) -> RunLock:
        self._created = not self.run_dir.exists()
        private_dir(self.run_dir, "run directory")
        try:
            refuse_link(self.run_dir / LOCK)  # filelock opens it with O_TRUNC
            self._lock.acquire()
        except filelock.Timeout:
            raise ConfigError(
                f"another icm run is using {self.run_dir} ({self._holder()}); wait for it to "
                "finish, or give this run another --out or --run-dir"
            ) from None
        except OSError as exc:
            raise ConfigError(f"cannot lock run directory {self.run_dir}: {exc}") from None
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(sys.argv[:1] + sys.argv[1:3]),
        }
        with contextlib.suppress(OSError, ConfigError):
            write_text(self.run_dir / HOLDER, json.dumps(info) + "\n")
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            (self.run_dir / HOLDER).unlink(missing_ok=True)
        self._lock.release()
        if self._created:  # a run that failed before writing anything leaves no directory
            with contextlib.suppress(OSError):
                if [p.name for p in self.run_dir.iterdir()] == [LOCK]:
                    (self.run_dir / LOCK).unlink()
                    self.run_dir.rmdir()

    def _holder(self) -> str:
        try:
            info: Any = json.loads(read_bounded(self.run_dir / HOLDER, 4096))
            return (
                f"process {int(info['pid'])} on {str(info['host'])[:64]!r}, "
                f"started {str(info['started'])[:32]}"
            )
        except (OSError, ValueError, TypeError, KeyError, RecursionError, ConfigError):
            return "a process that has not said which yet"


_TEMP = re.compile(r"[a-z0-9_]{8}")


def stale_temps(path: Path) -> Iterator[Path]:
    """Temporary files of ``atomic(path)`` left by a killed write."""
    parent = path.parent if str(path.parent) else Path(".")
    prefix = f".{path.name}."
    with contextlib.suppress(OSError):
        for entry in parent.iterdir():
            name = entry.name
            ours = name.startswith(prefix) and _TEMP.fullmatch(name[len(prefix) :])
            if ours and entry.is_file() and not entry.is_symlink():
                yield entry


def remove_stale_temps(*paths: Path) -> None:
    """Remove what ``stale_temps`` finds beside each of ``paths`` (call under ``RunLock``)."""
    for path in paths:
        for tmp in list(stale_temps(path)):
            with contextlib.suppress(OSError):
                tmp.unlink()
