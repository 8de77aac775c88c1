"""The lean HTTP/1.1 transport against real loopback servers: framing (Content-Length,
chunked, read-to-close), keep-alive and its limits, stale connections, malformed answers,
timeouts and refused connections, each surfacing as httpx2's own exception types; and the
same answers and exception types as httpx2's transport for every fault of ``FaultServer``."""

from __future__ import annotations

import asyncio
import gzip
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx2
import pytest
from fault_server import PERMANENT, TRANSIENT, FaultServer

from icm_client.backends import OpenAICompletions, ScoreRequest
from icm_client.backends.lean import LeanTransport, http_transport
from icm_client.errors import ConfigError, TransientBackendError

pytestmark = pytest.mark.anyio

Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter


class Script:
    """A loopback server whose connections run ``handler(reader, writer, n)`` (n: the
    connection's index); it counts connections and records each request it read."""

    def __init__(self, handler: Callable[[Reader, Writer, int], Awaitable[None]]) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[tuple[bytes, bytes, dict[bytes, bytes], bytes]] = []
        self.open = 0
        self.most_open = 0

    async def serve(self, reader: Reader, writer: Writer) -> None:
        n, self.connections = self.connections, self.connections + 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            await self.handler(reader, writer, n)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open -= 1
            writer.close()

    async def request(self, reader: Reader) -> tuple[bytes, bytes, dict[bytes, bytes], bytes]:
        """The next request on a connection: method, target, headers (lower-case), body."""
        head = await reader.readuntil(b"\r\n\r\n")
        first, *lines = head[:-4].split(b"\r\n")
        method, target, _ = first.split(b" ")
        headers = {k.strip().lower(): v.strip() for k, v in (ln.split(b":", 1) for ln in lines)}
        body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
        self.requests.append((method, target, headers, body))
        return method, target, headers, body


@asynccontextmanager
async def serving(
    handler: Callable[[Script, Reader, Writer, int], Awaitable[None]],
) -> AsyncIterator[tuple[Script, str]]:
    script = Script(lambda r, w, n: handler(script, r, w, n))
    server = await asyncio.start_server(script.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield script, f"http://127.0.0.1:{port}"
    finally:
        server.close()


@asynccontextmanager
async def lean(**kw: float) -> AsyncIterator[tuple[httpx2.AsyncClient, LeanTransport]]:
    transport = LeanTransport(**kw)  # type: ignore[arg-type]
    async with httpx2.AsyncClient(transport=transport, timeout=5.0) as client:
        yield client, transport


def answer(body: bytes, *headers: bytes, status: bytes = b"200 OK") -> bytes:
    head = b"".join(h + b"\r\n" for h in headers)
    return b"HTTP/1.1 %s\r\n%sContent-Length: %d\r\n\r\n%s" % (status, head, len(body), body)


async def echo_forever(script: Script, reader: Reader, writer: Writer, n: int) -> None:
    """Keep-alive: answers every request with its method, target and body."""
    while True:
        method, target, _, body = await script.request(reader)
        writer.write(answer(b"%s %s %s" % (method, target, body)))


# -- framing and keep-alive ----------------------------------------------------------------


async def test_content_length_answers_on_one_kept_alive_connection() -> None:
    async with serving(echo_forever) as (script, url), lean() as (client, transport):
        bodies = []
        for i in range(5):
            r = await client.post(f"{url}/v1/completions?x={i}", json={"i": i})
            bodies.append(r.text)
        r = await client.get(f"{url}/v1/models")
    assert bodies == [f'POST /v1/completions?x={i} {{"i":{i}}}' for i in range(5)]
    assert r.status_code == 200 and r.text == "GET /v1/models " and r.http_version == "HTTP/1.1"
    assert transport.connections_opened == 1 == script.connections
    _, _, headers, body = script.requests[0]
    assert headers[b"content-length"] == b"7" and body == b'{"i":0}'
    assert headers[b"host"] == url.removeprefix("http://").encode()
    assert b"content-length" not in script.requests[-1][2]  # a GET without a body


async def test_chunked_answer_is_joined_and_the_connection_reused() -> None:
    async def chunked(script: Script, reader: Reader, writer: Writer, n: int) -> None:
        while True:
            await script.request(reader)
            writer.write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5;ext=1\r\nhello\r\n1A\r\n, a chunk of 26 bytes.....\r\n0\r\nX-Trailer: t\r\n\r\n"
            )

    async with serving(chunked) as (_, url), lean() as (client, transport):
        first = await client.get(url)
        second = await client.get(url)
    assert first.content == second.content == b"hello, a chunk of 26 bytes....."
    assert first.headers["transfer-encoding"] == "chunked" and "content-length" not in first.headers
    assert transport.connections_opened == 1


