"""JSON over HTTP to one server, with every failure sorted into transient or permanent.

Requests go through an ``httpx2.AsyncClient`` whose pool is sized explicitly
(``http_client``): httpx2's default caps a client at 100 connections, below the concurrency
a run uses against a local server. Each answer is read under a size cap (decompressed, so a
gzip bomb stops at the cap too) and within one deadline for the whole request, however
slowly the server trickles it.

Failures are sorted here once (error answers by ``http_errors.py``) into
``TransientBackendError`` (the ``Retrying`` wrapper tries again) and
``PermanentBackendError`` (the run stops, with a message that says what to fix).
The API key is held as a ``SecretStr``: it goes into the ``Authorization`` header and nowhere
else, and is redacted from any server message that echoes it.
"""

from __future__ import annotations

import json
import math
import os
import sys
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Literal

import anyio
import httpx2
from pydantic import SecretStr

from ..aio import SingleFlight
from ..errors import (
    BackendError,
    ConfigError,
    NoAnswerError,
    PermanentBackendError,
    TransientBackendError,
)
from ..redact import describe_bad_key, redact, redact_url, register
from .http_errors import error_in_body, http_error

MAX_RESPONSE_BYTES = 8 * 2**20
"""Default cap on a response body (after decompression too): a score is a few KiB, so a
larger answer is a broken or hostile server, and must not fill the memory."""

DEFAULT_MAX_CONNECTIONS = 512
"""Connections per client at most, far above any useful concurrency (with batching, many
scores share one request); past it requests wait for a free one, within their deadline."""

KEEPALIVE_EXPIRY = 5.0
"""Seconds an idle connection is kept open for reuse."""

CONNECT_TIMEOUT = 10.0
"""Seconds to open a connection, at most (``timeout`` when shorter)."""
_ANSWER_KEYS = frozenset({"choices", "data", "tokens", "content"})


class ResponseTooLarge(Exception):
    """The answer (declared or decompressed) is past the response size cap."""

    def __init__(self, limit: int, what: str = "the response") -> None:
        self.limit = limit
        super().__init__(f"{what} is larger than the {limit:,}-byte cap")


HTTPClient = Literal["httpx", "aiohttp"]
"""Which client carries the requests: httpx2's own transport, or aiohttp under httpx2's API
(the ``aiohttp`` extra: ``pip install 'icm-client[aiohttp]'``)."""


def http_client(
    timeout: float, max_connections: int = DEFAULT_MAX_CONNECTIONS, http: HTTPClient = "httpx"
) -> httpx2.AsyncClient:
    """The client a backend builds when given none: a pool of ``max_connections``, every one
    of which may be kept alive between requests, on httpx2's transport or aiohttp's."""
    if max_connections < 1:
        raise ConfigError(
            f"max_connections must be at least 1, got {max_connections}", field="max_connections"
        )
    limits = httpx2.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=KEEPALIVE_EXPIRY,
    )
    if http == "httpx":
        return httpx2.AsyncClient(timeout=timeout, limits=limits)
    if http != "aiohttp":
        raise ConfigError(f"http must be 'httpx' or 'aiohttp', got {http!r}", field="http")
    try:
        from httpx_aiohttp.httpx2 import AiohttpTransport
    except ImportError:
        raise ConfigError(
            "http='aiohttp' needs the aiohttp extra: pip install 'icm-client[aiohttp]'",
            field="http",
        ) from None
    transport = AiohttpTransport(limits=limits)  # decompression is left to httpx2 (the cap)
    return httpx2.AsyncClient(timeout=timeout, limits=limits, transport=transport)


def split_base_url(base_url: str) -> tuple[str, str]:
    """(root for requests, root for messages: no credentials), ``/v1`` and ``/`` stripped."""
    shown = redact_url(base_url.strip())
    try:
        parts = urllib.parse.urlsplit(base_url.strip())
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a bad port
        ok = False
    if not ok or parts.query or parts.fragment:
        extra = (
            " (no query string or fragment: pass a key through --api-key-env, or api_key=)"
            if ok
            else ""
        )
        raise ConfigError(
            f"invalid base URL {shown!r}: expected http(s)://host[:port][/prefix][/v1]{extra}",
            field="base_url",
        )
    if "@" in parts.netloc:  # would become an Authorization: Basic header, key replaced
        raise ConfigError(
            f"base URL {shown!r} carries credentials (user:password@, not shown): "
            "remove them and pass the key through --api-key-env (or api_key=)",
            field="base_url",
        )
    path = parts.path.rstrip("/").removesuffix("/v1")
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{parts.netloc}{path}", f"{parts.scheme}://{host}{path}"


