"""Anthropic's Messages API: what is honest to offer when there are no logprobs.

The public API serves chat models only, returns no logprobs and (on current models) refuses
assistant prefill, so it cannot measure log P(label | prompt). Two things remain useful:

* ``AnthropicChat.answer``: one constrained one-word answer, for the paper's "zero-shot
  (chat)" baseline (``icm_client.baselines.zero_shot``);
* ``AnthropicSampler``: a ``Backend`` that ESTIMATES P(label) from ``samples`` answers at the
  API's default temperature (1.0) and reports Laplace-smoothed frequencies with a 95% Wilson
  interval (``one_word.SampledScore``). Its identity says ``approx``; it costs ``samples``
  requests per score, and the long prompt sits in a cached block (``cache_control:
  ephemeral``) so that every sample after the first reads it from the prompt cache (prompts
  below the model's minimum cacheable length are simply not cached). Tokens are counted in
  ``Usage``: ``prompt_tokens`` = input + cache read + cache creation, ``cached_tokens`` =
  cache read, and each kind in ``usage.extra``.

The ``anthropic`` SDK (an optional extra, imported on first use) runs on an ``httpx2`` client
that may be passed in (the test seam: ``httpx2.MockTransport``) with its own retries OFF, so
that the client's ``Retry`` policy is the only retry layer. Errors are sorted like the HTTP
backend's: 429 and 529 ``overloaded_error`` and 5xx are transient (``retry-after``
honoured), except a 429 for an exhausted spend limit; 401/403/404/400 are permanent. The key
is a ``SecretStr``.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple, Self

import anyio
import httpx2
from pydantic import SecretStr

from ..aio import gather
from ..errors import BackendError, ConfigError, PermanentBackendError, TransientBackendError
from ..redact import describe_bad_key, register
from .base import Backend, ScoreRequest, Usage, estimate_tokens
from .http_errors import TRANSIENT_STATUSES, parse_retry_after
from .one_word import SYSTEM, SampledScore, estimate, instruction, label_words, parse_answer
from .transport import split_base_url

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic
    from anthropic.types import MessageParam, TextBlockParam

DEFAULT_KEY_ENV = "ANTHROPIC_API_KEY"
INSTALL_HINT = "pip install 'icm-client[anthropic]'"
_SPEND_LIMIT = "enforced_spend_limit_reached"


class Reply(NamedTuple):
    """A model's text answer and what it cost, in tokens."""

    text: str
    input_tokens: int  # not read from or written to the cache
    cache_read: int
    cache_creation: int
    output_tokens: int

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_read + self.cache_creation


def _field(data: object, *path: str) -> object:
    """``data[path[0]][path[1]]...``, or None where a level is missing or not an object."""
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def _sdk() -> ModuleType:
    try:
        import anthropic
    except ImportError:
        raise ConfigError(
            f"the Anthropic backend needs the anthropic SDK: {INSTALL_HINT}", field="provider"
        ) from None
    return anthropic


