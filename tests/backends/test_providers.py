"""OpenAICompletions with host profiles: vLLM's explicit label tokens (honoured or silently
ignored), token ids from /tokenize in context, multi-token labels by the chain rule, the exact
echo mode, the hosted shapes (OpenAI, Together, Fireworks, OpenRouter), and probing."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import anyio
import httpx2
import pytest

from icm_client.backends import OpenAICompletions, ScoreRequest
from icm_client.backends.openai.label_tokens import ENDING_CHARS
from icm_client.backends.openai.probe import PROBE_TEXT, forget_probes
from icm_client.backends.openai.profiles import PROFILES, get_profile, profile_for_url
from icm_client.errors import CapabilityError, ConfigError
from icm_client.testing.token_server import BOS, TokenServer

URL = "http://gpu-0:8000/v1"
PROMPT = "Claim: the sky is blue. I think this Claim is"
LABELS = (" True", " False")


@pytest.fixture(autouse=True)
def fresh_probes() -> Iterator[None]:
    forget_probes()
    yield
    forget_probes()


def backend(server: Any, url: str = URL, **kwargs: Any) -> OpenAICompletions:
    kwargs.setdefault("model", "toy")
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(server))
    return OpenAICompletions(url, client=client, **kwargs)


def exact(server: TokenServer, prompt: str, label: str) -> float:
    """The toy model's log P(label | prompt), token by token."""
    ctx = server.tokenize(prompt)
    ids = server.tokenize(prompt + label)[len(ctx) :]
    return sum(server.model(ctx + ids[:j]).get(t, -math.inf) for j, t in enumerate(ids))


# -- vLLM ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_vllm_explicit_label_tokens_in_context_exact_beyond_top_k() -> None:
    server = TokenServer("vllm")
    b = backend(server, provider="vllm", top_k=1)
    result = await b.score(ScoreRequest(PROMPT, LABELS))
    assert result.logprobs == pytest.approx([exact(server, PROMPT, w) for w in LABELS])
    assert result.bounded == (False, False)
    tokenize = [body for path, body in server.requests if path == "/tokenize"]
    # in context (with BOS, as the server adds it), then the ending alone (checked to agree)
    ending = PROMPT[-ENDING_CHARS:]
    in_context = [PROMPT, PROMPT + " True", PROMPT + " False"]
    alone = [ending, ending + " True", ending + " False"]
    assert [t["prompt"] for t in tokenize] == [*in_context, *alone]
    assert [t["add_special_tokens"] for t in tokenize] == [True] * 3 + [False] * 3
    [sent] = server.completions()
    ids = server.tokenize(PROMPT)
    assert sent["prompt"] == ids and ids[0] == BOS  # token ids, BOS as the server adds it
    assert sent["logprob_token_ids"] == sorted(server.token_id(w) for w in LABELS)
    assert sent["return_tokens_as_token_ids"] is True and sent["logprobs"] == 1
    assert b.identity == "openai-completions:toy:top1:ids"
    assert b.usage.calls == 1 and b.usage.extra["tokenize_calls"] == 6


@pytest.mark.anyio
@pytest.mark.parametrize("shape", ["vllm", "llamacpp"])
async def test_label_ids_learnt_once_per_ending_then_prompts_go_as_text(shape: str) -> None:
    """After the first prompt with an ending, no /tokenize: the prompt goes as text, and the
    scores are those of the full in-context path (the server tokenizes text as tok(prompt))."""
    prompts = [f"Claim: fact number {i} holds. I think this Claim is" for i in range(6)]
    server = TokenServer(shape)
    always = backend(server, provider=shape, top_k=20, remember_label_tokens=False)
    before = [await always.score(ScoreRequest(p, LABELS)) for p in prompts]
    assert server.paths().count("/tokenize") == 3 * len(prompts)
    server.requests.clear()
    learn = backend(server, provider=shape, top_k=20)
    assert [await learn.score(ScoreRequest(p, LABELS)) for p in prompts] == before
    assert server.paths().count("/tokenize") == 6  # the first prompt only (3 + 3 checks)
    sent = [body["prompt"] for body in server.completions()]
    as_ids = [x for x in sent if isinstance(x, list)]  # the first prompt's (k escalated)
    assert as_ids and all(x == as_ids[0] for x in as_ids)
    assert {x for x in sent if isinstance(x, str)} == set(prompts[1:])


