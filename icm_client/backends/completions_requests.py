"""The requests behind ``OpenAICompletions`` (``openai_compat.py``) that every scoring mode
shares: the model's name, one completions request for many prompts, the server's tokenizer,
and label words tokenized in context.

``CompletionsRequests`` is a base class of ``OpenAICompletions``, whose ``__init__`` sets the
attributes declared here.
"""

from __future__ import annotations

import functools
import json

import anyio

from ..aio import gather
from ..errors import BackendError, CapabilityError, PermanentBackendError
from .base import ScoreRequest, Usage
from .batching import MicroBatcher, split_batch
from .label_tokens import LabelIds, LabelTokens
from .profiles import Profile
from .transport import TRANSIENT_STATUSES, JSONTransport, token_counts


class CompletionsRequests:
    """Requests to one ``/v1/completions`` server, counted in ``usage``."""

    _http: JSONTransport
    _profile: Profile | None
    _usage: Usage
    _lock: anyio.Lock
    _label_tokens: LabelTokens | None  # None: tokenize every prompt in full
    _batcher: MicroBatcher | None  # None: one prompt per request

    @property
    def completions_url(self) -> str:
        return f"{self._http.shown_root}/v1/completions"

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

    def _k(self, k: int) -> int:
        cap = self._profile.max_logprobs if self._profile is not None else None
        return min(k, cap) if cap is not None else k

    async def _post_prompts(
        self, model: str, profile: Profile, prompts: list[object], payload: dict[str, object]
    ) -> list[object]:
        """One completions request for all ``prompts`` where the host takes a list (answers in
        ``choices`` by index), else one request each, concurrently. Each counts as a call.

        A single prompt joins the prompts of concurrent scores in one list request where the
        host takes lists (``batching.py``); its answer is its own part of the response."""
        body = {"model": model, **payload, **profile.extra_body}
        echo = "echo" in payload or "echo_last" in payload  # echoed answers: not split
        if len(prompts) == 1 and profile.prompt_lists and self._batcher is not None and not echo:
            shape = "ids" if isinstance(prompts[0], list) else "text"
            key = shape + json.dumps(body, sort_keys=True, separators=(",", ":"))
            answers = [await self._batcher.submit(key, prompts[0], body)]
            self._usage.calls += 1
        else:
            if len(prompts) == 1 or profile.prompt_lists:
                groups = [prompts[0] if len(prompts) == 1 else prompts]
            else:
                groups = list(prompts)
            calls = [functools.partial(self._post, g, body) for g in groups]
            answers = await gather(calls)
            self._usage.calls += len(groups)
        for answer in answers:
            prompt_tokens, cached_tokens = token_counts(answer)
            self._usage.prompt_tokens += prompt_tokens
            self._usage.cached_tokens += cached_tokens
        return answers

    async def _post(self, prompt: object, body: dict[str, object]) -> object:
        """One HTTP request (one prompt, or a list of them), counted in ``usage.extra``."""
        answer = await self._http.call("POST", "/v1/completions", {**body, "prompt": prompt})
        extra = self._usage.extra
        extra["http_requests"] = extra.get("http_requests", 0) + 1
        n = len(prompt) if isinstance(prompt, list) and not _is_ids(prompt) else 1
        extra["prompts"] = extra.get("prompts", 0) + n
        return answer

    async def _outcome(self, prompt: object, body: dict[str, object]) -> object:
        """``_post``'s answer, or the ``BackendError`` it raised (one prompt of a batch)."""
        try:
            return await self._post(prompt, body)
        except BackendError as exc:
            return exc

    async def _send_batch(self, prompts: list[object], body: dict[str, object]) -> list[object]:
        """The batcher's sender: one request for ``prompts``, one answer each. A refused list
        (HTTP 400/413/422) is sent again one prompt per request, each with its own outcome (a
        prompt too long fails alone); if each succeeds, the host refused the list itself, and
        gets no more lists."""
        if len(prompts) == 1:
            return [await self._post(prompts[0], body)]
        try:
            answer = await self._post(prompts, body)
        except PermanentBackendError as exc:
            if exc.status not in (400, 413, 422):
                raise
            answers = await gather([functools.partial(self._outcome, p, body) for p in prompts])
            if not any(isinstance(a, Exception) for a in answers):
                self._batcher = None  # every prompt was fine alone: the list was refused
                self._usage.extra["batching_refused"] = 1
            return answers
        return split_batch(answer, prompts, endpoint=self.completions_url)

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

    async def _labels_in_context(
        self, request: ScoreRequest
    ) -> tuple[list[int] | None, list[list[int]]]:
        """Each label's tokens in context, and ``tok(prompt)``, or None in its place where the
        label ids came from memory (``label_tokens.py``): the prompt may then go as text."""
        if self._label_tokens is None:
            return await self._in_context(request)
        full: list[tuple[list[int], list[list[int]]]] = []

        async def learn(ending: str, labels: tuple[str, ...]) -> LabelIds | None:
            ctx, ids = await self._in_context(request)
            full.append((ctx, ids))
            alone = await self._ending_ids(ending, labels)
            if alone != ids:
                self._usage.extra["unstable_endings"] = (
                    self._usage.extra.get("unstable_endings", 0) + 1
                )
                return None
            return tuple(tuple(x) for x in ids)

        known, _ = await self._label_tokens.get(request.prompt, request.labels, learn)
        if full:  # learnt just now, from this very prompt
            return full[0]
        if known is None:  # this ending tokenizes differently on its own: no shortcut
            return await self._in_context(request)
        return None, [list(x) for x in known]

    async def _ending_ids(self, ending: str, labels: tuple[str, ...]) -> list[list[int]] | None:
        """Each label's tokens after ``ending`` alone (no BOS), or None where a label merges
        with the ending's last token."""
        texts = [ending, *(ending + label for label in labels)]
        calls = [functools.partial(self.tokenize, t) for t in texts]
        ctx, *wholes = await gather(calls)
        out: list[list[int]] = []
        for whole in wholes:
            if ctx is None or whole is None or whole[: len(ctx)] != ctx or len(whole) == len(ctx):
                return None
            out.append(whole[len(ctx) :])
        return out

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


def _is_ids(prompt: list[object]) -> bool:
    """One prompt of token ids (not a list of prompts)."""
    return bool(prompt) and isinstance(prompt[0], int)
