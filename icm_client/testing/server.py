"""Stand-in servers: a loopback HTTP server and an ``httpx2.MockTransport`` client, both
serving one ``CompletionsApp``.

The loopback server is a real HTTP/1.1 keep-alive server (stdlib, in a daemon thread), so a
test goes through the client's whole stack: connection pool, timeouts, parsing. The mock
client skips the sockets and is the faster seam for many runs.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import httpx2

from .protocol import CompletionsApp, NextToken
from .ratelimit import RateLimitedApp


class _HTTPServer(ThreadingHTTPServer):
    # The stdlib listens with a backlog of 5; a burst of new connections past it is reset by
    # the kernel. Real servers queue far more (uvicorn 2048), and the client opens one
    # connection per request in flight, hundreds at once.
    request_queue_size = 1024


class ThreadedServer:
    """A stdlib HTTP/1.1 server on 127.0.0.1 (a free port) in a daemon thread, as a context
    manager; subclasses give the request handler class."""

    def __init__(self) -> None:
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None  # kept after stop: messages name the address

    def handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the server was never started")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> Self:
        self._httpd = _HTTPServer(("127.0.0.1", 0), self.handler())
        self._httpd.daemon_threads = True
        self._port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LoopbackServer(ThreadedServer):
    """``with LoopbackServer(model) as server: OpenAICompletions(server.base_url)``."""

    def __init__(self, model: NextToken | CompletionsApp | RateLimitedApp) -> None:
        super().__init__()
        self.app = (
            model if isinstance(model, CompletionsApp | RateLimitedApp) else CompletionsApp(model)
        )

    def handler(self) -> type[BaseHTTPRequestHandler]:
        app = self.app

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers: dict[str, str] = {}
                if isinstance(app, RateLimitedApp):
                    status, data, headers = app.respond(self.command, self.path, body)
                else:
                    status, data = app.handle(self.command, self.path, body)
                raw = httpx2.Response(status, json=data).content
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = _serve

        return Handler


def mock_client(model: NextToken | CompletionsApp) -> httpx2.AsyncClient:
    """An ``httpx2.AsyncClient`` whose requests ``model`` answers in memory; pass it as
    ``OpenAICompletions(MOCK_URL, client=...)``."""
    app = model if isinstance(model, CompletionsApp) else CompletionsApp(model)
    return httpx2.AsyncClient(transport=httpx2.MockTransport(app))


MOCK_URL = "http://stand-in.invalid/v1"
"""The base URL to pair with ``mock_client`` (never resolved: the transport answers)."""
