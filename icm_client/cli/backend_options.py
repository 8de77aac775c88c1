"""The backend options of every command that calls a model, the backend they make, and the
preflight request that checks it before a run."""

from __future__ import annotations

import argparse
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, get_args

from ..backends.base import ScoreRequest
from ..backends.openai.profiles import PROVIDER_CHOICES
from ..backends.openai.route import WIRE_APIS
from ..backends.transport import MAX_RESPONSE_BYTES, HTTPClient
from ..client import DEFAULT_CONCURRENCY, Budget, ScoringClient
from ..connection import DEFAULT_TIMEOUT, connect
from ..dataset import Example
from ..tasks import Task


def add_backend_arguments(p: Any) -> Any:
    """The backend options, shared by every subcommand that calls a model (see ``open_backend``)."""
    b = p.add_argument_group("backend (default: the embedded local model)")
    b.add_argument(
        "--base-url",
        action="append",
        help="OpenAI-compatible server, e.g. http://localhost:8000/v1; repeat it for replicas "
        "of one model (routed with prefix affinity and failover)",
    )
    b.add_argument("--model", help="model name on the server (default: the server's first)")
    b.add_argument(
        "--provider",
        choices=PROVIDER_CHOICES,
        default="auto",
        help="what the server supports (vllm, llamacpp, a hosted API...); 'auto' (default): "
        "known by its host name, else probed with a few tiny requests",
    )
    b.add_argument(
        "--api",
        choices=WIRE_APIS,
        default="auto",
        help="wire API: 'completions' (/v1/completions, base models), 'chat' "
        "(/v1/chat/completions with top_logprobs: instruct models, for prototyping only) or "
        "'auto' (default): completions, unless the server refuses them for this model",
    )
    b.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        help="environment variable holding the API key (default OPENAI_API_KEY)",
    )
    b.add_argument("--top-k", type=int, default=20, help="logprobs to request per call")
    b.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"the most one request may take, whole (default {DEFAULT_TIMEOUT:g})",
    )
    b.add_argument(
        "--max-response-mb",
        type=float,
        default=MAX_RESPONSE_BYTES / 2**20,
        metavar="MB",
        help=f"refuse a server answer larger than this (default {MAX_RESPONSE_BYTES // 2**20})",
    )
    b.add_argument(
        "--http",
        choices=get_args(HTTPClient),
        default="httpx",
        help="HTTP client: httpx2's own (default) or aiohttp under its API (pip install "
        "'icm-client[aiohttp]'; less CPU with hundreds of requests in flight)",
    )
    b.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help="requests in flight at most (per --base-url)",
    )
    b.add_argument(
        "--cache-dir", help="score cache directory (default $ICM_CACHE_DIR or ~/.cache/icm-client)"
    )
    b.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    return b


async def open_backend(
    args: argparse.Namespace,
    exits: AsyncExitStack,
    *,
    max_calls: int | None = None,
    max_tokens: int | None = None,
) -> ScoringClient:
    """The run's client (``connect``), closed with ``exits``; checked by ``preflight_backend``."""
    backend = connect(
        args.base_url or None,
        args.model,
        check=False,  # preflight_backend probes with the longest example, named by its file
        provider=args.provider,
        api=args.api,
        api_key_env=args.api_key_env,
        top_k=args.top_k,
        max_concurrency=args.concurrency,
        cache=False if args.no_cache else (args.cache_dir or True),
        # budgets: ``icm label`` only, what is left of the run's
        budget=Budget(max_calls=max_calls, max_prompt_tokens=max_tokens),
        timeout=args.timeout,
        max_response_bytes=int(args.max_response_mb * 2**20),
        http=args.http,
    )
    return await exits.enter_async_context(backend)


async def preflight_backend(
    client: ScoringClient, task: Task, longest: Example, path: Path
) -> None:
    """A wrong URL, key or model, or an example the model cannot hold, fails here in seconds
    (exit 2) instead of after minutes of retries or hours into the run."""
    await client.preflight(
        ScoreRequest(task.render(longest), task.labels),
        probe_name=f"example {longest.id!r} of {path} (the longest prompt)",
        labels_of=f"task {task.name!r}",
    )
    note = route_note(client)
    if note:
        print(f"icm: route: {note}", file=sys.stderr)


def route_note(client: ScoringClient) -> str:
    """Which wire API ``--api auto`` took and why ('' where nothing was chosen)."""
    return str(getattr(client.backend, "note", "") or "")
