"""OpenAICompletions against scripted servers (httpx2.MockTransport): shapes, k escalation,
error classification, secrets, tokenize."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx2
import pytest

from icm_client.backends import OpenAICompletions, ScoreRequest, Usage
from icm_client.backends.http_errors import parse_retry_after
from icm_client.client import Retry, ScoringClient
from icm_client.errors import (
    CapabilityError,
    ConfigError,
    PermanentBackendError,
    TransientBackendError,
)

KEY = "sk-test-SECRET-0123456789"
URL = "http://llm.internal:8000"
REQ = ScoreRequest("Claim: the sky is blue. I think this Claim is", (" True", " False"))

Handler = Callable[[httpx2.Request], httpx2.Response]


def vllm_body(
    top: dict[str, float], prompt_tokens: int = 12, cached: int | None = None
) -> dict[str, object]:
    usage: dict[str, object] = {"prompt_tokens": prompt_tokens, "completion_tokens": 1}
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    first = next(iter(top))
    lp = {"text_offset": [0], "token_logprobs": [top[first]], "tokens": [first]}
    return {
        "object": "text_completion",
        "choices": [{"index": 0, "text": first, "logprobs": lp | {"top_logprobs": [top]}}],
        "usage": usage,
    }


def llamacpp_body(top: list[tuple[int, str, float]]) -> dict[str, object]:
    entries = [{"id": i, "token": t, "bytes": list(t.encode()), "logprob": lp} for i, t, lp in top]
    return {
        "choices": [
            {
                "text": top[0][1],
                "index": 0,
                "logprobs": {"content": [entries[0] | {"top_logprobs": entries}]},
                "finish_reason": "length",
            }
        ],
        "object": "text_completion",
        "model": "gemma-3-270m-q4_k_m.gguf",
        "usage": {
            "completion_tokens": 1,
            "prompt_tokens": 14,
            "total_tokens": 15,
            "prompt_tokens_details": {"cached_tokens": 9},
        },
        "timings": {"cache_n": 9, "prompt_n": 5},
    }


class Server:
    """Records requests; answers with ``handler``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        return self.handler(request)

    def bodies(self) -> list[dict[str, object]]:
        return [json.loads(r.content) for r in self.requests if r.content]

    def backend(self, **kwargs: Any) -> OpenAICompletions:
        kwargs.setdefault("model", "m")
        client = httpx2.AsyncClient(transport=httpx2.MockTransport(self))
        return OpenAICompletions(URL, client=client, **kwargs)


def ok(body: object) -> Handler:
    return lambda request: httpx2.Response(200, json=body)


@pytest.mark.anyio
async def test_vllm_shape_request_and_usage() -> None:
    server = Server(ok(vllm_body({" True": -0.2, " False": -1.9}, cached=4)))
    backend = server.backend(api_key=KEY)
    result = await backend.score(REQ)
    assert result.logprobs == (-0.2, -1.9) and result.bounded == (False, False)
    assert (result.prompt_tokens, result.cached_tokens) == (12, 4)
    [req] = server.requests
    assert str(req.url) == f"{URL}/v1/completions"
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(req.content) == {
        "model": "m",
        "prompt": REQ.prompt,
        "max_tokens": 1,
        "temperature": 0,
        "logprobs": 20,
    }
    counters = {"http_requests": 1, "prompts": 1}
    assert backend.usage.as_dict() == Usage(1, 12, 4, extra=counters).as_dict()


@pytest.mark.anyio
async def test_llamacpp_shape_and_cached_tokens() -> None:
    server = Server(ok(llamacpp_body([(6288, " True", -0.4), (7998, " False", -1.2)])))
    backend = server.backend()
    result = await backend.score(REQ)
    assert result.logprobs == (-0.4, -1.2)
    assert (backend.usage.prompt_tokens, backend.usage.cached_tokens) == (14, 9)
    assert "authorization" not in server.requests[0].headers


@pytest.mark.anyio
async def test_minus_9999_reads_as_minus_inf() -> None:
    server = Server(ok(vllm_body({" True": 0.0, " False": -9999.0})))
    result = await server.backend().score(REQ)
    assert result.logprobs == (0.0, float("-inf")) and result.bounded == (False, False)


@pytest.mark.anyio
async def test_missing_label_escalates_to_max_top_k() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        k = json.loads(request.content)["logprobs"]
        top = {" True": -0.1, " the": -3.0} | ({" False": -6.0} if k == 100 else {})
        return httpx2.Response(200, json=vllm_body(top))

    server = Server(handler)
    backend = server.backend()
    result = await backend.score(REQ)
    assert [b["logprobs"] for b in server.bodies()] == [20, 100]
    assert result.logprobs == (-0.1, -6.0) and result.bounded == (False, False)
    assert backend.usage.calls == 2 and backend.usage.bounded_labels == 0