async def test_answer_without_length_is_read_to_close() -> None:
    async def to_close(script: Script, reader: Reader, writer: Writer, n: int) -> None:
        await script.request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it, ")
        writer.write(b"then the close #%d" % n)
        await writer.drain()

    async with serving(to_close) as (_, url), lean() as (client, transport):
        first = await client.get(url)
        second = await client.get(url)
    assert first.text == "all of it, then the close #0" and second.text.endswith("#1")
    assert transport.connections_opened == 2  # nothing to reuse


async def test_connection_close_is_honoured_both_ways() -> None:
    async def keeps_open(script: Script, reader: Reader, writer: Writer, n: int) -> None:
        while True:  # says close, keeps the socket open: the client must not reuse it
            _, target, _, _ = await script.request(reader)
            writer.write(answer(b"ok", b"Connection: close" if target == b"/c" else b"X: y"))

    async with serving(keeps_open) as (_, url), lean() as (client, transport):
        for _ in range(2):
            assert (await client.get(f"{url}/c")).text == "ok"
        assert transport.connections_opened == 2
        for _ in range(2):
            await client.get(f"{url}/k", headers={"Connection": "close"})
        assert transport.connections_opened == 4
        for _ in range(2):
            await client.get(f"{url}/k")
        assert transport.connections_opened == 5


async def test_http_1_0_answer_closes_unless_kept_alive() -> None:
    async def old(script: Script, reader: Reader, writer: Writer, n: int) -> None:
        while True:
            _, target, _, _ = await script.request(reader)
            alive = b"Connection: keep-alive\r\n" if target == b"/alive" else b""
            writer.write(b"HTTP/1.0 200 OK\r\n%sContent-Length: 2\r\n\r\nok" % alive)

    async with serving(old) as (_, url), lean() as (client, transport):
        await client.get(f"{url}/alive")
        await client.get(f"{url}/alive")
        assert transport.connections_opened == 1
        for _ in range(3):  # the first on the kept-alive connection, then one each
            await client.get(url)
        assert transport.connections_opened == 3


