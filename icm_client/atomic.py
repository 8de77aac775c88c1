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


@contextmanager
def atomic(path: Path) -> Iterator[Any]:
    """Write to a temporary file beside ``path`` and rename it: never a partial output."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or Path("."))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
