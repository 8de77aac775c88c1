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

from collections.abc import Callable, Mapping
from typing import Literal, Self

import httpx2

from ...aio import SingleFlight
from ...errors import ConfigError
from ..base import Backend, ScoreRequest, ScoreResult, Usage
from ..config import DEFAULT_API_KEY_ENV, DEFAULT_TIMEOUT, DEFAULT_TOP_K
from ..transport import DEFAULT_MAX_CONNECTIONS, MAX_RESPONSE_BYTES, HTTPClient, JSONTransport
from .batching import DEFAULT_MAX_BATCH, DEFAULT_MAX_WAIT
from .echo import EchoScoring
from .label_tokens import ContextTokens
from .next_token import NextTokenScoring
from .probe import probe
from .profiles import Profile, profile_of
from .requests import CompletionsRequests, Served

__all__ = ["OpenAICompletions"]

Mode = Literal["next_token", "echo"]


class OpenAICompletions(Backend):
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
    ``prompts`` and ``http_requests`` (completions) apart. ``max_connections`` sizes the
    pool of the client it builds, and ``http`` picks its transport: httpx2's own, or
    aiohttp's (``transport.http_client``; the ``aiohttp`` extra). ``headers`` go with every
    request (an SDK client's organisation, project, default headers); ``on_headers`` sees
    every answer's headers (a ``Pacer``'s ``observe``).
    Scoring is delegated to a strategy chosen by ``mode`` (``NextTokenScoring`` or
    ``EchoScoring``), over the requests of ``CompletionsRequests``.
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        provider: str | Profile = "generic",
        mode: Mode = "next_token",
        api_key: str | None = None,
        api_key_env: str = DEFAULT_API_KEY_ENV,
        top_k: int = DEFAULT_TOP_K,
        max_top_k: int = 100,
        timeout: float = DEFAULT_TIMEOUT,
        client: httpx2.AsyncClient | None = None,
        usage: Usage | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        remember_label_tokens: bool = True,
        batch_size: int = DEFAULT_MAX_BATCH,
        batch_wait: float = DEFAULT_MAX_WAIT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        http: HTTPClient = "httpx",
        headers: Mapping[str, str] | None = None,
        on_headers: Callable[[httpx2.Headers], None] | None = None,
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
        profile = profile_of(provider, base_url)  # None: probe at first use
        self._mode: Mode = mode
        self._top_k, self._max_top_k = top_k, max_top_k
        self.usage: Usage = usage if usage is not None else Usage()
        self._resolving: SingleFlight[None, Served] = SingleFlight(share_errors=False)
        self._requests = CompletionsRequests(
            self._http, self.usage, profile=profile, batch_size=batch_size, batch_wait=batch_wait
        )
        tokens = ContextTokens(self._requests, remember=remember_label_tokens)
        self._scoring: NextTokenScoring | EchoScoring = (
            EchoScoring(self._requests, tokens)
            if mode == "echo"
            else NextTokenScoring(self._requests, tokens, top_k, max_top_k)
        )

    # -- public ------------------------------------------------------------------------

    @property
    def identity(self) -> str:
        """What the scores depend on: API shape, model, k, scoring method; not the URL
        (replicas share a cache). Hosted profiles add their name (deployments differ)."""
        p = self._requests.profile
        parts = ["openai-completions"]
        if p is not None and p.hosted:
            parts.append(p.name)
        parts.append(self._http.model or "?")
        if self._mode == "echo":
            parts.append("echo")
        else:
            parts.append(f"top{self._requests.capped(self._top_k)}")
            if p is None:
                parts.append("?")  # not probed yet
            elif p.scores_token_ids:
                parts.append("ids")
        return ":".join(parts)

    @property
    def model(self) -> str | None:
        """The served model name, or None until discovered."""
        return self._http.model

    @property
    def profile(self) -> Profile | None:
        """The host's profile, or None until probed (``provider="auto"``, unknown host)."""
        return self._requests.profile

    @property
    def multi_token_labels(self) -> bool:
        """Whether a label word of several tokens is scored exactly (echo, or token ids by
        the chain rule); else only single-token label words can be read off the top-k."""
        p = self._requests.profile
        return self._mode == "echo" or (p is not None and p.scores_token_ids)

    @property
    def top_k(self) -> int:
        return self._top_k

    def __repr__(self) -> str:
        key = "set" if self._http.api_key else "none"
        p = self._requests.profile
        name = p.name if p else "auto"
        return (
            f"OpenAICompletions({self._http.shown_root!r}, model={self._http.model!r}, "
            f"provider={name!r}, top_k={self._top_k}, max_top_k={self._max_top_k}, "
            f"api_key={key})"
        )

    @property
    def completions_url(self) -> str:
        return self._requests.completions_url

    @property
    def url(self) -> str:
        return self._requests.completions_url

    async def prepare(self) -> None:
        """Discover the model and the host's profile, so that ``identity`` is final."""
        await self._served()

    async def call(self, method: str, path: str, payload: dict[str, object] | None) -> object:
        """One JSON request to the server root (probes, ``icm doctor``); counts nothing."""
        return await self._http.call(method, path, payload)

    async def tokenize(self, text: str, *, add_special: bool = False) -> list[int] | None:
        """Token ids of ``text`` by the server's tokenizer; None where it has none."""
        return await self._requests.tokenize(text, add_special=add_special)

    async def score(self, request: ScoreRequest) -> ScoreResult:
        if request.prompt != request.prompt.rstrip():
            raise ValueError(
                "prompt must not end in whitespace: the label words carry their leading space"
            )
        return await self._scoring.score(await self._served(), request)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- set-up ------------------------------------------------------------------------

    async def _served(self) -> Served:
        """The served model and the host's profile (probed where no provider names it),
        resolved once."""
        if self._requests.served is not None:
            return self._requests.served
        served, _ = await self._resolving.run(None, self._resolve)
        return served

    async def _resolve(self) -> Served:
        requests = self._requests
        if requests.served is None:
            model = await requests.resolve_model()
            profile = requests.given
            if profile is None:
                profile = await probe(requests, top_k=self._top_k, echo=self._mode == "echo")
            requests.served = Served(model, profile)
        return requests.served