@pytest.mark.anyio
async def test_server_refusing_larger_k_falls_back_to_bound_once() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        if json.loads(request.content)["logprobs"] > 20:
            msg = "Requested sample logprobs of 100, which is greater than max allowed: 20"
            return httpx2.Response(400, json={"object": "error", "message": msg})
        return httpx2.Response(200, json=vllm_body({" True": -0.5, " the": -3.0}))

    server = Server(handler)
    backend = server.backend()
    first = await backend.score(REQ)
    assert first.bounded == (False, True)
    assert first.logprobs[1] == pytest.approx(-3.0)  # min(p_min, leftover)
    await backend.score(REQ)
    assert [b["logprobs"] for b in server.bodies()] == [20, 100, 20]  # not asked again
    assert backend.usage.bounded_labels == 2


@pytest.mark.anyio
async def test_model_discovered_from_v1_models() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/v1/models":
            return httpx2.Response(200, json={"object": "list", "data": [{"id": "served"}]})
        return httpx2.Response(200, json=vllm_body({" True": -0.1, " False": -2.0}))

    server = Server(handler)
    backend = server.backend(model=None, top_k=5)
    assert backend.identity == "openai-completions:?:top5"
    await backend.score(REQ)
    await backend.score(REQ)
    assert [r.url.path for r in server.requests] == ["/v1/models"] + ["/v1/completions"] * 2
    assert server.bodies()[0]["model"] == "served"
    assert backend.identity == "openai-completions:served:top5"


@pytest.mark.parametrize("status", [408, 409, 425, 429, 500, 502, 503, 504, 529, 599])
@pytest.mark.anyio
async def test_transient_statuses(status: int) -> None:
    server = Server(lambda r: httpx2.Response(status, json={"error": {"message": "busy"}}))
    with pytest.raises(TransientBackendError, match="busy") as info:
        await server.backend().score(REQ)
    assert info.value.status == status and info.value.endpoint == f"{URL}/v1/completions"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, 10.0),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    now = 1445412480.0  # 2015-10-21 07:28:00 GMT
    assert parse_retry_after(httpx2.Headers(headers), now=now) == expected


@pytest.mark.anyio
async def test_429_retry_after_is_honoured_then_success() -> None:
    answers = iter(
        [
            httpx2.Response(429, headers={"Retry-After": "3"}, json={"error": "slow down"}),
            httpx2.Response(200, json=vllm_body({" True": -0.1, " False": -2.0})),
        ]
    )
    server = Server(lambda r: next(answers))
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    backend = ScoringClient(server.backend(), cache=False, retry=Retry(base_wait=0.01, sleep=sleep))
    result = await backend.score(REQ)
    assert result.logprobs == (-0.1, -2.0)
    assert waits == [3.0]
    assert backend.usage.retries == 1 and backend.usage.calls == 2  # the 429 reached it too


@pytest.mark.parametrize("status", [500, 502, 503, 529])
@pytest.mark.anyio
async def test_5xx_retried_then_success(status: int) -> None:
    answers = iter(
        [httpx2.Response(status, text="upstream")] * 2
        + [httpx2.Response(200, json=vllm_body({" True": -0.1, " False": -2.0}))]
    )
    server = Server(lambda r: next(answers))
    backend = ScoringClient(
        server.backend(), cache=False, retry=Retry(base_wait=0.001, max_wait=0.01)
    )
    assert (await backend.score(REQ)).logprobs == (-0.1, -2.0)
    assert len(server.requests) == 3 and backend.usage.retries == 2


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (400, "This model's maximum context length is 2048 tokens", "exceeds the model's context"),
        (400, "the request exceeds the available context size", "exceeds the model's context"),
        (400, "temperature must be a number", "request rejected: temperature must be"),
        (
            401,
            "Incorrect API key provided: " + KEY,
            r"check the API key \(from \$MY_KEY or api_key=\)",
        ),
        (403, "forbidden", "check the API key"),
        (404, "The model `m` does not exist.", "unknown model 'm' or wrong URL"),
        (413, "payload too big", "request too large"),
        (422, "field required", "request rejected"),
        (429, "You exceeded your current quota, check your plan", "quota exhausted"),
    ],
)
@pytest.mark.anyio
async def test_permanent_errors_not_retried_and_clear(
    status: int, message: str, expected: str
) -> None:
    body = {
        "error": {"message": message, "code": "insufficient_quota" if "quota" in message else None}
    }
    server = Server(lambda r: httpx2.Response(status, json=body))
    backend = ScoringClient(
        server.backend(api_key=KEY, api_key_env="MY_KEY"), cache=False, retry=Retry(base_wait=0.001)
    )
    with pytest.raises(PermanentBackendError, match=expected) as info:
        await backend.score(REQ)
    assert len(server.requests) == 1 and backend.usage.retries == 0
    text = str(info.value)
    assert f"{URL}/v1/completions" in text and f"HTTP {status}" in text
    assert KEY not in text


