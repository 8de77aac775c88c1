"""Scoring backends, and the wrappers that make one fit for long runs.

``stack(OpenAICompletions(url))`` gives ``Cached(Retrying(Limited(inner)))``: the cache answers
first (no request for a known prompt), retries sit outside the concurrency limit (a request
backing off holds no slot), and every layer shares the inner backend's ``Usage``.
"""

from __future__ import annotations

import os

from .base import Backend, ScoreRequest, ScoreResult, Usage, prepare
from .budget import Budgeted
from .cache import CACHE_VERSION, Cached, cache_key, default_cache_dir
from .limit import Limited
from .openai import OpenAICompletions
from .openai.logprobs import label_logprobs, missing_label_bound, parse_top_logprobs
from .retry import Retrying
from .routing import Routing

__all__ = [
    "CACHE_VERSION",
    "Backend",
    "Budgeted",
    "Cached",
    "Limited",
    "OpenAICompletions",
    "Retrying",
    "Routing",
    "ScoreRequest",
    "ScoreResult",
    "Usage",
    "cache_key",
    "default_cache_dir",
    "label_logprobs",
    "missing_label_bound",
    "parse_top_logprobs",
    "prepare",
    "stack",
]


def stack(
    inner: Backend,
    *,
    cache_dir: str | os.PathLike[str] | bool | None = None,
    max_concurrency: int | None = None,
    retry: bool = True,
    max_calls: int | None = None,
    max_prompt_tokens: int | None = None,
) -> Backend:
    """``Cached(Retrying(Limited(Budgeted(inner))))``.

    ``cache_dir``: a directory; None or True for the default (``$ICM_CACHE_DIR``, else
    ``~/.cache/icm-client``); False for no cache. ``retry=False`` drops the retry layer (for
    tests and for callers that retry themselves). ``max_calls``/``max_prompt_tokens`` cap what
    reaches the server (cache hits are free); without them there is no budget layer. Closing
    the result closes ``inner`` too. ``max_concurrency``: requests in flight at most; by
    default 8, and over a ``Routing`` twice its ``capacity`` (the sum of its endpoints'
    limits): the endpoints are full and as many requests again wait inside the routing,
    where each freed slot goes to a request that prefers that endpoint (its prefix cache).
    """
    if max_concurrency is None:
        max_concurrency = 2 * inner.capacity if isinstance(inner, Routing) else 8
    backend = inner
    if max_calls is not None or max_prompt_tokens is not None:
        # Inside the limit: checked when a request holds a slot, so at most max_concurrency
        # requests can be in flight past the budget (not every request queued for a slot).
        backend = Budgeted(backend, max_calls=max_calls, max_prompt_tokens=max_prompt_tokens)
    backend = Limited(backend, max_concurrency)
    if retry:
        backend = Retrying(backend)
    if cache_dir is not False:
        backend = Cached(backend, None if cache_dir is True else cache_dir)
    return backend