class AnthropicChat:
    """One Anthropic chat model, asked for one-word answers.

    ``http_client`` (an ``httpx2.AsyncClient``) is used as given and not closed by
    ``aclose``. The key comes from ``api_key`` or ``$api_key_env``.
    """

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        api_key_env: str = DEFAULT_KEY_ENV,
        base_url: str | None = None,
        http_client: httpx2.AsyncClient | None = None,
        timeout: float = 60.0,
        max_tokens: int = 16,
        usage: Usage | None = None,
    ) -> None:
        sdk = _sdk()
        key = api_key if api_key is not None else os.environ.get(api_key_env)
        if not key:
            raise ConfigError(f"no Anthropic API key: set ${api_key_env}", field="api_key")
        problem = describe_bad_key(key)
        if problem is not None:
            raise ConfigError(f"the API key from ${api_key_env} {problem}", field="api_key")
        register(key)
        self._key = SecretStr(key)
        self._key_env = api_key_env
        self.model = model
        self.max_tokens = max_tokens
        self.usage = usage if usage is not None else Usage()
        base_url = base_url or os.environ.get("ANTHROPIC_BASE_URL") or None  # as the SDK does
        shown = split_base_url(base_url)[1] if base_url else "https://api.anthropic.com"
        self.endpoint = f"{shown}/v1/messages"
        self._owns_client = http_client is None
        self._client: AsyncAnthropic = sdk.AsyncAnthropic(
            api_key=key,
            base_url=base_url,
            http_client=http_client,
            max_retries=0,  # the client's Retry policy is the only retry layer
            timeout=timeout,
        )

    def __repr__(self) -> str:
        return f"AnthropicChat(model={self.model!r}, endpoint={self.endpoint!r}, api_key=set)"

    async def answer(
        self, question: str, *, context: str | None = None, system: str | None = SYSTEM
    ) -> str:
        """The model's text answer to ``question``, after ``context`` in a cached block."""
        return (await self.reply(question, context=context, system=system)).text

    async def reply(
        self, question: str, *, context: str | None = None, system: str | None = SYSTEM
    ) -> Reply:
        """``answer`` with its token counts (also added to ``usage``)."""
        content: list[TextBlockParam] = []
        if context:
            content.append(
                {"type": "text", "text": context, "cache_control": {"type": "ephemeral"}}
            )
        content.append({"type": "text", "text": question})
        extra: dict[str, Any] = {"system": system} if system else {}
        messages: list[MessageParam] = [{"role": "user", "content": content}]
        sdk = _sdk()
        estimate = estimate_tokens((system or "") + (context or "") + question)
        async with self.usage.sending(1, estimate):  # counted before it is sent
            try:
                message = await self._client.messages.create(
                    model=self.model, max_tokens=self.max_tokens, messages=messages, **extra
                )
            except sdk.AnthropicError as exc:
                raise self._error(sdk, exc) from exc
            usage = message.usage
            reply = Reply(
                "".join(getattr(block, "text", "") for block in message.content),
                int(getattr(usage, "input_tokens", 0) or 0),
                int(getattr(usage, "cache_read_input_tokens", 0) or 0),
                int(getattr(usage, "cache_creation_input_tokens", 0) or 0),
                int(getattr(usage, "output_tokens", 0) or 0),
            )
            self._count(reply)
        return reply

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.close()

    def _count(self, reply: Reply) -> None:
        u = self.usage
        u.prompt_tokens += reply.prompt_tokens
        u.cached_tokens += reply.cache_read
        for name, value in (
            ("input_tokens", reply.input_tokens),
            ("cache_read_input_tokens", reply.cache_read),
            ("cache_creation_input_tokens", reply.cache_creation),
            ("output_tokens", reply.output_tokens),
        ):
            u.count(name, value)

    def _error(self, sdk: ModuleType, exc: Exception) -> BackendError:
        secret = self._key.get_secret_value()
        if isinstance(exc, sdk.APIStatusError):
            status: int = exc.status_code
            msg = str(_field(exc.body, "error", "message") or exc.message)
            msg = msg.replace(secret, "***")
            kind = str(_field(exc.body, "error", "type") or "error")
            if status == 429 and _field(exc.body, "error", "details", "error_code") == _SPEND_LIMIT:
                return PermanentBackendError(
                    f"spend limit reached ({_SPEND_LIMIT}): {msg}",
                    endpoint=self.endpoint,
                    status=status,
                )
            if status in TRANSIENT_STATUSES or status >= 500:
                return TransientBackendError(
                    f"{kind}: {msg}",
                    endpoint=self.endpoint,
                    status=status,
                    retry_after=parse_retry_after(exc.response.headers),
                )
            if status in (401, 403):
                text = f"not authorised ({kind}): {msg}; check the API key (${self._key_env})"
            elif status == 404:
                text = f"not found ({kind}): {msg}; unknown model {self.model!r}?"
            else:
                text = f"request rejected ({kind}): {msg}"
            return PermanentBackendError(text, endpoint=self.endpoint, status=status)
        if isinstance(exc, sdk.APIConnectionError):  # timeouts included
            return TransientBackendError(
                f"connection failed: {type(exc).__name__}: {exc}".replace(secret, "***"),
                endpoint=self.endpoint,
            )
        return PermanentBackendError(
            f"{type(exc).__name__}: {exc}".replace(secret, "***"), endpoint=self.endpoint
        )


class AnthropicSampler(Backend):
    """A ``Backend`` that ESTIMATES label probabilities by sampling ``samples`` answers.

    Approximate by construction: a chat model's answer frequencies at temperature 1 are not a
    base model's next-token probabilities, and ``samples`` answers bound them only to the
    Wilson interval each result carries. The first sample of a prompt runs alone (it writes
    the prompt cache), the rest run ``concurrency`` at a time (they read it). Answers already
    collected for a prompt survive a failed sample, so a retry only pays for the rest.
    """

    def __init__(self, chat: AnthropicChat, *, samples: int = 20, concurrency: int = 4) -> None:
        if samples < 1 or concurrency < 1:
            raise ConfigError(
                f"samples and concurrency must be at least 1, got {samples}, {concurrency}",
                field="samples",
            )
        self.chat = chat
        self.usage: Usage = chat.usage
        self.samples = samples
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._partial: dict[tuple[str, tuple[str, ...]], list[int | None]] = {}

    @property
    def identity(self) -> str:
        return f"anthropic-messages:{self.chat.model}:sampled-approx:n{self.samples}"

    def __repr__(self) -> str:
        return f"AnthropicSampler({self.chat!r}, samples={self.samples})"

    async def score(self, request: ScoreRequest) -> SampledScore:
        words = label_words(request.labels)
        question = instruction(words)
        key = (request.prompt, request.labels)
        answers = self._partial.setdefault(key, [])
        tokens = [0, 0]  # prompt, cached: this score's samples only (usage is shared)

        async def sample() -> None:
            async with self._limiter:
                reply = await self.chat.reply(question, context=request.prompt)
            tokens[0] += reply.prompt_tokens
            tokens[1] += reply.cache_read
            answer = parse_answer(reply.text, words)
            answers.append(answer)
            if answer is None:
                self.usage.count("unparsed_answers")

        if not answers:
            await sample()
        await gather([sample] * max(self.samples - len(answers), 0))
        self._partial.pop(key, None)
        return estimate(answers[: self.samples], len(words), tokens[0], tokens[1])

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.chat.aclose()
