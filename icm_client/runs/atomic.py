"""Files that are whole or absent: written beside their final name, fsync'd, renamed.

A kill at any moment leaves the old file or the new one, never a partial one: outputs,
checkpoints and a large run's finished batches all rely on it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import ConfigError


@contextmanager
def atomic(path: Path) -> Iterator[Any]:
    """Write to a temporary file beside ``path`` and rename it: never a partial output."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or Path("."))
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
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


def write_error(path: Path, exc: OSError) -> ConfigError:
    """``exc`` (which may not name the file: a write to a full disk) as a ``ConfigError``
    that does; the file as it was before the write is untouched."""
    return ConfigError(
        f"cannot write: {exc.strerror or exc} (errno {exc.errno}); the previous version of "
        "the file, if any, is intact",
        location=str(path),
    )
