"""Cache integrity: a private directory, nothing ever evicted, corruption detected and
recomputed, and several processes sharing one directory without losing or garbling a score."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import diskcache
import pytest
from cache_worker import LABELS, Stand, expected
from processes import HANG_S

from icm_client.backends import Backend, ScoreRequest, ScoreResult, Usage
from icm_client.client import ScoreCache, ScoringClient, cache_key
from icm_client.errors import ConfigError

pytestmark = pytest.mark.anyio
REQ = ScoreRequest("Shared prompt number 1. I think this Claim is", LABELS)


class Refusing(Backend):
    """A backend that must not be asked: everything should come from the cache."""

    identity = Stand.identity

    def __init__(self) -> None:
        self.usage: Usage = Usage()

    async def score(self, request: ScoreRequest) -> ScoreResult:
        raise AssertionError(f"asked for {request.prompt!r}: it should have been cached")

    async def aclose(self) -> None:
        pass


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_directory_is_created_private_with_its_parents(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "b" / "cache"
    ScoreCache(directory).close()
    assert mode(directory) == 0o700


async def test_an_existing_directory_keeps_its_mode_with_a_warning(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    directory.mkdir(mode=0o755)
    directory.chmod(0o2775)  # a group-shared directory: its mode is the owner's choice
    with pytest.warns(RuntimeWarning, match="can be read by others"):
        ScoreCache(directory).close()
    assert mode(directory) == 0o2775
    assert mode(directory / "cache.db") == 0o600


async def test_nothing_is_evicted_even_where_a_size_limit_was_set_before(tmp_path: Path) -> None:
    # a directory first opened by someone else with diskcache's defaults and a tiny limit
    with diskcache.Cache(str(tmp_path), size_limit=4096, cull_limit=10) as other:
        assert other.eviction_policy == "least-recently-stored"
    cache = ScoringClient(Stand(), cache=tmp_path, retry=None)
    prompts = [f"Prompt {i:04d} padded to take room: " + "x" * 200 for i in range(300)]
    for p in prompts:
        await cache.score(ScoreRequest(p, LABELS))
    await cache.aclose()
    with sqlite3.connect(tmp_path / "cache.db") as db:
        settings = dict(db.execute("SELECT key, value FROM Settings").fetchall())
        rows = db.execute("SELECT COUNT(*), SUM(size) FROM Cache").fetchone()
    assert settings["eviction_policy"] == "none" and settings["cull_limit"] == 0
    assert rows[0] == 300  # ~75 kB of entries kept under what was a 4 kB limit
    again = ScoringClient(Refusing(), cache=tmp_path, retry=None)
    for p in prompts:
        assert await again.score(ScoreRequest(p, LABELS)) == expected(p)
    assert again.usage.cache_hits == 300
    await again.aclose()


@pytest.mark.parametrize(
    "planted",
    [
        "{not json",
        "",
        "null",
        "[]",
        json.dumps({"logprobs": [-1.0], "bounded": [False]}),  # one label of two
        json.dumps({"logprobs": [-1.0, -2.0, -3.0], "bounded": [False] * 3}),
        json.dumps({"logprobs": [0.5, -1.0], "bounded": [False, False]}),  # not a logprob
        '{"logprobs": [NaN, -1.0], "bounded": [false, false]}',
        json.dumps({"logprobs": ["-1", -1.0], "bounded": [False, False]}),
        json.dumps({"logprobs": [-1.0, -1.0], "bounded": [0, 1]}),
        json.dumps({"logprobs": [-1.0, -1.0], "bounded": [False, False], "prompt_tokens": -4}),
        "[" * 100_000 + "]" * 100_000,  # nesting past the recursion limit
        '{"logprobs": [' + "9" * 5000 + "]}",  # an int past the digit limit
        b"\x00\x01 raw bytes",
        12345,
        {"a": "pickled dict"},
    ],
    ids=lambda v: repr(v)[:40],
)
async def test_corrupted_entry_is_dropped_with_a_warning_and_recomputed(
    tmp_path: Path, planted: object
) -> None:
    key = cache_key(Stand.identity, REQ)
    with diskcache.Cache(str(tmp_path)) as raw:  # plain Disk: stores bytes, ints, pickles
        raw.set(key, planted)
    backend = Stand()
    cache = ScoringClient(backend, cache=tmp_path, retry=None)
    with pytest.warns(RuntimeWarning, match=f"dropping corrupted score cache entry {key}"):
        result = await cache.score(REQ)
    assert result == expected(REQ.prompt) and backend.usage.calls == 1
    assert await cache.score(REQ) == result and backend.usage.calls == 1  # rewritten, clean
    await cache.aclose()


@pytest.mark.parametrize("where", ["inside", "absolute", "dotdot"])
@pytest.mark.parametrize("mode", [diskcache.core.MODE_BINARY, diskcache.core.MODE_TEXT, 3, 4])
async def test_a_row_naming_a_file_is_dropped_without_touching_the_file_system(
    tmp_path: Path, where: str, mode: int
) -> None:
    """Rows are inert data: a planted row that names a file (in the cache, by an absolute
    path, or by ``../``) in any mode is corruption, and that file is neither read nor
    removed, nor its parent directories, when the row is dropped and rewritten."""
    cache_dir, victim_dir = tmp_path / "cache", tmp_path / "victim" / "nested"
    victim_dir.mkdir(parents=True)
    victim = victim_dir / "precious.val"
    good = json.dumps(expected(REQ.prompt).to_json())
    victim.write_text(good)  # a valid score: a reader that follows the name would accept it
    key = cache_key(Stand.identity, REQ)
    with diskcache.Cache(str(cache_dir), disk_min_file_size=0) as raw:
        raw.set(key, good)  # a row of the plain Disk, kept in a file of the cache
    inside = next(cache_dir.rglob("*.val"))
    name = {
        "inside": str(inside.relative_to(cache_dir)),
        "absolute": str(victim),
        "dotdot": os.path.relpath(victim, cache_dir),
    }[where]
    with sqlite3.connect(cache_dir / "cache.db") as db:
        db.execute("UPDATE Cache SET mode = ?, filename = ?, value = NULL", (mode, name))
    target = inside if where == "inside" else victim
    os.utime(target, (1_000_000, 1_000_000))
    backend = Stand()
    cache = ScoringClient(backend, cache=cache_dir, retry=None)
    with pytest.warns(RuntimeWarning, match="not inline JSON text"):
        result = await cache.score(REQ)
    assert result == expected(REQ.prompt) and backend.usage.calls == 1  # recomputed
    assert await cache.score(REQ) == result and backend.usage.calls == 1  # rewritten inline
    await cache.aclose()
    assert target.stat().st_atime == 1_000_000 and target.read_text() == good  # not read
    assert victim_dir.is_dir()  # not removed, nor its parents
    with sqlite3.connect(cache_dir / "cache.db") as db:
        rows = db.execute("SELECT mode, filename FROM Cache").fetchall()
    assert rows == [(diskcache.core.MODE_RAW, None)]


async def test_token_counts_that_are_booleans_are_corruption(tmp_path: Path) -> None:
    key = cache_key(Stand.identity, REQ)
    planted = expected(REQ.prompt).to_json() | {"prompt_tokens": True}
    with diskcache.Cache(str(tmp_path)) as raw:
        raw.set(key, json.dumps(planted))
    backend = Stand()
    cache = ScoringClient(backend, cache=tmp_path, retry=None)
    with pytest.warns(RuntimeWarning, match="token counts are not integers"):
        await cache.score(REQ)
    assert backend.usage.calls == 1
    await cache.aclose()


async def test_a_garbage_database_is_a_clear_config_error(tmp_path: Path) -> None:
    (tmp_path / "cache.db").write_bytes(b"this is not an SQLite database at all" * 100)
    with pytest.raises(ConfigError, match=r"cannot open the score cache at .*delete this one"):
        ScoringClient(Stand(), cache=tmp_path, retry=None)


async def test_a_cache_that_cannot_be_opened_is_never_advised_deleted(tmp_path: Path) -> None:
    """Read-only, full or otherwise unusable (here: its database is a directory), a real
    cache holds paid scores: the advice is another directory, not deleting this one."""
    (tmp_path / "cache.db").mkdir()
    with pytest.raises(ConfigError) as info:
        ScoringClient(Stand(), cache=tmp_path, retry=None)
    assert "keep this one" in str(info.value) and "delete" not in str(info.value)


async def test_lookup_and_score_now_share_the_cache_with_score(tmp_path: Path) -> None:
    backend = Stand()
    cache = ScoringClient(backend, cache=tmp_path, retry=None)
    assert await cache.cached(REQ) is None and cache.usage.cache_hits == 0
    assert await cache.score_now(REQ) == expected(REQ.prompt) and backend.usage.calls == 1
    assert await cache.cached(REQ) == expected(REQ.prompt) and cache.usage.cache_hits == 1
    assert await cache.score(REQ) == expected(REQ.prompt) and backend.usage.calls == 1
    await cache.aclose()


def test_two_processes_sharing_one_directory_stay_correct(tmp_path: Path) -> None:
    directory, go, n = tmp_path / "cache", tmp_path / "go", 300
    worker = Path(__file__).parents[1] / "cache_worker.py"
    procs = [
        subprocess.Popen(
            [sys.executable, str(worker), str(directory), str(n), str(seed), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ | {"PYTHONPATH": str(worker.parent)},
        )
        for seed in (1, 2)
    ]
    go.touch()  # both start at once: the same keys, read and written concurrently
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=HANG_S)
        assert proc.returncode == 0, err
        reports.append(json.loads(out))
    for report in reports:
        assert report["wrong"] == [] and report["warnings"] == []
        assert report["calls"] + report["hits"] == n
        assert report["second_calls"] == 0 and report["second_hits"] == n  # the other's too
    assert n <= sum(r["calls"] for r in reports) <= 2 * n
    with sqlite3.connect(directory / "cache.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT COUNT(*) FROM Cache").fetchone() == (n,)
    assert mode(directory) == 0o700
