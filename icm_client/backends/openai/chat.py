"""Scoring through an OpenAI-compatible ``/v1/chat/completions`` server: the prototyping route.

Where a host serves no base model on ``/v1/completions`` (OpenAI, Together's and Fireworks'
serverless lists, OpenRouter), its chat endpoint still returns the log-probabilities of the
first answer token: ``max_tokens: 1, temperature: 0, logprobs: true, top_logprobs: k``
(k at most 20 on OpenAI and Together, 5 on Fireworks). The prompt goes as chat messages
(``chat_messages.py``): on hosts that continue a pre-filled assistant turn (vLLM with
``continue_final_message: true, add_generation_prompt: false``; llama.cpp) the raw prompt is
continued, so an instruct model is read like a base model; elsewhere the demonstrations
become user/assistant turns and the target the last user turn.

What it costs in fidelity: an instruct model is not the pretrained model ICM assumes. Its
label probabilities are shaped by post-training (confident, often miscalibrated), and the
``turns`` style adds a system instruction. Use it to prototype a task; label with a base
model (``OpenAICompletions`` on vLLM, llama.cpp, Tinker) for results that mean what the
paper's do. Multi-token label words cannot be scored here (top-k of one position only).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Self

import httpx2

from ...errors import ConfigError
from ..affinity import affinity_digest
from ..base import Backend, ScoreRequest, ScoreResult, Usage, estimate_tokens
from ..config import DEFAULT_API_KEY_ENV, DEFAULT_TIMEOUT, DEFAULT_TOP_K
from ..transport import (
    DEFAULT_MAX_CONNECTIONS,
    MAX_RESPONSE_BYTES,
    HTTPClient,
    JSONTransport,
    token_counts,
)
from .chat_messages import ChatStyle, chat_label_logprobs, chat_messages
from .logprobs import parse_top_logprobs
from .profiles import GENERIC, Profile, profile_of

__all__ = ["OpenAIChat"]

CHAT_PATH = "/v1/chat/completions"


class OpenAIChat(Backend):
    """A ``Backend`` over ``POST {base_url}/v1/chat/completions``.

    ``provider``: a profile name, a ``Profile``, or ``auto`` (a well-known host by its name,
    else ``generic``); it gives the cap on ``top_logprobs`` and whether the host continues a
    pre-filled assistant turn. ``style`` overrides the latter (``continue`` or ``turns``).
    The other arguments are ``OpenAICompletions``'s. Labels absent from the top-k are upper
    bounds (``bounded``), as on completions.
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        provider: str | Profile = "auto",
        style: ChatStyle | None = None,
        api_key: str | None = None,
        api_key_env: str = DEFAULT_API_KEY_ENV,
        top_k: int = DEFAULT_TOP_K,
        timeout: float = DEFAULT_TIMEOUT,
        client: httpx2.AsyncClient | None = None,
        usage: Usage | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        http: HTTPClient = "httpx",
        headers: Mapping[str, str] | None = None,
        on_headers: Callable[[httpx2.Headers], None] | None = None,
    ) -> None:
        if top_k < 1:
            raise ConfigError(f"top_k must be at least 1, got {top_k}", field="top_k")
        if style not in (None, "continue", "turns"):
            raise ConfigError(f"style must be 'continue' or 'turns', got {style!r}", field="style")
        profile = profile_of(provider, base_url) or GENERIC
        self._http = JSONTransport(
            base_url,
            model,
            api_key=api_key,
            api_key_env=api_key_env,
            timeout=timeout,
            client=client,
            max_response_bytes=max_response_bytes,
            max_connections=max_connections,
            http=http,
            headers=headers,
            observer=on_headers,
        )
        self._profile = profile
        self._style: ChatStyle = style or ("continue" if profile.chat_continue else "turns")
        cap = profile.chat_max_logprobs
        self._top_k = min(top_k, cap) if cap is not None else top_k
        self.usage: Usage = usage if usage is not None else Usage()

    @property
    def identity(self) -> str:
        """Wire API, host (hosted only), model, k and style: a chat score never shares a
        cache entry with a completions score of the same prompt."""
        parts = ["openai-chat"]
        if self._profile.hosted:
            parts.append(self._profile.name)
        parts += [self._http.model or "?", f"top{self._top_k}", self._style]
        return ":".join(parts)

    @property
    def model(self) -> str | None:
        return self._http.model

    @property
    def profile(self) -> Profile:
        return self._profile

    @property
    def style(self) -> ChatStyle:
        return self._style

    @property
    def top_k(self) -> int:
        return self._top_k

    @property
    def chat_url(self) -> str:
        return self._http.shown_root + CHAT_PATH

    def __repr__(self) -> str:
        key = "set" if self._http.api_key else "none"
        return (
            f"OpenAIChat({self._http.shown_root!r}, model={self._http.model!r}, "
            f"provider={self._profile.name!r}, style={self._style!r}, top_k={self._top_k}, "
            f"api_key={key})"
        )

    async def prepare(self) -> None:
        """Discover the served model, so that ``identity`` is final."""
        await self._http.resolve_model()

    async def score(self, request: ScoreRequest) -> ScoreResult:
        if request.prompt != request.prompt.rstrip():
            raise ValueError(
                "prompt must not end in whitespace: the label words carry their leading space"
            )
        model = await self._http.resolve_model()
        payload: dict[str, object] = {
            "model": model,
            "messages": chat_messages(request.prompt, request.labels, self._style),
            "max_tokens": 1,
            "temperature": 0,
            "logprobs": True,
            "top_logprobs": self._top_k,
            **self._profile.extra_body,
        }
        if self._style == "continue":  # vLLM's fields; llama.cpp continues without them
            payload["continue_final_message"] = True
            payload["add_generation_prompt"] = False
        header = self._profile.affinity_header
        pin = {header: affinity_digest(request.prompt)} if header else None
        used = self.usage
        async with used.sending(1, estimate_tokens(request.prompt)):  # counted before it goes
            body = await self._http.call("POST", CHAT_PATH, payload, pin)
            prompt_tokens, cached_tokens = token_counts(body)
            used.prompt_tokens += prompt_tokens
        top = parse_top_logprobs(body, endpoint=self.chat_url)[0]
        logprobs, bounded = chat_label_logprobs(top, request.labels, self._style)
        used.cached_tokens += cached_tokens
        used.bounded_labels += sum(bounded)
        used.count("http_requests")
        return ScoreResult(logprobs, bounded, prompt_tokens, cached_tokens)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
