"""Scoring through any OpenAI-compatible ``/v1/completions`` server (vLLM, llama.cpp, hosted).

The default request keeps a server's prefix cache working: the prompt ends where the label
starts, and ``max_tokens: 1, temperature: 0, logprobs: k`` returns the model's distribution
over the next token. What else is sent depends on the host's ``Profile`` (``profiles.py``):

* **text** (``generic`` and hosted profiles): a text prompt; the label words are looked up by
  text in the top-k. A label outside the top-k is retried once with a larger k, and otherwise
  reported as an upper bound (``logprobs.missing_label_bound``).
* **token ids** (servers with a ``/tokenize``: vLLM, llama.cpp): each label is tokenized *in
  context* (``tok(prompt + label)`` minus ``tok(prompt)``, checked to be a prefix), the prompt
  goes as token ids, and labels are matched by id. A label of n tokens is scored by the chain
  rule in ONE list request, prompts ``P, P+t1, ..., P+t1..t(n-1)``, and the logprobs add up;
  each element reuses the cached blocks of ``P``. On vLLM the label ids are requested
  explicitly (``logprob_token_ids``, with ``return_tokens_as_token_ids`` so that keys are
  ids); because vLLM ignores unknown fields with HTTP 200, every response is checked to hold
  every requested id, and a server that ignored the field is read as top-k (+ bound) from
  then on.

``mode="echo"`` is exact continuation scoring for checking: ``prompt + label`` with ``echo``
(Fireworks: ``echo_last``) and the label tokens' echoed logprobs summed. It is off by default
because it is expensive on the main production path: on vLLM V1, echo turns on prompt
logprobs, and a request with prompt logprobs skips prefix-cache reads and recomputes the
whole prefill, every time.
"""

from __future__ import annotations

import os
from typing import Literal, Self

import anyio
import httpx2
from pydantic import SecretStr

from ..errors import ConfigError
from .base import ScoreRequest, ScoreResult, Usage
from .batching import DEFAULT_MAX_BATCH, DEFAULT_MAX_WAIT, MicroBatcher
from .completions_echo import EchoScoring
from .completions_next_token import NextTokenScoring
from .label_tokens import LabelTokens
from .lean import MAX_RESPONSE_BYTES, http_client
from .profiles import Profile, get_profile, profile_for_url
from .transport import TRANSIENT_STATUSES, JSONTransport, parse_retry_after

__all__ = ["TRANSIENT_STATUSES", "OpenAICompletions", "parse_retry_after"]

Mode = Literal["next_token", "echo"]

# The scoring of each mode lives in completions_next_token.py and completions_echo.py; the
# requests they share (and ``tokenize``, ``completions_url``) in completions_requests.py.


