"""Scoring through any OpenAI-compatible ``/v1/completions`` server (vLLM, llama.cpp, hosted).

``OpenAICompletions`` (``completions.py``) is the backend: its identity and ``score``. It
composes the requests to one server (``requests.py``) and a scoring strategy chosen by
``mode`` (``next_token.py``, ``echo.py``). Beside it: what a host can do as data
(``profiles.py``), finding that out by asking (``probe.py``), reading logprobs out of answers
(``logprobs.py``), label words' token ids in context (``label_tokens.py``), many prompts in
one request (``batching.py``) and the model's context window (``context_window.py``).

``OpenAIChat`` (``chat.py``) is the second wire API, ``/v1/chat/completions`` with
``top_logprobs`` (the prompt as messages: ``chat_messages.py``), and ``AutoRoute``
(``route.py``) picks between the two for a server.
"""

from __future__ import annotations

from .chat import OpenAIChat
from .completions import OpenAICompletions
from .route import AutoRoute

__all__ = ["AutoRoute", "OpenAIChat", "OpenAICompletions"]