@pytest.mark.anyio
async def test_concurrent_scores_of_a_new_ending_learn_it_once() -> None:
    server = TokenServer("vllm")
    b = backend(server, provider="vllm", top_k=20)
    prompts = [f"Claim: fact number {i} holds. I think this Claim is" for i in range(16)]
    async with anyio.create_task_group() as tg:
        for prompt in prompts:
            tg.start_soon(b.score, ScoreRequest(prompt, LABELS))
    assert server.paths().count("/tokenize") == 6
    assert b.usage.calls == b.usage.extra["prompts"] == len(prompts)


class ReachingTokenizer(TokenServer):
    """A tokenizer whose merges reach back past the ending: " True" splits in two when the
    text starts with "Long:" (far before the label)."""

    def tokenize(self, text: str, bos: bool = True) -> list[int]:
        ids = super().tokenize(text, bos)
        if text.startswith("Long:") and text.endswith(" True"):
            ids[-1:] = [self.token_id(" Tr"), self.token_id("ue")]
        return ids


@pytest.mark.anyio
async def test_an_ending_that_tokenizes_otherwise_alone_is_tokenized_in_full_every_time() -> None:
    server = ReachingTokenizer("vllm")
    b = backend(server, provider="vllm", top_k=20)
    prompts = [f"Long: claim {i}. I think this Claim is" for i in range(3)]
    for prompt in prompts:
        result = await b.score(ScoreRequest(prompt, LABELS))
        assert result.logprobs == pytest.approx([exact(server, prompt, w) for w in LABELS])
    assert b.usage.extra["unstable_endings"] == 1
    assert server.paths().count("/tokenize") == 6 + 3 * (len(prompts) - 1)
    assert all(isinstance(body["prompt"], list) for body in server.completions())


@pytest.mark.anyio
async def test_vllm_ignoring_logprob_token_ids_falls_back_to_top_k_and_bound() -> None:
    server = TokenServer("vllm", explicit=False, max_k=20)  # an older build: field ignored
    b = backend(server, provider="vllm", top_k=2)
    dist = server.model(server.tokenize(PROMPT))
    ranked = sorted(dist, key=lambda t: -dist[t])
    inside, outside = server.piece(ranked[0]), server.piece(ranked[-1])
    result = await b.score(ScoreRequest(PROMPT, (inside, outside)))
    assert result.logprobs[0] == pytest.approx(dist[ranked[0]])
    assert result.bounded == (False, True)  # outside the top-k: an upper bound, flagged
    assert result.logprobs[1] >= dist[ranked[-1]]
    sent = server.completions()
    assert [s["logprobs"] for s in sent] == [2, 100]  # escalation refused (max 20)
    assert "logprob_token_ids" in sent[0] and "logprob_token_ids" not in sent[1]
    assert b.usage.extra["explicit_ignored"] == 1 and b.usage.bounded_labels == 1
    await b.score(ScoreRequest(PROMPT, (inside, outside)))
    assert "logprob_token_ids" not in server.completions()[-1]  # not sent again
    assert server.completions()[-1]["logprobs"] == 2  # nor the refused k


@pytest.mark.anyio
async def test_vllm_minus_9999_is_minus_inf_not_a_bound() -> None:
    server = TokenServer("vllm")  # " Maybe" is outside the toy vocabulary: probability 0
    result = await backend(server, provider="vllm").score(ScoreRequest(PROMPT, (" True", " Maybe")))
    body = server.completions()[0]
    assert server.token_id(" Maybe") in body["logprob_token_ids"]
    assert result.logprobs[1] == -math.inf and result.bounded == (False, False)


