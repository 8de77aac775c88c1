"""The backend options of every command that calls a model, the backend they make, and the
preflight request that checks it before a run."""

from __future__ import annotations

import argparse
import math
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError

from ..backends.config import WIRE_APIS, BackendConfig
from ..backends.openai.profiles import PROVIDER_CHOICES, get_profile, profile_for_url
from ..backends.transport import HTTPClient
from ..client import Budget, Pace, ScoringClient
from ..connection import connect, preflight_probe
from ..dataset import Example
from ..errors import ConfigError
from ..estimate import RunPlan
from ..prices import ASSUMED_CACHED_SHARE, Price, find_price, run_cost
from ..tasks import Task
from ._io import option_error

_FIELDS = BackendConfig.model_fields
_MB = 2**20


def add_backend_arguments(p: Any) -> Any:
    """The backend options, shared by every subcommand that calls a model (see ``open_backend``):
    ``BackendConfig``'s fields, their defaults and descriptions (``backend_config`` reads
    them back), and the price and cache options of the run."""
    b = p.add_argument_group("backend (default: the embedded local model)")

    def field(flag: str, name: str, **options: Any) -> None:
        info = _FIELDS[name]
        options.setdefault("default", info.default)
        b.add_argument(flag, dest=name, help=info.description, **options)

    field("--base-url", "base_url", action="append", default=None)
    field("--model", "model")
    field("--provider", "provider", choices=PROVIDER_CHOICES)
    field("--api", "api", choices=WIRE_APIS)
    field("--api-key-env", "api_key_env")
    field("--top-k", "top_k", type=int)
    field("--timeout", "timeout", type=positive_finite, metavar="SECONDS")
    b.add_argument(
        "--max-response-mb",
        type=positive_finite,
        default=_FIELDS["max_response_bytes"].default / _MB,
        metavar="MB",
        help=_FIELDS["max_response_bytes"].description,
    )
    field("--http", "http", choices=get_args(HTTPClient))
    field("--concurrency", "max_concurrency", type=int, metavar="CONCURRENCY")
    for name in ("max_rpm", "max_tpm"):  # the run's Pace (``pace_of``)
        pace = Pace.model_fields[name]
        b.add_argument("--" + name.replace("_", "-"), type=int, metavar="N", help=pace.description)
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


def backend_config(args: argparse.Namespace) -> BackendConfig:
    """The ``BackendConfig`` the backend options give (``add_backend_arguments``)."""
    if args.max_concurrency < 1:
        raise ConfigError(f"--concurrency must be at least 1, got {args.max_concurrency}")
    settings = {name: getattr(args, name) for name in _FIELDS if name != "max_response_bytes"}
    settings["base_url"] = tuple(args.base_url or ())
    try:
        return BackendConfig(**settings, max_response_bytes=int(args.max_response_mb * _MB))
    except ValidationError as exc:
        raise option_error(exc) from None


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
    config: BackendConfig,
    args: argparse.Namespace,
    exits: AsyncExitStack,
    *,
    max_calls: int | None = None,
    max_tokens: int | None = None,
) -> ScoringClient:
    """The run's client (``connect``), closed with ``exits``; checked by ``preflight_backend``."""
    backend = connect(
        config=config,
        check=False,  # preflight_backend probes with the longest example, named by its file
        cache=False if args.no_cache else (args.cache_dir or True),
        # budgets: ``icm label`` only, what is left of the run's
        budget=Budget(max_calls=max_calls, max_prompt_tokens=max_tokens),
        pace=pace_of(config, args),
    )
    return await exits.enter_async_context(backend)


def _provider(config: BackendConfig) -> str | None:
    """The provider's name: as given, else a known host's, else None."""
    if config.provider != "auto":
        return config.provider
    profile = profile_for_url(config.base_url[0]) if config.base_url else None
    return profile.name if profile is not None else None


def pace_of(config: BackendConfig, args: argparse.Namespace) -> Pace | None:
    """Pacing for the run: the caps given, and the headers of a hosted API known by name."""
    provider = _provider(config)
    hosted = provider is not None and get_profile(provider).hosted
    if args.max_rpm is None and args.max_tpm is None and not hosted:
        return None
    for name in ("max_rpm", "max_tpm"):
        value = getattr(args, name)
        if value is not None and value < 1:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} must be at least 1, got {value}", field=name)
    return Pace(max_rpm=args.max_rpm, max_tpm=args.max_tpm)


def cost_line(config: BackendConfig, args: argparse.Namespace, plan: RunPlan) -> str:
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
    elif (provider := _provider(config)) is not None:
        price = find_price(provider, config.model)
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
    probe, name, owner = preflight_probe(task, longest, source=f"{path} (the longest prompt)")
    await client.preflight(probe, probe_name=name, labels_of=owner)
    note = route_note(client)
    if note:
        print(f"icm: route: {note}", file=sys.stderr)


def route_note(client: ScoringClient) -> str:
    """Which wire API ``--api auto`` took and why ('' where nothing was chosen)."""
    return client.backend.note
