"""A ready ``ScoringClient`` from a base URL: built, checked, and closed.

``connect`` is what the CLI does before a run, for Python users: one ``OpenAICompletions``
per URL (a ``Routing`` over several) in a ``ScoringClient`` with the given policies, then
its preflight: one quick real request, so that a wrong URL, key or model fails in seconds
with a ``ConfigError`` naming what to fix instead of after minutes of the run's patient
retries. Without a URL the embedded model is started (the ``local`` extra) and stopped on
exit.

    async with icm.connect("http://localhost:8000/v1", task=task) as client:
        result = await icm.label(examples, task, client)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from pydantic import ValidationError

from .backends import Routing, Usage
from .backends.base import Backend, ScoreRequest
from .backends.config import DEFAULT_TIMEOUT, BackendConfig
from .backends.openai import AutoRoute, OpenAIChat, OpenAICompletions
from .backends.openai.probe import PROBE_TEXT
from .backends.openai.route import backend_for
from .backends.openai.sdk import sdk_settings
from .client import DEFAULT_RETRY, Budget, Pace, Pacer, Retry, ScoringClient
from .client.client import CacheSetting
from .dataset import Example
from .errors import ConfigError
from .tasks import Task

__all__ = ["DEFAULT_TIMEOUT", "BackendConfig", "connect", "preflight_probe"]


@asynccontextmanager
async def connect(
    base_url: str | Sequence[str] | None = None,
    model: str | None = None,
    *,
    config: BackendConfig | None = None,
    task: Task | None = None,
    example: Example | None = None,
    check: bool = True,
    cache: CacheSetting = True,
    retry: Retry | None = DEFAULT_RETRY,
    budget: Budget | None = None,
    pace: Pace | None = None,
    client: object | None = None,
    **settings: Any,
) -> AsyncIterator[ScoringClient]:
    """A ``ScoringClient`` for ``label``/``label_large``/``evaluate``, closed on exit.

    The backend is ``config`` (a ``BackendConfig``: where the model is and how to reach
    it), or ``BackendConfig(base_url=base_url, model=model, **settings)``: a server root
    (with or without ``/v1``), several replicas of one model (routed with prefix affinity),
    or None for the embedded model; ``provider``, ``api``, ``api_key_env``, ``top_k``,
    ``max_concurrency``, ``timeout``, ``max_response_bytes``, ``http`` as its fields say.
    With ``api="auto"``, completions unless the server refuses them for this model
    (``AutoRoute``, whose ``note`` says which). Over replicas the client lets in twice the
    sum of their ``max_concurrency`` (see ``ScoringClient``).

    ``cache``, ``retry``, ``budget``: the client's policies (see ``ScoringClient``).
    ``pace``: requests and tokens per minute at most, and pacing from the server's
    ``x-ratelimit-*`` headers (``Pace``), for a shared API. ``client``: an
    ``openai.AsyncOpenAI`` whose base URL, key, organisation, project, default headers and
    timeout are used (``backends/openai/sdk.py``); its own retries are not (the ``retry``
    policy decides), nor is its connection pool.

    ``check`` (default): one request before returning; ``ConfigError`` when the server cannot
    be reached or refuses, and with ``task`` given, ``TaskError`` when a label word is not one
    token. ``example`` (with ``task``) is the probe prompt: pass the longest one, so that an
    example the model cannot hold fails here too. ``check=False`` sends nothing: call
    ``client.preflight`` yourself.
    """
    if config is None:
        config = _config(base_url=base_url, model=model, **settings)
    elif base_url is not None or model is not None or settings:
        raise ConfigError("give config= or its settings, not both", field="config")
    api_key: str | None = None
    headers: dict[str, str] = {}
    if client is not None:
        if config.base_url:
            raise ConfigError("give base_url or client=, not both", field="client")
        sdk = sdk_settings(client)
        api_key, headers = sdk.api_key, sdk.headers
        config = config.model_copy(
            update={"base_url": (sdk.base_url,), "timeout": sdk.timeout or config.timeout}
        )
    if example is not None and task is None:
        raise ConfigError("connect(example=...) needs the task that renders it", field="task")
    if config.max_concurrency < 1:
        raise ConfigError(
            f"max_concurrency must be at least 1, got {config.max_concurrency}",
            field="max_concurrency",
        )
    async with AsyncExitStack() as exits:
        if not config.base_url:
            from .local import EmbeddedServer

            server = await exits.enter_async_context(EmbeddedServer())
            config = config.model_copy(
                update={
                    "base_url": (server.base_url,),
                    "model": server.model_name,
                    # known: no need to probe the embedded server
                    "provider": "llamacpp" if config.provider == "auto" else config.provider,
                    "api": "completions" if config.api == "auto" else config.api,
                }
            )
        usage = Usage()
        pacer = Pacer(pace) if pace is not None else None
        on_headers = pacer.observe if pacer is not None else None
        replicas: list[OpenAICompletions | OpenAIChat | AutoRoute] = []
        for url in config.base_url:
            replica = backend_for(
                url, config, usage=usage, api_key=api_key, headers=headers, on_headers=on_headers
            )
            exits.push_async_callback(replica.aclose)  # until the client owns it
            replicas.append(replica)
        backend: Backend = replicas[0]
        if len(replicas) > 1:
            backend = Routing(replicas, max_concurrency=config.max_concurrency)
        scoring = ScoringClient(
            backend,
            cache=cache,
            retry=retry,
            # Replicas: the client's default (2 x the slots: a queue where affinity holds).
            max_concurrency=config.max_concurrency if len(replicas) == 1 else None,
            budget=budget,
            pacer=pacer,
        )
        exits.push_async_callback(scoring.aclose)
        if check:
            probe, name, owner = preflight_probe(task, example)
            await scoring.preflight(
                probe, probe_name=name, labels_of=owner, check_labels=task is not None
            )
        yield scoring


def _config(**settings: Any) -> BackendConfig:
    """``BackendConfig(**settings)``; a wrong setting is a ``ConfigError`` naming it."""
    try:
        return BackendConfig(**settings)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(x) for x in err["loc"]) or None
        raise ConfigError(err["msg"], field=field) from None


def preflight_probe(
    task: Task | None, example: Example | None, *, source: str | None = None
) -> tuple[ScoreRequest, str, str]:
    """(the probe request, its name, the owner of its label words) for ``preflight``:
    ``example`` as ``task`` renders it (``source`` says where it is from), else a test
    prompt followed by the task's label words, else by " Paris"."""
    if task is None:
        return ScoreRequest(PROBE_TEXT, (" Paris",)), "a test prompt", "the test prompt"
    owner = f"task {task.name!r}"
    if example is None:
        return ScoreRequest(PROBE_TEXT, task.labels), "a test prompt", owner
    name = f"example {example.id!r}" + (f" of {source}" if source else "")
    return ScoreRequest(task.render(example), task.labels), name, owner
