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

from .backends import OpenAICompletions, Routing, Usage
from .backends.base import Backend, ScoreRequest
from .backends.openai import AutoRoute, OpenAIChat
from .backends.openai.probe import PROBE_TEXT
from .backends.openai.route import WIRE_APIS, WireAPI
from .backends.openai.sdk import sdk_settings
from .backends.transport import MAX_RESPONSE_BYTES, HTTPClient
from .client import DEFAULT_CONCURRENCY, DEFAULT_RETRY, Budget, Pace, Pacer, Retry, ScoringClient
from .client.client import CacheSetting
from .dataset import Example
from .errors import ConfigError
from .tasks import Task

DEFAULT_TIMEOUT = 120.0
"""Seconds for one request, whole (``--timeout``)."""


@asynccontextmanager
async def connect(
    base_url: str | Sequence[str] | None = None,
    model: str | None = None,
    *,
    task: Task | None = None,
    example: Example | None = None,
    check: bool = True,
    provider: str = "auto",
    api: WireAPI = "auto",
    api_key_env: str = "OPENAI_API_KEY",
    top_k: int = 20,
    max_concurrency: int = DEFAULT_CONCURRENCY,
    cache: CacheSetting = True,
    retry: Retry | None = DEFAULT_RETRY,
    budget: Budget | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    max_response_bytes: int = MAX_RESPONSE_BYTES,
    http: HTTPClient = "httpx",
    pace: Pace | None = None,
    client: object | None = None,
) -> AsyncIterator[ScoringClient]:
    """A ``ScoringClient`` for ``label``/``label_large``/``evaluate``, closed on exit.

    ``base_url``: a server root (with or without ``/v1``), several replicas of one model
    (routed with prefix affinity), or None for the embedded model. ``provider``: what the
    server supports (``vllm``, ``llamacpp``, a hosted API; ``auto`` probes). ``api``: the wire
    API, ``completions`` (base models), ``chat`` (``/v1/chat/completions`` with
    ``top_logprobs``: instruct models, the prototyping route) or ``auto`` (completions, unless
    the server refuses them for this model: ``AutoRoute``, whose ``note`` says which). The key comes
    from ``$api_key_env``. ``max_concurrency``: requests in flight per endpoint (over
    replicas the client lets in twice their sum: see ``ScoringClient``). ``cache``,
    ``retry``, ``budget``: the client's policies (see ``ScoringClient``). ``timeout``:
    seconds for each request, whole; ``max_response_bytes``: the largest answer taken
    (decompressed). ``http``: the HTTP client under httpx2's API, its own (default) or
    ``"aiohttp"`` (the ``aiohttp`` extra: less client CPU with hundreds of requests in flight
    that each carry one prompt; ``benchmarks/README.md``). ``pace``: requests and tokens per
    minute at most, and pacing from the server's ``x-ratelimit-*`` headers (``Pace``), for a
    shared API. ``client``: an ``openai.AsyncOpenAI`` whose base URL, key, organisation,
    project, default headers and timeout are used (``backends/openai/sdk.py``); its own
    retries are not (the ``retry`` policy decides), nor is its connection pool.

    ``check`` (default): one request before returning; ``ConfigError`` when the server cannot
    be reached or refuses, and with ``task`` given, ``TaskError`` when a label word is not one
    token. ``example`` (with ``task``) is the probe prompt: pass the longest one, so that an
    example the model cannot hold fails here too. ``check=False`` sends nothing: call
    ``client.preflight`` yourself.
    """
    urls = [base_url] if isinstance(base_url, str) else list(base_url or [])
    api_key: str | None = None
    headers: dict[str, str] = {}
    if client is not None:
        if urls:
            raise ConfigError("give base_url or client=, not both", field="client")
        sdk = sdk_settings(client)
        urls, api_key, headers = [sdk.base_url], sdk.api_key, sdk.headers
        timeout = sdk.timeout or timeout
    if example is not None and task is None:
        raise ConfigError("connect(example=...) needs the task that renders it", field="task")
    if api not in WIRE_APIS:
        raise ConfigError(f"api must be one of {', '.join(WIRE_APIS)}, got {api!r}", field="api")
    if max_concurrency < 1:
        raise ConfigError(
            f"max_concurrency must be at least 1, got {max_concurrency}", field="max_concurrency"
        )
    async with AsyncExitStack() as exits:
        if not urls:
            from .local import EmbeddedServer

            server = await exits.enter_async_context(EmbeddedServer())
            urls, model = [server.base_url], server.model_name
            if provider == "auto":
                provider = "llamacpp"  # known: no need to probe the embedded server
            api = "completions" if api == "auto" else api
        usage = Usage()
        pacer = Pacer(pace) if pace is not None else None
        common: dict[str, Any] = {
            "on_headers": pacer.observe if pacer is not None else None,
            "api_key": api_key,
            "headers": headers,
            "api_key_env": api_key_env,
            "top_k": top_k,
            "usage": usage,
            "timeout": timeout,
            "max_response_bytes": max_response_bytes,
            "http": http,
        }
        replicas: list[OpenAICompletions | OpenAIChat | AutoRoute] = []
        for url in urls:
            if api == "chat":
                replicas.append(OpenAIChat(url, model, provider=provider, **common))
                continue
            completions = OpenAICompletions(url, model, provider=provider, **common)
            if api == "completions":
                replicas.append(completions)
            else:
                chat = OpenAIChat(url, model, provider=provider, **common)
                replicas.append(AutoRoute(completions, chat))
        for replica in replicas:  # until the client owns them (it closes its backend)
            exits.push_async_callback(replica.aclose)
        backend: Backend = replicas[0]
        if len(replicas) > 1:
            backend = Routing(replicas, max_concurrency=max_concurrency)
        scoring = ScoringClient(
            backend,
            cache=cache,
            retry=retry,
            # Replicas: the client's default (2 x the slots: a queue where affinity holds).
            max_concurrency=max_concurrency if len(replicas) == 1 else None,
            budget=budget,
            pacer=pacer,
        )
        exits.push_async_callback(scoring.aclose)
        if check:
            probe, name, owner = _probe(task, example)
            await scoring.preflight(
                probe, probe_name=name, labels_of=owner, check_labels=task is not None
            )
        yield scoring


def _probe(task: Task | None, example: Example | None) -> tuple[ScoreRequest, str, str]:
    """(the probe request, its name, the owner of its label words) for ``preflight``."""
    if task is None:
        return ScoreRequest(PROBE_TEXT, (" Paris",)), "a test prompt", "the test prompt"
    owner = f"task {task.name!r}"
    if example is None:
        return ScoreRequest(PROBE_TEXT, task.labels), "a test prompt", owner
    return ScoreRequest(task.render(example), task.labels), f"example {example.id!r}", owner
