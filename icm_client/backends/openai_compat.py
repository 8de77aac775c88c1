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

import functools
import os
from typing import Literal

import anyio
import httpx2
from pydantic import SecretStr

from ..aio import gather
from ..errors import CapabilityError, ConfigError, PermanentBackendError
from .base import ScoreRequest, ScoreResult, Usage
from .lean import http_client
from .logprobs import (
    Entry,
    echo_sequences,
    label_logprobs,
    parse_top_entries,
    parse_top_logprobs,
    suffix_logprob,
    token_logprobs,
)
from .profiles import Profile, get_profile, profile_for_url
from .transport import TRANSIENT_STATUSES, JSONTransport, parse_retry_after, token_counts

__all__ = ["TRANSIENT_STATUSES", "OpenAICompletions", "parse_retry_after"]

MAX_LOGPROB_TOKEN_IDS = 128
"""vLLM's cap on ``logprob_token_ids`` (``vllm/sampling_params.py``)."""

Mode = Literal["next_token", "echo"]


class OpenAICompletions:
    """A ``Backend`` over ``POST {base_url}/v1/completions``.

    ``base_url`` may be given with or without ``/v1``. ``model=None`` asks ``GET /v1/models``
    at first use and takes the first id. ``provider`` is a known profile name (``vllm``,
    ``llamacpp``, ``openai``, ``together``, ``fireworks``, ``openrouter``, ``generic``), a
    ``Profile``, or ``auto``: the profile of a well-known host, else what a probe of the
    server finds (``probe.py``; once per server and model, remembered in memory).

    The API key comes from ``api_key`` or else from ``$api_key_env``; it is kept as a
    ``SecretStr`` and never shown in ``repr``, ``identity`` or error messages. ``client`` is
    the test seam (``httpx2.MockTransport``); a client passed in is not closed by ``aclose``.
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
    ) -> None:
        if top_k < 1:
            raise ConfigError(f"top_k must be at least 1, got {top_k}", field="top_k")
        if max_top_k < top_k:
            raise ConfigError(f"max_top_k ({max_top_k}) < top_k ({top_k})", field="max_top_k")
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

    @property
    def completions_url(self) -> str:
        return f"{self._http.shown_root}/v1/completions"

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

    async def tokenize(self, text: str, *, add_special: bool = False) -> list[int] | None:
        """Token ids of ``text`` as the server's tokenizer splits it (BOS only if
        ``add_special``). None when the server has no tokenizer endpoint (hosted APIs).

        With a known tokenizer shape it asks that one; otherwise it tries llama.cpp's
        ``POST /tokenize {"content"}``, then vLLM's ``{"model", "prompt"}``.
        """
        shape = self._profile.tokenizer if self._profile is not None else "none"
        if shape == "none":
            tokens = await self._tokenize_as("llamacpp", text, add_special, strict=False)
            if tokens is not None:
                return tokens
            return await self._tokenize_as("vllm", text, add_special, strict=False)
        return await self._tokenize_as(shape, text, add_special, strict=True)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._http.client.aclose()

    # -- set-up ------------------------------------------------------------------------

    async def _resolve_model(self) -> str:
        if self._http.model is not None:
            return self._http.model
        async with self._lock:
            if self._http.model is None:
                body = await self._http.call("GET", "/v1/models", None)
                data = body.get("data") if isinstance(body, dict) else None
                first = data[0] if isinstance(data, list) and data else None
                model = first.get("id") if isinstance(first, dict) else None
                if not isinstance(model, str) or not model:
                    raise PermanentBackendError(
                        "the server lists no model; pass the model name explicitly",
                        endpoint=f"{self._http.shown_root}/v1/models",
                    )
                self._http.model = model
            return self._http.model

    async def _resolve_profile(self) -> Profile:
        if self._profile is not None:
            return self._profile
        from .probe import probe  # probe.py drives this class: imported late, no cycle

        await self._resolve_model()
        async with self._lock:
            if self._profile is None:
                self._profile = await probe(self, echo=self._mode == "echo")
            return self._profile

    def _k(self, k: int) -> int:
        cap = self._profile.max_logprobs if self._profile is not None else None
        return min(k, cap) if cap is not None else k

    # -- scoring -----------------------------------------------------------------------

    async def _score_text(self, model: str, profile: Profile, request: ScoreRequest) -> ScoreResult:
        k, big = self._k(self._top_k), self._k(self._max_top_k)
        body = await self._complete(model, profile, request.prompt, k)
        top = parse_top_logprobs(body, endpoint=self.completions_url)[0]
        logprobs, bounded = label_logprobs(top, request.labels)
        prompt_tokens, cached_tokens = token_counts(body)
        if any(bounded) and self._escalate and big > k:
            try:
                body = await self._complete(model, profile, request.prompt, big)
            except PermanentBackendError as exc:
                self._stop_escalating(exc)
            else:
                top = parse_top_logprobs(body, endpoint=self.completions_url)[0]
                logprobs, bounded = label_logprobs(top, request.labels)
                prompt_tokens, cached_tokens = token_counts(body)
        self._usage.bounded_labels += sum(bounded)
        return ScoreResult(logprobs, bounded, prompt_tokens, cached_tokens)

    async def _score_ids(self, model: str, profile: Profile, request: ScoreRequest) -> ScoreResult:
        ctx, labels = await self._in_context(request)
        # The chain-rule positions, deduplicated (labels may share first tokens); P comes
        # first so that the shared prefix is computed once, by the first element.
        positions: dict[tuple[int, ...], int] = {}
        for ids in labels:
            for j in range(len(ids)):
                positions.setdefault(tuple(ids[:j]), len(positions))
        prompts = [ctx + list(prefix) for prefix in positions]
        wanted = sorted({t for ids in labels for t in ids})
        extra: dict[str, object] = {}
        if profile.token_id_keys:
            extra["return_tokens_as_token_ids"] = True
        explicit = (
            profile.explicit_token_logprobs
            and self._explicit is not False
            and len(wanted) <= MAX_LOGPROB_TOKEN_IDS
        )
        k, big = self._k(self._top_k), self._k(self._max_top_k)
        tops, counts = await self._complete_ids(model, profile, prompts, k, extra, wanted, explicit)
        if explicit:
            honoured = all(set(wanted) <= {tid for tid, _, _ in top} for top in tops)
            if self._explicit is None or not honoured:
                self._explicit = honoured  # vLLM ignores unknown fields: read it off the answer
            if not honoured:
                self._usage.extra["explicit_ignored"] = 1
        values, bounded = self._chain(tops, positions, labels)
        if any(bounded) and self._escalate and big > k:
            try:
                tops, counts = await self._complete_ids(
                    model, profile, prompts, big, extra, wanted, False
                )
            except PermanentBackendError as exc:
                self._stop_escalating(exc)
            else:
                values, bounded = self._chain(tops, positions, labels)
        self._usage.bounded_labels += sum(bounded)
        return ScoreResult(values, bounded, *counts)

    def _chain(
        self,
        tops: list[list[Entry]],
        positions: dict[tuple[int, ...], int],
        labels: list[list[int]],
    ) -> tuple[tuple[float, ...], tuple[bool, ...]]:
        """log P(t1..tn | P) = sum of log p(tj | P, t<j); an upper bound if any term is one."""
        values: list[float] = []
        flags: list[bool] = []
        for ids in labels:
            total, bounded = 0.0, False
            for j, tid in enumerate(ids):
                top = tops[positions[tuple(ids[:j])]]
                (lp,), (bd,) = token_logprobs(top, [tid], endpoint=self.completions_url)
                total += lp
                bounded = bounded or bd
            values.append(total)
            flags.append(bounded)
        return tuple(values), tuple(flags)

    async def _score_echo(self, model: str, profile: Profile, request: ScoreRequest) -> ScoreResult:
        if profile.echo == "none":
            raise CapabilityError(
                f"exact continuation scoring needs echoed prompt logprobs, which this endpoint "
                f"(profile {profile.name!r}) does not give; use mode='next_token'",
                endpoint=self.completions_url,
            )
        ctx: list[int] | None = None
        prompts: list[str] | list[list[int]]
        if profile.scores_token_ids:
            ctx, labels = await self._in_context(request)
            prompts = [ctx + ids for ids in labels]
        else:
            prompts = [request.prompt + label for label in request.labels]
        payload: dict[str, object] = {"max_tokens": 1, "temperature": 0, "logprobs": 1}
        if profile.echo == "fireworks":  # only the tail: enough tokens for the longest label
            payload["echo_last"] = max(len(label.encode()) for label in request.labels) + 1
        else:
            payload["echo"] = True
        bodies = await self._post_prompts(model, profile, list(prompts), payload)
        seqs = [s for body in bodies for s in echo_sequences(body, profile.echo)]
        if len(seqs) != len(prompts):
            raise PermanentBackendError(
                f"asked for {len(prompts)} echoed prompts, got {len(seqs)}",
                endpoint=self.completions_url,
            )
        values: list[float] = []
        for i, (label, (tokens, lps)) in enumerate(zip(request.labels, seqs, strict=True)):
            if profile.echo != "together":  # choices hold the prompt, then 1 generated token
                tokens, lps = tokens[:-1], lps[:-1]
            if ctx is not None:
                span = lps[len(ctx) :]
                if len(lps) != len(prompts[i]) or any(lp is None for lp in span):
                    raise PermanentBackendError(
                        f"echoed {len(lps)} prompt tokens for a prompt of {len(prompts[i])}",
                        endpoint=self.completions_url,
                    )
                values.append(sum(lp for lp in span if lp is not None))
            else:
                values.append(suffix_logprob((tokens, lps), label, endpoint=self.completions_url))
        counts = [token_counts(body) for body in bodies]
        return ScoreResult(
            tuple(values),
            (False,) * len(values),
            sum(c[0] for c in counts),
            sum(c[1] for c in counts),
        )

    # -- requests ----------------------------------------------------------------------

    def _stop_escalating(self, exc: PermanentBackendError) -> None:
        """A refused larger k means the server caps k: keep the bound from now on."""
        if exc.status not in (400, 422) or "logprob" not in str(exc).lower():
            raise exc
        self._escalate = False

    async def _complete(self, model: str, profile: Profile, prompt: object, k: int) -> object:
        payload: dict[str, object] = {"max_tokens": 1, "temperature": 0, "logprobs": k}
        [body] = await self._post_prompts(model, profile, [prompt], payload)
        return body

    async def _complete_ids(
        self,
        model: str,
        profile: Profile,
        prompts: list[list[int]],
        k: int,
        extra: dict[str, object],
        wanted: list[int],
        explicit: bool,
    ) -> tuple[list[list[Entry]], tuple[int, int]]:
        """First-position top-k entries of each token-id prompt, and (prompt, cached) tokens."""
        payload: dict[str, object] = {"max_tokens": 1, "temperature": 0, "logprobs": k, **extra}
        if explicit:
            payload["logprob_token_ids"] = wanted
        try:
            bodies = await self._post_prompts(model, profile, list(prompts), payload)
        except PermanentBackendError as exc:
            # A server that knows the field but refuses it here: ask without it from now on.
            if not explicit or exc.status not in (400, 422) or "logprob_token_ids" not in str(exc):
                raise
            self._explicit = False
            payload.pop("logprob_token_ids")
            bodies = await self._post_prompts(model, profile, list(prompts), payload)
        tops = [
            top for body in bodies for top in parse_top_entries(body, endpoint=self.completions_url)
        ]
        if len(tops) != len(prompts):
            raise PermanentBackendError(
                f"asked for {len(prompts)} prompts, got {len(tops)} choices",
                endpoint=self.completions_url,
            )
        counts = [token_counts(body) for body in bodies]
        return tops, (sum(c[0] for c in counts), sum(c[1] for c in counts))

    async def _post_prompts(
        self, model: str, profile: Profile, prompts: list[object], payload: dict[str, object]
    ) -> list[object]:
        """One completions request for all ``prompts`` where the host takes a list (answers in
        ``choices`` by index), else one request each, concurrently. Each counts as a call."""
        if len(prompts) == 1 or profile.prompt_lists:
            groups = [prompts[0] if len(prompts) == 1 else prompts]
        else:
            groups = list(prompts)

        async def post(prompt: object) -> object:
            body = {"model": model, "prompt": prompt, **payload, **profile.extra_body}
            answer = await self._http.call("POST", "/v1/completions", body)
            self._usage.calls += 1
            prompt_tokens, cached_tokens = token_counts(answer)
            self._usage.prompt_tokens += prompt_tokens
            self._usage.cached_tokens += cached_tokens
            return answer

        return await gather([functools.partial(post, g) for g in groups])

    async def _in_context(self, request: ScoreRequest) -> tuple[list[int], list[list[int]]]:
        """``tok(prompt)`` with BOS as the server adds it, and each label's tokens in context:
        ``tok(prompt + label)`` after ``tok(prompt)``, which must be a prefix of it."""
        texts = [request.prompt, *(request.prompt + label for label in request.labels)]
        calls = [functools.partial(self.tokenize, t, add_special=True) for t in texts]
        ctx, *wholes = await gather(calls)
        if ctx is None:
            raise CapabilityError("the server has no /tokenize", endpoint=self.completions_url)
        labels: list[list[int]] = []
        for label, whole in zip(request.labels, wholes, strict=True):
            if whole is None or whole[: len(ctx)] != ctx or len(whole) == len(ctx):
                raise CapabilityError(
                    f"label {label!r} does not tokenize as a continuation of the prompt (the "
                    f"prompt's last token merges with it: ...{ctx[-3:]} vs ...{(whole or [])[-4:]}"
                    "); end the prompt at a word boundary and start labels with a space",
                    endpoint=self.completions_url,
                )
            labels.append(whole[len(ctx) :])
        return ctx, labels

    async def _tokenize_as(
        self, shape: str, text: str, add_special: bool, *, strict: bool
    ) -> list[int] | None:
        if shape == "llamacpp":
            payload: dict[str, object] = {"content": text, "add_special": add_special}
        else:
            payload = {"model": await self._resolve_model(), "prompt": text}
            payload["add_special_tokens"] = add_special
        shown = f"{self._http.shown_root}/tokenize"
        response = await self._http.send("POST", "/tokenize", payload)
        self._usage.extra["tokenize_calls"] = self._usage.extra.get("tokenize_calls", 0) + 1
        if not response.is_success:
            status = response.status_code
            if strict or status in TRANSIENT_STATUSES or status >= 500:
                raise self._http.http_error(response, shown)
            return None
        body = self._http.decode(response, shown)
        tokens = body.get("tokens") if isinstance(body, dict) else None
        if isinstance(tokens, list) and all(
            isinstance(t, int) and not isinstance(t, bool) for t in tokens
        ):
            return tokens
        if strict:
            raise PermanentBackendError("/tokenize answered without 'tokens'", endpoint=shown)
        return None
