"""Nothing unbounded: answers past the size cap (declared, endless, read to close, or
decompressed), answers that trickle or never come, an error inside a 200 and a JSON nesting
bomb, each on both HTTP clients (httpx2's own transport and aiohttp's), against a raw
loopback server that sends exactly those bytes."""

from __future__ import annotations

import json
import socket
import threading
import time
import zlib
from pathlib import Path
from typing import cast

import anyio
import httpx2
import pytest
from processes import HANG_S
from raw_server import RawServer, head

from icm_client.backends import OpenAICompletions, ScoreRequest
from icm_client.backends.transport import HTTPClient
from icm_client.cli import main
from icm_client.client import Retry, ScoringClient
from icm_client.errors import (
    NoAnswerError,
    PermanentBackendError,
    TransientBackendError,
)

pytestmark = pytest.mark.anyio
REQ = ScoreRequest("Claim: the sea is salty.\nI think this Claim is", (" True", " False"))
CAP = 2**20
BIG = b"a" * 65536
TOP = {" True": -0.2, " False": -1.8}


@pytest.fixture(params=["httpx", "aiohttp"])
def transport(request: pytest.FixtureRequest) -> HTTPClient:
    if request.param == "aiohttp":
        pytest.importorskip("httpx_aiohttp")
    return cast(HTTPClient, request.param)


def backend(server: RawServer, http: HTTPClient, timeout: float = 10.0) -> OpenAICompletions:
    return OpenAICompletions(
        server.base_url, "m", provider="generic", timeout=timeout, max_response_bytes=CAP, http=http
    )


def retrying(server: RawServer, http: HTTPClient, attempts: int) -> ScoringClient:
    """``backend`` in a client that retries ``attempts`` times at once (no cache)."""
    return ScoringClient(
        backend(server, http), cache=False, retry=Retry(max_attempts=attempts, base_wait=0.001)
    )


def send_until_closed(sock: socket.socket, first: bytes, more: bytes, most: int = 2**28) -> None:
    sock.sendall(first)
    sent = 0
    while sent < most:  # far past the cap; the client hangs up long before
        sock.sendall(more)
        sent += len(more)


def endless_chunked(sock: socket.socket) -> None:
    chunk = b"%x\r\n%s\r\n" % (len(BIG), BIG)
    send_until_closed(sock, head(Transfer_Encoding="chunked"), chunk)


def huge_length(sock: socket.socket) -> None:
    send_until_closed(sock, head(Content_Length=str(10**12)), BIG)


def to_close(sock: socket.socket) -> None:
    send_until_closed(sock, head(Connection="close"), BIG)


def _gzip_bomb() -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    block = b"\0" * 2**20
    return b"".join(z.compress(block) for _ in range(256)) + z.flush()  # 256 MiB inflated


BOMB = _gzip_bomb()


def gzip_bomb(sock: socket.socket) -> None:
    sock.sendall(head(Content_Length=str(len(BOMB)), Content_Encoding="gzip") + BOMB)


@pytest.mark.parametrize("script", [endless_chunked, huge_length, to_close, gzip_bomb])
async def test_an_answer_past_the_size_cap_is_refused_not_read_nor_retried(
    script: object, transport: HTTPClient
) -> None:
    with RawServer(script) as server:  # type: ignore[arg-type]
        client = retrying(server, transport, attempts=3)
        with pytest.raises(PermanentBackendError, match="byte cap") as info:
            await client.score(REQ)
        await client.aclose()
    assert "max_response_bytes" in str(info.value)
    assert server.connections == 1  # permanent: not retried
    if script is gzip_bomb:
        assert len(BOMB) < CAP  # what came over the wire was small; inflated, it is not


def drip(sock: socket.socket) -> None:
    sock.sendall(head(Content_Length="400"))
    for _ in range(400):
        sock.sendall(b" ")
        time.sleep(0.05)


def silent(sock: socket.socket) -> None:
    time.sleep(3)  # accepted, read the request, says nothing


async def test_a_dripping_answer_hits_the_whole_request_deadline(transport: HTTPClient) -> None:
    """Each byte comes well within the read timeout; the whole answer would take 20 s."""
    with RawServer(drip) as server:
        client = backend(server, transport, timeout=1.0)
        with pytest.raises(NoAnswerError, match="did not complete within 1 s"):
            await client.score(REQ)
        await client.aclose()


async def test_a_silent_server_is_named_as_such(transport: HTTPClient) -> None:
    with RawServer(silent) as server:
        client = backend(server, transport, timeout=0.5)
        with pytest.raises(NoAnswerError, match="accepted the connection but sent no answer"):
            await client.score(REQ)
        await client.aclose()


def test_the_cli_reports_a_silent_server_at_once_with_timeout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with RawServer(silent) as server:
        args = "label sample:cities --task cities --limit 4 --quiet --no-cache --model m"
        args += " --provider generic --timeout 0.5"
        code = main(
            [*args.split(), "--out", str(tmp_path / "l.jsonl"), "--base-url", server.base_url]
        )
    err = capsys.readouterr().err
    assert code == 2, err
    assert "does not answer" in err and "accepted the connection" in err and "--timeout" in err
    assert server.connections == 1  # said at once, not after three timeouts


def answer(body: bytes):  # type: ignore[no-untyped-def]
    def script(sock: socket.socket) -> None:
        sock.sendall(head(Content_Length=str(len(body))) + body)

    return script