@pytest.mark.anyio
async def test_multi_token_label_chain_rule_in_one_list_request() -> None:
    server = TokenServer("vllm")
    b = backend(server, provider="vllm")
    labels = (" Truthfulness", " True", " Yes")  # 3 tokens, 1, 1
    result = await b.score(ScoreRequest(PROMPT, labels))
    assert result.logprobs == pytest.approx([exact(server, PROMPT, w) for w in labels])
    [sent] = server.completions()
    ctx = server.tokenize(PROMPT)
    truth, fulne = server.token_id(" Truth"), server.token_id("fulne")
    assert sent["prompt"] == [ctx, [*ctx, truth], [*ctx, truth, fulne]]  # P first: warm prefix
    assert set(sent["logprob_token_ids"]) == {
        truth,
        fulne,
        server.token_id("ss"),
        server.token_id(" True"),
        server.token_id(" Yes"),
    }
    assert b.usage.extra["http_requests"] == 1  # one request...
    assert b.usage.calls == 3  # ...of three prompts, each a call (each is billed)


@pytest.mark.anyio
async def test_multi_token_label_on_llamacpp_shape_by_id() -> None:
    server = TokenServer("llamacpp", max_k=100)
    b = backend(server, provider="llamacpp", top_k=50)  # the whole toy vocabulary
    labels = (" Truthfulness", " False")
    result = await b.score(ScoreRequest(PROMPT, labels))
    assert result.logprobs == pytest.approx([exact(server, PROMPT, w) for w in labels])
    assert result.bounded == (False, False)
    sent = server.completions()  # the chain's prompts, one a request (llama.cpp's usage)
    assert len(sent) > 1 and all(isinstance(b["prompt"][0], int) for b in sent)
    assert not any("logprob_token_ids" in b or "return_tokens_as_token_ids" in b for b in sent)
    assert next(t for p, t in server.requests if p == "/tokenize") == {
        "content": PROMPT,
        "add_special": True,
    }


@pytest.mark.anyio
async def test_label_merging_with_prompt_end_is_a_capability_error() -> None:
    server = TokenServer("vllm")
    with pytest.raises(CapabilityError, match="does not tokenize as a continuation"):
        await backend(server, provider="vllm").score(ScoreRequest(PROMPT, ("ly", " False")))
    assert server.completions() == []


@pytest.mark.anyio
async def test_vllm_echo_mode_is_exact_continuation() -> None:
    server = TokenServer("vllm")
    b = backend(server, provider="vllm", mode="echo")
    labels = (" Truthfulness", " False")
    result = await b.score(ScoreRequest(PROMPT, labels))
    assert result.logprobs == pytest.approx([exact(server, PROMPT, w) for w in labels])
    [sent] = server.completions()
    assert sent["echo"] is True and sent["max_tokens"] == 1 and "logprob_token_ids" not in sent
    ctx = server.tokenize(PROMPT)
    assert sent["prompt"] == [server.tokenize(PROMPT + w) for w in labels]
    assert all(p[: len(ctx)] == ctx for p in sent["prompt"])
    assert b.identity == "openai-completions:toy:echo"


@pytest.mark.anyio
async def test_echo_mode_without_echo_is_a_capability_error() -> None:
    b = backend(TokenServer("llamacpp"), provider="llamacpp", mode="echo")
    with pytest.raises(CapabilityError, match="echo"):
        await b.score(ScoreRequest(PROMPT, LABELS))


# -- hosted shapes --------------------------------------------------------------------------


class Recorder:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        answer = self.answer(body) if callable(self.answer) else self.answer
        return httpx2.Response(200, json=answer)


