"""The embedded llama.cpp server: what the scoring backend relies on, checked on the real model.

These pin the facts the OpenAI-compatible backend is built on (response shape, single-token
label words, prefix caching) and the lifecycle guarantees (no server outlives its block).
Prompts are short: the whole module runs in well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import socket
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx2
import pytest
from processes import HANG_S, alive

from icm_client.errors import ConfigError, PermanentBackendError
from icm_client.local import DEFAULT_MODEL_NAME, EmbeddedServer
from icm_client.local.server import child_env

FEW_SHOT = (
    "Question: What is 2+2?\nClaim: The answer is 4.\nI think this Claim is True\n\n"
    "Question: What is 3+3?\nClaim: The answer is 9.\nI think this Claim is False\n\n"
    "Question: What is 5+1?\nClaim: The answer is 6.\nI think this Claim is"
)


def _root(base_url: str) -> str:
    assert base_url.endswith("/v1"), base_url
    return base_url.removesuffix("/v1")


def _complete(base_url: str, prompt: str, **extra: Any) -> dict[str, Any]:
    body = {"prompt": prompt, "max_tokens": 1, "temperature": 0, "logprobs": 20, **extra}
    response = httpx2.post(base_url + "/completions", json=body, timeout=HANG_S)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def _port_open(url: str) -> bool:
    parts = urlsplit(url)
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((parts.hostname or "127.0.0.1", parts.port or 80)) == 0


@pytest.mark.integration
def test_health_and_models(embedded_server: EmbeddedServer) -> None:
    local_server = embedded_server.base_url
    health = httpx2.get(_root(local_server) + "/health", timeout=HANG_S)
    assert health.status_code == 200
    models = httpx2.get(local_server + "/models", timeout=HANG_S).json()
    assert embedded_server.model_name in [m["id"] for m in models["data"]]


@pytest.mark.integration
def test_top_logprobs_in_llama_cpp_shape(embedded_server: EmbeddedServer) -> None:
    result = _complete(embedded_server.base_url, FEW_SHOT, model=embedded_server.model_name)
    choice = result["choices"][0]
    # llama.cpp answers in the chat-style shape, not the legacy completions one (vLLM).
    top = choice["logprobs"]["content"][0]["top_logprobs"]
    assert len(top) == 20
    assert all(isinstance(t["logprob"], float) and t["logprob"] <= 0 for t in top)
    tokens = {t["token"] for t in top}
    assert tokens & {" True", " False"}, tokens


@pytest.mark.integration
def test_label_words_are_single_tokens(local_server: str) -> None:
    for word in (" True", " False"):
        response = httpx2.post(
            _root(local_server) + "/tokenize", json={"content": word}, timeout=HANG_S
        )
        assert response.status_code == 200
        assert len(response.json()["tokens"]) == 1, (word, response.json())


@pytest.mark.integration
def test_shared_prefix_is_served_from_cache(local_server: str) -> None:
    # A header unique to this run, so no earlier request can have warmed the cache.
    prefix = f"Run {uuid.uuid4().hex}.\n\n" + FEW_SHOT.rsplit("Question:", 1)[0] * 8
    _complete(local_server, prefix + "Question: What is 1+1?\nClaim: The answer is 2.")
    second = _complete(local_server, prefix + "Question: What is 7+1?\nClaim: The answer is 3.")
    cached = second["usage"].get("prompt_tokens_details", {}).get("cached_tokens", 0)
    assert max(cached, second.get("timings", {}).get("cache_n", 0)) > 100, second["usage"]


# -- lifecycle: each test starts a small server of its own ----------------------------


def _small_server() -> EmbeddedServer:
    return EmbeddedServer(n_parallel=1, ctx_per_slot=512, threads=1, cache_ram_mib=0)


@pytest.mark.integration
@pytest.mark.anyio
async def test_context_manager_starts_and_stops(require_local_model: None) -> None:
    async with _small_server() as server:
        pid, url = server.pid, server.base_url
        assert pid is not None and alive(pid)
        weights = "bf16-native" if server.engine == "native" else "q8_0"
        assert server.identity_hint == f"gemma-3-270m-q4_k_m-{weights}"
        async with httpx2.AsyncClient() as client:
            assert (await client.get(server.root_url + "/health")).status_code == 200
    assert not alive(pid)
    assert not _port_open(url)
    assert server.pid is None


@pytest.mark.integration
@pytest.mark.anyio
async def test_server_stops_when_the_body_raises(require_local_model: None) -> None:
    server = _small_server()
    with pytest.raises(RuntimeError, match="boom"):
        async with server:
            pid, url = server.pid, server.base_url
            raise RuntimeError("boom")
    assert pid is not None and not alive(pid)
    assert not _port_open(url)


@pytest.mark.integration
@pytest.mark.anyio
async def test_server_stops_when_cancelled(require_local_model: None) -> None:
    server = _small_server()
    pid: int | None = None
    with anyio.move_on_after(60) as scope:
        async with server:
            pid = server.pid
            scope.cancel()
            await anyio.sleep(60)
    assert scope.cancelled_caught
    assert pid is not None and not alive(pid)


@pytest.mark.integration
@pytest.mark.anyio
async def test_unloadable_model_fails_with_the_log(
    require_local_model: None, tmp_path: Path
) -> None:
    bogus = tmp_path / "not-a-model.gguf"
    bogus.write_bytes(b"this is not a GGUF file")
    with pytest.raises(PermanentBackendError, match="exited with code") as info:
        async with EmbeddedServer(bogus, threads=1):
            pass
    assert "log ends with" in str(info.value)


@pytest.mark.anyio
async def test_missing_model_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no such model file|not installed"):
        async with EmbeddedServer(tmp_path / "missing.gguf"):
            pass


# -- settings: no server needed ------------------------------------------------------------


def test_weights_format_names_the_model_and_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICM_LOCAL_ENGINE", "prebuilt")
    monkeypatch.delenv("ICM_LOCAL_WEIGHTS", raising=False)
    monkeypatch.delenv("ICM_LOCAL_MODEL", raising=False)
    assert EmbeddedServer().model_name == DEFAULT_MODEL_NAME == "gemma-3-270m-q8_0"
    assert EmbeddedServer(weights="shipped").model_name == "gemma-3-270m"
    monkeypatch.setenv("ICM_LOCAL_WEIGHTS", "shipped")
    assert EmbeddedServer().weights == "shipped"
    monkeypatch.setenv("ICM_LOCAL_WEIGHTS", "q3_k")
    with pytest.raises(ConfigError, match="ICM_LOCAL_WEIGHTS"):
        EmbeddedServer()
    with pytest.raises(ConfigError, match="weights must be one of"):
        EmbeddedServer(weights="int2")
    with pytest.raises(ConfigError, match="flash_attn"):
        EmbeddedServer(flash_attn="yes")


def test_server_threads_sleep_at_barriers_unless_the_user_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert child_env()["OMP_WAIT_POLICY"] == "PASSIVE"
    assert "OMP_WAIT_POLICY" not in child_env(None)
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert child_env()["OMP_WAIT_POLICY"] == "ACTIVE"


def test_a_users_model_file_is_served_as_given_by_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ICM_LOCAL_ENGINE", "prebuilt")
    monkeypatch.delenv("ICM_LOCAL_WEIGHTS", raising=False)
    monkeypatch.delenv("ICM_LOCAL_MODEL", raising=False)
    own = tmp_path / "mine.gguf"
    assert EmbeddedServer(own).weights == "shipped"
    assert EmbeddedServer(own).model_name == "mine"
    assert EmbeddedServer(own, weights="q8_0").model_name == "mine-q8_0"
    monkeypatch.setenv("ICM_LOCAL_MODEL", str(own))
    assert EmbeddedServer().weights == "shipped"
