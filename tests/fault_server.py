"""A fault-injecting OpenAI-compatible server on 127.0.0.1, for tests of what goes wrong.

It is a real HTTP server (stdlib ``ThreadingHTTPServer`` in a background thread), so the
client's whole stack runs as in production: connection pool, timeouts, dropped sockets.

The stand-in model (``icm_client.testing.hash_logprobs``): the top-k logprobs of the next
token come from the SHA-256 of the prompt over a small fixed vocabulary. The same prompt
always gets the same answer, in the OpenAI/vLLM shape or llama.cpp's.

Faults follow a seeded schedule: attempt ``n`` at one request (path, prompt, k) fails with
probability ``rate``, of a kind drawn from ``kinds``, both decided by a hash of
(seed, request, n) and not by arrival order, so that concurrent clients see the same faults
on every run. ``max_streak`` caps the consecutive faults of one request, so a client that
retries often enough always gets through; the first ``after`` requests never fail. Beside
the schedule the server behaves like a strict hosted API: a wrong key gets 401 (whose
message echoes the key it was sent, as some servers do), an unknown model 404, a prompt
longer than ``n_ctx`` tokens 400.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler
from typing import Any

from icm_client.testing.protocol import Shape, completion_body, token_ids, toy_tokenize
from icm_client.testing.protocol import hash_logprobs as model_logprobs
from icm_client.testing.server import ThreadedServer

TRANSIENT = (
    "429",
    "500",
    "502",
    "503",
    "529",
    "slow",
    "drop",
    "cut",
    "truncated",
    "malformed",
)
"""Faults a client should retry: rate limit, overload, timeout, broken connection or body."""

PERMANENT = ("400", "401", "404", "no_logprobs")
"""Faults retrying cannot fix: the run must stop and say why."""


class FaultServer(ThreadedServer):
    """``with FaultServer(rate=0.3) as server: OpenAICompletions(server.base_url)``."""

    def __init__(
        self,
        *,
        model: str = "stand-in-1",
        api_key: str | None = None,
        shape: Shape = "openai",
        n_ctx: int = 4096,
        rate: float = 0.0,
        kinds: Sequence[str] = TRANSIENT,
        seed: int = 0,
        max_streak: int | None = None,
        retry_after: str = "1",
        slow_s: float = 2.0,
        fault_paths: Sequence[str] = ("/v1/completions", "/v1/models"),
        after: int = 0,
        echo_auth: bool = False,
        tokenizer: bool = True,
        prompt_lists: bool = True,
        report_context: bool = False,
        latency_s: float = 0.0,
    ) -> None:
        unknown = set(kinds) - set(TRANSIENT) - set(PERMANENT)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}")
        if shape not in ("openai", "llamacpp"):
            raise ValueError(f"unknown shape {shape!r}")
        self.model, self.api_key, self.shape, self.n_ctx = model, api_key, shape, n_ctx
        self.rate, self.kinds, self.seed = rate, tuple(kinds), seed
        self.max_streak, self.retry_after, self.slow_s = max_streak, retry_after, slow_s
        self.fault_paths, self.after, self.tokenizer = tuple(fault_paths), after, tokenizer
        self.echo_auth = echo_auth  # faults quote the Authorization header back
        self.prompt_lists = prompt_lists  # False: a list of prompts is refused with 400

        self.report_context = report_context  # n_ctx as max_model_len under /v1/models
        self.latency_s = latency_s  # every completion takes this long (a run to interrupt)
        self.injected: Counter[str] = Counter()  # faults injected, by kind
        self.failed_prompts: Counter[str] = Counter()  # prompts in the requests that failed
        self.requests: Counter[str] = Counter()  # requests received, by path
        self.answered: Counter[str] = Counter()  # successful answers, by path
        self.prompts_received = 0  # completion prompts received (a list counts each)
        self.auth_headers: list[str] = []  # every Authorization header received
        # the Host header's name as sent: its case tells HTTP clients apart (aiohttp: "host")
        self.host_header_names: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()  # attempts so far, by request
        self._seen = 0  # requests on the fault paths so far
        self._lock = threading.Lock()
        super().__init__()

    # -- lifecycle ---------------------------------------------------------------------------

    def handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(_Handler):
            fault_server = server

        return Handler

    # -- the schedule ------------------------------------------------------------------------

    def fault_for(self, path: str, key: str) -> str | None:
        """The fault for this attempt at request ``key`` on ``path``, or None."""
        return self.fault_for_any(path, [key])

    def fault_for_any(self, path: str, keys: list[str]) -> str | None:
        """The fault of one request for several prompts (``prompt`` a list): each prompt has
        its own schedule, and the first fault drawn fails them all."""
        drawn = [self._draw(path, key) for key in keys]
        kind = next((k for k in drawn if k is not None), None)
        if kind is not None:
            with self._lock:
                self.injected[kind] += 1
                self.failed_prompts[kind] += len(keys)
        return kind

    def _draw(self, path: str, key: str) -> str | None:
        if path not in self.fault_paths or self.rate <= 0 or not self.kinds:
            return None
        with self._lock:
            self._seen += 1
            if self._seen <= self.after:
                return None
            attempt = self.attempts[f"{path}\x00{key}"]
            self.attempts[f"{path}\x00{key}"] += 1
        if self.max_streak is not None and attempt >= self.max_streak:
            return None
        rng = random.Random(f"{self.seed}\x00{path}\x00{key}\x00{attempt}")
        if rng.random() >= self.rate:
            return None
        return self.kinds[rng.randrange(len(self.kinds))]

    # -- the stand-in model ------------------------------------------------------------------

    def completion(self, prompt: str, k: int) -> dict[str, Any]:
        body = completion_body(self.model, prompt, model_logprobs(prompt), k, self.shape)
        body["id"] = "cmpl-fault"
        return body

    def completions(self, prompts: list[str], k: int) -> dict[str, Any]:
        """The answer to ``prompts`` in one request (``prompt`` a list): a choice per prompt,
        by ``index``, and the usage of them all."""
        bodies = [self.completion(p, k) for p in prompts]
        body = bodies[0]
        if len(bodies) > 1:
            body["choices"] = [b["choices"][0] | {"index": i} for i, b in enumerate(bodies)]
            n = sum(b["usage"]["prompt_tokens"] for b in bodies)
            body["usage"] = {
                "prompt_tokens": n,
                "completion_tokens": len(bodies),
                "total_tokens": n + len(bodies),
            }
        return body

    def token_ids(self, text: str) -> list[int]:
        return token_ids(text)


def _error(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": code}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: faults must not poison pooled connections
    fault_server: FaultServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # -- sending -----------------------------------------------------------------------------

    def _send(
        self,
        status: int,
        body: bytes,
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        declared_length: int | None = None,
        close: bool = False,
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(declared_length or len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:  # the client gave up (timeout) and closed its end
            self.close_connection = True

    def _json(self, status: int, data: object, **kw: Any) -> None:
        self._send(status, json.dumps(data).encode(), **kw)

    def _hang_up(self) -> None:
        self.close_connection = True
        with suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    # -- routing -----------------------------------------------------------------------------

    def _read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else None

    def _authorised(self) -> bool:
        fs = self.fault_server
        presented = self.headers.get("Authorization", "")
        host = next((k for k in self.headers if k.lower() == "host"), "")
        with fs._lock:
            fs.auth_headers.append(presented)
            fs.host_header_names[host] += 1
        if fs.api_key is None or presented == f"Bearer {fs.api_key}":
            return True
        shown = presented.removeprefix("Bearer ") or "(none)"
        self._json(
            401,
            _error(
                f"Incorrect API key provided: {shown}. You can find your API key at "
                "https://example.invalid/account/api-keys.",
                "invalid_request_error",
                "invalid_api_key",
            ),
        )
        return False

    def do_GET(self) -> None:
        fs = self.fault_server
        with fs._lock:
            fs.requests[self.path] += 1
        if not self._authorised():
            return
        if self.path != "/v1/models":
            self._json(404, _error(f"no route {self.path}", "not_found"))
            return
        fault = fs.fault_for(self.path, "")
        if fault is not None and self._inject(fault, {"data": [{"id": fs.model}]}):
            return
        with fs._lock:
            fs.answered[self.path] += 1
        model: dict[str, Any] = {"id": fs.model, "object": "model"}
        if fs.report_context:
            model["max_model_len"] = fs.n_ctx  # as vLLM does
        self._json(200, {"object": "list", "data": [model]})

    def do_POST(self) -> None:
        fs = self.fault_server
        with fs._lock:
            fs.requests[self.path] += 1
        try:
            payload = self._read_json()
        except ValueError:
            self._json(400, _error("request body is not JSON", "invalid_request_error"))
            return
        if not self._authorised():
            return
        if self.path == "/tokenize" and fs.tokenizer:
            text = payload.get("content") if isinstance(payload, dict) else None
            if not isinstance(text, str):
                self._json(400, _error("'content' is required", "invalid_request_error"))
                return
            self._json(200, {"tokens": fs.token_ids(text)})
            return
        if self.path != "/v1/completions":
            self._json(404, _error(f"no route {self.path}", "not_found"))
            return
        prompt = payload.get("prompt") if isinstance(payload, dict) else None
        with fs._lock:  # whatever their shape: a list of n prompts counts n
            many = isinstance(prompt, list) and prompt and not isinstance(prompt[0], int)
            fs.prompts_received += len(prompt) if many and isinstance(prompt, list) else 1
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if (
            not isinstance(prompts, list)
            or not prompts
            or not all(isinstance(p, str) for p in prompts)
            or (isinstance(prompt, list) and not fs.prompt_lists)
        ):
            self._json(400, _error("'prompt' must be a string", "invalid_request_error"))
            return
        k = int(payload.get("logprobs") or 0)
        if fs.latency_s:
            time.sleep(fs.latency_s)
        fault = fs.fault_for_any(self.path, [f"{k}\x00{p}" for p in prompts])
        body = fs.completions(prompts, k)
        if fault is not None and self._inject(fault, body):
            return
        if payload.get("model") != fs.model:
            self._json(
                404,
                _error(
                    f"The model `{payload.get('model')}` does not exist.",
                    "invalid_request_error",
                    "model_not_found",
                ),
            )
            return
        n_prompt = max(len(toy_tokenize(p)) for p in prompts)
        if n_prompt + 1 > fs.n_ctx:
            if fs.shape == "llamacpp":
                message = "the request exceeds the available context size, try increasing it"
            else:
                message = (
                    f"This model's maximum context length is {fs.n_ctx} tokens, however you "
                    f"requested {n_prompt + 1} tokens. Please reduce your prompt."
                )
            self._json(400, _error(message, "invalid_request_error", "context_length_exceeded"))
            return
        if not k:
            for choice in body["choices"]:
                choice["logprobs"] = None
        with fs._lock:
            fs.answered[self.path] += 1
        self._json(200, body)

    # -- faults ------------------------------------------------------------------------------

    def _inject(self, fault: str, good: dict[str, Any]) -> bool:
        """Answer with ``fault``; True when the request is finished (always, except 'slow')."""
        fs = self.fault_server
        full = json.dumps(good).encode()
        # a careless server or proxy that quotes the request's credentials back
        echo = f" [{self.headers.get('Authorization', '')}]" if fs.echo_auth else ""
        if fault == "429":
            self._json(
                429,
                _error("Rate limit reached" + echo, "requests", "rate_limit_exceeded"),
                headers={"Retry-After": fs.retry_after},
            )
        elif fault in ("500", "503"):
            self._json(int(fault), _error("The server had an error" + echo, "server_error"))
        elif fault == "502":
            page = f"<html><body>502 Bad Gateway{echo}</body></html>"
            self._send(502, page.encode(), content_type="text/html")
        elif fault == "529":
            self._json(
                529,
                {"type": "error", "error": {"type": "overloaded_error", "message": "Busy" + echo}},
            )
        elif fault == "slow":
            time.sleep(fs.slow_s)  # past the client's timeout: it has given up by now
            self._send(200, full, close=True)
        elif fault == "drop":
            self._hang_up()
        elif fault == "cut":
            self._send(200, full[: len(full) // 2], declared_length=len(full))
            self._hang_up()
        elif fault == "truncated":
            self._send(200, full[: len(full) // 2])
        elif fault == "malformed":
            self._send(200, echo.encode() + full.replace(b",", b",,", 1))
        elif fault == "400":
            self._json(400, _error("Invalid value for 'temperature'" + echo, "invalid_request"))
        elif fault == "401":
            self._json(401, _error("Invalid authentication" + echo, "invalid_request_error"))
        elif fault == "404":
            self._json(404, _error("Not Found" + echo, "invalid_request_error"))
        elif fault == "no_logprobs":
            good = json.loads(full)
            if good.get("choices"):
                good["choices"][0]["logprobs"] = None
            self._json(200, good)
        else:  # pragma: no cover
            raise AssertionError(fault)
        return True


@contextmanager
def fault_server(**kwargs: Any) -> Iterator[FaultServer]:
    with FaultServer(**kwargs) as server:
        yield server
