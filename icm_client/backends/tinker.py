"""Scoring on Tinker (Thinking Machines): pretrained base models through the ``tinker`` SDK.

Tinker serves base models (Llama 3.1 8B/70B, Qwen3 8B/30B base, ...) to its SDK, where a
``SamplingClient.sample`` with ``include_prompt_logprobs=True`` returns the log-probability
of every prompt token. A label is scored exactly, however many tokens it has: the prompt
and the label are tokenized together, the label's tokens are the ones after the prompt's
(checked to be a clean split), and ``prompt_logprobs_last_n`` asks for those last tokens
only, which lets the server serve the prompt itself from its prefix cache (the SDK's
documentation: "scoring a short suffix of a long, recently used prompt costs about as much
as the suffix"). The labels of one prompt go as concurrent requests sharing that prefix;
``prompt_cache_hit_tokens`` is counted as cached tokens (billed at a discount).

The SDK is an optional extra (``pip install 'icm-client[tinker]'``: it brings
``transformers`` for the tokenizer) and is imported only by ``TinkerBackend.create``. The
backend itself takes any object with the SDK's ``sample`` signature and any tokenizer with
``encode``, which is how it is tested. It has not been run against the live service.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol, Self

from ..aio import gather
from ..errors import CapabilityError, ConfigError, PermanentBackendError
from .base import Backend, ScoreRequest, ScoreResult, Usage


class Tokenizer(Protocol):
    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...


class SampleResult(Protocol):
    @property
    def prompt_logprobs(self) -> Sequence[float | None] | None: ...

    @property
    def prompt_cache_hit_tokens(self) -> int: ...


class SamplingClient(Protocol):
    """The part of ``tinker.SamplingClient`` used here."""

    def sample(
        self,
        prompt: Any,
        num_samples: int,
        sampling_params: Any,
        include_prompt_logprobs: bool = ...,
        prompt_logprobs_last_n: int | None = ...,
    ) -> Awaitable[SampleResult]: ...


def _tinker_types() -> Any:
    try:
        from tinker import types
    except ImportError:
        raise ConfigError(
            "the Tinker backend needs the tinker SDK: pip install 'icm-client[tinker]'",
            field="backend",
        ) from None
    return types


class TinkerBackend(Backend):
    """A ``Backend`` over a Tinker ``SamplingClient`` of base model ``model``.

    ``TinkerBackend.create(base_model)`` builds one with the SDK (key from
    ``$TINKER_API_KEY``); the constructor takes a sampling client and its tokenizer.
    """

    def __init__(
        self,
        sampling_client: SamplingClient,
        tokenizer: Tokenizer,
        *,
        model: str,
        usage: Usage | None = None,
    ) -> None:
        self._client, self._tokenizer, self._model = sampling_client, tokenizer, model
        self.usage: Usage = usage if usage is not None else Usage()
        self._types = _tinker_types()

    @classmethod
    async def create(
        cls, base_model: str, *, api_key_env: str = "TINKER_API_KEY", usage: Usage | None = None
    ) -> TinkerBackend:
        """A backend on Tinker's ``base_model`` (e.g. ``meta-llama/Llama-3.1-8B``)."""
        _tinker_types()
        import tinker

        key = os.environ.get(api_key_env)
        if not key:
            raise ConfigError(f"set ${api_key_env} to a Tinker API key", field="api_key")
        service = tinker.ServiceClient(api_key=key)
        sampling = await service.create_sampling_client(base_model=base_model)
        return cls(sampling, sampling.get_tokenizer(), model=base_model, usage=usage)

    @property
    def identity(self) -> str:
        return f"tinker:{self._model}:exact"

    @property
    def multi_token_labels(self) -> bool:
        return True

    def label_tokens(self, prompt: str, label: str) -> tuple[list[int], list[int]]:
        """(the prompt's tokens, with BOS; the label's tokens after them), split cleanly."""
        context = self._tokenizer.encode(prompt, add_special_tokens=True)
        full = self._tokenizer.encode(prompt + label, add_special_tokens=True)
        if full[: len(context)] != context or len(full) == len(context):
            raise CapabilityError(
                f"the label {label!r} merges with the end of the prompt in the tokenizer of "
                f"{self._model}: it cannot be scored as a continuation"
            )
        return context, full[len(context) :]

    async def score(self, request: ScoreRequest) -> ScoreResult:
        if request.prompt != request.prompt.rstrip():
            raise ValueError(
                "prompt must not end in whitespace: the label words carry their leading space"
            )
        splits = [self.label_tokens(request.prompt, label) for label in request.labels]
        answers = await gather([functools.partial(self._ask, c, t) for c, t in splits])
        logprobs = tuple(lp for lp, _ in answers)
        prompt_tokens = sum(len(c) + len(t) for c, t in splits)
        cached = sum(hits for _, hits in answers)
        return ScoreResult(logprobs, (False,) * len(logprobs), prompt_tokens, cached)

    async def _ask(self, context: list[int], label: list[int]) -> tuple[float, int]:
        """log P(label | context) by prompt logprobs of the label's tokens, and the prompt
        tokens the server billed as cache hits."""
        types = self._types
        used = self.usage
        async with used.sending(1, len(context) + len(label)):  # counted before it goes
            answer = await self._client.sample(
                prompt=types.ModelInput.from_ints(context + label),
                num_samples=1,
                sampling_params=types.SamplingParams(max_tokens=1, temperature=0.0),
                include_prompt_logprobs=True,
                prompt_logprobs_last_n=len(label),
            )
            used.prompt_tokens += len(context) + len(label)
        values = list(answer.prompt_logprobs or [])[-len(label) :]
        if len(values) != len(label) or any(v is None for v in values):
            raise PermanentBackendError(
                f"Tinker returned {len(values)} prompt logprobs for a label of {len(label)} tokens",
                endpoint=f"tinker:{self._model}",
            )
        hits = int(answer.prompt_cache_hit_tokens or 0)
        used.cached_tokens += hits
        return float(sum(v for v in values if v is not None)), hits

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None
