"""Finding out what an unknown ``/v1/completions`` server can do, by asking it.

A handful of tiny requests (a few tokens each) build the host's ``Profile``:

1. logprobs at all, and the largest k it takes: ``logprobs=k`` for k = top_k, 20, 5 until one
   is accepted; fewer entries than asked means a silent cap;
2. a tokenizer: llama.cpp's ``/tokenize {"content"}``, else vLLM's ``{"model", "prompt"}``;
3. token-id prompts and prompt lists: the probe prompt's ids (with BOS, as the server adds it
   to text) sent as a list of two must give the same distribution as the text did, and the
   top-k must name token ids (natively, or with ``return_tokens_as_token_ids``); without
   token-id prompts, the text twice in a list (lists carry batched prompts, ``batching.py``);
4. explicit token logprobs: ``logprob_token_ids`` with an id outside the natural top-k must
   come back (vLLM ignores unknown fields with HTTP 200, so only the answer tells);
5. echo, only when the exact mode asks for it: where the echoed logprobs come back.

The result is remembered in memory per (server, model, echo), so replicas and re-created
backends of one server probe once per process. Each probe request counts in
``usage.extra["probe_requests"]``, and each completion among them also in ``usage.calls``,
before it is sent: a hosted API bills it, and a budget must see it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Protocol

from ...errors import CapabilityError, PermanentBackendError
from ..base import Usage, prompt_tokens_estimate
from ..transport import token_counts
from .logprobs import Entry, parse_top_entries
from .profiles import EchoShape, Profile, Tokenizer

PROBE_TEXT = "The capital of France is"
_SAME = 0.25  # logprob tolerance: CPU numerics differ by ~0.1 between batch shapes; a
# doubled or missing BOS moves the top logprobs by more (0.65 and 1.5 on Gemma 3 270M)
_REFUSED = (400, 401, 403, 404, 405, 422)

_PROBED: dict[tuple[str, str, bool], Profile] = {}


class Server(Protocol):
    """What the probe asks through: uncounted JSON requests to the server root, and where
    to count them (``CompletionsRequests`` and ``OpenAICompletions`` are both one)."""

    @property
    def model(self) -> str | None: ...

    @property
    def completions_url(self) -> str: ...

    @property
    def usage(self) -> Usage: ...

    async def call(self, method: str, path: str, payload: dict[str, object] | None) -> object: ...


def forget_probes() -> None:
    """Drop remembered probe results (a server was restarted with other settings)."""
    _PROBED.clear()


async def probe(server: Server, *, top_k: int, echo: bool = False) -> Profile:
    """The ``Profile`` of ``server`` (remembered; see the module doc); ``top_k`` is the first
    ``logprobs`` k tried.

    Raises ``CapabilityError`` when the server returns no logprobs: it cannot score.
    """
    model = server.model
    if model is None:
        raise ValueError("resolve the model before probing")
    key = (server.completions_url, model, echo)
    if key not in _PROBED:
        _PROBED[key] = await _Probe(server, model).run(top_k, echo)
    return _PROBED[key]


async def probe_request(server: Server, path: str, payload: dict[str, object]) -> object:
    """One probe request (``POST path``), counted in ``usage.extra["probe_requests"]``, and a
    completion also in ``usage.calls`` per prompt before it is sent (a hosted API bills it,
    a budget must see it); a tokenizer request is no call."""
    usage = server.usage
    usage.count("probe_requests")
    prompt = payload.get("prompt")
    many = isinstance(prompt, list) and bool(prompt) and not isinstance(prompt[0], int)
    prompts = prompt if isinstance(prompt, list) and many else [prompt]
    calls = len(prompts) if path == "/v1/completions" else 0
    tokens = sum(prompt_tokens_estimate(p) for p in prompts) if calls else 0
    async with usage.sending(calls, tokens):
        body = await server.call("POST", path, payload)
        usage.prompt_tokens += token_counts(body)[0] if calls else 0
    return body


class _Probe:
    def __init__(self, server: Server, model: str) -> None:
        self.server = server
        self.model = model
        self.endpoint = server.completions_url
        self.refusal: PermanentBackendError | None = None

    async def ask(self, path: str, payload: dict[str, object]) -> object | None:
        """The answer, or None when the server refuses this request shape.

        Completions: 400/422 (a field or value it does not take). ``/tokenize``: also 404 and
        the like (no such endpoint). Anything else (a wrong model, key or URL) is raised:
        that is not a capability, it is a mistake to report.
        """
        refused = _REFUSED if path == "/tokenize" else (400, 422)
        try:
            body = await probe_request(self.server, path, payload)
        except PermanentBackendError as exc:
            if exc.status in refused:
                self.refusal = exc
                return None
            raise
        return body

    async def complete(self, prompt: object, k: int, **extra: object) -> list[list[Entry]] | None:
        """The top-k of each prompt; None if refused, and for a list of prompts also when the
        answer's usage counts fewer prompts than it answers (llama.cpp's server counts the
        first only): batching there would undercount tokens, and budgets with them."""
        payload = {"model": self.model, "prompt": prompt, "max_tokens": 1, "temperature": 0}
        body = await self.ask("/v1/completions", payload | {"logprobs": k, **extra})
        if body is None:
            return None
        tops = parse_top_entries(body, endpoint=self.endpoint)
        if len(tops) > 1 and _usage_is_partial(body, len(tops)):
            return None
        return tops

    async def run(self, first_k: int, echo: bool) -> Profile:
        top: list[Entry] | None = None
        accepted = first_k
        for k in dict.fromkeys((first_k, 20, 5)):
            tops = await self.complete(PROBE_TEXT, k)
            if tops is not None:
                top, accepted = tops[0], k
                break
        if top is None:
            raise CapabilityError(
                f"the server refuses every logprobs request (k = 5 included): {self.refusal}",
                endpoint=self.endpoint,
                status=self.refusal.status if self.refusal else None,
            )
        max_logprobs = accepted if accepted != first_k else None
        if len(top) < accepted:  # a silent cap (OpenAI-style answers hold up to k+1)
            max_logprobs = len(top)

        tokenizer, ids = await self.tokenizer()
        token_prompts = prompt_lists = token_id_keys = explicit = False
        natural = {tid for tid, _, _ in top}
        if ids:
            native = None not in natural
            flags: dict[str, object] = {} if native else {"return_tokens_as_token_ids": True}
            as_ids = await self.complete([ids, ids], accepted, **flags)
            if as_ids is not None and len(as_ids) == 2:
                prompt_lists = True
            else:
                as_ids = await self.complete(ids, accepted, **flags)
            if as_ids is not None and all(_same(t, top) for t in as_ids):
                has_ids = all(None not in {tid for tid, _, _ in t} for t in as_ids)
                token_prompts = has_ids
                token_id_keys = has_ids and not native
                natural = {tid for tid, _, _ in as_ids[0]}
            prompt_lists = prompt_lists and token_prompts
            outside = next((t for t in ids if t not in natural), None)
            if token_prompts and outside is not None:
                got = await self.complete(ids, 1, logprob_token_ids=[outside], **flags)
                explicit = got is not None and outside in {tid for tid, _, _ in got[0]}

        if not prompt_lists:  # text prompts in a list (servers without token-id prompts)
            as_list = await self.complete([PROBE_TEXT, PROBE_TEXT], accepted)
            prompt_lists = (
                as_list is not None and len(as_list) == 2 and all(_same(t, top) for t in as_list)
            )

        echo_shape: EchoShape = await self.echo() if echo else "none"
        return Profile(
            name="probed",
            max_logprobs=max_logprobs,
            tokenizer=tokenizer,
            token_prompts=token_prompts,
            prompt_lists=prompt_lists,
            explicit_token_logprobs=explicit,
            token_id_keys=token_id_keys,
            echo=echo_shape,
        )

    async def tokenizer(self) -> tuple[Tokenizer, list[int] | None]:
        body = await self.ask("/tokenize", {"content": PROBE_TEXT, "add_special": True})
        if (tokens := _tokens(body)) is not None:
            return "llamacpp", tokens
        payload = {"model": self.model, "prompt": PROBE_TEXT, "add_special_tokens": True}
        if (tokens := _tokens(await self.ask("/tokenize", payload))) is not None:
            return "vllm", tokens
        return "none", None

    async def echo(self) -> EchoShape:
        payload = {"model": self.model, "prompt": PROBE_TEXT, "max_tokens": 1, "temperature": 0}
        body = await self.ask("/v1/completions", payload | {"logprobs": 1, "echo": True})
        if not isinstance(body, Mapping):
            return "none"
        prompt = body.get("prompt")
        if isinstance(prompt, list) and prompt and _echoed(prompt[0]):
            return "together"
        choices = body.get("choices")
        if isinstance(choices, list) and choices and _echoed(choices[0]):
            return "choices"
        return "none"  # accepted but ignored (llama.cpp)


def _tokens(body: object) -> list[int] | None:
    tokens = body.get("tokens") if isinstance(body, Mapping) else None
    if isinstance(tokens, list) and tokens and all(isinstance(t, int) for t in tokens):
        return tokens
    return None


def _echoed(item: object) -> bool:
    """More than the one generated token came back: the prompt was echoed."""
    lp = item.get("logprobs") if isinstance(item, Mapping) else None
    tokens = lp.get("tokens") if isinstance(lp, Mapping) else None
    return isinstance(tokens, list) and len(tokens) > 1


def _same(a: list[Entry], b: list[Entry]) -> bool:
    """Two top-k lists of one position agree (their best logprobs, within noise)."""
    best_a = sorted((lp for _, _, lp in a), reverse=True)[:3]
    best_b = sorted((lp for _, _, lp in b), reverse=True)[:3]
    n = min(len(best_a), len(best_b))
    return n > 0 and all(
        math.isclose(x, y, abs_tol=_SAME) for x, y in zip(best_a[:n], best_b[:n], strict=True)
    )


def _usage_is_partial(body: object, prompts: int) -> bool:
    """Whether a list answer's usage covers fewer than ``prompts`` one-token completions."""
    usage = body.get("usage") if isinstance(body, dict) else None
    done = usage.get("completion_tokens") if isinstance(usage, dict) else None
    return isinstance(done, int) and not isinstance(done, bool) and done < prompts
