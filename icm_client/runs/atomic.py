"""The one writer of every file a command writes: whole or absent, never through a link.

* ``atomic(path)`` writes to a temporary file beside ``path`` (``mkstemp``: created with
  ``O_EXCL | O_NOFOLLOW``, mode 0600), fsyncs it and renames it over ``path``. A kill at
  any moment leaves the old file or the new one, never a partial one; the rename replaces
  a link planted at ``path`` instead of writing to what it points at.
* ``append(path, text)`` adds to a log (a trajectory, finished chunks): opened with
  ``O_NOFOLLOW``, so a planted link is refused instead of written through.
* ``check_outputs`` (``outputs.py``) keeps every output off the command's inputs.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from ..errors import ConfigError


def refuse_link(path: Path) -> None:
    """``ConfigError`` if ``path`` is a symbolic link (nothing is written through one)."""
    with contextlib.suppress(OSError):
        if stat.S_ISLNK(os.lstat(path).st_mode):
            raise ConfigError(
                "is a symbolic link: icm does not write through links; remove it",
                location=str(path),
            )


def atomic(path: Path) -> contextlib.AbstractContextManager[IO[str]]:
    """Write text to a temporary file beside ``path`` and rename it: never a partial output."""
    return _atomic(Path(path), binary=False)


def atomic_bytes(path: Path) -> contextlib.AbstractContextManager[IO[bytes]]:
    """``atomic`` for bytes (a plot)."""
    return _atomic(Path(path), binary=True)


@contextmanager
def _atomic(path: Path, binary: bool) -> Iterator[Any]:
    if path.is_dir():
        raise ConfigError("is a directory: not replaced by a file", location=str(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or Path("."))
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        mode = "wb" if binary else "w"
        encoding = None if binary else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # a full disk, a quota, a file size limit: say which file
        Path(tmp).unlink(missing_ok=True)
        raise write_error(path, exc) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    with atomic(path) as fh:
        fh.write(text)


def append(path: Path, text: str, *, sync: bool = False) -> None:
    """Append ``text`` to ``path`` (created 0600), refusing a link planted there."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if stat.S_ISLNK(_lmode(path)):
            raise ConfigError(
                "is a symbolic link: icm does not write through links; remove it",
                location=str(path),
            ) from None
        raise write_error(path, exc) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError("is not a regular file: not appended to", location=str(path))
        data = text.encode("utf-8")
        while data:
            data = data[os.write(fd, data) :]
        if sync:
            os.fsync(fd)
    except OSError as exc:
        raise write_error(path, exc) from None
    finally:
        os.close(fd)


def _lmode(path: Path) -> int:
    try:
        return os.lstat(path).st_mode
    except OSError:
        return 0


def write_error(path: Path, exc: OSError) -> ConfigError:
    """``exc`` (which may not name the file: a write to a full disk) as a ``ConfigError``
    that does; the file as it was before the write is untouched."""
    return ConfigError(
        f"cannot write: {exc.strerror or exc} (errno {exc.errno}); the previous version of "
        "the file, if any, is intact",
        location=str(path),
    )
