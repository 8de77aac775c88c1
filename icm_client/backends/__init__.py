"""Scoring backends: what turns a prompt into label-word log-probabilities.

``OpenAICompletions`` (an OpenAI-compatible ``/v1/completions`` server), ``OpenAIChat`` (its
``/v1/chat/completions``, for instruct models), ``Routing`` (several replicas of one model
behind one backend), ``tinker.TinkerBackend`` (Tinker's base models, an optional extra) and
the Anthropic samplers. Caching, retries,
concurrency limits and budgets are the ``ScoringClient``'s (``icm_client.client``).
"""

from __future__ import annotations

from .base import Backend, ScoreRequest, ScoreResult, Usage
from .openai import OpenAICompletions
from .openai.logprobs import label_logprobs, missing_label_bound, parse_top_logprobs
from .routing import Routing

__all__ = [
    "Backend",
    "OpenAICompletions",
    "Routing",
    "ScoreRequest",
    "ScoreResult",
    "Usage",
    "label_logprobs",
    "missing_label_bound",
    "parse_top_logprobs",
]
