"""The requests to one ``/v1/completions`` server that every scoring mode shares: the
model's name, completions for one or many prompts (gathered into list requests by the
micro-batcher where the host takes them), and the server's tokenizer.

``CompletionsRequests`` is composed by ``OpenAICompletions`` (``completions.py``) and handed
to its scoring strategy (``next_token.py``, ``echo.py``) and to the probe (``probe.py``). It
counts what reaches the server in the ``Usage`` it is given, before it is sent: ``calls`` per
prompt to complete (every attempt; a list counts each prompt; a refused list sent again one
by one counts each again), and after the answers ``prompt_tokens``,
``extra["http_requests"]``/``extra["prompts"]`` per HTTP request, ``tokenize_calls``.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

from ...aio import gather
from ...errors import BackendError, PermanentBackendError
from ..affinity import affinity_digest
from ..base import Usage, prompt_tokens_estimate
from ..http_errors import TRANSIENT_STATUSES
from ..transport import JSONTransport, token_counts
from .batching import MicroBatcher, split_batch
from .profiles import Profile


@dataclass(frozen=True)
class Served:
    """What a server serves, resolved once before the first score (``prepare``): the
    model's name and the host's ``Profile``."""

    model: str
    profile: Profile


class CompletionsRequests:
    """Requests to one ``/v1/completions`` server, counted in ``usage``.

    ``profile`` is the host's ``Profile`` where the provider names it, else None until the
    backend has probed it (the tokenizer shape is then found by trying); ``served`` is set
    once, by the backend's ``prepare``. ``batcher``: None sends one prompt per request.
    """

    def __init__(
        self,
        http: JSONTransport,
        usage: Usage,
        *,
        profile: Profile | None,
        batch_size: int,
        batch_wait: float,
    ) -> None:
        self.http = http
        self.usage = usage
        self.given = profile
        self.served: Served | None = None
        self.batcher = (
            MicroBatcher(self._send_batch, max_batch=batch_size, max_wait=batch_wait)
            if batch_size > 1
            else None
        )

    @property
    def model(self) -> str | None:
        return self.http.model

    @property
    def profile(self) -> Profile | None:
        """The host's profile: as resolved, else as given, else None (not probed yet)."""
        return self.served.profile if self.served is not None else self.given

    @property
    def completions_url(self) -> str:
        return f"{self.http.shown_root}/v1/completions"

    async def call(self, method: str, path: str, payload: dict[str, object] | None) -> object:
        """One JSON request to the server root (probes, ``icm doctor``); counts nothing."""
        return await self.http.call(method, path, payload)

    async def tokenize(self, text: str, *, add_special: bool = False) -> list[int] | None:
        """Token ids of ``text`` as the server's tokenizer splits it (BOS only if
        ``add_special``). None when the server has no tokenizer endpoint (hosted APIs).

        With a known tokenizer shape it asks that one; otherwise it tries llama.cpp's
        ``POST /tokenize {"content"}``, then vLLM's ``{"model", "prompt"}``.
        """
        shape = self.profile.tokenizer if self.profile is not None else "none"
        if shape == "none":
            tokens = await self._tokenize_as("llamacpp", text, add_special, strict=False)
            if tokens is not None:
                return tokens
            return await self._tokenize_as("vllm", text, add_special, strict=False)
        return await self._tokenize_as(shape, text, add_special, strict=True)

    async def resolve_model(self) -> str:
        """The served model (``JSONTransport.resolve_model``)."""
        return await self.http.resolve_model()

    def capped(self, k: int) -> int:
        """``k``, or the host's largest ``logprobs`` where it has one below ``k``."""
        cap = self.profile.max_logprobs if self.profile is not None else None
        return min(k, cap) if cap is not None else k

    async def post_prompts(
        self, served: Served, prompts: list[object], payload: dict[str, object]
    ) -> list[object]:
        """One completions request for all ``prompts`` where the host takes a list (answers in
        ``choices`` by index), else one request each, concurrently. Each prompt counts as a
        call before it is sent (``Usage.sending``: a budget may refuse it).

        A single prompt joins the prompts of concurrent scores in one list request where the
        host takes lists (``batching.py``); its answer is its own part of the response."""
        profile = served.profile
        body = {"model": served.model, **payload, **profile.extra_body}
        echo = "echo" in payload or "echo_last" in payload  # echoed answers: not split
        estimate = sum(prompt_tokens_estimate(p) for p in prompts)
        if len(prompts) == 1 and profile.prompt_lists and self.batcher is not None and not echo:
            shape = "ids" if isinstance(prompts[0], list) else "text"
            key = shape + json.dumps(body, sort_keys=True, separators=(",", ":"))
            async with self.usage.sending(1, estimate):  # counted (and gated) before it goes
                answers = [await self.batcher.submit(key, prompts[0], body)]
                self._add_tokens(answers)
            return answers
        if len(prompts) == 1 or profile.prompt_lists:
            groups = [prompts[0] if len(prompts) == 1 else prompts]
        else:
            groups = list(prompts)
        async with self.usage.sending(len(prompts), estimate):  # a list: each prompt a call
            answers = await gather([functools.partial(self._post, g, body) for g in groups])
            self._add_tokens(answers)
        return answers

    def _add_tokens(self, answers: list[object]) -> None:
        for answer in answers:
            prompt_tokens, cached_tokens = token_counts(answer)
            self.usage.prompt_tokens += prompt_tokens
            self.usage.cached_tokens += cached_tokens

    async def _post(self, prompt: object, body: dict[str, object]) -> object:
        """One HTTP request (one prompt, or a list of them), counted in ``usage.extra``."""
        header = self.profile.affinity_header if self.profile is not None else None
        first = prompt[0] if isinstance(prompt, list) and prompt else prompt
        pin = {header: affinity_digest(first)} if header and isinstance(first, str) else None
        answer = await self.http.call("POST", "/v1/completions", {**body, "prompt": prompt}, pin)
        self.usage.count("http_requests")
        n = len(prompt) if isinstance(prompt, list) and not _is_ids(prompt) else 1
        self.usage.count("prompts", n)
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
            # each prompt reaches the server again: counted (and gated) as calls of their own
            estimate = sum(prompt_tokens_estimate(p) for p in prompts)
            async with self.usage.sending(len(prompts), estimate):
                answers = await gather([functools.partial(self._outcome, p, body) for p in prompts])
            if not any(isinstance(a, Exception) for a in answers):
                self.batcher = None  # every prompt was fine alone: the list was refused
                self.usage.mark("batching_refused")
            return answers
        return split_batch(answer, prompts, endpoint=self.completions_url)

    async def _tokenize_as(
        self, shape: str, text: str, add_special: bool, *, strict: bool
    ) -> list[int] | None:
        if shape == "llamacpp":
            payload: dict[str, object] = {"content": text, "add_special": add_special}
        else:
            payload = {"model": await self.resolve_model(), "prompt": text}
            payload["add_special_tokens"] = add_special
        shown = f"{self.http.shown_root}/tokenize"
        response = await self.http.send("POST", "/tokenize", payload)
        self.usage.count("tokenize_calls")
        if not response.is_success:
            status = response.status_code
            if strict or status in TRANSIENT_STATUSES or status >= 500:
                raise self.http.http_error(response, shown)
            return None
        body = self.http.decode(response, shown)
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
