"""A lean HTTP/1.1 transport for httpx2: plain ``http://`` over asyncio, for local servers.

Against a self-hosted server on the same machine or LAN (vLLM, llama.cpp) the client's CPU
is the bottleneck, and httpx2's default transport (httpcore's pool, h11 over anyio streams)
costs several times what the HTTP framing needs, and its pool caps requests in flight at 100
(``benchmarks/README.md``, "Client overhead"). This one keeps what such servers need:
keep-alive connections per (host, port) as asyncio ``Protocol``s, the request body sent
whole with ``Content-Length``, the answer framed by ``Content-Length``, chunked encoding or
the connection's close, and read whole. ``https://``, and a caller with no asyncio event
loop (trio), go to httpx2's own transport.

Failures raise what httpx2's transport raises, so callers sort them unchanged:
``ConnectError``/``ConnectTimeout``, ``PoolTimeout``, ``WriteTimeout``, ``ReadTimeout``,
``ReadError`` (connection reset), ``RemoteProtocolError`` (a malformed answer, or the server
hung up before finishing one). Idle connections the server closed are noticed before reuse;
a request sent on a reused connection that the server closes without answering a byte (it
was closing it as we sent) is sent again once on a fresh connection if its method is
idempotent (RFC 9110 9.2.2): a POST may have been acted on, so it is left to the caller's
retry policy (``Retrying`` treats the error as transient).
"""

from __future__ import annotations

import asyncio
import datetime
import os
import re
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable

import httpx2

from ..errors import ConfigError

DEFAULT_MAX_CONNECTIONS = 512
"""Per (host, port), far above any useful concurrency; past it requests wait for one."""
KEEPALIVE_EXPIRY = 5.0
"""Seconds an idle connection is kept, as httpx2 keeps them."""

MAX_RESPONSE_BYTES = 8 * 2**20
"""Default cap on a response body (after decompression too): a score is a few KiB, so a
larger answer is a broken or hostile server, and must not fill the memory."""

_MAX_HEAD = 65536
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_Answer = tuple[int, bytes, bytes, list[tuple[bytes, bytes]], bytes, bool]


def http_client(base_url: str, timeout: float) -> httpx2.AsyncClient:
    """The client ``OpenAICompletions`` builds when given none."""
    return httpx2.AsyncClient(timeout=timeout, transport=http_transport(base_url))


def http_transport(base_url: str) -> LeanTransport | None:
    """The lean transport for a plain-http server; None (httpx2's own) for ``https://``,
    where the environment sets a proxy for it (httpx2 would use the proxy; ``lean`` in
    ``$ICM_HTTP_TRANSPORT`` ignores it), or with ``ICM_HTTP_TRANSPORT=httpx`` (the opt-out)."""
    choice = os.environ.get("ICM_HTTP_TRANSPORT", "auto").strip().lower() or "auto"
    if choice not in ("auto", "lean", "httpx"):
        raise ConfigError(
            f"expected auto, lean or httpx, got {choice!r}", field="ICM_HTTP_TRANSPORT"
        )
    try:  # a bad URL is for JSONTransport to report
        parts = urllib.parse.urlsplit(base_url.strip())
        plain, host = parts.scheme == "http", parts.hostname or ""
    except ValueError:
        plain, host = False, ""
    proxies = urllib.request.getproxies()
    proxied = ("http" in proxies or "all" in proxies) and not urllib.request.proxy_bypass(host)
    if choice == "httpx" or not plain or (proxied and choice == "auto"):
        return None
    return LeanTransport()


class ResponseTooLarge(httpx2.RemoteProtocolError):
    """The answer (declared, received or decompressed) is past the response size cap."""

    def __init__(self, limit: int, what: str = "the response") -> None:
        self.limit = limit
        super().__init__(f"{what} is larger than the {limit:,}-byte cap")


class _Closed(Exception):
    """The server closed the connection before the answer was complete."""


def _expire(fut: asyncio.Future[None], error: type[httpx2.TimeoutException], after: float) -> None:
    if not fut.done():
        fut.set_exception(error(f"timed out after {after:g} s"))


