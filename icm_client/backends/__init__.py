"""Scoring backends, and the wrappers that make one fit for long runs.

``stack(OpenAICompletions(url))`` gives ``Cached(Retrying(Limited(inner)))``: the cache answers
first (no request for a known prompt), retries sit outside the concurrency limit (a request
backing off holds no slot), and every layer shares the inner backend's ``Usage``.
"""

from __future__ import annotations

import os

from .base import Backend, ScoreRequest, ScoreResult, Usage, prepare
from .cache import CACHE_VERSION, Cached, cache_key, default_cache_dir
from .limit import Limited
from .logprobs import label_logprobs, missing_label_bound, parse_top_logprobs
from .openai_compat import OpenAICompletions
from .retry import Retrying

__all__ = [
    "CACHE_VERSION",
    "Backend",
    "Cached",
    "Limited",
    "OpenAICompletions",
    "Retrying",
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
    max_concurrency: int = 8,
    retry: bool = True,
) -> Backend:
    """``Cached(Retrying(Limited(inner)))``.

    ``cache_dir``: a directory; None or True for the default (``$ICM_CACHE_DIR``, else
    ``~/.cache/icm-client``); False for no cache. ``retry=False`` drops the retry layer (for
    tests and for callers that retry themselves). Closing the result closes ``inner`` too.
    """
    backend: Backend = Limited(inner, max_concurrency)
    if retry:
        backend = Retrying(backend)
    if cache_dir is not False:
        backend = Cached(backend, None if cache_dir is True else cache_dir)
    return backend
