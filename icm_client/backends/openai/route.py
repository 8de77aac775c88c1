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

from typing import Literal, Self

from ...errors import CapabilityError, PermanentBackendError
from ..base import Backend, ScoreRequest, ScoreResult, Usage, estimate_tokens
from ..transport import token_counts
from .chat import OpenAIChat
from .completions import OpenAICompletions
from .logprobs import parse_top_entries
from .probe import PROBE_TEXT

WireAPI = Literal["auto", "completions", "chat"]
WIRE_APIS: tuple[WireAPI, ...] = ("auto", "completions", "chat")

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
        self.completions.usage.count("probe_requests")
        payload: dict[str, object] = {
            "model": self.completions.model,
            "prompt": PROBE_TEXT,
            "max_tokens": 1,
            "temperature": 0,
            "logprobs": 1,
        }
        usage = self.completions.usage
        async with usage.sending(1, estimate_tokens(PROBE_TEXT)):  # a billed completion
            body = await self.completions.call("POST", "/v1/completions", payload)
            usage.prompt_tokens += token_counts(body)[0]
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
