"""``connect(client=AsyncOpenAI(...))``: the SDK client's settings, our transport and retries."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any

import anyio
import pytest

import icm_client as icm
from icm_client.backends.base import ScoreRequest
from icm_client.backends.openai.sdk import sdk_settings
from icm_client.errors import ConfigError
from icm_client.testing import CompletionsApp
from icm_client.testing.server import ThreadedServer

openai = pytest.importorskip("openai")


class HeaderRecorder(ThreadedServer):
    """A loopback stand-in server that keeps the headers of every request it answers."""

    def __init__(self, app: CompletionsApp) -> None:
        super().__init__()
        self.app = app
        self.seen: list[dict[str, str]] = []

    def handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                outer.seen.append(dict(self.headers.items()))
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, data = outer.app.handle(self.command, self.path, body)
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        return Handler


def test_settings_of_an_sdk_client() -> None:
    client = openai.AsyncOpenAI(
        api_key="sk-test-123",
        base_url="http://127.0.0.1:9/v1",
        organization="org-1",
        project="proj-1",
        default_headers={"X-Team": "labels"},
        timeout=12.5,
        max_retries=5,
    )
    s = sdk_settings(client)
    assert s.base_url == "http://127.0.0.1:9/v1" and s.api_key == "sk-test-123"
    assert s.headers == {
        "X-Team": "labels",
        "OpenAI-Organization": "org-1",
        "OpenAI-Project": "proj-1",
    }
    assert s.timeout == 12.5
    with pytest.raises(ConfigError, match="AsyncOpenAI"):
        sdk_settings(object())


def test_connect_sends_with_the_sdk_clients_key_and_headers() -> None:
    app = CompletionsApp()

    async def go(url: str) -> None:
        client = openai.AsyncOpenAI(
            api_key="sk-test-123",
            base_url=url,
            organization="org-1",
            project="proj-1",
            default_headers={"X-Team": "labels"},
        )
        async with icm.connect(
            client=client, model=app.name, provider="generic", api="completions", cache=False
        ) as scoring:
            await scoring.score(ScoreRequest("The sky is", (" True", " False")))

    with HeaderRecorder(app) as server:
        anyio.run(go, server.base_url)
    assert server.seen  # the preflight and the score
    for headers in server.seen:
        assert headers["Authorization"] == "Bearer sk-test-123"
        assert headers["OpenAI-Organization"] == "org-1" and headers["OpenAI-Project"] == "proj-1"
        assert headers["X-Team"] == "labels"
        assert not any(name.lower().startswith("x-stainless") for name in headers)


def test_client_and_base_url_are_exclusive() -> None:
    async def go() -> None:
        client = openai.AsyncOpenAI(api_key="k", base_url="http://127.0.0.1:9/v1")
        async with icm.connect("http://127.0.0.1:9/v1", client=client, check=False):
            pass

    with pytest.raises(ConfigError, match="not both"):
        anyio.run(go)
