"""``import icm_client as icm``: the supported names, backends as async context managers, and
``connect``, which turns a wrong URL into a quick ``ConfigError`` from Python too."""

from __future__ import annotations

import re
from pathlib import Path

import httpx2
import pytest
from fault_server import FaultServer

import icm_client as icm
from icm_client.backends import ScoreRequest
from icm_client.dataset import Example
from icm_client.errors import TaskError

pytestmark = pytest.mark.anyio

FRONT_DOOR = {
    "AnthropicSampler",
    "BackendConfig",
    "BackendError",
    "Budget",
    "ConfigError",
    "EvalConfig",
    "ICMError",
    "LabelConfig",
    "OpenAIChat",
    "OpenAICompletions",
    "Pace",
    "Progress",
    "Retry",
    "ScaleConfig",
    "ScoringClient",
    "SearchConfig",
    "TemplateTask",
    "connect",
    "evaluate",
    "get_task",
    "label",
    "label_large",
    "load_dataset",
    "read_pins",
}


def test_the_front_door_is_exactly_the_supported_names() -> None:
    assert set(icm.__all__) == FRONT_DOOR
    assert len(icm.__all__) == len(FRONT_DOOR)
    for name in icm.__all__:
        value = getattr(icm, name)
        assert callable(value), name
        assert not isinstance(value, type(icm)), f"{name} is a module, not the API object"


def test_the_readme_example_is_short_and_uses_only_the_front_door() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = re.search(r"From Python.*?```python\n(.*?)```", readme, re.DOTALL)
    assert block is not None
    code = block.group(1)
    compile(code, "README.md", "exec")
    assert len([line for line in code.splitlines() if line.strip()]) < 12
    assert "async with" in code
    assert set(re.findall(r"\bicm\.(\w+)", code)) <= FRONT_DOOR


async def test_a_client_closes_its_backend_when_the_block_ends() -> None:
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(lambda r: httpx2.Response(500)))
    inner = icm.OpenAICompletions("http://server.test/v1", "m")
    async with icm.ScoringClient(inner, cache=False, budget=icm.Budget(max_calls=10)) as c:
        assert c.identity.startswith("openai-completions:m")
    # the backend made its own client: closed with it; one passed in stays open
    assert inner._http.client.is_closed
    async with icm.OpenAICompletions("http://server.test", "m", client=client):
        pass
    assert not client.is_closed
    await client.aclose()


async def test_connect_to_a_wrong_url_fails_fast_with_a_config_error() -> None:
    # a few quick attempts (the preflight's), not the run's minutes of patient retries
    with pytest.raises(icm.ConfigError, match=r"cannot reach the server.*after 3 attempts"):
        async with icm.connect("http://127.0.0.1:9/v1", "m", cache=False):
            raise AssertionError("unreachable")


async def test_connect_checks_the_task_s_label_words(tmp_path: Path) -> None:
    task = icm.get_task("truthfulqa")
    claim = Example("c1", {"question": "Is the sky blue?", "choice": "It is."})
    with FaultServer() as server:
        async with icm.connect(server.base_url, task=task, example=claim, cache=tmp_path) as client:
            assert isinstance(client, icm.ScoringClient)
            score = await client.score(ScoreRequest(task.render(claim), task.labels))
            assert len(score.logprobs) == len(task.labels)
        odd = icm.TemplateTask(name="odd", template=task.template, labels=(" Very true", " No"))
        with pytest.raises(TaskError, match="' Very true' is 2 tokens"):
            async with icm.connect(server.base_url, task=odd, cache=False):
                raise AssertionError("unreachable")
    assert server.answered["/v1/completions"] >= 1


async def test_connect_takes_a_backend_config_or_its_fields_as_keywords() -> None:
    url = "http://127.0.0.1:9/v1"
    config = icm.BackendConfig(base_url=url, model="m", top_k=5, api="completions")
    assert config.base_url == (url,)
    async with (
        icm.connect(config=config, check=False, cache=False) as built,
        icm.connect(url, "m", top_k=5, api="completions", check=False, cache=False) as keywords,
    ):
        assert built.identity == keywords.identity == "openai-completions:m:top5:?"
    with pytest.raises(icm.ConfigError, match="not both"):
        async with icm.connect(url, config=config, check=False):
            raise AssertionError("unreachable")
    for wrong, field in (({"tok_k": 5}, "tok_k"), ({"api": "rest"}, "api")):
        with pytest.raises(icm.ConfigError, match=f"field '{field}'"):
            async with icm.connect(url, check=False, **wrong):
                raise AssertionError("unreachable")
