"""A ready backend from a base URL: built, stacked for long runs, checked, and closed.

``connect`` is what the CLI does before a run, for Python users: one ``OpenAICompletions``
per URL (a ``Routing`` over several), the disk cache, retries and the concurrency limit
(``stack``), then ``preflight``: one quick real request, so that a wrong URL, key or model
fails in seconds with a ``ConfigError`` naming what to fix instead of after minutes of the
run's patient retries. Without a URL the embedded model is started (the ``local`` extra)
and stopped on exit.

    async with icm.connect("http://localhost:8000/v1", task=task) as backend:
        result = await icm.label(examples, task, backend)
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

from .backends import OpenAICompletions, Routing, Usage, stack
from .backends.base import Backend, ScoreRequest
from .backends.openai.probe import PROBE_TEXT
from .backends.preflight import preflight
from .backends.transport import MAX_RESPONSE_BYTES
from .dataset import Example
from .errors import ConfigError
from .tasks import Task

DEFAULT_TIMEOUT = 120.0
"""Seconds for one request, whole (``--timeout``)."""

DEFAULT_CONCURRENCY = 8
"""Requests in flight at most per endpoint (``--concurrency``)."""


@asynccontextmanager
async def connect(
    base_url: str | Sequence[str] | None = None,
    model: str | None = None,
    *,
    task: Task | None = None,
    example: Example | None = None,
    check: bool = True,
    provider: str = "auto",
    api_key_env: str = "OPENAI_API_KEY",
    top_k: int = 20,
    max_concurrency: int = DEFAULT_CONCURRENCY,
    cache_dir: str | os.PathLike[str] | bool | None = None,
    max_calls: int | None = None,
    max_prompt_tokens: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    max_response_bytes: int = MAX_RESPONSE_BYTES,
) -> AsyncIterator[Backend]:
    """A backend for ``label``/``label_large``/``evaluate``, closed on exit.

    ``base_url``: a server root (with or without ``/v1``), several replicas of one model
    (routed with prefix affinity), or None for the embedded model. ``provider``: what the
    server supports (``vllm``, ``llamacpp``, a hosted API; ``auto`` probes). The key comes
    from ``$api_key_env``. ``max_concurrency``: requests in flight per endpoint.
    ``cache_dir``: the score cache (None: the default directory; False: none).
    ``max_calls``/``max_prompt_tokens``: a budget on what reaches the server.
    ``timeout``: seconds for each request, whole; ``max_response_bytes``: the largest answer
    taken (decompressed).

    ``check`` (default): one request before returning; ``ConfigError`` when the server cannot
    be reached or refuses, and with ``task`` given, ``TaskError`` when a label word is not one
    token. ``example`` (with ``task``) is the probe prompt: pass the longest one, so that an
    example the model cannot hold fails here too.
    """
    urls = [base_url] if isinstance(base_url, str) else list(base_url or [])
    if example is not None and task is None:
        raise ConfigError("connect(example=...) needs the task that renders it", field="task")
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
        usage = Usage()
        replicas = [
            OpenAICompletions(
                url,
                model,
                provider=provider,
                api_key_env=api_key_env,
                top_k=top_k,
                usage=usage,
                timeout=timeout,
                max_response_bytes=max_response_bytes,
            )
            for url in urls
        ]
        inner: Backend = replicas[0]
        if len(replicas) > 1:
            inner = Routing(replicas, max_concurrency=max_concurrency)
        exits.push_async_callback(inner.aclose)
        backend = stack(
            inner,
            cache_dir=cache_dir,
            # Replicas: the routing's default (2 x the slots: a queue where affinity holds).
            max_concurrency=max_concurrency if len(replicas) == 1 else None,
            max_calls=max_calls,
            max_prompt_tokens=max_prompt_tokens,
        )
        if backend is not inner:
            exits.push_async_callback(backend.aclose)
        if check:
            probe, name, owner = _probe(task, example)
            await preflight(
                backend, probe, probe_name=name, labels_of=owner, check_labels=task is not None
            )
        yield backend


def _probe(task: Task | None, example: Example | None) -> tuple[ScoreRequest, str, str]:
    """(the probe request, its name, the owner of its label words) for ``preflight``."""
    if task is None:
        return ScoreRequest(PROBE_TEXT, (" Paris",)), "a test prompt", "the test prompt"
    owner = f"task {task.name!r}"
    if example is None:
        return ScoreRequest(PROBE_TEXT, task.labels), "a test prompt", owner
    return ScoreRequest(task.render(example), task.labels), f"example {example.id!r}", owner
