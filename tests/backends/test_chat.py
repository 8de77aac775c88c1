"""The chat-logprobs route: prompts as messages, labels from the first answer token's
``top_logprobs``, and ``--api auto`` choosing it for a server that refuses completions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

import icm_client as icm
from icm_client.backends.base import ScoreRequest
from icm_client.backends.openai import AutoRoute, OpenAIChat, OpenAICompletions
from icm_client.backends.openai.chat_messages import (
    chat_label_logprobs,
    chat_messages,
    split_prompt,
)
from icm_client.backends.openai.route import refuses_completions
from icm_client.client import ScoreCache
from icm_client.errors import PermanentBackendError
from icm_client.run import LabelConfig
from icm_client.search.config import SearchConfig
from icm_client.tasks import get_task
from icm_client.testing import (
    MOCK_URL,
    CompletionsApp,
    InContext,
    LoopbackServer,
    Oracle,
    mock_client,
    truthfulqa_like,
)
from icm_client.testing.protocol import belief_logprobs, chat_prompt

LABELS = (" True", " False")
PROMPT = "Q: 2+2=4? A: I think this is True\n\nQ: sky\n\nis green? A: I think this is"


def test_split_prompt_finds_demonstrations_by_their_label_ending() -> None:
    demos, target = split_prompt(
        "Q: a? A: True\n\nQ: b\n\nstill b? A: False\n\nQ: c? A:", (" True", " False")
    )
    assert demos == [("Q: a? A:", " True"), ("Q: b\n\nstill b? A:", " False")]
    assert target == "Q: c? A:"


def test_turns_style_round_trips_through_the_stand_in_template() -> None:
    messages = chat_messages(PROMPT, LABELS, "turns")
    assert messages[0]["role"] == "system" and "True, False" in messages[0]["content"]
    assert [m["role"] for m in messages[1:]] == ["user", "assistant", "user"]
    assert messages[2]["content"] == "True"  # the answer turn holds the bare word
    assert chat_prompt(messages, continue_final=False) == (PROMPT, True)


def test_continue_style_prefills_the_whole_prompt() -> None:
    messages = chat_messages(PROMPT, LABELS, "continue")
    assert messages[-1] == {"role": "assistant", "content": PROMPT}
    assert chat_prompt(messages, continue_final=True) == (PROMPT, False)


def test_turns_labels_match_with_or_without_their_leading_space() -> None:
    top = [("True", -0.5), (" True", -2.0), ("true", -3.0)]
    values, bounded = chat_label_logprobs(top, LABELS, "turns")
    assert bounded == (False, True)
    assert values[0] == pytest.approx(anyio_logsumexp(-0.5, -2.0))
    # continue: exact text only, as on completions
    values, bounded = chat_label_logprobs(top, LABELS, "continue")
    assert values[0] == -2.0 and bounded == (False, True)


def anyio_logsumexp(a: float, b: float) -> float:
    import math

    return max(a, b) + math.log1p(math.exp(-abs(a - b)))


@pytest.mark.parametrize("style", ["turns", "continue"])
def test_chat_scores_equal_completions_scores(style: str) -> None:
    app = CompletionsApp(belief_logprobs)  # " True" and " False" lead its top-k
    request = ScoreRequest(PROMPT, LABELS)

    async def go() -> tuple[tuple[float, ...], tuple[float, ...], dict[str, object]]:
        seen: dict[str, object] = {}

        def spy(req: httpx2.Request) -> httpx2.Response:
            if req.url.path.endswith("/chat/completions"):
                seen.update(json.loads(req.content))
            return app(req)

        transport = httpx2.AsyncClient(transport=httpx2.MockTransport(spy))
        chat = OpenAIChat(MOCK_URL, app.name, style=style, client=transport)  # type: ignore[arg-type]
        completions = OpenAICompletions(MOCK_URL, app.name, client=mock_client(app))
        a = await chat.score(request)
        b = await completions.score(request)
        await completions.aclose()
        await transport.aclose()
        assert chat.identity.startswith("openai-chat:") and chat.identity.endswith(style)
        return a.logprobs, b.logprobs, seen

    chat_lp, completion_lp, sent = anyio.run(go)
    assert chat_lp == pytest.approx(completion_lp) and chat_lp[0] != chat_lp[1]
    assert sent["logprobs"] is True and sent["top_logprobs"] == 20 and sent["max_tokens"] == 1
    assert ("continue_final_message" in sent) == (style == "continue")
    if style == "continue":
        assert sent["add_generation_prompt"] is False


def test_top_logprobs_is_capped_by_the_host_profile() -> None:
    app = CompletionsApp(max_top_logprobs=5)
    chat = OpenAIChat(MOCK_URL, app.name, provider="fireworks", client=mock_client(app))
    assert chat.top_k == 5 and chat.identity.startswith("openai-chat:fireworks:")
    result = anyio.run(chat.score, ScoreRequest(PROMPT, LABELS))
    assert len(result.logprobs) == 2  # accepted: k=5, not the 20 the app would refuse


def test_refusals_that_mean_use_chat() -> None:
    chat_model = PermanentBackendError(
        "HTTP 404: This is a chat model and not supported in the v1/completions endpoint.",
        status=404,
    )
    no_model = PermanentBackendError("HTTP 404: The model `x` does not exist.", status=404)
    no_route = PermanentBackendError("HTTP 405: method not allowed", status=405)
    bad_key = PermanentBackendError("HTTP 401: invalid API key", status=401)
    assert refuses_completions(chat_model) and refuses_completions(no_route)
    assert not refuses_completions(no_model) and not refuses_completions(bad_key)


def _config() -> LabelConfig:
    return LabelConfig(strategy="bounded", context_size=4, search=SearchConfig(seed=3))


@pytest.mark.parametrize(
    "regime",
    # a second model, the same route: behind the benchmark marker
    ["oracle", pytest.param("in-context", marks=pytest.mark.benchmark)],
)
def test_chat_only_server_is_detected_and_labels_as_completions_do(regime: str) -> None:
    """End to end through ``connect`` on loopback: ``--api auto`` finds that the server
    refuses /v1/completions, says so, labels through chat, and (same model) the labels equal
    the completions route's."""
    data = truthfulqa_like(24, seed=1)
    task = get_task(data.task)
    model = (
        Oracle(task, data.examples, data.gold)
        if regime == "oracle"
        else InContext(task, data.examples, data.gold, seed=1)
    )
    chat_only = CompletionsApp(model, completions=False, chat_continue=False)
    both = CompletionsApp(model)

    async def run(app: CompletionsApp) -> tuple[list[str | None], str, str]:
        with LoopbackServer(app) as server:
            async with icm.connect(server.base_url, cache=False, check=False) as client:
                result = await icm.label(data.examples, task, client, _config())
                route = client.backend
                assert isinstance(route, AutoRoute)
                return [r.label for r in result.rows], route.note, client.identity

    chat_labels, note, identity = anyio.run(run, chat_only)
    assert note.startswith("chat completions:") and "refused" in note
    assert identity.startswith("openai-chat:")
    assert chat_only.requests.get("/v1/chat/completions", 0) > 0
    completion_labels, note2, identity2 = anyio.run(run, both)
    assert note2.startswith("completions:") and identity2.startswith("openai-completions:")
    assert both.requests.get("/v1/chat/completions", 0) == 0
    assert chat_labels == completion_labels
    if regime == "oracle":
        words = [w.strip() for w in task.labels]
        assert sum(a == words[g] for a, g in zip(chat_labels, data.gold, strict=True)) >= 20