async def _wait(
    fut: asyncio.Future[None], timeout: float | None, error: type[httpx2.TimeoutException]
) -> None:
    timer = (
        None
        if timeout is None
        else fut.get_loop().call_later(timeout, _expire, fut, error, timeout)
    )
    try:
        await fut
    finally:
        if timer is not None:
            timer.cancel()


class _Conn(asyncio.Protocol):
    """One connection: what the server sent so far, and whether it has hung up."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.received = 0  # bytes of the current answer
        self.eof, self.paused, self.idle_since = False, False, 0.0
        self.error: Exception | None = None
        self.waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self.received += len(data)
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # close our end too

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof, self.error, self.paused = True, exc, False
        self._wake()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def send(self, data: bytes, timeout: float | None) -> None:
        assert self.transport is not None
        self.received = 0
        self.transport.write(data)
        while self.paused:  # a body larger than the socket buffers
            self.waiter = self.loop.create_future()
            await _wait(self.waiter, timeout, httpx2.WriteTimeout)

    async def fill(self, timeout: float | None) -> None:
        """Wait for more of the answer; ``_Closed`` if none can come."""
        if self.eof:
            raise _Closed
        self.waiter = self.loop.create_future()
        await _wait(self.waiter, timeout, httpx2.ReadTimeout)

    async def line(self, timeout: float | None) -> bytes:
        while (end := self.buf.find(b"\r\n")) < 0:
            if len(self.buf) > _MAX_HEAD:
                raise httpx2.RemoteProtocolError("chunk line too long")
            await self.fill(timeout)
        line = bytes(self.buf[:end])
        del self.buf[: end + 2]
        return line

    async def take(self, n: int, timeout: float | None) -> bytes:
        while len(self.buf) < n:
            await self.fill(timeout)
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _Pool:
    """One (host, port): idle connections (most recently used last), how many are open."""

    def __init__(self) -> None:
        self.idle: list[_Conn] = []
        self.count = 0
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.closed = False

    def wake_one(self) -> None:
        """A connection came free, or room for one: the first waiter takes it."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def drop(self, conn: _Conn) -> None:
        conn.close()
        self.count -= 1
        self.wake_one()


