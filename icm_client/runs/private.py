"""Directories only this user can write, and bounded reads of the files in them.

A run directory names the inputs and holds what a resumed run trusts (its checkpoint, its
trajectory, its ledger). It is created 0700; an existing one is used only when this user
owns it and neither group nor others can write it, since anyone who can write there can
plant links or files that the next run would follow or believe.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import ConfigError


def private_dir(path: Path, what: str) -> None:
    """Create ``path`` (mode 0700), or check that an existing one is this user's and not
    writable by group or others; ``ConfigError`` naming ``what`` otherwise."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {path} exists and is not a directory")
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.stat(path)
    except OSError as exc:
        raise ConfigError(f"cannot create {what} {path}: {exc.strerror or exc}") from None
    if info.st_uid != os.geteuid():
        raise ConfigError(
            f"{what} {path} belongs to another user (uid {info.st_uid}): its files could be "
            "planted; use a directory of your own"
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o022:
        raise ConfigError(
            f"{what} {path} can be written by {'group and others' if mode & 0o002 else 'group'}"
            f" (mode {mode:04o}): another user could plant files in it; `chmod go-w` it, or "
            "use another directory"
        )


def read_bounded(path: Path, limit: int) -> str:
    """The text of ``path`` (UTF-8), not through a link, ``ConfigError`` past ``limit`` bytes
    (a run file of that size is not one icm wrote)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno in (getattr(os, "ELOOP", 40), getattr(os, "EMLINK", 31)):
            raise ConfigError("is a symbolic link: not followed", location=str(path)) from None
        raise
    with open(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise ConfigError("is not a regular file", location=str(path))
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ConfigError(f"larger than {limit:,} bytes: not a file icm wrote", location=str(path))
    return data.decode("utf-8")