def test_forced_chat_on_a_completions_server() -> None:
    app = CompletionsApp()

    async def go() -> str:
        with LoopbackServer(app) as server:
            async with icm.connect(server.base_url, api="chat", cache=False) as client:
                await client.score(ScoreRequest(PROMPT, LABELS))
                return client.identity

    assert anyio.run(go).startswith("openai-chat:")
    assert app.requests.get("/v1/completions", 0) == 0


CITY_PROMPT = (
    "The city of Paris is in France. This statement is True\n\n"
    "The city of Madrid is in Italy. This statement is False\n\n"
    "The city of Berlin is in Germany. This statement is"
)


@pytest.mark.integration
@pytest.mark.anyio
async def test_embedded_llama_cpp_chat_endpoint_scores_like_its_completions(
    local_server: str,
) -> None:
    """llama.cpp's /v1/chat/completions returns ``top_logprobs`` (with token ids) and
    continues a pre-filled assistant turn: the continue style reads the same label tokens as
    the completions route, moved by the chat template's wrapping. Measured on Gemma 3 270M
    (base), this prompt: chat -0.80/-0.74, completions -0.45/-1.14 nats for True/False (the
    wrapping alone flips the argmax: the fidelity cost of the route); turns -0.67/-1.00."""
    request = ScoreRequest(CITY_PROMPT, LABELS)
    async with (
        OpenAIChat(local_server, provider="llamacpp") as chat,
        OpenAICompletions(local_server, provider="llamacpp") as completions,
        OpenAIChat(local_server, style="turns") as chat_turns,
    ):
        assert chat.style == "continue" and chat_turns.style == "turns"
        by_chat = await chat.score(request)
        by_completions = await completions.score(request)
        turns = await chat_turns.score(request)
    assert not any(by_chat.bounded) and not any(by_completions.bounded)
    for a, b in zip(by_chat.logprobs, by_completions.logprobs, strict=True):
        assert abs(a - b) < 1.0
    assert by_chat.prompt_tokens > by_completions.prompt_tokens  # the template's tokens
    assert len(turns.logprobs) == 2  # the turns style answers too (a new turn: bare words)