class LeanTransport(httpx2.AsyncBaseTransport):
    """``httpx2.AsyncClient(transport=LeanTransport())``; ``connections_opened`` counts the
    TCP connections it made (reuse shows as fewer connections than requests)."""

    def __init__(
        self,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        keepalive_expiry: float = KEEPALIVE_EXPIRY,
    ) -> None:
        self.max_connections, self.keepalive_expiry = max_connections, keepalive_expiry
        self.connections_opened = 0
        self._pools: dict[tuple[bytes, int], _Pool] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._default: httpx2.AsyncHTTPTransport | None = None

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # trio
            loop = None
        if loop is None or request.url.scheme != "http":
            if self._default is None:
                self._default = httpx2.AsyncHTTPTransport()
            return await self._default.handle_async_request(request)
        if loop is not self._loop:  # connections belong to the loop that made them
            self._pools, self._loop = {}, loop
        timeouts = request.extensions.get("timeout", {})
        key = (request.url.raw_host, request.url.port or 80)
        pool = self._pools.get(key) or self._pools.setdefault(key, _Pool())
        limit = int(request.extensions.get("max_response_bytes", MAX_RESPONSE_BYTES))
        on_head = request.extensions.get("on_head")  # called when the answer's head is in
        data, closing = _encode(request, await request.aread())
        head_only, start = request.method == "HEAD", loop.time()
        for attempt in (0, 1):
            conn, reused = await self._acquire(loop, pool, key, timeouts)
            keep = False
            try:
                await conn.send(data, timeouts.get("write"))
                answer = await _read(conn, head_only, timeouts.get("read"), limit, on_head)
                keep = not (answer[-1] or closing)
                break
            except _Closed:
                if attempt == 0 and reused and not conn.received and request.method in _IDEMPOTENT:
                    while pool.idle:  # idle as long as that one was: suspect too
                        pool.drop(pool.idle.pop())
                    continue
                if conn.error is not None:
                    raise httpx2.ReadError(str(conn.error) or type(conn.error).__name__) from None
                raise httpx2.RemoteProtocolError(
                    "peer closed connection without sending complete message body"
                    if conn.received
                    else "Server disconnected without sending a response."
                ) from None
            finally:
                if keep and not pool.closed and not conn.eof and not conn.buf:
                    conn.idle_since = loop.time()
                    pool.idle.append(conn)
                    pool.wake_one()
                else:
                    pool.drop(conn)
        status, reason, version, headers, body, _ = answer
        response = httpx2.Response(
            status,
            headers=headers,
            stream=httpx2.ByteStream(body),
            extensions={"http_version": version, "reason_phrase": reason},
        )
        response.elapsed = datetime.timedelta(seconds=loop.time() - start)
        if response.headers.get("content-encoding", "identity").strip() not in ("", "identity"):
            return response  # decompressed by the caller, under its own cap (a gzip bomb)
        response.read()  # decoded now, without the async iteration of the client's aread()
        return response

    async def _acquire(
        self,
        loop: asyncio.AbstractEventLoop,
        pool: _Pool,
        key: tuple[bytes, int],
        timeouts: dict[str, float | None],
    ) -> tuple[_Conn, bool]:
        """An idle connection still open (True), or a new one (False)."""
        while True:
            since = loop.time() - self.keepalive_expiry
            while pool.idle:
                conn = pool.idle.pop()
                if not conn.eof and not conn.buf and conn.idle_since >= since:
                    return conn, True
                pool.count -= 1  # closed by the server (maybe saying 408 first), or expired
                conn.close()
            if pool.count < self.max_connections:
                break
            fut: asyncio.Future[None] = loop.create_future()
            pool.waiters.append(fut)
            try:
                await _wait(fut, timeouts.get("pool"), httpx2.PoolTimeout)
            except BaseException:
                if fut in pool.waiters:
                    pool.waiters.remove(fut)
                elif fut.done() and not fut.cancelled() and fut.exception() is None:
                    pool.wake_one()  # woken, but leaving: pass the turn on
                raise
        pool.count += 1
        try:
            async with asyncio.timeout(timeouts.get("connect")):
                _, conn = await loop.create_connection(
                    lambda: _Conn(loop), key[0].decode("ascii"), key[1]
                )
        except BaseException as exc:
            pool.count -= 1
            pool.wake_one()
            if isinstance(exc, TimeoutError):  # before OSError: TimeoutError is one
                raise httpx2.ConnectTimeout(f"timed out after {timeouts.get('connect')} s") from exc
            if isinstance(exc, OSError):
                raise httpx2.ConnectError(str(exc) or type(exc).__name__) from exc
            raise
        self.connections_opened += 1
        return conn, False

    async def aclose(self) -> None:
        for pool in self._pools.values():
            pool.closed = True  # connections in use close when done
            while pool.idle:
                pool.drop(pool.idle.pop())
        self._pools = {}
        if self._default is not None:
            await self._default.aclose()


def _encode(request: httpx2.Request, body: bytes) -> tuple[bytes, bool]:
    """The request's bytes, and whether it asks to close the connection."""
    out = [b"%s %s HTTP/1.1\r\n" % (request.method.encode("ascii"), request.url.raw_path)]
    closing = False
    for name, value in request.headers.raw:
        lower = name.lower()
        if lower in (b"content-length", b"transfer-encoding"):
            continue  # the body goes whole: ours below
        if b"\r" in value or b"\n" in value or not _TOKEN.fullmatch(name):
            raise httpx2.LocalProtocolError(f"invalid header {name!r}")
        closing = closing or (lower == b"connection" and b"close" in value.lower())
        out.append(b"%s: %s\r\n" % (name, value))
    if body or request.method not in ("GET", "HEAD", "DELETE", "OPTIONS", "TRACE"):
        out.append(b"Content-Length: %d\r\n" % len(body))
    out += (b"\r\n", body)
    return b"".join(out), closing


