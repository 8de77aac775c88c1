"""Which wire API a server is scored through: completions where it serves them, else chat.

``--api auto`` (the default) asks ``/v1/completions`` once, for one token with logprobs. A
server that refuses the endpoint for this model (OpenAI's chat models answer 404 "This is a
chat model and not supported in the v1/completions endpoint"; a server without the route
404 or 405), or answers it without logprobs, is scored through ``/v1/chat/completions``
(``OpenAIChat``) instead, and ``note`` says so and why. Any other failure (a wrong key, a
model that does not exist, a server that is down) is raised as it is: it is not a question
of routes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal, Self, TypeVar

import httpx2

from ...errors import CapabilityError, PermanentBackendError
from ..base import Backend, ScoreRequest, ScoreResult, Usage
from ..config import BackendConfig
from .chat import OpenAIChat
from .completions import OpenAICompletions
from .logprobs import parse_top_entries
from .probe import PROBE_TEXT, probe_request

_Wire = TypeVar("_Wire", OpenAICompletions, OpenAIChat)

_NOT_A_ROUTE = ("model_not_found", "does not exist", "no such model", "unknown model")


def refuses_completions(exc: PermanentBackendError) -> bool:
    """Whether ``exc`` says the server has no ``/v1/completions`` for this model (not: the
    model or key is wrong)."""
    text = str(exc).lower()
    if "chat" in text and "completions" in text:  # OpenAI: "This is a chat model and not..."
        return True
    if any(marker in text for marker in _NOT_A_ROUTE):
        return False
    return exc.status in (404, 405, 501)


class AutoRoute(Backend):
    """A ``Backend`` that scores through ``completions`` where the server serves it with
    logprobs, else through ``chat``; decided once, in ``prepare``. Both share one ``Usage``."""

    def __init__(self, completions: OpenAICompletions, chat: OpenAIChat) -> None:
        self.completions, self.chat = completions, chat
        self.usage: Usage = completions.usage
        self.chosen: OpenAICompletions | OpenAIChat | None = None
        self.note = ""

    @property
    def route(self) -> Literal["completions", "chat"] | None:
        """The wire API chosen, or None before ``prepare``."""
        if self.chosen is None:
            return None
        return "chat" if self.chosen is self.chat else "completions"

    @property
    def identity(self) -> str:
        return (self.chosen or self.completions).identity

    @property
    def multi_token_labels(self) -> bool:
        return (self.chosen or self.completions).multi_token_labels

    async def tokenize(self, text: str, *, add_special: bool = False) -> list[int] | None:
        if self.chosen is self.chat:
            return None
        return await self.completions.tokenize(text, add_special=add_special)

    async def prepare(self) -> None:
        """Decide the route: the completions backend's own set-up (for an unknown host, its
        probe), and for a hosted API known by name, one tiny completion with logprobs."""
        if self.chosen is not None:
            return
        endpoint = self.completions.url
        try:
            await self.completions.prepare()
            profile = self.completions.profile
            if profile is not None and profile.hosted:
                await self._ask_completions()
        except CapabilityError as exc:
            self.note = f"chat completions: {endpoint} gave no logprobs ({exc})"
        except PermanentBackendError as exc:
            if not refuses_completions(exc):
                raise
            self.note = f"chat completions: {endpoint} refused ({exc})"
        else:
            self.chosen = self.completions
            self.note = f"completions: {endpoint} serves logprobs"
            return
        await self.chat.prepare()
        self.chosen = self.chat

    async def _ask_completions(self) -> None:
        payload: dict[str, object] = {
            "model": self.completions.model,
            "prompt": PROBE_TEXT,
            "max_tokens": 1,
            "temperature": 0,
            "logprobs": 1,
        }
        body = await probe_request(self.completions, "/v1/completions", payload)
        parse_top_entries(body, endpoint=self.completions.url)

    async def score(self, request: ScoreRequest) -> ScoreResult:
        if self.chosen is None:
            await self.prepare()
        chosen = self.chosen or self.completions
        try:
            return await chosen.score(request)
        except PermanentBackendError as exc:
            if chosen is not self.chat or exc.status not in (404, 405, 501):
                raise
            # Neither route serves: say why completions was left, not only that chat failed.
            raise type(exc)(f"{exc}; the fallback was taken because {self.note}") from exc

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.completions.aclose()
        await self.chat.aclose()


def backend_for(
    base_url: str,
    config: BackendConfig,
    *,
    usage: Usage | None = None,
    api_key: str | None = None,
    headers: Mapping[str, str] | None = None,
    on_headers: Callable[[httpx2.Headers], None] | None = None,
) -> OpenAICompletions | OpenAIChat | AutoRoute:
    """The backend for ``base_url`` (one of ``config.base_url``) through ``config.api``, as
    ``config`` sets it. The rest is what ``connect`` shares between replicas (``usage``, a
    pacer's ``on_headers``) or takes from an SDK client (``api_key``, ``headers``)."""

    def build(cls: type[_Wire]) -> _Wire:
        return cls(
            base_url,
            config.model,
            provider=config.provider,
            api_key=api_key,
            api_key_env=config.api_key_env,
            top_k=config.top_k,
            timeout=config.timeout,
            usage=usage,
            max_response_bytes=config.max_response_bytes,
            http=config.http,
            headers=headers,
            on_headers=on_headers,
        )

    if config.api == "chat":
        return build(OpenAIChat)
    completions = build(OpenAICompletions)
    return completions if config.api == "completions" else AutoRoute(completions, build(OpenAIChat))