def test_icm_label_says_which_route_it_took_and_what_it_costs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``icm label`` on a chat-only server: the route line, the dollar line of the plan
    (a given price), and labels written; paced by --max-rpm without waiting (high cap)."""
    from icm_client.cli import main

    out = tmp_path / "labels.jsonl"
    app = CompletionsApp(belief_logprobs, completions=False)
    with LoopbackServer(app) as server:
        code = main(
            [
                "label",
                "sample:cities",
                "--task",
                "cities",
                "--limit",
                "8",
                "--out",
                str(out),
                "--base-url",
                server.base_url,
                "--no-cache",
                "--strategy",
                "bounded",
                "--context-size",
                "4",
                "--steps",
                "8",
                "--quiet",
                "--price-per-mtok",
                "2.0",
                "--cached-discount",
                "0.5",
                "--max-rpm",
                "100000",
            ]
        )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "icm: route: chat completions:" in err and "refused" in err
    assert "icm: cost: about $" in err and "$2 per million prompt tokens" in err
    assert len(out.read_text().splitlines()) == 8
    assert app.requests.get("/v1/chat/completions", 0) > 0


def test_doctor_finds_the_chat_route_of_a_chat_only_server() -> None:
    from icm_client.doctor import diagnose

    async def go(url: str) -> Any:
        return await diagnose(url, prefix_tokens=0)

    with LoopbackServer(CompletionsApp(belief_logprobs, completions=False)) as server:
        report = anyio.run(go, server.base_url)
    assert report.ok and report.chat_logprobs is True
    assert any("chat" in note and "prototyping" in note for note in report.notes)
    assert all(lab.in_top_k and lab.logprob is not None for lab in report.labels)
    row = next(line for line in report.text().splitlines() if "chat logprobs" in line)
    assert row.split()[-1] == "yes"


def test_fireworks_requests_carry_a_stable_affinity_header() -> None:
    app = CompletionsApp(belief_logprobs)
    pins: list[str | None] = []

    def spy(req: httpx2.Request) -> httpx2.Response:
        pins.append(req.headers.get("x-session-affinity"))
        return app(req)

    async def go() -> None:
        transport = httpx2.AsyncClient(transport=httpx2.MockTransport(spy))
        async with OpenAIChat(MOCK_URL, app.name, provider="fireworks", client=transport) as chat:
            shared = "Q: x? A: I think this is True\n\n" * 20  # 640 characters
            await chat.score(ScoreRequest(shared + "Q: y? A: I think this is", LABELS))
            await chat.score(ScoreRequest(shared + "Q: z? A: I think this is", LABELS))
            await chat.score(ScoreRequest("Another prompt entirely", LABELS))
        async with OpenAIChat(MOCK_URL, app.name, client=transport) as plain:
            await plain.score(ScoreRequest(PROMPT, LABELS))
        await transport.aclose()

    anyio.run(go)
    assert pins[0] is not None and len(pins[0]) == 16 and "Q:" not in pins[0]
    assert pins[0] == pins[1] != pins[2] and pins[3] is None  # only where the host pins


def test_chat_and_completions_scores_are_cached_apart(tmp_path: Path) -> None:
    app = CompletionsApp(belief_logprobs)
    request = ScoreRequest(PROMPT, LABELS)

    async def go() -> tuple[int, int]:
        cache = ScoreCache(tmp_path)
        try:
            chat = OpenAIChat(MOCK_URL, app.name, client=mock_client(app))
            async with icm.ScoringClient(chat, cache=cache) as client:
                await client.score(request)
            completions = OpenAICompletions(MOCK_URL, app.name, client=mock_client(app))
            async with icm.ScoringClient(completions, cache=cache) as client:
                await client.score(request)
                first = client.usage.cache_hits
            chat = OpenAIChat(MOCK_URL, app.name, client=mock_client(app))
            async with icm.ScoringClient(chat, cache=cache) as client:
                await client.score(request)
                second = client.usage.cache_hits
        finally:
            cache.close()
        return first, second

    completions_hits, chat_hits = anyio.run(go)
    assert completions_hits == 0  # the chat score of the same prompt is not reused
    assert chat_hits == 1  # the chat score is cached by content