async def test_head_204_and_interim_answers_have_no_body() -> None:
    async def various(script: Script, reader: Reader, writer: Writer, n: int) -> None:
        while True:
            method, target, _, _ = await script.request(reader)
            if method == b"HEAD":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            elif target == b"/204":
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + answer(b"final"))

    async with serving(various) as (_, url), lean() as (client, transport):
        head = await client.head(url)
        empty = await client.get(f"{url}/204")
        final = await client.get(url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == "1000"
    assert empty.status_code == 204 and empty.content == b""
    assert final.status_code == 200 and final.text == "final"
    assert transport.connections_opened == 1


async def test_large_bodies_both_ways_and_gzip() -> None:
    big = bytes(range(256)) * 16384  # 4 MiB: more than the socket buffers hold

    async def sizes(script: Script, reader: Reader, writer: Writer, n: int) -> None:
        while True:
            _, target, _, body = await script.request(reader)
            if target == b"/gzip":
                writer.write(answer(gzip.compress(b"unzipped " * 100), b"Content-Encoding: gzip"))
            else:
                writer.write(answer(b"%d " % len(body) + body[::-1]))

    async with serving(sizes) as (_, url), lean() as (client, _):
        r = await client.post(url, content=big)
        z = await client.get(f"{url}/gzip")
    assert r.content == b"%d " % len(big) + big[::-1]
    assert z.text == "unzipped " * 100


async def test_connections_are_capped_and_requests_wait_for_one() -> None:
    async def slow(script: Script, reader: Reader, writer: Writer, n: int) -> None:
        while True:
            await script.request(reader)
            await asyncio.sleep(0.02)
            writer.write(answer(b"#%d" % n))

    async with serving(slow) as (script, url), lean(max_connections=2) as (client, transport):
        answers = await asyncio.gather(*(client.get(url) for _ in range(9)))
    assert len(answers) == 9 and {r.text for r in answers} == {"#0", "#1"}
    assert transport.connections_opened == 2 and script.most_open == 2


async def test_no_free_connection_within_the_pool_timeout_is_a_pool_timeout() -> None:
    release = asyncio.Event()

    async def held(script: Script, reader: Reader, writer: Writer, n: int) -> None:
        await script.request(reader)
        await release.wait()
        writer.write(answer(b"late"))

    async with serving(held) as (script, url), lean(max_connections=1) as (client, _):
        first = asyncio.ensure_future(client.get(url))
        while not script.requests:  # the first request holds the only connection
            await asyncio.sleep(0.01)
        with pytest.raises(httpx2.PoolTimeout):
            await client.get(url, timeout=httpx2.Timeout(5.0, pool=0.05))
        release.set()
        assert (await first).text == "late"


# -- connections the server closed -----------------------------------------------------------


async def test_a_connection_closed_while_idle_is_not_reused() -> None:
    closed = asyncio.Event()

    async def once(script: Script, reader: Reader, writer: Writer, n: int) -> None:
        await script.request(reader)  # keep-alive promised, then closed while idle
        writer.write(answer(b"#%d" % n))
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        closed.set()

    async with serving(once) as (script, url), lean() as (client, transport):
        assert (await client.post(url, json={})).text == "#0"
        await closed.wait()
        await asyncio.sleep(0.05)  # the FIN reaches the client's event loop
        assert (await client.post(url, json={})).text == "#1"
    assert transport.connections_opened == 2 and len(script.requests) == 2


def hangs_up_on_second_request() -> Callable[[Script, Reader, Writer, int], Awaitable[None]]:
    """Answers a connection's first request; closes it on reading the second, unanswered
    (what a server closing an idle connection as the request arrives looks like)."""

    async def handler(script: Script, reader: Reader, writer: Writer, n: int) -> None:
        await script.request(reader)
        writer.write(answer(b"#%d" % n))
        await script.request(reader)

    return handler


async def test_an_idempotent_request_on_a_connection_closed_unanswered_is_sent_again() -> None:
    async with serving(hangs_up_on_second_request()) as (script, url), lean() as (client, tr):
        assert (await client.get(url)).text == "#0"
        assert (await client.get(url)).text == "#1"  # resent on a fresh connection
    assert tr.connections_opened == 2 and len(script.requests) == 3


async def test_a_post_on_a_connection_closed_unanswered_is_not_sent_again() -> None:
    async with serving(hangs_up_on_second_request()) as (script, url), lean() as (client, tr):
        assert (await client.post(url, json={})).text == "#0"
        with pytest.raises(httpx2.RemoteProtocolError, match="without sending a response"):
            await client.post(url, json={})
        assert (await client.post(url, json={})).text == "#1"  # the next one connects afresh
    assert tr.connections_opened == 2 and len(script.requests) == 3


async def test_an_answer_cut_short_is_a_protocol_error_and_not_resent() -> None:
    async def cut(script: Script, reader: Reader, writer: Writer, n: int) -> None:
        while True:
            _, target, _, _ = await script.request(reader)
            if target == b"/cut":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
                return
            writer.write(answer(b"ok"))

    async with serving(cut) as (script, url), lean() as (client, _):
        await client.get(url)
        with pytest.raises(httpx2.RemoteProtocolError, match="complete message body"):
            await client.get(f"{url}/cut")
    assert len(script.requests) == 2


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"HTTP/1.1 OK\r\n\r\n", "malformed status line"),
        (b"SPDY/3 200 OK\r\n\r\n", "malformed status line"),
        (b"garbage\r\n\r\n", "malformed status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\nContent-Length: 0\r\n\r\n", "malformed header"),
        (b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "malformed header"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", "Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n", "CRLF"),
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "101"),
    ],
)
async def test_malformed_answers_are_protocol_errors(raw: bytes, match: str) -> None:
    async def bad(script: Script, reader: Reader, writer: Writer, n: int) -> None:
        await script.request(reader)
        writer.write(raw)
        await reader.read()  # until the client hangs up

    async with serving(bad) as (_, url), lean() as (client, _):
        with pytest.raises(httpx2.RemoteProtocolError, match=match):
            await client.get(url)