class OpenAICompletions(NextTokenScoring, EchoScoring):
    """A ``Backend`` over ``POST {base_url}/v1/completions``.

    ``base_url`` may be given with or without ``/v1``. ``model=None`` asks ``GET /v1/models``
    at first use and takes the first id. ``provider`` is a known profile name (``vllm``,
    ``llamacpp``, ``openai``, ``together``, ``fireworks``, ``openrouter``, ``generic``), a
    ``Profile``, or ``auto``: the profile of a well-known host, else what a probe of the
    server finds (``probe.py``; once per server and model, remembered in memory).

    The API key comes from ``api_key`` or else from ``$api_key_env``; it is kept as a
    ``SecretStr`` and never shown in ``repr``, ``identity`` or error messages. ``client`` is
    the test seam (``httpx2.MockTransport``); a client passed in is not closed by ``aclose``.
    ``timeout`` bounds each request whole (connect, send, wait, read), and
    ``max_response_bytes`` the size of an answer, decompressed (a larger one is an error).
    ``remember_label_tokens``: on servers scored by token id, learn the label words' ids once
    per prompt ending and send later prompts as text (``label_tokens.py``); False tokenizes
    every prompt and label in full (three ``/tokenize`` requests per score).
    ``batch_size``: where the host takes a list of prompts, concurrent scores share one
    request, up to this many prompts, the first waiting ``batch_wait`` seconds at most for
    the others (``batching.py``); 1 sends one prompt per request. ``usage.extra`` counts
    ``prompts`` and ``http_requests`` (completions) apart.
    Without one, a plain ``http://`` server is reached through ``lean.LeanTransport`` (a
    fraction of httpx2's CPU per request; ``ICM_HTTP_TRANSPORT=httpx`` opts out).
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        provider: str | Profile = "generic",
        mode: Mode = "next_token",
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        top_k: int = 20,
        max_top_k: int = 100,
        timeout: float = 120.0,
        client: httpx2.AsyncClient | None = None,
        usage: Usage | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        remember_label_tokens: bool = True,
        batch_size: int = DEFAULT_MAX_BATCH,
        batch_wait: float = DEFAULT_MAX_WAIT,
    ) -> None:
        if top_k < 1:
            raise ConfigError(f"top_k must be at least 1, got {top_k}", field="top_k")
        if max_top_k < top_k:
            raise ConfigError(f"max_top_k ({max_top_k}) < top_k ({top_k})", field="max_top_k")
        if batch_size < 1 or batch_wait < 0:
            raise ConfigError(
                f"batch_size must be >= 1 and batch_wait >= 0, got {batch_size}, {batch_wait}",
                field="batch_size",
            )
        if mode not in ("next_token", "echo"):
            raise ConfigError(f"mode must be 'next_token' or 'echo', got {mode!r}", field="mode")
        key = api_key if api_key is not None else os.environ.get(api_key_env)
        self._owns_client = client is None
        self._http = JSONTransport(
            base_url,
            api_key=SecretStr(key) if key else None,
            api_key_env=api_key_env,
            timeout=timeout,
            client=client if client is not None else http_client(base_url, timeout),
            max_response_bytes=max_response_bytes,
        )
        self._http.model = model or None
        if isinstance(provider, Profile):
            self._profile: Profile | None = provider
        elif provider == "auto":
            self._profile = profile_for_url(base_url)  # None: probe at first use
        else:
            self._profile = get_profile(provider)
        self._mode: Mode = mode
        self._top_k, self._max_top_k = top_k, max_top_k
        self._escalate = True  # off once the server refuses the larger k
        self._explicit: bool | None = None  # logprob_token_ids honoured? None: not seen yet
        self._usage = usage if usage is not None else Usage()
        self._lock = anyio.Lock()
        self._label_tokens = LabelTokens() if remember_label_tokens else None
        self._batcher = (
            MicroBatcher(self._send_batch, max_batch=batch_size, max_wait=batch_wait)
            if batch_size > 1
            else None
        )

    # -- public ------------------------------------------------------------------------

    @property
    def identity(self) -> str:
        """What the scores depend on: API shape, model, k, scoring method; not the URL
        (replicas share a cache). Hosted profiles add their name (deployments differ)."""
        p = self._profile
        parts = ["openai-completions"]
        if p is not None and p.hosted:
            parts.append(p.name)
        parts.append(self._http.model or "?")
        if self._mode == "echo":
            parts.append("echo")
        else:
            parts.append(f"top{self._k(self._top_k)}")
            if p is None:
                parts.append("?")  # not probed yet
            elif p.scores_token_ids:
                parts.append("ids")
        return ":".join(parts)

    @property
    def usage(self) -> Usage:
        return self._usage

    @property
    def model(self) -> str | None:
        """The served model name, or None until discovered."""
        return self._http.model

    @property
    def profile(self) -> Profile | None:
        """The host's profile, or None until probed (``provider="auto"``, unknown host)."""
        return self._profile

    @property
    def multi_token_labels(self) -> bool:
        """Whether a label word of several tokens is scored exactly (echo, or token ids by
        the chain rule); else only single-token label words can be read off the top-k."""
        return self._mode == "echo" or (
            self._profile is not None and self._profile.scores_token_ids
        )

    @property
    def top_k(self) -> int:
        return self._top_k

    def __repr__(self) -> str:
        key = "set" if self._http.api_key else "none"
        name = self._profile.name if self._profile else "auto"
        return (
            f"OpenAICompletions({self._http.shown_root!r}, model={self._http.model!r}, "
            f"provider={name!r}, top_k={self._top_k}, max_top_k={self._max_top_k}, "
            f"api_key={key})"
        )

    async def prepare(self) -> None:
        """Discover the model and the host's profile, so that ``identity`` is final."""
        await self._resolve_model()
        await self._resolve_profile()

    async def call(self, method: str, path: str, payload: dict[str, object] | None) -> object:
        """One JSON request to the server root (probes, ``icm doctor``); counts nothing."""
        return await self._http.call(method, path, payload)

    async def score(self, request: ScoreRequest) -> ScoreResult:
        if request.prompt != request.prompt.rstrip():
            raise ValueError(
                "prompt must not end in whitespace: the label words carry their leading space"
            )
        model = await self._resolve_model()
        profile = await self._resolve_profile()
        if self._mode == "echo":
            return await self._score_echo(model, profile, request)
        if profile.scores_token_ids:
            return await self._score_ids(model, profile, request)
        return await self._score_text(model, profile, request)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_client:
            await self._http.client.aclose()

    # -- set-up ------------------------------------------------------------------------

    async def _resolve_profile(self) -> Profile:
        if self._profile is not None:
            return self._profile
        from .probe import probe  # probe.py drives this class: imported late, no cycle

        await self._resolve_model()
        async with self._lock:
            if self._profile is None:
                self._profile = await probe(self, echo=self._mode == "echo")
            return self._profile
