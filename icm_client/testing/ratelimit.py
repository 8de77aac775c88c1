"""A stand-in server's rate limit: a fixed window of requests, announced in headers.

``RateLimitedApp`` puts a hosted API's limit in front of a ``CompletionsApp``: at most
``limit`` scoring requests (completions and chat) per ``window`` seconds of its own clock,
every answer carrying where the client stands, as OpenAI names it
(``x-ratelimit-limit-requests``, ``-remaining-requests``, ``-reset-requests`` as ``0.25s``)
or as Together does (``x-ratelimit-remaining``, ``x-ratelimit-reset`` in seconds). A request
past the limit is answered 429 and counted in ``refused``; ``served`` counts the requests
each window let through, so a test asserts on counts, not on time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import httpx2

from .protocol import CompletionsApp, error_body

_SCORED = ("/v1/completions", "/v1/chat/completions")


class RateLimitedApp:
    """``app`` behind a limit of ``limit`` requests per ``window`` seconds (see the module)."""

    def __init__(
        self,
        app: CompletionsApp,
        *,
        limit: int,
        window: float,
        names: Literal["openai", "together"] = "openai",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app, self.limit, self.window, self.names = app, limit, window, names
        self._clock = clock
        self._lock = threading.Lock()
        self.served: dict[int, int] = {}  # window number -> requests let through
        self.refused = 0

    @property
    def name(self) -> str:
        return self.app.name

    def respond(self, method: str, path: str, body: bytes) -> tuple[int, Any, dict[str, str]]:
        """(status, JSON body, headers) of one request."""
        with self._lock:
            now = self._clock()
            slot = int(now // self.window)
            used = self.served.get(slot, 0)
            scored = method == "POST" and path in _SCORED
            if scored and used >= self.limit:
                self.refused += 1
                status, data = 429, error_body("rate limit reached", "rate_limit_error")
            else:
                if scored:
                    used = self.served[slot] = used + 1
                status, data = self.app.handle(method, path, body)
            reset = (slot + 1) * self.window - now
        return status, data, self._headers(self.limit - used, reset)

    def _headers(self, remaining: int, reset: float) -> dict[str, str]:
        if self.names == "together":
            return {"x-ratelimit-remaining": str(remaining), "x-ratelimit-reset": f"{reset:.3f}"}
        return {
            "x-ratelimit-limit-requests": str(self.limit),
            "x-ratelimit-remaining-requests": str(remaining),
            "x-ratelimit-reset-requests": f"{reset:.3f}s",
        }

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        """The ``httpx2.MockTransport`` handler."""
        status, data, headers = self.respond(request.method, request.url.path, request.content)
        return httpx2.Response(status, json=data, headers=headers)
