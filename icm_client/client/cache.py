"""A content-addressed disk cache of scores, so that no prompt is paid for twice.

Keys are the sha256 of canonical JSON over what a score depends on (the backend's ``identity``,
prompt, labels, ``CACHE_VERSION``) and never where the server runs, so replicas and re-runs
share entries. Values are JSON text only: diskcache stores ``str`` raw, and ``_JSONOnlyDisk``
refuses to unpickle anything it finds (CVE-2025-69872: a pickled value planted in the cache
directory would run code).

Integrity: an entry is trusted only if it decodes to a score of the request's shape (one
finite-or-``-inf`` log-probability per label word); anything else is dropped with a warning
and recomputed. Nothing is ever evicted (eviction policy ``none``, no culling): a score may
have cost real money. A new cache directory is created 0700 and its files 0600 (prompts are
user data); an existing directory keeps its mode (a warning when others can read it: it may
be shared on purpose) and is refused when another user owns it. Several
processes may share one directory; diskcache serialises their writes through SQLite, and
two processes that compute the same key store the same value.

Reads run on the event loop, not in a worker thread: with eviction policy ``none`` and no
statistics a diskcache read is one SELECT in SQLite's WAL mode, which neither writes nor
waits for writers, and costs microseconds where a thread hand-off costs far more (a re-run
answered from the cache makes thousands). Their connection gives up on a lock after
``_READ_WAIT_S`` (readers are locked out only in rare moments, such as the recovery after a
crash) and the read then waits in a thread. Writes and deletes always run in a thread.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import sqlite3
import stat
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import diskcache

from ..backends.base import ScoreRequest, ScoreResult
from ..errors import ConfigError

CACHE_VERSION = 1
"""Bump when the meaning of a cached score changes; old entries then simply miss."""

CACHE_DIR_ENV = "ICM_CACHE_DIR"

_SETTINGS: dict[str, Any] = {"eviction_policy": "none", "size_limit": 2**62, "cull_limit": 0}
_READ_WAIT_S = 0.05

T = TypeVar("T")


class _JSONOnlyDisk(diskcache.Disk):  # type: ignore[misc]
    """A ``Disk`` whose rows are inert data: JSON text stored inline in the database.

    This project stores every value inline (``MODE_RAW``, no file name). A row in any other
    mode, or naming a file, was not written by it: it is corruption, and reading it would
    follow a planted path (``MODE_PICKLE`` would even run code, CVE-2025-69872). Such a row
    is refused before the file system is touched, and ``remove`` never deletes a file: the
    only file names it could get come from such planted rows.
    """

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        if mode != diskcache.core.MODE_RAW or filename is not None or not isinstance(value, str):
            raise ValueError(
                f"cache entry is not inline JSON text (mode {mode}, "
                f"{'a file name' if filename is not None else 'no file'}); not read"
            )
        return value

    def store(self, value: Any, read: bool, key: Any = diskcache.core.UNKNOWN) -> Any:
        if read or not isinstance(value, str):
            raise TypeError("the score cache stores JSON text only")
        return 0, diskcache.core.MODE_RAW, None, value  # inline, whatever its size

    def remove(self, file_path: str) -> None:
        """Never delete a file: no row of ours names one (see the class docstring)."""


def default_cache_dir() -> Path:
    """``$ICM_CACHE_DIR``, else ``~/.cache/icm-client``."""
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "icm-client"


_warned: set[Path] = set()


def _private_directory(directory: Path) -> None:
    """Create ``directory`` with mode 0700 when it does not exist. An existing one is used
    as it is (its mode is never changed: it may be a shared directory), unless another
    user owns it (its rows could be planted: ``ConfigError``); when others can read it, a
    warning, once per directory (the prompts in it are user data)."""
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = directory.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(
            f"cannot open the score cache at {directory}: it is not a directory; pass another "
            "--cache-dir",
            field="cache_dir",
        )
    if info.st_uid != os.geteuid():
        raise ConfigError(
            f"cannot open the score cache at {directory}: it belongs to another user (uid "
            f"{info.st_uid}), and scores planted there would be trusted; pass a --cache-dir "
            "of your own",
            field="cache_dir",
        )
    if stat.S_IMODE(info.st_mode) & 0o077 and directory not in _warned:
        _warned.add(directory)
        warnings.warn(
            f"the score cache {directory} can be read by others (mode "
            f"{stat.S_IMODE(info.st_mode):04o}): the prompts in it are your data; "
            f"`chmod 700 {directory}` unless it is shared on purpose",
            RuntimeWarning,
            stacklevel=3,
        )


@contextlib.contextmanager
def _private_files() -> Iterator[None]:
    """Files created meanwhile get mode 0600 (``cache.db``, and SQLite's ``-wal`` and
    ``-shm``, which take the database's mode): diskcache creates them with the umask."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def _decode(raw: object, request: ScoreRequest) -> ScoreResult:
    """The cached score, or ``ValueError`` if ``raw`` is not a score for ``request``."""
    if not isinstance(raw, str):
        raise ValueError(f"cache entry is {type(raw).__name__}, not JSON text")
    result = ScoreResult.from_json(json.loads(raw))
    if len(result.logprobs) != len(request.labels):
        raise ValueError(
            f"cache entry has {len(result.logprobs)} logprobs for {len(request.labels)} labels"
        )
    if any(math.isnan(lp) or lp > 1e-6 for lp in result.logprobs):
        raise ValueError(f"cache entry holds values that are not logprobs: {result.logprobs}")
    if result.prompt_tokens < 0 or result.cached_tokens < 0:
        raise ValueError("cache entry has negative token counts")
    return result


def cache_key(identity: str, request: ScoreRequest) -> str:
    """Hex sha256 of the canonical JSON of everything a score depends on."""
    doc = {
        "v": CACHE_VERSION,
        "backend": identity,
        "prompt": request.prompt,
        "labels": list(request.labels),
    }
    canonical = json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ScoreCache:
    """The score store of a ``ScoringClient``: scores by ``cache_key`` in ``directory``.

    ``directory``: None for the default (``default_cache_dir``). Opening fails with a
    ``ConfigError`` that says whether the directory can be kept (its scores were paid for).
    A bad entry, or a read or write that fails, is a warning and a miss: the run goes on.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory).expanduser() if directory else default_cache_dir()
        try:
            _private_directory(self.directory)
            with _private_files():
                self._cache = diskcache.Cache(str(self.directory), disk=_JSONOnlyDisk, **_SETTINGS)
                self._reader = diskcache.Cache(
                    str(self.directory), timeout=_READ_WAIT_S, disk=_JSONOnlyDisk, **_SETTINGS
                )
        except (OSError, diskcache.Timeout, sqlite3.Error) as exc:
            garbage = isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc)
            advice = (
                "pass another --cache-dir, or delete this one: it is not a score cache"
                if garbage  # read-only, full, locked: the scores in it were paid for
                else "pass another --cache-dir or --no-cache, and keep this one: the scores "
                "in it were paid for (make it writable, or free disk space, to use it again)"
            )
            raise ConfigError(
                f"cannot open the score cache at {self.directory}: {exc} ({advice})",
                field="cache_dir",
            ) from exc
        self._limiter = anyio.CapacityLimiter(8)  # not the default pool, shared by everything

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args), limiter=self._limiter)

    async def get(self, key: str, request: ScoreRequest) -> ScoreResult | None:
        """The score stored under ``key``, checked to fit ``request``; None on a miss."""
        try:
            try:
                raw = self._reader.get(key)  # on the event loop (see the module docstring)
            except (sqlite3.OperationalError, diskcache.Timeout):  # locked: wait off the loop
                raw = await self._run(self._cache.get, key)
            return None if raw is None else _decode(raw, request)
        except (ValueError, RecursionError) as exc:  # JSON, from_json, _decode, _JSONOnlyDisk
            warnings.warn(
                f"dropping corrupted score cache entry {key} in {self.directory}: {exc}",
                RuntimeWarning,
                stacklevel=2,
            )
            with contextlib.suppress(OSError, diskcache.Timeout, sqlite3.Error):
                await self._run(self._cache.delete, key)  # (the recomputed score overwrites it)
            return None
        except (OSError, diskcache.Timeout, sqlite3.Error) as exc:  # recompute, do not stop
            warnings.warn(
                f"could not read the score cache in {self.directory}: {exc}",
                RuntimeWarning,
                stacklevel=2,
            )
            return None

    async def put(self, key: str, result: ScoreResult) -> None:
        """Store ``result`` under ``key`` (in a worker thread)."""
        value = json.dumps(result.to_json(), separators=(",", ":"))
        try:
            await self._run(self._cache.set, key, value)
        except (OSError, diskcache.Timeout, sqlite3.Error) as exc:  # e.g. a full disk
            warnings.warn(
                f"could not write to the score cache in {self.directory}: {exc}",
                RuntimeWarning,
                stacklevel=2,
            )

    def close(self) -> None:
        self._reader.close()
        self._cache.close()
