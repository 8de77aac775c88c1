"""The context window a server reports: vLLM's ``max_model_len``, llama.cpp's per-slot
``n_ctx``, or nothing (then ``icm scale`` says it assumes a default)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest

from icm_client.backends import OpenAICompletions
from icm_client.backends.openai.context_window import context_window
from icm_client.local import EmbeddedServer

pytestmark = pytest.mark.anyio

Handler = Callable[[httpx2.Request], httpx2.Response]


def backend(handler: Handler, model: str | None = None) -> OpenAICompletions:
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    return OpenAICompletions("http://gpu:8000/v1", model, client=client)


def vllm(request: httpx2.Request) -> httpx2.Response:
    if request.url.path == "/v1/models":
        models = [
            {"id": "small", "object": "model", "max_model_len": 2048},
            {"id": "big", "object": "model", "max_model_len": 32768},
        ]
        return httpx2.Response(200, json={"object": "list", "data": models})
    return httpx2.Response(404, json={"error": "not found"})


def llamacpp(request: httpx2.Request) -> httpx2.Response:
    if request.url.path == "/v1/models":
        return httpx2.Response(200, json={"data": [{"id": "gemma", "meta": {"n_ctx_train": 1}}]})
    if request.url.path == "/props":
        return httpx2.Response(200, json={"default_generation_settings": {"n_ctx": 8192}})
    return httpx2.Response(404)


async def test_vllm_reports_the_served_models_max_model_len() -> None:
    assert await context_window(backend(vllm, "big")) == 32768
    assert await context_window(backend(vllm, "small")) == 2048
    assert await context_window(backend(vllm)) == 2048  # no name yet: the first listed


async def test_llama_cpp_reports_its_context_per_slot() -> None:
    assert await context_window(backend(llamacpp)) == 8192


@pytest.mark.parametrize(
    "answer",
    [
        httpx2.Response(404, json={"error": "no route"}),
        httpx2.Response(200, json={"data": [{"id": "m"}]}),
        httpx2.Response(200, json={"default_generation_settings": {"n_ctx": "lots"}}),
        httpx2.Response(200, json={"data": [{"id": "m", "max_model_len": True}]}),
        httpx2.Response(200, text="<html>a proxy page</html>"),
    ],
    ids=["404", "no-number", "not-an-int", "bool", "not-json"],
)
async def test_a_server_that_does_not_say_is_unknown_not_an_error(answer: httpx2.Response) -> None:
    assert await context_window(backend(lambda request: answer)) is None


def test_icm_scale_falls_back_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fault_server import fault_server

    from icm_client.cli import main

    data = tmp_path / "claims.jsonl"
    rows = [
        {
            "id": f"q{i // 2}-{i % 2}",
            "question": f"Q{i // 2}?",
            "choice": f"A{i}.",
            "label": i % 2 == 0,
        }
        for i in range(8)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with fault_server() as server:  # reports no context window
        argv = ["scale", str(data), "--task", "truthfulqa", "--out", str(tmp_path / "out.jsonl")]
        argv += ["--base-url", server.base_url, "--no-cache", "--quiet", "--steps", "2"]
        assert main(argv) == 0
    assert "assuming 4096 tokens (set --context-window)" in capsys.readouterr().err


@pytest.mark.integration
async def test_the_embedded_server_reports_its_context_per_slot(
    embedded_server: EmbeddedServer,
) -> None:
    probe = OpenAICompletions(embedded_server.base_url)
    try:
        assert await context_window(probe) == embedded_server.ctx_per_slot
    finally:
        await probe.aclose()
