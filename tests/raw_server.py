"""A loopback TCP server that answers each connection with raw bytes from a script, for the
HTTP answers a well-behaved server never sends (endless bodies, drips, silence, bombs).

``with RawServer(script) as server: server.base_url``; ``script(sock)`` is called once per
connection after the request head has been read; ``server.connections`` counts them.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Callable
from typing import Any

Script = Callable[[socket.socket], None]


class _Server(socketserver.ThreadingTCPServer):
    request_queue_size = 256  # connections opened at once wait in the backlog, not refused


class RawServer:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.stopping = threading.Event()
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sock: socket.socket = self.request
                outer.connections += 1
                sock.settimeout(5)
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        chunk = sock.recv(65536)
                        if not chunk:
                            return
                        data += chunk
                    outer.script(sock)
                except OSError:  # the client gave up: what these tests want
                    pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def head(status: str = "200 OK", **headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", "Content-Type: application/json"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()
