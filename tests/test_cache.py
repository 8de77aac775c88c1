"""Cached: hits cost no request, keys follow what scores depend on, entries are JSON text."""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path
from typing import Any

import anyio
import diskcache
import httpx2
import pytest

from icm_client.backends import (
    Cached,
    Limited,
    OpenAICompletions,
    Retrying,
    ScoreRequest,
    cache_key,
    stack,
)
from icm_client.errors import PermanentBackendError

KEY = "sk-cache-SECRET-987654321"
REQ = ScoreRequest("Claim: water boils at 100C. I think this Claim is", (" True", " False"))
BODY = {
    "choices": [{"index": 0, "logprobs": {"top_logprobs": [{" True": -0.25, " False": -1.75}]}}],
    "usage": {"prompt_tokens": 11, "prompt_tokens_details": {"cached_tokens": 3}},
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Server:
    def __init__(self, delay: float = 0.0, status: int = 200) -> None:
        self.delay, self.status, self.requests = delay, status, 0

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests += 1
        await anyio.sleep(self.delay)
        if self.status != 200:
            return httpx2.Response(self.status, json={"error": {"message": "nope"}})
        return httpx2.Response(200, json=BODY)

    def backend(
        self, url: str = "http://a:8000", model: str | None = "m", top_k: int = 20
    ) -> OpenAICompletions:
        client = httpx2.AsyncClient(transport=httpx2.MockTransport(self))
        return OpenAICompletions(url, model, client=client, api_key=KEY, top_k=top_k)


@pytest.mark.anyio
async def test_hit_makes_no_request_and_no_call(tmp_path: Path) -> None:
    server = Server()
    backend = Cached(server.backend(), tmp_path)
    first = await backend.score(REQ)
    again = await backend.score(REQ)
    assert first == again and first.logprobs == (-0.25, -1.75)
    assert (first.prompt_tokens, first.cached_tokens) == (11, 3)
    assert server.requests == 1
    assert backend.usage.calls == 1 and backend.usage.cache_hits == 1
    await backend.aclose()
    # a new process (new Cached over the same directory) hits too
    reopened = Cached(server.backend(), tmp_path)
    assert await reopened.score(REQ) == first and server.requests == 1
    await reopened.aclose()


@pytest.mark.parametrize(
    ("request_", "backend_kwargs"),
    [
        (ScoreRequest(REQ.prompt + ".", REQ.labels), {}),
        (ScoreRequest(REQ.prompt, (" False", " True")), {}),
        (ScoreRequest(REQ.prompt, (" true", " false")), {}),
        (REQ, {"model": "other"}),
        (REQ, {"top_k": 5}),
    ],
)
@pytest.mark.anyio
async def test_key_changes_miss(
    tmp_path: Path, request_: ScoreRequest, backend_kwargs: dict[str, Any]
) -> None:
    server = Server()
    await Cached(server.backend(), tmp_path).score(REQ)
    second = Cached(server.backend(**backend_kwargs), tmp_path)
    await second.score(request_)
    assert second.usage.cache_hits == 0 and server.requests >= 2


@pytest.mark.anyio
async def test_replica_at_another_url_hits(tmp_path: Path) -> None:
    server = Server()
    await Cached(server.backend("http://a:8000"), tmp_path).score(REQ)
    replica = Cached(server.backend("https://b.example/v1"), tmp_path)
    await replica.score(REQ)
    assert server.requests == 1 and replica.usage.cache_hits == 1


@pytest.mark.anyio
async def test_values_are_json_text_and_key_never_stored(tmp_path: Path) -> None:
    backend = Cached(server_backend := Server().backend(), tmp_path)
    await backend.score(REQ)
    await backend.aclose()
    with sqlite3.connect(tmp_path / "cache.db") as db:
        rows = db.execute("SELECT key, typeof(value), value, mode FROM Cache").fetchall()
    [(key, kind, value, mode)] = rows
    assert key == cache_key(server_backend.identity, REQ)
    assert kind == "text" and mode == diskcache.core.MODE_RAW
    assert json.loads(value)["logprobs"] == [-0.25, -1.75]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("planted", ["{not json", json.dumps({"logprobs": [1]}), {"pickled": 1}])
@pytest.mark.anyio
async def test_corrupted_entry_dropped_and_recomputed(tmp_path: Path, planted: object) -> None:
    server = Server()
    inner = server.backend()
    with diskcache.Cache(str(tmp_path)) as raw:  # plain Disk: a dict is stored pickled
        raw.set(cache_key(inner.identity, REQ), planted)
    backend = Cached(inner, tmp_path)
    with pytest.warns(RuntimeWarning, match="corrupted score cache entry"):
        result = await backend.score(REQ)
    assert result.logprobs == (-0.25, -1.75) and server.requests == 1
    assert await backend.score(REQ) == result and server.requests == 1  # rewritten, clean


@pytest.mark.anyio
async def test_concurrent_identical_requests_pay_once(tmp_path: Path) -> None:
    server = Server(delay=0.05)
    backend = Cached(server.backend(), tmp_path)
    results = []

    async def one() -> None:
        results.append(await backend.score(REQ))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(one)
    assert server.requests == 1 and len(set(results)) == 1
    assert backend.usage.calls == 1 and backend.usage.cache_hits == 4


@pytest.mark.anyio
async def test_concurrent_waiters_share_the_failure(tmp_path: Path) -> None:
    server = Server(delay=0.05, status=404)
    backend = Cached(server.backend(), tmp_path)
    errors: list[Exception] = []

    async def one() -> None:
        try:
            await backend.score(REQ)
        except PermanentBackendError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(one)
    assert server.requests == 1 and len(errors) == 3
    server.status = 200
    assert (await backend.score(REQ)).logprobs == (-0.25, -1.75)  # failures are not cached


@pytest.mark.anyio
async def test_discovered_model_enters_the_key(tmp_path: Path) -> None:
    async def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/v1/models":
            return httpx2.Response(200, json={"data": [{"id": "served-model"}]})
        return httpx2.Response(200, json=BODY)

    client = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    backend = stack(OpenAICompletions("http://a", client=client), cache_dir=tmp_path)
    await backend.score(REQ)
    assert backend.identity == "openai-completions:served-model:top20"
    with diskcache.Cache(str(tmp_path)) as raw:
        assert cache_key(backend.identity, REQ) in raw


def test_directory_default_env_and_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICM_CACHE_DIR", str(tmp_path / "from-env"))
    cached = Cached(Server().backend())
    assert cached.directory == tmp_path / "from-env"
    assert stat.S_IMODE(cached.directory.stat().st_mode) == 0o700
    cached.close()


def test_stack_layers(tmp_path: Path) -> None:
    inner = Server().backend()
    full = stack(inner, cache_dir=tmp_path, max_concurrency=2)
    assert isinstance(full, Cached) and isinstance(full.inner, Retrying)
    assert isinstance(full.inner.inner, Limited) and full.inner.inner.inner is inner
    assert full.usage is inner.usage and full.identity == inner.identity
    full.close()
    bare = stack(inner, cache_dir=False, retry=False)
    assert isinstance(bare, Limited)
