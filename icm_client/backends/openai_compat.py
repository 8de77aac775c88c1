"""Scoring through any OpenAI-compatible ``/v1/completions`` server (vLLM, llama.cpp, hosted).

One request per score: ``max_tokens: 1, temperature: 0, logprobs: k`` and the label words are
looked up in the top-k of the first generated position. A label outside the top-k is retried
once with a larger k, and otherwise reported as an upper bound (see ``logprobs.py``).

Errors are sorted here, once, into ``TransientBackendError`` (the ``Retrying`` wrapper tries
again) and ``PermanentBackendError`` (the run stops, with a message that says what to fix).
"""

from __future__ import annotations

import email.utils
import json
import os
import re
import time
import urllib.parse

import anyio
import httpx2
from pydantic import SecretStr

from ..errors import BackendError, ConfigError, PermanentBackendError, TransientBackendError
from .base import ScoreRequest, ScoreResult, Usage
from .logprobs import label_logprobs, parse_top_logprobs

TRANSIENT_STATUSES = frozenset({408, 409, 425, 429})
"""Retried, like every 5xx: timeouts, conflicts, rate limits, overload (529)."""

_MAX_MESSAGE = 300
_CONTEXT_RE = re.compile(r"context|too long|too many tokens|maximum.*length", re.IGNORECASE)
_QUOTA_RE = re.compile(r"insufficient_quota|exceeded your current quota", re.IGNORECASE)