class JSONTransport:
    """Requests to one server root; ``client`` is the test seam (``httpx2.MockTransport``).

    ``shown_root`` (the root without credentials) is what messages name. ``headers`` go
    with every request (an SDK client's organisation, project and default headers).
    ``observer`` sees every response's headers (rate-limit pacing, ``client/pacing.py``).
    ``model`` is the served model's name, None until ``resolve_model`` asks the server.
    The API key is ``api_key``, else ``$api_key_env``'s. A ``client`` given is kept open by
    ``aclose``; without one, it builds its own (``http_client``) and closes it.
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        api_key: str | None,
        api_key_env: str,
        timeout: float,
        client: httpx2.AsyncClient | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        http: HTTPClient = "httpx",
        headers: Mapping[str, str] | None = None,
        observer: Callable[[httpx2.Headers], None] | None = None,
    ) -> None:
        self.root, self.shown_root = split_base_url(base_url)
        self.headers = {"Accept": "application/json", **(headers or {})}
        self.observer = observer
        if not 0 < timeout < math.inf:  # inf would turn the deadline off; nan fails both
            raise ConfigError(
                f"timeout must be a finite number of seconds above 0, got {timeout}",
                field="timeout",
            )
        if max_response_bytes < 1024:
            raise ConfigError(
                f"max_response_bytes must be at least 1024, got {max_response_bytes}",
                field="max_response_bytes",
            )
        self.max_response_bytes = max_response_bytes
        key = api_key if api_key is not None else os.environ.get(api_key_env)
        secret = SecretStr(key) if key else None
        if secret is not None:
            problem = describe_bad_key(secret.get_secret_value())
            if problem is not None:
                raise ConfigError(
                    f"the API key (from ${api_key_env} or api_key=) {problem}; an API key "
                    "is printable ASCII: "
                    "check how it was copied (a trailing newline from a file?)",
                    field="api_key",
                )
            register(secret.get_secret_value())
        self.api_key = secret
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.owns_client = client is None
        self.client = client if client is not None else http_client(timeout, max_connections, http)
        self.model = model or None
        self._model_flight: SingleFlight[None, str] = SingleFlight(share_errors=False)
        self._urls: dict[str, httpx2.URL] = {}  # parsed once: ~40 us a request otherwise

    async def aclose(self) -> None:
        """Close the client if this transport built it."""
        if self.owns_client:
            await self.client.aclose()

    async def resolve_model(self) -> str:
        """The served model: as given, else the first that ``GET /v1/models`` lists (asked
        once, by one of the concurrent callers)."""
        if self.model is not None:
            return self.model
        model, _ = await self._model_flight.run(None, self._first_model)
        return model

    async def _first_model(self) -> str:
        if self.model is None:
            body = await self.call("GET", "/v1/models", None)
            data = body.get("data") if isinstance(body, dict) else None
            first = data[0] if isinstance(data, list) and data else None
            model = first.get("id") if isinstance(first, dict) else None
            if not isinstance(model, str) or not model:
                raise PermanentBackendError(
                    "the server lists no model; pass the model name explicitly",
                    endpoint=f"{self.shown_root}/v1/models",
                )
            self.model = model
        return self.model

    async def call(
        self,
        method: str,
        path: str,
        payload: dict[str, object] | None,
        headers: Mapping[str, str] | None = None,
    ) -> object:
        """``method root+path`` with a JSON body; the decoded JSON answer, or a ``BackendError``."""
        response = await self.send(method, path, payload, headers)
        return self.decode(response, self.shown_root + path)

    async def send(
        self,
        method: str,
        path: str,
        payload: dict[str, object] | None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx2.Response:
        """The response (any status), its body read whole under the size cap and within the
        deadline; transport failures raise ``TransientBackendError``, an answer past the
        cap ``PermanentBackendError``."""
        shown = self.shown_root + path
        sent = {**self.headers, **headers} if headers else dict(self.headers)
        if self.api_key is not None:
            sent["Authorization"] = f"Bearer {self.api_key.get_secret_value()}"
        request = self.client.build_request(
            method,
            self._url(path),
            json=payload,
            headers=sent,
            timeout=httpx2.Timeout(self.timeout, connect=min(self.timeout, CONNECT_TIMEOUT)),
        )
        answered: list[bool] = []
        try:
            with anyio.fail_after(self.timeout):  # the whole request, however it trickles
                response = await self.client.send(request, stream=True)
                answered.append(True)
                try:
                    await self._read_body(response)
                finally:
                    await response.aclose()
            if self.observer is not None:
                self.observer(response.headers)
            return response
        except (TimeoutError, httpx2.ReadTimeout) as exc:
            why = "ReadTimeout" if isinstance(exc, httpx2.ReadTimeout) else "deadline"
            raise NoAnswerError(
                f"the answer did not complete within {self.timeout:g} s ({why}; a server "
                "sending it slowly)"
                if answered
                else f"the server accepted the connection but sent no answer within "
                f"{self.timeout:g} s ({why}; busy, still loading, or not an OpenAI-compatible "
                "API?)",
                endpoint=shown,
            ) from None
        except ResponseTooLarge as exc:
            raise PermanentBackendError(
                f"{exc} (max_response_bytes): a broken or hostile server; the answer was not read",
                endpoint=shown,
            ) from None
        except httpx2.TimeoutException as exc:
            raise TransientBackendError(
                f"no answer within {self.timeout:g} s ({type(exc).__name__})", endpoint=shown
            ) from exc
        except httpx2.ConnectError as exc:
            raise TransientBackendError(
                f"cannot connect to {self.shown_root} (is the server running?): {exc}",
                endpoint=shown,
            ) from exc
        except (httpx2.TransportError, httpx2.DecodingError) as exc:
            raise TransientBackendError(
                f"connection failed: {type(exc).__name__}: {exc}", endpoint=shown
            ) from exc
        except _aiohttp_errors() as exc:  # what httpx-aiohttp does not map: a malformed answer
            raise TransientBackendError(
                f"the answer is not valid HTTP (aiohttp {type(exc).__name__}: {_first_line(exc)})",
                endpoint=shown,
            ) from None

    async def _read_body(self, response: httpx2.Response) -> None:
        """Read the (decompressed) body, refusing it past ``max_response_bytes``."""
        limit = self.max_response_bytes
        declared = response.headers.get("content-length", "")
        encoded = response.headers.get("content-encoding", "identity") not in ("", "identity")
        if declared.isdigit() and int(declared) > limit and not encoded:
            raise ResponseTooLarge(limit, f"the declared Content-Length {int(declared):,}")
        parts: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():  # decompressed chunk by chunk
            size += len(chunk)
            if size > limit:
                raise ResponseTooLarge(limit, "the (decompressed) response")
            parts.append(chunk)
        response._content = b"".join(parts)

    def _url(self, path: str) -> httpx2.URL:
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = httpx2.URL(self.root + path)
        return url

    def decode(self, response: httpx2.Response, shown: str) -> object:
        if not response.is_success:
            raise self.http_error(response, shown)
        try:
            data = json.loads(response.content)
        except RecursionError:
            raise PermanentBackendError(
                "response JSON nests too deeply to read (a broken or hostile server)",
                endpoint=shown,
                status=response.status_code,
            ) from None
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, a huge integer
            text = redact(response.text)  # redacted before it is cut: no half key either
            raise TransientBackendError(
                f"response is not valid JSON (truncated or garbled?): {text[:80]!r}",
                endpoint=shown,
                status=response.status_code,
            ) from exc
        if isinstance(data, dict) and data.get("error") and not _ANSWER_KEYS & data.keys():
            raise error_in_body(response, shown)
        return data

    def http_error(self, response: httpx2.Response, shown: str) -> BackendError:
        """``response``'s error status as a ``BackendError`` (``http_errors.py``)."""
        return http_error(response, shown, api_key_env=self.api_key_env, model=self.model)


