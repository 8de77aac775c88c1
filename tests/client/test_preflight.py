"""``preflight``: one quick real request that turns a wrong setting into a configuration
error in seconds, costs no call when its score is cached, and lets a busy server be."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fault_server import FaultServer

from icm_client.backends import Backend, OpenAICompletions, ScoreRequest, ScoreResult, Usage
from icm_client.backends.openai.probe import forget_probes
from icm_client.client import PREFLIGHT_RETRY, Budget, Retry, ScoringClient
from icm_client.errors import BudgetExhausted, ConfigError, TaskError

pytestmark = pytest.mark.anyio
PROBE = ScoreRequest("The city of Paris is in France. I think this is", (" True", " False"))


async def no_sleep(seconds: float) -> None:
    pass


def quick(attempts: int) -> Retry:
    return PREFLIGHT_RETRY.model_copy(update={"max_attempts": attempts, "sleep": no_sleep})


async def test_cached_probe_costs_no_call_the_second_time(tmp_path: Path) -> None:
    with FaultServer() as server:
        for _ in range(2):
            backend = ScoringClient(OpenAICompletions(server.base_url), cache=tmp_path)
            assert await backend.preflight(PROBE) is not None
            await backend.aclose()
    assert server.answered["/v1/completions"] == 1
    assert backend.usage.calls == 0 and backend.usage.cache_hits == 1


async def test_a_busy_server_is_left_to_the_run_s_own_retries() -> None:
    with FaultServer(rate=1.0, kinds=("503",), fault_paths=("/v1/completions",)) as server:
        backend = ScoringClient(OpenAICompletions(server.base_url), cache=False)
        assert await backend.preflight(PROBE, retry=quick(2)) is None
        await backend.aclose()
    assert server.requests["/v1/completions"] == 2


async def test_unreachable_host_is_a_config_error_after_few_attempts() -> None:
    backend = ScoringClient(OpenAICompletions("http://127.0.0.1:9/v1"), cache=False)
    with pytest.raises(ConfigError, match=r"cannot reach the server.*gave up after 2 attempts"):
        await backend.preflight(PROBE, retry=quick(2))
    await backend.aclose()


async def test_without_a_tokenizer_label_words_are_taken_on_trust() -> None:
    odd = ScoreRequest(PROBE.prompt, (" Very true", " No"))
    with FaultServer(tokenizer=False) as server:
        backend = ScoringClient(OpenAICompletions(server.base_url), cache=False)
        assert await backend.preflight(odd) is not None
        await backend.aclose()
    assert server.requests["/tokenize"] >= 1


class MultiToken(Backend):
    """A backend that scores multi-token label words exactly (echo, token-id chains)."""

    identity = "multi"
    multi_token_labels = True

    def __init__(self) -> None:
        self.usage: Usage = Usage()

    async def score(self, request: ScoreRequest) -> ScoreResult:
        return ScoreResult((-1.0, -2.0), (False, False))

    async def tokenize(self, text: str, *, add_special: bool = False) -> list[int] | None:
        return list(range(len(text.split())))

    async def aclose(self) -> None:
        pass


async def test_multi_token_labels_pass_where_the_backend_scores_them_exactly() -> None:
    odd = ScoreRequest(PROBE.prompt, (" Very true", " Not at all"))
    assert await ScoringClient(MultiToken(), cache=False).preflight(odd) is not None
    single = MultiToken()
    single.multi_token_labels = False
    with pytest.raises(TaskError, match="' Very true' is 2 tokens"):
        await ScoringClient(single, cache=False).preflight(odd, labels_of="task 'x'")


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"budget": Budget(max_calls=100)},
        {"budget": Budget(max_prompt_tokens=10_000)},
        {"retry": None, "budget": Budget(max_calls=5), "max_concurrency": 1},
    ],
)
async def test_two_token_label_is_refused_whatever_the_policies(options: dict[str, Any]) -> None:
    """The single-token check asks the server's tokenizer whatever the client's policies, a
    budget included (a budget once hid the tokenizer and the check was silently skipped)."""
    odd = ScoreRequest(PROBE.prompt, (" Very true", " No"))
    with FaultServer() as server:
        async with ScoringClient(OpenAICompletions(server.base_url), cache=False, **options) as c:
            with pytest.raises(TaskError, match="' Very true' is 2 tokens"):
                await c.preflight(odd, labels_of="task 'x'")
    assert server.requests["/tokenize"] >= 1


async def test_the_preflight_and_the_probe_count_against_the_budget() -> None:
    """They reach the server (a hosted API bills them): a spent budget sends nothing, and
    one that covers exactly the set-up lets it through and refuses the next score."""
    forget_probes()
    with FaultServer() as server:
        async with ScoringClient(
            OpenAICompletions(server.base_url, provider="auto"), cache=False
        ) as free:
            assert await free.preflight(PROBE) is not None
        setup = free.usage.calls
        assert setup == server.prompts_received > 1  # the probe's prompts and the preflight's
    forget_probes()
    with FaultServer() as server:
        spent = ScoringClient(
            OpenAICompletions(server.base_url, provider="auto"),
            cache=False,
            budget=Budget(max_calls=0),
        )
        async with spent:
            with pytest.raises(BudgetExhausted, match="call budget spent"):
                await spent.preflight(PROBE)
        assert server.prompts_received == 0
    forget_probes()
    with FaultServer() as server:
        client = ScoringClient(
            OpenAICompletions(server.base_url, provider="auto"),
            cache=False,
            budget=Budget(max_calls=setup),
        )
        async with client:
            assert await client.preflight(PROBE) is not None
            with pytest.raises(BudgetExhausted, match="call budget spent"):
                await client.score(ScoreRequest(PROBE.prompt + " (2)", PROBE.labels))
        assert server.prompts_received == setup == client.usage.calls
