"""The client's score cache: hits cost no request, keys follow what scores depend on, entries
are JSON text."""

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
from anyio import wait_all_tasks_blocked

from icm_client.backends import OpenAICompletions, ScoreRequest
from icm_client.client import ScoreCache, ScoringClient, cache_key
from icm_client.errors import PermanentBackendError

KEY = "sk-cache-SECRET-987654321"
REQ = ScoreRequest("Claim: water boils at 100C. I think this Claim is", (" True", " False"))
BODY = {
    "choices": [{"index": 0, "logprobs": {"top_logprobs": [{" True": -0.25, " False": -1.75}]}}],
    "usage": {"prompt_tokens": 11, "prompt_tokens_details": {"cached_tokens": 3}},
}


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
    backend = ScoringClient(server.backend(), cache=tmp_path, retry=None)
    first = await backend.score(REQ)
    again = await backend.score(REQ)
    assert first == again and first.logprobs == (-0.25, -1.75)
    assert (first.prompt_tokens, first.cached_tokens) == (11, 3)
    assert server.requests == 1
    assert backend.usage.calls == 1 and backend.usage.cache_hits == 1
    await backend.aclose()
    # a new process (a new client over the same directory) hits too
    reopened = ScoringClient(server.backend(), cache=tmp_path, retry=None)
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
    await ScoringClient(server.backend(), cache=tmp_path, retry=None).score(REQ)
    second = ScoringClient(server.backend(**backend_kwargs), cache=tmp_path, retry=None)
    await second.score(request_)
    assert second.usage.cache_hits == 0 and server.requests >= 2


@pytest.mark.anyio
async def test_replica_at_another_url_hits(tmp_path: Path) -> None:
    server = Server()
    await ScoringClient(server.backend("http://a:8000"), cache=tmp_path, retry=None).score(REQ)
    replica = ScoringClient(server.backend("https://b.example/v1"), cache=tmp_path, retry=None)
    await replica.score(REQ)
    assert server.requests == 1 and replica.usage.cache_hits == 1


@pytest.mark.anyio
async def test_values_are_json_text_and_key_never_stored(tmp_path: Path) -> None:
    backend = ScoringClient(server_backend := Server().backend(), cache=tmp_path, retry=None)
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
    backend = ScoringClient(inner, cache=tmp_path, retry=None)
    with pytest.warns(RuntimeWarning, match="corrupted score cache entry"):
        result = await backend.score(REQ)
    assert result.logprobs == (-0.25, -1.75) and server.requests == 1
    assert await backend.score(REQ) == result and server.requests == 1  # rewritten, clean


@pytest.mark.anyio
async def test_concurrent_identical_requests_pay_once(tmp_path: Path) -> None:
    server = Server(delay=0.05)
    backend = ScoringClient(server.backend(), cache=tmp_path, retry=None)
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
    backend = ScoringClient(server.backend(), cache=tmp_path, retry=None)
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
    backend = ScoringClient(OpenAICompletions("http://a", client=client), cache=tmp_path)
    await backend.score(REQ)
    assert backend.identity == "openai-completions:served-model:top20"
    with diskcache.Cache(str(tmp_path)) as raw:
        assert cache_key(backend.identity, REQ) in raw


def test_directory_default_env_and_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICM_CACHE_DIR", str(tmp_path / "from-env"))
    cache = ScoreCache()
    assert cache.directory == tmp_path / "from-env"
    assert stat.S_IMODE(cache.directory.stat().st_mode) == 0o700
    cache.close()


@pytest.mark.anyio
async def test_the_client_s_default_cache_is_the_default_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ICM_CACHE_DIR", str(tmp_path / "from-env"))
    inner = Server().backend()
    async with ScoringClient(inner, max_concurrency=2) as client:
        assert client.cache is not None and client.cache.directory == tmp_path / "from-env"
        assert client.usage is inner.usage and client.identity == inner.identity
    async with ScoringClient(inner, cache=False) as bare:
        assert bare.cache is None


@pytest.mark.anyio
async def test_a_shared_score_cache_stays_open_for_its_owner(tmp_path: Path) -> None:
    server = Server()
    shared = ScoreCache(tmp_path)
    async with ScoringClient(server.backend(), cache=shared) as first:
        await first.score(REQ)
    async with ScoringClient(server.backend(), cache=shared) as second:
        await second.score(REQ)  # the cache is still open: a hit
        assert second.usage.cache_hits == 1
    assert server.requests == 1
    shared.close()


@pytest.mark.anyio
async def test_identical_requests_in_flight_pay_once_without_a_cache_too() -> None:
    server = Server(delay=0.05)
    client = ScoringClient(server.backend(), cache=False)
    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(client.score, REQ)
    assert server.requests == 1
    assert client.usage.calls == 1 and client.usage.cache_hits == 3


class GatedServer(Server):
    """Answers once ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = anyio.Event()

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests += 1
        await self.release.wait()
        return httpx2.Response(200, json=BODY)


@pytest.mark.anyio
async def test_a_cancelled_first_requester_hands_the_request_to_a_waiter(tmp_path: Path) -> None:
    server = GatedServer()
    client = ScoringClient(server.backend(), cache=tmp_path)
    await client.prepare()
    results = []

    async def waiter() -> None:
        results.append(await client.score(REQ))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as outer:
            async with anyio.create_task_group() as first:
                first.start_soon(client.score, REQ)
                await wait_all_tasks_blocked()  # the first request waits at the server
                outer.start_soon(waiter)
                outer.start_soon(waiter)
                await wait_all_tasks_blocked()  # both wait on it
                first.cancel_scope.cancel()
            server.release.set()
    assert len(results) == 2 and results[0] == results[1]
    assert results[0].logprobs == (-0.25, -1.75)
    assert server.requests == 2  # the cancelled one, and one for both waiters
    assert client.usage.calls == 2 and client.usage.cache_hits == 1  # both reached the server
    await client.aclose()
