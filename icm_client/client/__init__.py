"""The scoring client: one backend, and the policies that make it fit for long runs.

``ScoringClient`` (``client.py``) owns what every backend needs and none should repeat:
request de-duplication, the score cache (``cache.py``), retries (``Retry``), the concurrency
limit, the budget (``Budget``), pacing under rate limits (``Pace``, ``pacing.py``), usage
counters, the preflight (``preflight.py``) and closing.
"""

from __future__ import annotations

from .cache import CACHE_VERSION, ScoreCache, cache_key, default_cache_dir
from .client import ScoringClient
from .pacing import Pace, Pacer
from .policies import DEFAULT_CONCURRENCY, DEFAULT_RETRY, PREFLIGHT_RETRY, Budget, Retry
from .preflight import preflight

__all__ = [
    "CACHE_VERSION",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_RETRY",
    "PREFLIGHT_RETRY",
    "Budget",
    "Pace",
    "Pacer",
    "Retry",
    "ScoreCache",
    "ScoringClient",
    "cache_key",
    "default_cache_dir",
    "preflight",
]
