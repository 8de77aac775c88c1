"""Scoring backends: what turns a prompt into label-word log-probabilities.

``BackendConfig`` (where the model is and how to reach it: ``config.py``),
``OpenAICompletions`` (an OpenAI-compatible ``/v1/completions`` server), ``OpenAIChat`` (its
``/v1/chat/completions``, for instruct models), ``Routing`` (several replicas of one model
behind one backend), ``tinker.TinkerBackend`` (Tinker's base models, an optional extra) and
the Anthropic samplers. Caching, retries,
concurrency limits and budgets are the ``ScoringClient``'s (``icm_client.client``).
"""

from __future__ import annotations

from .base import Backend, ScoreRequest, ScoreResult, Usage
from .config import BackendConfig
from .openai import OpenAICompletions
from .routing import Routing

__all__ = [
    "Backend",
    "BackendConfig",
    "OpenAICompletions",
    "Routing",
    "ScoreRequest",
    "ScoreResult",
    "Usage",
]