def _aiohttp_errors() -> tuple[type[Exception], ...]:
    """aiohttp's own errors, where it is in use (a malformed status line, header or chunk
    raises ``ClientResponseError`` through httpx-aiohttp, not an httpx2 error)."""
    aiohttp = sys.modules.get("aiohttp")
    error = getattr(aiohttp, "ClientError", None)
    return (error,) if isinstance(error, type) and issubclass(error, Exception) else ()


def _first_line(exc: BaseException) -> str:
    """The gist of a parser's error: its first line, without the bytes it quotes after."""
    text = str(getattr(exc, "message", None) or exc).strip()
    return (text.splitlines() or [""])[0].rstrip(":")[:200]


def token_counts(body: object) -> tuple[int, int]:
    """(prompt_tokens, cached_tokens) from ``usage``; 0 where the server does not say.

    Cached tokens: OpenAI, vLLM and llama.cpp report ``prompt_tokens_details.cached_tokens``,
    Together a top-level ``usage.cached_tokens``."""
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return 0, 0
    prompt = usage.get("prompt_tokens")
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    if cached is None:
        cached = usage.get("cached_tokens")
    return (
        prompt if isinstance(prompt, int) and not isinstance(prompt, bool) else 0,
        cached if isinstance(cached, int) and not isinstance(cached, bool) else 0,
    )