@pytest.mark.anyio
async def test_long_server_message_is_truncated() -> None:
    server = Server(lambda r: httpx2.Response(400, text="x" * 5000))
    with pytest.raises(PermanentBackendError) as info:
        await server.backend().score(REQ)
    assert 300 < len(str(info.value)) < 420


@pytest.mark.parametrize(
    "exc",
    [
        httpx2.ReadTimeout("read timed out"),
        httpx2.ConnectTimeout("connect timed out"),
        httpx2.RemoteProtocolError("peer closed connection without sending complete message"),
        httpx2.ReadError("connection reset by peer"),
    ],
)
@pytest.mark.anyio
async def test_transport_failures_are_transient(exc: Exception) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise exc

    with pytest.raises(TransientBackendError, match=type(exc).__name__):
        await Server(handler).backend().score(REQ)


@pytest.mark.anyio
async def test_connection_refused_says_cannot_connect() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("[Errno 111] Connection refused")

    with pytest.raises(TransientBackendError, match=f"cannot connect to {URL}"):
        await Server(handler).backend().score(REQ)


@pytest.mark.anyio
async def test_truncated_json_is_transient() -> None:
    text = json.dumps(vllm_body({" True": -0.1, " False": -2.0}))[:57]
    server = Server(lambda r: httpx2.Response(200, text=text))
    with pytest.raises(TransientBackendError, match="not valid JSON"):
        await server.backend().score(REQ)


@pytest.mark.anyio
async def test_body_without_logprobs_is_capability_error() -> None:
    body = {"choices": [{"text": "2", "index": 0, "logprobs": None, "finish_reason": "length"}]}
    with pytest.raises(CapabilityError, match="no logprobs"):
        await Server(ok(body)).backend().score(REQ)


@pytest.mark.anyio
async def test_prompt_ending_in_whitespace_is_a_programming_error() -> None:
    server = Server(ok({}))
    with pytest.raises(ValueError, match="whitespace"):
        await server.backend().score(ScoreRequest("I think this Claim is ", (" True",)))
    assert server.requests == []


def test_key_never_in_repr_or_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    backend = OpenAICompletions(URL + "/v1/", "m")
    assert KEY not in repr(backend) and KEY not in backend.identity
    assert "api_key=set" in repr(backend)
    assert backend.identity == "openai-completions:m:top20"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://host/v1",
        "localhost:8000",
        "http://",
        "http:///v1",
        "http://h:99999",
        "x",
        "http://h?a=1",
    ],
)
def test_bad_base_url_is_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="base URL") as info:
        OpenAICompletions(url, "m")
    shown = url.replace("?a=1", "?***")  # a query string may carry a token: masked
    assert repr(shown) in str(info.value)


def test_bad_base_url_hides_credentials() -> None:
    with pytest.raises(ConfigError) as info:
        OpenAICompletions("ftp://user:hunter2@host/v1", "m")
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("url", [URL, URL + "/", URL + "/v1", URL + "/v1/"])
@pytest.mark.anyio
async def test_base_url_with_or_without_v1(url: str) -> None:
    server = Server(ok(vllm_body({" True": -0.1, " False": -2.0})))
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(server))
    await OpenAICompletions(url, "m", client=client).score(REQ)
    assert str(server.requests[0].url) == f"{URL}/v1/completions"


@pytest.mark.anyio
async def test_tokenize_llamacpp() -> None:
    server = Server(ok({"tokens": [6288]}))
    assert await server.backend().tokenize(" True") == [6288]
    assert server.bodies() == [{"content": " True", "add_special": False}]


@pytest.mark.anyio
async def test_tokenize_vllm_after_llamacpp_shape_is_refused() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        if "content" in json.loads(request.content):
            return httpx2.Response(400, json={"object": "error", "message": "prompt missing"})
        return httpx2.Response(200, json={"count": 1, "max_model_len": 2048, "tokens": [5852]})

    server = Server(handler)
    assert await server.backend().tokenize(" True") == [5852]
    assert server.bodies()[1] == {"model": "m", "prompt": " True", "add_special_tokens": False}


@pytest.mark.anyio
async def test_tokenize_absent_is_none() -> None:
    server = Server(lambda r: httpx2.Response(404, json={"error": "not found"}))
    assert await server.backend().tokenize("x") is None


@pytest.mark.anyio
async def test_aclose_closes_only_own_client() -> None:
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(ok({})))
    await OpenAICompletions(URL, "m", client=client).aclose()
    assert not client.is_closed
    own = OpenAICompletions(URL, "m")
    await own.aclose()
    await own.aclose()  # idempotent: the CLI closes inner and the stack
