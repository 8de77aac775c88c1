"""The Anthropic paths through the real ``anthropic`` SDK on an httpx2 MockTransport: the
sampled (approximate) scorer, the zero-shot (chat) baseline, and error classification."""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest

from icm_client.backends import ScoreRequest
from icm_client.backends.anthropic import AnthropicChat, AnthropicSampler
from icm_client.backends.one_word import SampledScore, parse_answer, wilson
from icm_client.baselines import zero_shot_labels
from icm_client.client import Retry, ScoringClient
from icm_client.dataset import Example
from icm_client.errors import ConfigError, PermanentBackendError, TransientBackendError
from icm_client.tasks.base import TemplateTask

KEY = "sk-ant-test-SECRET-42"
BASE = "https://api.anthropic.test"
PROMPT = (
    "Claim: water is wet. I think this Claim is True\n\nClaim: fire is cold. I think this Claim is"
)
LABELS = (" True", " False")


def message(text: str, *, fresh: int = 20, read: int = 0, written: int = 0) -> dict[str, Any]:
    """A recorded-format Messages API answer."""
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": fresh,
            "output_tokens": 2,
            "cache_creation_input_tokens": written,
            "cache_read_input_tokens": read,
        },
    }


def error(status: int, kind: str, msg: str, code: str | None = None, **headers: str) -> Any:
    err: dict[str, Any] = {"type": kind, "message": msg}
    if code:
        err["details"] = {"error_code": code}
    body = {"type": "error", "error": err, "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}
    return httpx2.Response(status, json=body, headers=headers)


class API:
    """Answers requests from a script (responses, or texts turned into messages)."""

    def __init__(self, script: list[Any] | Callable[[int], Any]) -> None:
        self.script = script
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        n = len(self.requests) - 1
        item = self.script(n) if callable(self.script) else self.script[n]
        if isinstance(item, httpx2.Response):
            return item
        if isinstance(item, Exception):
            raise item
        first = n == 0
        return httpx2.Response(
            200, json=message(item, read=0 if first else 900, written=900 if first else 0)
        )

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]

    def chat(self, **kwargs: Any) -> AnthropicChat:
        client = httpx2.AsyncClient(transport=httpx2.MockTransport(self))
        kwargs.setdefault("api_key", KEY)
        return AnthropicChat("claude-test", base_url=BASE, http_client=client, **kwargs)


@pytest.fixture
def no_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    yield


@pytest.mark.anyio
async def test_sampler_estimates_with_laplace_and_wilson_and_counts_cost() -> None:
    api = API(["True", "True", " false.", "True", "Maybe"])
    sampler = AnthropicSampler(api.chat(), samples=5, concurrency=2)
    result = await sampler.score(ScoreRequest(PROMPT, LABELS))
    assert result.counts == (3, 1) and result.unparsed == 1 and result.samples == 5
    assert result.logprobs == pytest.approx((math.log(4 / 6), math.log(2 / 6)))
    assert result.bounded == (False, False)
    assert result.interval == (wilson(3, 4), wilson(1, 4))
    assert result.to_json()["approximate"] is True
    assert "approx" in sampler.identity and "n5" in sampler.identity

    first = api.bodies()[0]
    assert first["model"] == "claude-test" and first["max_tokens"] == 16
    assert "temperature" not in first  # the API default, 1.0: real samples
    [context, question] = first["messages"][0]["content"]
    assert context == {"type": "text", "text": PROMPT, "cache_control": {"type": "ephemeral"}}
    assert "True or False" in question["text"] and "one word" in question["text"]
    assert "exactly one word" in first["system"]
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in api.requests)
    assert str(api.requests[0].url) == f"{BASE}/v1/messages"

    u = sampler.usage
    assert u.calls == 5 and u.extra["unparsed_answers"] == 1
    assert u.extra["cache_creation_input_tokens"] == 900  # the first sample wrote the cache
    assert u.extra["cache_read_input_tokens"] == 4 * 900  # the other four read it
    assert u.prompt_tokens == 5 * 20 + 5 * 900 and u.cached_tokens == 4 * 900
    assert (result.prompt_tokens, result.cached_tokens) == (u.prompt_tokens, u.cached_tokens)


@pytest.mark.anyio
async def test_no_label_is_probability_zero() -> None:
    sampler = AnthropicSampler(API(["True"] * 3).chat(), samples=3)
    result = await sampler.score(ScoreRequest(PROMPT, LABELS))
    assert result.logprobs == pytest.approx((math.log(4 / 5), math.log(1 / 5)))
    assert result.interval[1][0] == pytest.approx(0.0, abs=1e-12)
    assert result.interval[0][1] == pytest.approx(1.0)