async def _read(
    conn: _Conn,
    head_only: bool,
    timeout: float | None,
    limit: int = MAX_RESPONSE_BYTES,
    on_head: Callable[[], None] | None = None,
) -> _Answer:
    """(status, reason, version, headers, body, close after it) of the next answer."""
    buf = conn.buf
    while True:  # past 1xx interim answers
        while (end := _HEAD_END.search(buf)) is None:
            if len(buf) > _MAX_HEAD:
                raise httpx2.RemoteProtocolError("response head too large")
            await conn.fill(timeout)
        lines = bytes(buf[: end.start()]).split(b"\n")
        del buf[: end.end()]
        parts = lines[0].rstrip(b"\r").split(b" ", 2)
        code = parts[1] if len(parts) > 1 else b""
        if not parts[0].startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
            raise httpx2.RemoteProtocolError(f"malformed status line {lines[0][:80]!r}")
        if (status := int(code)) >= 200:
            break
        if status == 101:
            raise httpx2.RemoteProtocolError("unexpected 101 Switching Protocols")
    if on_head is not None:
        on_head()
    version, reason = parts[0], parts[2] if len(parts) > 2 else b""
    headers: list[tuple[bytes, bytes]] = []
    length: int | None = None
    chunked = te = False
    close = version == b"HTTP/1.0"
    for line in lines[1:]:
        name, colon, value = line.rstrip(b"\r").partition(b":")
        value = value.strip(b" \t")
        if not colon or not _TOKEN.fullmatch(name) or b"\r" in value or b"\0" in value:
            raise httpx2.RemoteProtocolError(f"malformed header line {line[:80]!r}")
        headers.append((name, value))
        lower = name.lower()
        if lower == b"content-length":
            if not value.isdigit() or length not in (None, int(value)):
                raise httpx2.RemoteProtocolError(f"bad Content-Length {value[:40]!r}")
            length = int(value)
        elif lower == b"transfer-encoding":
            te, chunked = True, value.rpartition(b",")[2].strip().lower() == b"chunked"
        elif lower == b"connection":
            tokens = {t.strip() for t in value.lower().split(b",")}
            close = b"close" in tokens or (close and b"keep-alive" not in tokens)
    if head_only or status in (204, 304):
        body = b""
    elif te:
        close = close or length is not None or not chunked  # RFC 9112 6.3
        chunks = _chunked(conn, timeout, limit) if chunked else _to_close(conn, timeout, limit)
        body = await chunks
    elif length is not None:
        if length > limit:
            raise ResponseTooLarge(limit, f"the declared Content-Length {length:,}")
        body = await conn.take(length, timeout)
    else:
        close, body = True, await _to_close(conn, timeout, limit)
    return status, reason, version, headers, body, close


async def _chunked(conn: _Conn, timeout: float | None, limit: int) -> bytes:
    parts, total = [], 0
    while True:
        size = (await conn.line(timeout)).split(b";", 1)[0].strip(b" \t")
        if not _HEX.fullmatch(size):
            raise httpx2.RemoteProtocolError(f"malformed chunk size {size[:40]!r}")
        if not (n := int(size, 16)):
            break
        total += n
        if total > limit:
            raise ResponseTooLarge(limit)
        chunk = await conn.take(n + 2, timeout)
        if chunk[-2:] != b"\r\n":
            raise httpx2.RemoteProtocolError("chunk not followed by CRLF")
        parts.append(chunk[:-2])
    while await conn.line(timeout):  # trailers, up to the empty line
        pass
    return b"".join(parts)


async def _to_close(conn: _Conn, timeout: float | None, limit: int) -> bytes:
    while not conn.eof:
        if len(conn.buf) > limit:
            raise ResponseTooLarge(limit)
        await conn.fill(timeout)
    if conn.error is not None:
        raise httpx2.ReadError(str(conn.error) or type(conn.error).__name__)
    if len(conn.buf) > limit:
        raise ResponseTooLarge(limit)
    body = bytes(conn.buf)
    conn.buf.clear()
    return body