# -- timeouts and refusals -------------------------------------------------------------------


async def test_a_server_that_never_answers_is_a_read_timeout() -> None:
    async def mute(script: Script, reader: Reader, writer: Writer, n: int) -> None:
        await script.request(reader)
        await reader.read()

    async with serving(mute) as (_, url), lean() as (client, _):
        with pytest.raises(httpx2.ReadTimeout):
            await client.get(url, timeout=0.2)


def refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def test_a_refused_port_is_a_connect_error() -> None:
    async with lean() as (client, transport):
        with pytest.raises(httpx2.ConnectError):
            await client.get(refused_url())
    assert transport.connections_opened == 0


async def test_the_backend_sorts_lean_failures_as_transient() -> None:
    backend = OpenAICompletions(f"{refused_url()}/v1", "m", timeout=1.0)
    with pytest.raises(TransientBackendError, match="cannot connect to"):
        await backend.score(ScoreRequest("x", (" a",)))
    await backend.aclose()

    async def mute(script: Script, reader: Reader, writer: Writer, n: int) -> None:
        await script.request(reader)
        await reader.read()

    async with serving(mute) as (_, url):
        backend = OpenAICompletions(f"{url}/v1", "m", timeout=0.2)
        with pytest.raises(TransientBackendError, match=r"no answer within 0\.2 s"):
            await backend.score(ScoreRequest("x", (" a",)))
        await backend.aclose()


# -- the same as httpx2's transport ----------------------------------------------------------


async def outcome(transport: httpx2.AsyncBaseTransport | None, kind: str) -> object:
    """(status, headers that matter, body) or the exception type, for one faulty request."""
    timeout = 0.3 if kind == "slow" else 10.0  # (a loaded machine can stall the server)
    with FaultServer(rate=1.0, kinds=(kind,), slow_s=2.0) as server:
        async with httpx2.AsyncClient(transport=transport, timeout=timeout) as client:
            body = {"model": "stand-in-1", "prompt": "Claim: x. I think", "logprobs": 2}
            try:
                r = await client.post(f"{server.base_url}/completions", json=body)
            except httpx2.HTTPError as exc:
                return type(exc)
    return r.status_code, r.headers.get("retry-after"), r.headers["content-type"], r.content


@pytest.mark.parametrize("kind", TRANSIENT + PERMANENT)
async def test_each_fault_reads_as_through_httpx2s_transport(kind: str) -> None:
    assert await outcome(LeanTransport(), kind) == await outcome(None, kind)


# -- the choice of transport ------------------------------------------------------------------


def test_plain_http_gets_the_lean_transport_unless_opted_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "ICM_HTTP_TRANSPORT"):
        monkeypatch.delenv(name, raising=False)
    assert isinstance(http_transport("http://127.0.0.1:8000/v1"), LeanTransport)
    assert http_transport("https://api.example.com/v1") is None
    monkeypatch.setenv("ICM_HTTP_TRANSPORT", "httpx")
    assert http_transport("http://127.0.0.1:8000/v1") is None
    monkeypatch.setenv("ICM_HTTP_TRANSPORT", "auto")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    assert http_transport("http://10.0.0.5:8000/v1") is None  # httpx2 would use the proxy
    monkeypatch.setenv("NO_PROXY", "10.0.0.5")
    assert isinstance(http_transport("http://10.0.0.5:8000/v1"), LeanTransport)
    monkeypatch.setenv("ICM_HTTP_TRANSPORT", "fast")
    with pytest.raises(ConfigError, match="ICM_HTTP_TRANSPORT"):
        OpenAICompletions("http://127.0.0.1:8000/v1", "m")
