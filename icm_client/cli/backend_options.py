"""The backend options of every command that calls a model, the backend they make, and the
preflight request that checks it before a run."""

from __future__ import annotations

import argparse
import math
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, get_args

from ..backends.base import ScoreRequest
from ..backends.openai.profiles import PROVIDER_CHOICES, get_profile, profile_for_url
from ..backends.openai.route import WIRE_APIS
from ..backends.transport import MAX_RESPONSE_BYTES, HTTPClient
from ..client import DEFAULT_CONCURRENCY, Budget, Pace, ScoringClient
from ..connection import DEFAULT_TIMEOUT, connect
from ..dataset import Example
from ..errors import ConfigError
from ..estimate import RunPlan
from ..prices import ASSUMED_CACHED_SHARE, Price, find_price, run_cost
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
        type=positive_finite,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"the most one request may take, whole (default {DEFAULT_TIMEOUT:g}); every "
        "request has a deadline, so there is no value for none",
    )
    b.add_argument(
        "--max-response-mb",
        type=positive_finite,
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
        "--max-rpm",
        type=int,
        metavar="N",
        help="requests per minute at most (for hosts that send no x-ratelimit-* headers; "
        "hosted APIs known by name are also paced by their headers)",
    )
    b.add_argument(
        "--max-tpm", type=int, metavar="N", help="prompt tokens per minute at most (estimated)"
    )
    b.add_argument(
        "--price-per-mtok",
        type=float,
        metavar="USD",
        help="price of a million prompt tokens, for the plan's dollar estimate (default: the "
        "price table's entry for a known hosted model)",
    )
    b.add_argument(
        "--cached-discount",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="with --price-per-mtok: the share taken off prompt tokens served from the "
        "provider's cache (e.g. 0.5)",
    )
    b.add_argument(
        "--cache-dir", help="score cache directory (default $ICM_CACHE_DIR or ~/.cache/icm-client)"
    )
    b.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    return b


def positive_finite(text: str) -> float:
    """An option's number of seconds or megabytes: finite and above 0. ``inf`` would turn
    a deadline or a size cap silently off, and ``nan`` compares false with everything."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text!r}")
    return value


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
        pace=pace_of(args),
    )
    return await exits.enter_async_context(backend)


def _provider(args: argparse.Namespace) -> str | None:
    """The provider's name: as given, else a known host's, else None."""
    if args.provider != "auto":
        return str(args.provider)
    profile = profile_for_url(args.base_url[0]) if args.base_url else None
    return profile.name if profile is not None else None


def pace_of(args: argparse.Namespace) -> Pace | None:
    """Pacing for the run: the caps given, and the headers of a hosted API known by name."""
    provider = _provider(args)
    hosted = provider is not None and get_profile(provider).hosted
    if args.max_rpm is None and args.max_tpm is None and not hosted:
        return None
    for name in ("max_rpm", "max_tpm"):
        value = getattr(args, name)
        if value is not None and value < 1:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} must be at least 1, got {value}", field=name)
    return Pace(max_rpm=args.max_rpm, max_tpm=args.max_tpm)


def cost_line(args: argparse.Namespace, plan: RunPlan) -> str:
    """The plan's dollar estimate ('' where no price is known)."""
    price: Price | None = None
    if args.price_per_mtok is not None:
        if args.price_per_mtok < 0 or not 0 <= args.cached_discount <= 1:
            raise ConfigError(
                "--price-per-mtok must be >= 0 and --cached-discount between 0 and 1, got "
                f"{args.price_per_mtok} and {args.cached_discount}",
                field="price_per_mtok",
            )
        price = Price(input_per_mtok=args.price_per_mtok, cached_discount=args.cached_discount)
    elif (provider := _provider(args)) is not None:
        price = find_price(provider, args.model)
    if price is None:
        return ""
    dollars = run_cost(price, plan.prompt_tokens, plan.calls)
    return (
        f"cost: about ${dollars:,.2f} at ${price.input_per_mtok:g} per million prompt tokens "
        f"({price.cached_discount:.0%} off the {ASSUMED_CACHED_SHARE:.0%} assumed "
        f"prefix-cached; {price.source}; --price-per-mtok to change it)"
    )


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
    return client.backend.note