def legacy_top(top: dict[str, float]) -> dict[str, Any]:
    first = next(iter(top))
    return {
        "choices": [
            {
                "index": 0,
                "text": first,
                "logprobs": {
                    "tokens": [first],
                    "token_logprobs": [top[first]],
                    "top_logprobs": [top],
                    "text_offset": [0],
                },
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10},
    }


# Recorded-format echo bodies: OpenAI legacy completions (davinci-002), echo + logprobs=1,
# max_tokens=1, prompt "... is" + label: every prompt token, then the one generated token.
def openai_echo(body: dict[str, Any]) -> dict[str, Any]:
    choices = []
    for i, prompt in enumerate(body["prompt"]):
        label = " True" if prompt.endswith(" True") else " Truthfulness"
        tail = (
            [(" Truth", -3.0), ("fulness", -0.5)] if label == " Truthfulness" else [(label, -0.4)]
        )
        pairs = [("Claim", None), (":", -2.1), (" the", -1.0), (" sky", -4.0), (" is", -0.9)]
        pairs += [*tail, ("\n", -1.3)]
        tokens = [t for t, _ in pairs]
        choices.append(
            {
                "index": i,
                "text": "".join(tokens),
                "logprobs": {
                    "tokens": tokens,
                    "token_logprobs": [lp for _, lp in pairs],
                    "top_logprobs": [None] + [{t: lp} for t, lp in pairs[1:]],
                    "text_offset": [0, 5, 6, 10, 14, 17, 22][: len(tokens)],
                },
                "finish_reason": "length",
            }
        )
    return {"object": "text_completion", "model": "davinci-002", "choices": choices}


@pytest.mark.anyio
async def test_openai_profile_top5_cap_and_echo_text_walk() -> None:
    server = Recorder(legacy_top({" True": -0.2, " the": -2.0}))
    b = backend(server, "https://api.openai.com/v1", provider="openai", top_k=20)
    result = await b.score(ScoreRequest("Claim: the sky is", (" True", " False")))
    assert [s["logprobs"] for s in server.bodies] == [5]  # capped; no escalation past 5
    assert result.bounded == (False, True)
    assert b.identity == "openai-completions:openai:toy:top5"

    echo = Recorder(openai_echo)
    e = backend(echo, "https://api.openai.com/v1", provider="openai", mode="echo")
    result = await e.score(ScoreRequest("Claim: the sky is", (" True", " Truthfulness")))
    assert result.logprobs == pytest.approx((-0.4, -3.5))  # generated "\n" dropped
    [sent] = echo.bodies  # one list request
    assert sent["echo"] is True and sent["prompt"] == [
        "Claim: the sky is True",
        "Claim: the sky is Truthfulness",
    ]


@pytest.mark.anyio
async def test_auto_picks_known_host_without_probing() -> None:
    server = Recorder(legacy_top({" True": -0.2, " False": -2.0}))
    b = backend(server, "https://api.openai.com/v1", provider="auto")
    await b.score(ScoreRequest(PROMPT, LABELS))
    assert b.profile is PROFILES["openai"] and len(server.bodies) == 1


# Together: echoed prompt logprobs come in a top-level "prompt" list, not in choices.
def together_echo(body: dict[str, Any]) -> dict[str, Any]:
    label = body["prompt"].removeprefix("Claim: the sky is")
    return {
        "id": "8a1b",
        "object": "text.completion",
        "model": "meta-llama/Llama-2-70b-hf",
        "prompt": [
            {
                "text": body["prompt"],
                "logprobs": {
                    "token_ids": [1, 15, 16, 17, 18, 19],
                    "tokens": ["Claim", ":", " the", " sky", " is", label],
                    "token_logprobs": [
                        None,
                        -2.0,
                        -1.0,
                        -3.5,
                        -0.7,
                        -0.25 if label == " True" else -1.75,
                    ],
                },
            }
        ],
        "choices": [{"index": 0, "text": "\n", "finish_reason": "length", "logprobs": None}],
        "usage": {"prompt_tokens": 6, "completion_tokens": 1, "total_tokens": 7},
    }


@pytest.mark.anyio
async def test_together_echo_shape_one_string_prompt_per_request() -> None:
    server = Recorder(together_echo)
    b = backend(server, "https://api.together.xyz/v1", provider="auto", mode="echo")
    result = await b.score(ScoreRequest("Claim: the sky is", LABELS))
    assert result.logprobs == (-0.25, -1.75) and result.bounded == (False, False)
    assert sorted(s["prompt"] for s in server.bodies) == [
        "Claim: the sky is False",
        "Claim: the sky is True",
    ]
    assert all(s["echo"] is True for s in server.bodies)
    assert b.usage.calls == 2 and b.usage.prompt_tokens == 12


# Fireworks: echo_last=N returns only the last N prompt tokens, then the generated one.
def fireworks_echo(body: dict[str, Any]) -> dict[str, Any]:
    n = body["echo_last"]
    choices = []
    for i, prompt in enumerate(body["prompt"]):
        pairs = [("Claim", None), (":", -2.0), (" is", -0.8)]
        pairs += [(" True", -0.3)] if prompt.endswith("True") else [(" False", -1.4)]
        pairs = [*pairs[-n:], (".", -0.2)]
        choices.append(
            {
                "index": i,
                "text": prompt + ".",
                "logprobs": {
                    "tokens": [t for t, _ in pairs],
                    "token_logprobs": [lp for _, lp in pairs],
                },
            }
        )
    return {"object": "text_completion", "choices": choices}


@pytest.mark.anyio
async def test_fireworks_echo_last_and_top5() -> None:
    server = Recorder(fireworks_echo)
    b = backend(server, "https://api.fireworks.ai/inference/v1", provider="fireworks", mode="echo")
    result = await b.score(ScoreRequest("Claim: is", LABELS))
    assert result.logprobs == (-0.3, -1.4)
    [sent] = server.bodies
    assert sent["echo_last"] == len(" False") + 1 and "echo" not in sent
    top = Recorder(legacy_top({" True": -0.2, " False": -2.0}))
    await backend(top, provider="fireworks", top_k=20).score(ScoreRequest(PROMPT, LABELS))
    assert top.bodies[0]["logprobs"] == 5


@pytest.mark.anyio
async def test_openrouter_requires_parameters() -> None:
    server = Recorder(legacy_top({" True": -0.2, " False": -2.0}))
    b = backend(server, "https://openrouter.ai/api/v1", provider="auto")
    await b.score(ScoreRequest(PROMPT, LABELS))
    assert server.bodies[0]["provider"] == {"require_parameters": True}
    assert b.identity.startswith("openai-completions:openrouter:")


def test_profiles_by_name_and_host() -> None:
    assert get_profile("vllm").explicit_token_logprobs
    with pytest.raises(ConfigError, match=r"unknown provider 'vlm'.*vllm"):
        get_profile("vlm")
    assert profile_for_url("https://api.together.ai/v1") is PROFILES["together"]
    assert profile_for_url("http://10.0.0.5:8000/v1") is None
    with pytest.raises(ConfigError):
        OpenAICompletions(URL, "m", provider="nope")


# -- probing ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_probe_finds_a_recent_vllm_and_is_remembered() -> None:
    server = TokenServer("vllm")
    b = backend(server, provider="auto", mode="echo")
    assert b.identity == "openai-completions:toy:echo" and b.profile is None
    await b.prepare()
    p = b.profile
    assert p is not None
    assert (p.tokenizer, p.token_prompts, p.prompt_lists) == ("vllm", True, True)
    assert (p.token_id_keys, p.explicit_token_logprobs, p.echo) == (True, True, "choices")
    assert p.max_logprobs is None
    assert b.usage.extra["probe_requests"] >= 5
    prompts = [body["prompt"] for body in server.completions()]  # each one completed is a call
    many = [isinstance(p, list) and bool(p) and not isinstance(p[0], int) for p in prompts]
    assert b.usage.calls == sum(len(p) if m else 1 for p, m in zip(prompts, many, strict=True)) > 0
    again = backend(server, provider="auto", mode="echo")
    n = len(server.requests)
    await again.prepare()
    assert len(server.requests) == n and again.profile == p  # remembered per server+model


@pytest.mark.anyio
async def test_probe_of_older_vllm_without_explicit_token_ids() -> None:
    server = TokenServer("vllm", explicit=False)
    b = backend(server, provider="auto")
    await b.prepare()
    assert b.profile is not None and not b.profile.explicit_token_logprobs
    assert b.profile.scores_token_ids and b.identity == "openai-completions:toy:top20:ids"
    result = await b.score(ScoreRequest(PROMPT, (" Truthfulness", " False")))
    assert result.logprobs == pytest.approx(
        [exact(server, PROMPT, w) for w in (" Truthfulness", " False")]
    )
    assert "logprob_token_ids" not in server.completions()[-1]


@pytest.mark.anyio
async def test_probe_of_llamacpp_shape() -> None:
    server = TokenServer("llamacpp", echo=False)
    b = backend(server, provider="auto", mode="echo")
    await b.prepare()
    p = b.profile
    assert p is not None and (p.tokenizer, p.token_prompts, p.token_id_keys) == (
        "llamacpp",
        True,
        False,
    )
    assert p.echo == "none" and not p.explicit_token_logprobs


@pytest.mark.anyio
async def test_probe_of_capped_host_without_tokenizer() -> None:
    server = TokenServer("vllm", max_k=5, tokenize=False)
    b = backend(server, provider="auto", top_k=20)
    await b.prepare()
    assert b.profile is not None and b.profile.max_logprobs == 5
    assert b.profile.tokenizer == "none" and not b.profile.scores_token_ids
    # k = 20 refused, 5 taken; then the text twice in a list: taken, so prompts are batched
    assert [s["logprobs"] for s in server.completions()] == [20, 5, 5]
    assert server.completions()[-1]["prompt"] == [PROBE_TEXT, PROBE_TEXT]
    assert b.profile.prompt_lists
    await b.score(ScoreRequest(PROMPT, LABELS))
    assert server.completions()[-1]["logprobs"] == 5
    assert b.identity == "openai-completions:toy:top5"


@pytest.mark.anyio
async def test_probe_of_server_without_logprobs_fails_clearly() -> None:
    body = {"choices": [{"text": "x", "index": 0, "logprobs": None, "finish_reason": "length"}]}
    b = backend(Recorder(body), provider="auto")
    with pytest.raises(CapabilityError, match="no logprobs"):
        await b.prepare()


# -- the real llama.cpp server ------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.anyio
async def test_real_llamacpp_probe_and_multi_token_chain(local_server: str) -> None:
    """On the embedded llama.cpp server: the probe finds token-id scoring and no usable
    prompt lists (the server's usage counts the first prompt of a list only), and a
    two-token label scored by the chain rule equals the two steps asked apart."""
    b = OpenAICompletions(local_server, provider="auto", top_k=1000, max_top_k=1000)
    try:
        await b.prepare()
        p = b.profile
        assert p is not None and (p.tokenizer, p.token_prompts, p.prompt_lists) == (
            "llamacpp",
            True,
            False,
        )
        assert not p.explicit_token_logprobs  # llama.cpp ignores logprob_token_ids
        result = await b.score(ScoreRequest(PROMPT, (" True", " Truthfulness")))
        ctx = await b.tokenize(PROMPT, add_special=True)
        whole = await b.tokenize(PROMPT + " Truthfulness", add_special=True)
        assert ctx is not None and whole is not None
        label = whole[len(ctx) :]
        assert len(label) == 2  # " Truth" "fulness" in Gemma's vocabulary
        steps = []
        for j, tid in enumerate(label):
            body = await b.call(
                "POST",
                "/v1/completions",
                {"prompt": ctx + label[:j], "max_tokens": 1, "logprobs": 1000, "temperature": 0},
            )
            assert isinstance(body, dict)
            top = body["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
            steps.append(next(e["logprob"] for e in top if e["id"] == tid))
        assert result.bounded == (False, False)
        # llama.cpp on a CPU: the same prompt moves by up to ~0.1 between batch shapes
        assert result.logprobs[1] == pytest.approx(sum(steps), abs=0.25)
    finally:
        await b.aclose()
