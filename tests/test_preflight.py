"""``preflight``: one quick real request that turns a wrong setting into a configuration
error in seconds, costs no call when its score is cached, and lets a busy server be."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fault_server import FaultServer

from icm_client.backends import (
    Backend,
    OpenAICompletions,
    ScoreRequest,
    ScoreResult,
    Usage,
    stack,
)
from icm_client.backends.base import layers
from icm_client.backends.preflight import preflight
from icm_client.errors import ConfigError, TaskError

pytestmark = pytest.mark.anyio
PROBE = ScoreRequest("The city of Paris is in France. I think this is", (" True", " False"))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def no_sleep(seconds: float) -> None:
    pass


async def test_cached_probe_costs_no_call_the_second_time(tmp_path: Path) -> None:
    with FaultServer() as server:
        for _ in range(2):
            backend = stack(OpenAICompletions(server.base_url), cache_dir=tmp_path)
            assert await preflight(backend, PROBE) is not None
            await backend.aclose()
    assert server.answered["/v1/completions"] == 1
    assert backend.usage.calls == 0 and backend.usage.cache_hits == 1


async def test_a_busy_server_is_left_to_the_run_s_own_retries() -> None:
    with FaultServer(rate=1.0, kinds=("503",), fault_paths=("/v1/completions",)) as server:
        backend = stack(OpenAICompletions(server.base_url), cache_dir=False)
        assert await preflight(backend, PROBE, attempts=2, sleep=no_sleep) is None
        await backend.aclose()
    assert server.requests["/v1/completions"] == 2


async def test_unreachable_host_is_a_config_error_after_few_attempts() -> None:
    backend = stack(OpenAICompletions("http://127.0.0.1:9/v1"), cache_dir=False)
    with pytest.raises(ConfigError, match=r"cannot reach the server.*gave up after 2 attempts"):
        await preflight(backend, PROBE, attempts=2, sleep=no_sleep)
    await backend.aclose()


async def test_without_a_tokenizer_label_words_are_taken_on_trust() -> None:
    odd = ScoreRequest(PROBE.prompt, (" Very true", " No"))
    with FaultServer(tokenizer=False) as server:
        backend = stack(OpenAICompletions(server.base_url), cache_dir=False)
        assert await preflight(backend, odd) is not None
        await backend.aclose()
    assert server.requests["/tokenize"] >= 1


class MultiToken:
    """A backend that scores multi-token label words exactly (echo, token-id chains)."""

    identity = "multi"
    multi_token_labels = True

    def __init__(self) -> None:
        self.usage = Usage()

    async def score(self, request: ScoreRequest) -> ScoreResult:
        return ScoreResult((-1.0, -2.0), (False, False))

    async def tokenize(self, text: str) -> list[int]:
        return list(range(len(text.split())))

    async def aclose(self) -> None:
        pass


async def test_multi_token_labels_pass_where_the_backend_scores_them_exactly() -> None:
    odd = ScoreRequest(PROBE.prompt, (" Very true", " Not at all"))
    assert await preflight(MultiToken(), odd) is not None
    single = MultiToken()
    single.multi_token_labels = False
    with pytest.raises(TaskError, match="' Very true' is 2 tokens"):
        await preflight(single, odd, labels_of="task 'x'")


@pytest.mark.parametrize(
    "options",
    [
        {"cache_dir": False},
        {"cache_dir": False, "max_calls": 100},
        {"cache_dir": False, "max_prompt_tokens": 10_000},
        {"cache_dir": False, "retry": False, "max_calls": 5},
    ],
)
async def test_two_token_label_is_refused_whatever_the_wrappers(options: dict[str, Any]) -> None:
    """The single-token check reaches the server's tokenizer below every wrapper, the
    budget included (it once stopped at ``Budgeted`` and silently skipped the check)."""
    odd = ScoreRequest(PROBE.prompt, (" Very true", " No"))
    with FaultServer() as server:
        backend = stack(OpenAICompletions(server.base_url), **options)
        with pytest.raises(TaskError, match="' Very true' is 2 tokens"):
            await preflight(backend, odd, labels_of="task 'x'")
        await backend.aclose()


class Passthrough:
    """A wrapper written by a user: it names what it wraps in ``inner``, nothing else."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.identity = inner.identity
        self.usage = inner.usage

    async def score(self, request: ScoreRequest) -> ScoreResult:
        return await self.inner.score(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_user_wrapper_does_not_hide_the_tokenizer() -> None:
    single = MultiToken()
    single.multi_token_labels = False
    wrapped = Passthrough(Passthrough(single))
    assert list(layers(wrapped))[-1] is single
    with pytest.raises(TaskError, match="' Very true' is 2 tokens"):
        await preflight(wrapped, ScoreRequest(PROBE.prompt, (" Very true", " No")))
