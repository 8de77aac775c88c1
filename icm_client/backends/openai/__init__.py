"""Scoring through any OpenAI-compatible ``/v1/completions`` server (vLLM, llama.cpp, hosted).

``OpenAICompletions`` (``completions.py``) is the backend: its identity and ``score``. It
composes the requests to one server (``requests.py``) and a scoring strategy chosen by
``mode`` (``next_token.py``, ``echo.py``). Beside it: what a host can do as data
(``profiles.py``), finding that out by asking (``probe.py``), reading logprobs out of answers
(``logprobs.py``), label words' token ids in context (``label_tokens.py``), many prompts in
one request (``batching.py``) and the model's context window (``context_window.py``).
"""

from __future__ import annotations

from .completions import OpenAICompletions

__all__ = ["OpenAICompletions"]