@pytest.mark.anyio
async def test_overloaded_529_is_retried_and_collected_answers_are_kept() -> None:
    overloaded = error(529, "overloaded_error", "Overloaded", **{"retry-after": "2"})
    api = API(["True", overloaded, "False", "True"])
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    sampler = AnthropicSampler(api.chat(), samples=3, concurrency=1)
    result = await ScoringClient(
        sampler, cache=False, retry=Retry(base_wait=0.01, sleep=sleep)
    ).score(ScoreRequest(PROMPT, LABELS))
    assert len(api.requests) == 4  # 3 answers + the one overloaded: nothing asked twice
    assert waits == [2.0] and sampler.usage.retries == 1
    assert isinstance(result, SampledScore) and result.counts == (2, 1)


@pytest.mark.parametrize(
    ("response", "transient", "message"),
    [
        (error(529, "overloaded_error", "Overloaded"), True, "overloaded_error"),
        (error(429, "rate_limit_error", "slow down", **{"retry-after": "7"}), True, "rate_limit"),
        (error(500, "api_error", "Internal server error"), True, "api_error"),
        (
            error(429, "rate_limit_error", "spend limit", code="enforced_spend_limit_reached"),
            False,
            "spend limit reached",
        ),
        (
            error(401, "authentication_error", f"invalid x-api-key {KEY}"),
            False,
            r"not authorised.*\$ANTHROPIC_API_KEY",
        ),
        (error(404, "not_found_error", "model: claude-nope"), False, "unknown model"),
        (
            error(
                400,
                "invalid_request_error",
                "This model does not support assistant message prefill.",
            ),
            False,
            "request rejected.*prefill",
        ),
    ],
)
@pytest.mark.anyio
async def test_error_classification(response: Any, transient: bool, message: str) -> None:
    api = API([response])
    chat = api.chat()
    with pytest.raises(TransientBackendError if transient else PermanentBackendError) as info:
        await chat.answer("Which word?")
    assert isinstance(info.value, TransientBackendError) == transient
    assert len(api.requests) == 1  # the SDK's own retries are off
    text = str(info.value)
    assert KEY not in text and f"{BASE}/v1/messages" in text
    assert info.value.status == response.status_code
    assert re.search(message, text)
    if response.headers.get("retry-after") == "7":
        assert isinstance(info.value, TransientBackendError) and info.value.retry_after == 7.0


@pytest.mark.anyio
async def test_connection_failure_is_transient() -> None:
    api = API([httpx2.ConnectError("[Errno 111] Connection refused")])
    with pytest.raises(TransientBackendError, match="connection failed"):
        await api.chat(timeout=1.0).answer("Which word?")


def test_key_from_env_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_ANTHROPIC", KEY)
    chat = AnthropicChat("claude-test", api_key_env="MY_ANTHROPIC")
    assert KEY not in repr(chat) and KEY not in repr(AnthropicSampler(chat))
    assert KEY not in AnthropicSampler(chat).identity


def test_missing_key_is_config_error(no_key: None) -> None:
    with pytest.raises(ConfigError, match=r"\$ANTHROPIC_API_KEY"):
        AnthropicChat("claude-test")


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "anthropic", None)  # what a missing package looks like
    with pytest.raises(ConfigError, match=r"icm-client\[anthropic\]"):
        AnthropicChat("claude-test", api_key=KEY)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("True", 0),
        (" false.\n", 1),
        ("**True**", 0),
        ('"False"', 1),
        ("True, because fire is hot", None),
        ("Maybe", None),
        ("", None),
        ("True False", None),
    ],
)
def test_parse_answer_is_strict(text: str, expected: int | None) -> None:
    assert parse_answer(text, ("True", "False")) == expected


def test_parse_answer_case_matters_when_labels_differ_only_by_case() -> None:
    assert parse_answer("true", ("True", "true")) == 1
    assert parse_answer("TRUE", ("True", "true")) is None


@pytest.mark.anyio
async def test_zero_shot_chat_baseline() -> None:
    task = TemplateTask("claims", "Claim: {claim} I think this Claim is")
    examples = [Example(f"e{i}", {"claim": c}) for i, c in enumerate(["A.", "B.", "C."])]
    overloaded = error(529, "overloaded_error", "Overloaded")
    answers = {"A.": ["True"], "B.": [overloaded, "False"], "C.": ["I cannot say"]}

    def reply(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        text = body["messages"][0]["content"][0]["text"]
        claim = text.split("Claim: ")[1].split(" ")[0]
        item = answers[claim].pop(0)
        return (
            item if isinstance(item, httpx2.Response) else httpx2.Response(200, json=message(item))
        )

    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    client = httpx2.AsyncClient(transport=httpx2.MockTransport(reply))
    chat = AnthropicChat("claude-test", api_key=KEY, base_url=BASE, http_client=client)
    result = await zero_shot_labels(examples, task, chat, concurrency=2, sleep=sleep)
    assert result.labels == (0, 1, None) and result.unparsed == 1
    assert result.answers[2] == "I cannot say"
    assert len(waits) == 1 and chat.usage.calls == 4  # 3 answers and the attempt that failed
