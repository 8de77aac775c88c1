#!/usr/bin/env python3
"""A stand-in for a native ``llama-server`` binary: the command line, ``/health``, signals.

``EmbeddedServer(engine="native")`` runs whatever ``$ICM_LLAMA_SERVER`` names; this script
lets the tests check that wrapper (ready file, stop, no leftover process, the log on a
failure) without compiling llama.cpp. It writes its argv as JSON to ``$FAKE_LLAMA_ARGV``,
serves ``GET /health`` on ``--host``/``--port``, and exits with code 3 at once if
``$FAKE_LLAMA_FAIL`` is set, as a server that cannot load its model does.
"""

from __future__ import annotations

import http.server
import json
import os
import sys


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"status":"ok"}'
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def main() -> int:
    argv = sys.argv[1:]
    if os.environ.get("FAKE_LLAMA_ARGV"):
        with open(os.environ["FAKE_LLAMA_ARGV"], "w", encoding="utf-8") as fh:
            json.dump({"argv": argv, "pid": os.getpid()}, fh)
    if os.environ.get("FAKE_LLAMA_FAIL"):
        print("error: failed to load model", flush=True)
        return 3
    host = argv[argv.index("--host") + 1]
    port = int(argv[argv.index("--port") + 1])
    print(f"main: server is listening on http://{host}:{port}", flush=True)
    http.server.HTTPServer((host, port), Health).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