def error_200(message: str, kind: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": kind}}).encode()


async def test_a_200_carrying_overload_is_transient_with_the_servers_message(
    transport: HTTPClient,
) -> None:
    body = error_200("Model is overloaded, please try again later", "overloaded_error")
    with RawServer(answer(body)) as server:
        client = retrying(server, transport, attempts=2)
        with pytest.raises(TransientBackendError, match="Model is overloaded") as info:
            await client.score(REQ)
        await client.aclose()
    assert "answered HTTP 200 with an error" in str(info.value)
    assert server.connections >= 1 and "gave up after 2 attempts" in str(info.value)


async def test_a_200_carrying_another_error_is_permanent_with_the_servers_message(
    transport: HTTPClient,
) -> None:
    body = error_200("model 'm' has been decommissioned", "invalid_request_error")
    with RawServer(answer(body)) as server:
        client = retrying(server, transport, attempts=3)
        with pytest.raises(PermanentBackendError, match="decommissioned"):
            await client.score(REQ)
        await client.aclose()


@pytest.mark.parametrize(
    "body",
    [b"[" * 200_000 + b"]" * 200_000, b'{"choices": [' + b"7" * 5000 + b"]}"],
    ids=["nesting-bomb", "huge-int"],
)
async def test_a_hostile_json_answer_is_an_error_not_a_crash(
    body: bytes, transport: HTTPClient
) -> None:
    with RawServer(answer(body)) as server:
        client = retrying(server, transport, attempts=2)
        with pytest.raises((PermanentBackendError, TransientBackendError)):
            await client.score(REQ)
        await client.aclose()


async def test_more_requests_than_httpxs_default_pool_are_in_flight_at_once(
    transport: HTTPClient,
) -> None:
    """httpx2's default pool holds 100 connections; the backend's holds more: 150 requests
    are answered only once all 150 have reached the server."""
    n = 150
    everyone = threading.Barrier(n, timeout=HANG_S)
    body = json.dumps({"choices": [{"index": 0, "logprobs": {"top_logprobs": [TOP]}}]}).encode()

    def together(sock: socket.socket) -> None:
        everyone.wait()
        sock.sendall(head(Content_Length=str(len(body))) + body)

    with RawServer(together) as server:
        client = backend(server, transport, timeout=HANG_S)
        results: list[object] = []

        async def one() -> None:
            results.append(await client.score(REQ))

        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(one)
        await client.aclose()
    assert len(results) == n and server.connections == n


MALFORMED_HEADS = {
    "bad status line": b"HTTP/1.1 abc OK\r\n\r\n",
    "not HTTP": b"\x00\xff\xfe garbage\r\n\r\n",
    "header without colon": b"HTTP/1.1 200 OK\r\nContent-Type application/json\r\n\r\n{}",
    "bad Content-Length": b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n{}",
    "two Content-Lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    "a 200 KB header": b"HTTP/1.1 200 OK\r\nX-A: " + b"a" * 200_000 + b"\r\n\r\n{}",
    "20,000 headers": b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 20_000 + b"\r\n{}",
    "bad chunk size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n0\r\n\r\n",
    "NUL in a header": b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\n{}",
}


@pytest.mark.parametrize("name", MALFORMED_HEADS)
async def test_a_malformed_answer_head_is_a_backend_error_on_both_clients(
    name: str, transport: HTTPClient
) -> None:
    """Issue 24 row 13: aiohttp's parser errors used to escape as a traceback."""
    raw = MALFORMED_HEADS[name]

    def script(sock: socket.socket) -> None:
        sock.sendall(raw)
        sock.close()

    with RawServer(script) as server:
        client = retrying(server, transport, attempts=2)
        with pytest.raises(TransientBackendError) as info:
            await client.score(REQ)
        await client.aclose()
    assert server.connections == 2  # transient: retried, then said
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("value", ["nan", "inf", "1e400"])
async def test_a_retry_after_that_is_no_number_of_seconds_is_ignored(value: str) -> None:
    from icm_client.backends.http_errors import parse_retry_after

    headers = httpx2.Headers({"Retry-After": value})
    assert parse_retry_after(headers) is None
    assert parse_retry_after(httpx2.Headers({"Retry-After-Ms": value})) is None


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--timeout", "inf"),
        ("--timeout", "nan"),
        ("--max-response-mb", "nan"),
        ("--max-response-mb", "inf"),
        ("--max-response-mb", "1e400"),
        ("--timeout", "0"),
    ],
)
def test_a_deadline_or_cap_that_is_no_finite_number_is_refused(
    option: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--timeout inf`` used to turn the deadline silently off; ``nan`` to crash."""
    data = tmp_path / "d.jsonl"
    data.write_text('{"id": "a", "question": "q", "choice": "c"}\n')
    argv = ["label", str(data), "--task", "truthfulqa", "--out", str(tmp_path / "o.jsonl")]
    with pytest.raises(SystemExit) as info:
        main([*argv, "--base-url", "http://127.0.0.1:9/v1", option, value])
    err = capsys.readouterr().err
    assert info.value.code == 2 and f"argument {option}: must be a finite number" in err
    assert "Traceback" not in err


def test_the_python_api_refuses_an_infinite_timeout() -> None:
    from icm_client.errors import ConfigError

    for timeout in (float("inf"), float("nan"), 0.0):
        with pytest.raises(ConfigError, match="finite number of seconds"):
            OpenAICompletions("http://127.0.0.1:9/v1", "m", timeout=timeout)
