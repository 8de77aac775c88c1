r"""Sorting a server's error answers into transient or permanent ``BackendError``\ s.

One place decides, for every backend: an HTTP status (and, for 429, whether the quota is
spent), or an error object inside a success answer (some proxies send those), becomes a
``TransientBackendError`` (retried, after the server's ``Retry-After`` where it gives one)
or a ``PermanentBackendError`` saying what to fix. The server's message is kept, on one
line, cut short and with the API key redacted.

The openai and anthropic SDKs parse the same headers and statuses, but as private methods
of their clients (``_parse_retry_after_header``, ``_make_status_error``) that return their
own exception classes; a backend that calls an SDK (``anthropic.py``) sorts the SDK's
status error here too, so that every backend raises the one hierarchy of ``errors.py``.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import time

import httpx2

from ..errors import BackendError, ContextLengthError, PermanentBackendError, TransientBackendError
from ..redact import redact

TRANSIENT_STATUSES = frozenset({408, 409, 425, 429})
"""Retried, like every 5xx: timeouts, conflicts, rate limits, overload (529)."""

_MAX_MESSAGE = 300
_CONTEXT_RE = re.compile(r"context|too long|too many tokens|maximum.*length", re.IGNORECASE)
_BUSY_RE = re.compile(
    r"overload|rate.?limit|too many requests|busy|unavailable|capacity|try again|timed? ?out",
    re.IGNORECASE,
)
_QUOTA_RE = re.compile(r"insufficient_quota|exceeded your current quota", re.IGNORECASE)


def parse_retry_after(headers: httpx2.Headers, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, or ``Retry-After`` (seconds or HTTP-date)."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return _seconds(float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return _seconds(float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def _seconds(value: float) -> float | None:
    """A wait in seconds, or None for ``nan``/``inf`` (no usable advice: the retry policy's
    own wait applies, capped as always)."""
    return max(value, 0.0) if math.isfinite(value) else None


def error_in_body(response: httpx2.Response, shown: str) -> BackendError:
    """A success status with an error object instead of an answer (some proxies and
    servers do this): the server's message, classified like an HTTP error."""
    msg = server_message(response)
    text = f"the server answered HTTP {response.status_code} with an error: {msg}"
    if _BUSY_RE.search(response.text[:4096]):
        return TransientBackendError(text, endpoint=shown, status=response.status_code)
    if _CONTEXT_RE.search(msg):
        return ContextLengthError(text, endpoint=shown, status=response.status_code)
    return PermanentBackendError(text, endpoint=shown, status=response.status_code)


def http_error(
    response: httpx2.Response, shown: str, *, api_key_env: str, model: str | None
) -> BackendError:
    """An answer with an error status, sorted: 408/409/425/429 and 5xx are transient (with
    the server's ``Retry-After``), except a 429 that says the quota is spent; the rest are
    permanent, with what to fix (the key, the model or URL, the prompt's length)."""
    status, msg = response.status_code, server_message(response)
    if status in TRANSIENT_STATUSES or status >= 500:
        if status == 429 and _QUOTA_RE.search(response.text):
            return PermanentBackendError(f"quota exhausted: {msg}", endpoint=shown, status=status)
        return TransientBackendError(
            f"server busy or failing: {msg}",
            endpoint=shown,
            status=status,
            retry_after=parse_retry_after(response.headers),
        )
    if status in (401, 403):
        hint = f"check the API key (from ${api_key_env} or api_key=)"
        text = f"not authorised: {msg}; {hint}"
    elif status == 404:
        unknown = f"unknown model {model!r} or " if model else ""
        text = (
            f"not found: {msg}; {unknown}wrong URL "
            "(base_url is the server root, with or without /v1)"
        )
    elif status in (400, 413, 422) and _CONTEXT_RE.search(msg):
        text = f"the prompt exceeds the model's context length: {msg}"
        return ContextLengthError(text, endpoint=shown, status=status)
    elif status == 413:
        text = f"request too large: {msg}"
    else:
        text = f"request rejected: {msg}"
    return PermanentBackendError(text, endpoint=shown, status=status)


def server_message(response: httpx2.Response) -> str:
    """The server's own error message, on one line, cut to ~300 chars, key redacted."""
    try:
        data: object = json.loads(response.content)
    except (ValueError, RecursionError):
        data = None
    msg: object = None
    if isinstance(data, dict):
        err = data.get("error")
        msg = err.get("message") if isinstance(err, dict) else err
        msg = msg or data.get("message") or data.get("detail")
    if msg is None:
        msg = response.text or response.reason_phrase
    if not isinstance(msg, str):
        try:
            msg = json.dumps(msg)[: _MAX_MESSAGE * 4]
        except (ValueError, TypeError, RecursionError):
            msg = response.reason_phrase
    text = redact(" ".join(msg[: _MAX_MESSAGE * 4].split()))
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "…"
