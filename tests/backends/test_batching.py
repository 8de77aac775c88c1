"""Batched prompts: concurrent scores share one ``/v1/completions`` request (``prompt`` a
list), answers matched by ``index``, with a fallback to one prompt per request."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio
import httpx2
import pytest
from fault_server import FaultServer

from icm_client.backends import (
    OpenAICompletions,
    Routing,
    ScoreRequest,
    ScoreResult,
    Usage,
)
from icm_client.backends.openai.batching import MicroBatcher, split_batch
from icm_client.backends.openai.profiles import Profile, get_profile
from icm_client.client import ScoringClient
from icm_client.errors import ContextLengthError, PermanentBackendError, TransientBackendError
from icm_client.testing.token_server import TokenServer

pytestmark = pytest.mark.anyio
LABELS = (" True", " False")
TEXT_LISTS = Profile(name="lists", prompt_lists=True)  # text prompts, lists accepted


def prompts(n: int) -> list[str]:
    return [f"Claim: fact number {i} holds. I think this Claim is" for i in range(n)]


async def score_all(backend: Any, texts: list[str]) -> list[ScoreResult]:
    out: list[ScoreResult | None] = [None] * len(texts)

    async def one(i: int) -> None:
        out[i] = await backend.score(ScoreRequest(texts[i], LABELS))

    async with anyio.create_task_group() as tg:
        for i in range(len(texts)):
            tg.start_soon(one, i)
    return [r for r in out if r is not None]


def mock(handler: Callable[[httpx2.Request], httpx2.Response], **kw: Any) -> OpenAICompletions:
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    kw.setdefault("provider", TEXT_LISTS)
    return OpenAICompletions("http://server.test/v1", "toy", client=client, **kw)


@pytest.mark.parametrize("shape", ["vllm", "llamacpp"])
async def test_concurrent_scores_share_requests_and_score_as_alone(shape: str) -> None:
    server = TokenServer(shape, max_k=100)  # a larger k for labels outside the top 20
    texts = prompts(40)
    alone = mock(server, provider=shape, batch_size=1)
    expected = [await alone.score(ScoreRequest(t, LABELS)) for t in texts]
    server.requests.clear()
    # llama.cpp takes lists (its usage aside: see the next test); a profile that sends them
    profile = (
        shape
        if shape == "vllm"
        else get_profile("llamacpp").model_copy(update={"prompt_lists": True})
    )
    batched = mock(server, provider=profile, batch_size=16)
    got = await score_all(batched, texts)
    assert [r.logprobs for r in got] == [r.logprobs for r in expected]
    assert [r.bounded for r in got] == [r.bounded for r in expected]
    lists = [b["prompt"] for b in server.completions() if isinstance(b["prompt"], list)]
    sizes = [len(p) for p in lists if p and isinstance(p[0], str)]
    assert sizes and max(sizes) <= 16 and len(server.completions()) < len(texts) / 2
    usage = batched.usage
    assert usage.calls == usage.extra["prompts"] == alone.usage.calls  # escalations included
    assert usage.extra["http_requests"] == len(server.completions())
    if shape == "llamacpp":  # the undercount that keeps lists off in its profile
        assert batched.usage.prompt_tokens < alone.usage.prompt_tokens
    else:
        assert batched.usage.prompt_tokens == alone.usage.prompt_tokens  # shares sum exactly


async def test_llamacpp_gets_one_prompt_a_request_and_exact_token_counts() -> None:
    """llama.cpp's server counts the first prompt of a list only: its profile and the probe
    keep one prompt a request there, so usage (and --max-tokens budgets) stay exact."""
    texts = prompts(24)
    for provider in ("llamacpp", "auto"):
        server = TokenServer("llamacpp", max_k=100)
        backend = mock(server, provider=provider, batch_size=16)
        await backend.prepare()  # "auto": the probe, whose own requests hold lists
        server.requests.clear()
        await score_all(backend, texts)
        sent = [b["prompt"] for b in server.completions()]
        assert sent and not any(isinstance(p, list) and isinstance(p[0], list | str) for p in sent)
        assert backend.profile is not None and not backend.profile.prompt_lists
        single = [len(server.tokenize(t)) for t in texts]
        assert backend.usage.prompt_tokens >= sum(single)  # every prompt counted


async def test_answers_are_matched_to_prompts_by_index() -> None:
    seen: list[list[str]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        texts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        seen.append(texts)
        choices = [  # each prompt's own answer: its number, as a logprob
            {"index": i, "text": " True", "logprobs": {"top_logprobs": [{" True": -_n(t)}]}}
            for i, t in enumerate(texts)
        ]
        return httpx2.Response(200, json={"choices": choices[::-1]})  # in reverse order

    texts = prompts(8)
    got = await score_all(mock(handler, batch_size=8, top_k=1), texts)
    assert [r.logprobs[0] for r in got] == [-_n(t) for t in texts]
    assert max(len(s) for s in seen) > 1  # batched


def _n(text: str) -> float:
    return float(text.split()[3]) + 1.0


@pytest.mark.parametrize(
    "choices",
    [
        [{"text": "a"}, {"index": 1}],  # missing
        [{"index": 0}, {"index": 0}],  # repeated
        [{"index": 0}, {"index": 2}],  # out of range
        [{"index": "0"}, {"index": 1}],  # not an integer
        [{"index": 0}],  # too few
    ],
)
def test_malformed_indices_are_a_clear_error(choices: list[dict[str, Any]]) -> None:
    with pytest.raises(PermanentBackendError, match=r"index|choices") as info:
        split_batch({"choices": choices}, ["p0", "p1"], endpoint="http://s/v1/completions")
    assert "http://s/v1/completions" in str(info.value)


def test_usage_is_shared_out_exactly() -> None:
    body = {
        "choices": [{"index": 1}, {"index": 0}],
        "usage": {"prompt_tokens": 101, "prompt_tokens_details": {"cached_tokens": 33}},
    }
    parts = split_batch(body, ["a" * 10, "b" * 30])
    assert [p["choices"][0]["index"] for p in parts] == [0, 0]  # type: ignore[index]
    assert sum(p["usage"]["prompt_tokens"] for p in parts) == 101  # type: ignore[index]
    details = [p["usage"]["prompt_tokens_details"]["cached_tokens"] for p in parts]  # type: ignore[index]
    assert sum(details) == 33


async def test_a_host_refusing_lists_gets_one_prompt_per_request() -> None:
    with FaultServer(prompt_lists=False) as server:
        backend = ScoringClient(
            OpenAICompletions(server.base_url, provider=TEXT_LISTS), cache=False, max_concurrency=16
        )
        async with backend:
            first = await score_all(backend, prompts(16))
            again = await score_all(backend, prompts(16))
        assert first == again
        usage = backend.usage
        assert usage.extra["batching_refused"] == 1
        assert usage.extra["prompts"] == usage.extra["http_requests"] >= 32
    # refused lists are not answered; every prompt is, alone
    assert server.answered["/v1/completions"] == usage.extra["prompts"]
    # but the refused list reached the server too: its prompts are calls (a host bills them)
    assert usage.calls == server.prompts_received > usage.extra["prompts"]


async def test_a_prompt_too_long_fails_alone_and_batching_stays_on() -> None:
    with FaultServer(n_ctx=40) as server:
        backend = OpenAICompletions(server.base_url, provider=TEXT_LISTS)
        texts = [*prompts(7), "word " * 60 + "I think this Claim is"]
        results: list[object] = []

        async def one(text: str) -> None:
            try:
                results.append(await backend.score(ScoreRequest(text, LABELS)))
            except ContextLengthError as exc:
                results.append(exc)

        async with backend, anyio.create_task_group() as tg:
            for text in texts:
                tg.start_soon(one, text)
        assert sum(isinstance(r, ContextLengthError) for r in results) == 1
        assert "batching_refused" not in backend.usage.extra
        assert backend._requests.batcher is not None


async def test_the_batcher_bounds_size_and_sends_in_order() -> None:
    sent: list[list[object]] = []

    async def send(batch: list[object], payload: dict[str, object]) -> list[object]:
        sent.append(batch)
        await anyio.sleep(0.01)
        return [f"answer {p}" for p in batch]

    batcher = MicroBatcher(send, max_batch=4, max_wait=0.05)
    answers: dict[int, object] = {}

    async def one(i: int) -> None:
        answers[i] = await batcher.submit("k", i, {})

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(one, i)
    assert answers == {i: f"answer {i}" for i in range(10)}
    assert all(len(b) <= 4 for b in sent)
    assert sorted(p for b in sent for p in b if isinstance(p, int)) == list(range(10))


async def test_a_cancelled_leader_fails_its_batch_transiently_for_the_others() -> None:
    started = anyio.Event()

    async def send(batch: list[object], payload: dict[str, object]) -> list[object]:
        started.set()
        await anyio.sleep(60)
        return batch

    batcher = MicroBatcher(send, max_batch=8, max_wait=0.05)
    errors: list[BaseException] = []

    async def follower() -> None:
        try:
            await batcher.submit("k", "b", {})
        except TransientBackendError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        leader = anyio.CancelScope()

        async def lead() -> None:
            with leader:
                await batcher.submit("k", "a", {})

        tg.start_soon(lead)
        await anyio.sleep(0)
        tg.start_soon(follower)
        await started.wait()
        leader.cancel()
    assert len(errors) == 1 and "cancelled" in str(errors[0])


async def test_over_replicas_each_batch_holds_prompts_routed_to_its_replica() -> None:
    """Each replica batches its own prompts: routing's prefix affinity is kept."""
    servers = {"http://gpu-0:8000": TokenServer("vllm"), "http://gpu-1:8000": TokenServer("vllm")}
    usage = Usage()
    replicas = [
        OpenAICompletions(
            url,
            "toy",
            provider="vllm",
            usage=usage,
            client=httpx2.AsyncClient(transport=httpx2.MockTransport(server)),
        )
        for url, server in servers.items()
    ]
    routing = Routing(replicas, max_concurrency=64, affinity=lambda r: r.prompt)
    texts = prompts(48)
    await score_all(routing, texts)
    assert "routing_spills" not in usage.extra
    for url, server in servers.items():
        name = f"{url}/v1/completions"
        mine = {t for t in texts if routing.ranking(ScoreRequest(t, LABELS))[0] == name}
        sent = [b["prompt"] for b in server.completions()]
        lists = [s for s in sent if isinstance(s, list) and s and isinstance(s[0], str)]
        got = {s for s in sent if isinstance(s, str)} | {p for s in lists for p in s}
        assert got and got <= mine  # text prompts (ids: the first of an ending) by affinity
        assert any(len(s) > 1 for s in lists)