def parse_retry_after(headers: httpx2.Headers, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, or ``Retry-After`` (seconds or HTTP-date)."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(float(ms) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def _split_base_url(base_url: str) -> tuple[str, str]:
    """(root for requests, root for messages: no credentials), ``/v1`` and ``/`` stripped."""
    shown = re.sub(r"//[^/@]*@", "//", base_url.strip())
    try:
        parts = urllib.parse.urlsplit(base_url.strip())
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a bad port
        ok = False
    if not ok or parts.query or parts.fragment:
        raise ConfigError(
            f"invalid base URL {shown!r}: expected http(s)://host[:port][/prefix][/v1]",
            field="base_url",
        )
    path = parts.path.rstrip("/").removesuffix("/v1")
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{parts.netloc}{path}", f"{parts.scheme}://{host}{path}"


class OpenAICompletions:
    """A ``Backend`` over ``POST {base_url}/v1/completions``.

    ``base_url`` may be given with or without ``/v1``. ``model=None`` asks ``GET /v1/models``
    at first use and takes the first id. The API key comes from ``api_key`` or else from
    ``$api_key_env``; it is kept as a ``SecretStr`` and never shown in ``repr``, ``identity``
    or error messages. ``client`` is the test seam (``httpx2.MockTransport``); a client passed
    in is not closed by ``aclose``.
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        top_k: int = 20,
        max_top_k: int = 100,
        timeout: float = 120.0,
        client: httpx2.AsyncClient | None = None,
        usage: Usage | None = None,
    ) -> None:
        self._root, self._shown_root = _split_base_url(base_url)
        if top_k < 1:
            raise ConfigError(f"top_k must be at least 1, got {top_k}", field="top_k")
        if max_top_k < top_k:
            raise ConfigError(f"max_top_k ({max_top_k}) < top_k ({top_k})", field="max_top_k")
        self._model = model or None
        key = api_key if api_key is not None else os.environ.get(api_key_env)
        self._api_key = SecretStr(key) if key else None
        self._api_key_env = api_key_env
        self._top_k, self._max_top_k = top_k, max_top_k
        self._escalate = max_top_k > top_k  # off once the server refuses the larger k
        self._timeout = timeout
        self._owns_client = client is None
        self._client = client if client is not None else httpx2.AsyncClient(timeout=timeout)
        self._usage = usage if usage is not None else Usage()
        self._model_lock = anyio.Lock()

    @property
    def identity(self) -> str:
        """What the scores depend on: API shape, model, k. Not the URL (replicas share a cache)."""
        return f"openai-completions:{self._model or '?'}:top{self._top_k}"

    @property
    def usage(self) -> Usage:
        return self._usage

    @property
    def model(self) -> str | None:
        """The served model name, or None until discovered."""
        return self._model

    @property
    def completions_url(self) -> str:
        return f"{self._shown_root}/v1/completions"

    def __repr__(self) -> str:
        key = "set" if self._api_key else "none"
        return (
            f"OpenAICompletions({self._shown_root!r}, model={self._model!r}, "
            f"top_k={self._top_k}, max_top_k={self._max_top_k}, api_key={key})"
        )

    async def prepare(self) -> None:
        """Discover the model if none was given, so that ``identity`` is final."""
        await self._resolve_model()

    async def score(self, request: ScoreRequest) -> ScoreResult:
        if request.prompt != request.prompt.rstrip():
            raise ValueError(
                "prompt must not end in whitespace: the label words carry their leading space"
            )
        model = await self._resolve_model()
        body = await self._complete(model, request.prompt, self._top_k)
        top = parse_top_logprobs(body, endpoint=self.completions_url)[0]
        logprobs, bounded = label_logprobs(top, request.labels)
        if any(bounded) and self._escalate:
            try:
                body = await self._complete(model, request.prompt, self._max_top_k)
            except PermanentBackendError as exc:
                if exc.status not in (400, 422) or "logprob" not in str(exc).lower():
                    raise
                self._escalate = False  # the server caps k: keep the bound from now on
            else:
                top = parse_top_logprobs(body, endpoint=self.completions_url)[0]
                logprobs, bounded = label_logprobs(top, request.labels)
        self._usage.bounded_labels += sum(bounded)
        prompt_tokens, cached_tokens = _token_counts(body)
        return ScoreResult(logprobs, bounded, prompt_tokens, cached_tokens)

    async def tokenize(self, text: str) -> list[int] | None:
        """Token ids of ``text`` as the server's tokenizer splits it, without BOS/special tokens.

        Tries llama.cpp's ``POST /tokenize {"content"}``, then vLLM's ``{"model", "prompt"}``;
        None when the server has no tokenizer endpoint (hosted APIs).
        """
        url, shown = f"{self._root}/tokenize", f"{self._shown_root}/tokenize"
        response = await self._send("POST", url, shown, {"content": text, "add_special": False})
        if response.status_code == 404:
            return None
        if response.is_success:
            tokens = _tokens(self._decode(response, shown))
            if tokens is not None:
                return tokens
        elif response.status_code not in (400, 422):
            raise self._http_error(response, shown)
        payload = {"model": await self._resolve_model(), "prompt": text}
        response = await self._send("POST", url, shown, payload | {"add_special_tokens": False})
        if response.is_success:
            return _tokens(self._decode(response, shown))
        if response.status_code in TRANSIENT_STATUSES or response.status_code >= 500:
            raise self._http_error(response, shown)
        return None

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    # -- internals ---------------------------------------------------------------------------

    async def _resolve_model(self) -> str:
        if self._model is not None:
            return self._model
        async with self._model_lock:
            if self._model is None:
                shown = f"{self._shown_root}/v1/models"
                response = await self._send("GET", f"{self._root}/v1/models", shown, None)
                body = self._decode(response, shown)
                data = body.get("data") if isinstance(body, dict) else None
                first = data[0] if isinstance(data, list) and data else None
                model = first.get("id") if isinstance(first, dict) else None
                if not isinstance(model, str) or not model:
                    raise PermanentBackendError(
                        "the server lists no model; pass the model name explicitly",
                        endpoint=shown,
                    )
                self._model = model
            return self._model

    async def _complete(self, model: str, prompt: str, k: int) -> object:
        payload = {"model": model, "prompt": prompt, "max_tokens": 1, "temperature": 0}
        url = f"{self._root}/v1/completions"
        response = await self._send("POST", url, self.completions_url, payload | {"logprobs": k})
        body = self._decode(response, self.completions_url)
        self._usage.calls += 1
        prompt_tokens, cached_tokens = _token_counts(body)
        self._usage.prompt_tokens += prompt_tokens
        self._usage.cached_tokens += cached_tokens
        return body

    async def _send(
        self, method: str, url: str, shown: str, payload: dict[str, object] | None
    ) -> httpx2.Response:
        headers = {"Accept": "application/json"}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
        try:
            return await self._client.request(
                method, url, json=payload, headers=headers, timeout=self._timeout
            )
        except httpx2.TimeoutException as exc:
            raise TransientBackendError(
                f"no answer within {self._timeout:g} s ({type(exc).__name__})", endpoint=shown
            ) from exc
        except httpx2.ConnectError as exc:
            raise TransientBackendError(
                f"cannot connect to {self._shown_root} (is the server running?): {exc}",
                endpoint=shown,
            ) from exc
        except (httpx2.TransportError, httpx2.DecodingError) as exc:
            raise TransientBackendError(
                f"connection failed: {type(exc).__name__}: {exc}", endpoint=shown
            ) from exc

    def _decode(self, response: httpx2.Response, shown: str) -> object:
        if not response.is_success:
            raise self._http_error(response, shown)
        try:
            return json.loads(response.content)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            raise TransientBackendError(
                f"response is not valid JSON (truncated or garbled?): {response.text[:80]!r}",
                endpoint=shown,
                status=response.status_code,
            ) from exc

    def _http_error(self, response: httpx2.Response, shown: str) -> BackendError:
        status, msg = response.status_code, self._server_message(response)
        if status in TRANSIENT_STATUSES or status >= 500:
            if status == 429 and _QUOTA_RE.search(response.text):
                return PermanentBackendError(
                    f"quota exhausted: {msg}", endpoint=shown, status=status
                )
            return TransientBackendError(
                f"server busy or failing: {msg}",
                endpoint=shown,
                status=status,
                retry_after=parse_retry_after(response.headers),
            )
        if status in (401, 403):
            hint = f"check the API key (from ${self._api_key_env} or api_key=)"
            text = f"not authorised: {msg}; {hint}"
        elif status == 404:
            model = f"unknown model {self._model!r} or " if self._model else ""
            text = (
                f"not found: {msg}; {model}wrong URL "
                "(base_url is the server root, with or without /v1)"
            )
        elif status in (400, 413, 422) and _CONTEXT_RE.search(msg):
            text = f"the prompt exceeds the model's context length: {msg}"
        elif status == 413:
            text = f"request too large: {msg}"
        else:
            text = f"request rejected: {msg}"
        return PermanentBackendError(text, endpoint=shown, status=status)

    def _server_message(self, response: httpx2.Response) -> str:
        """The server's own error message, on one line, cut to ~300 chars, key redacted."""
        try:
            data: object = json.loads(response.content)
        except ValueError:
            data = None
        msg: object = None
        if isinstance(data, dict):
            err = data.get("error")
            msg = err.get("message") if isinstance(err, dict) else err
            msg = msg or data.get("message") or data.get("detail")
        if msg is None:
            msg = response.text or response.reason_phrase
        text = " ".join((msg if isinstance(msg, str) else json.dumps(msg)).split())
        if self._api_key is not None:
            text = text.replace(self._api_key.get_secret_value(), "***")
        return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "…"


def _token_counts(body: object) -> tuple[int, int]:
    """(prompt_tokens, cached_tokens) from ``usage``; 0 where the server does not say."""
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return 0, 0
    prompt = usage.get("prompt_tokens")
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return (
        prompt if isinstance(prompt, int) and not isinstance(prompt, bool) else 0,
        cached if isinstance(cached, int) and not isinstance(cached, bool) else 0,
    )


def _tokens(body: object) -> list[int] | None:
    tokens = body.get("tokens") if isinstance(body, dict) else None
    if isinstance(tokens, list) and all(isinstance(t, int) for t in tokens):
        return tokens
    return None
