"""The checks of ``icm doctor``, in order (the package docstring says which and why)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable
from typing import TypeVar

import httpx2

from ..backends.base import ScoreRequest
from ..backends.openai import OpenAIChat, OpenAICompletions
from ..backends.openai.probe import forget_probes, probe
from ..backends.openai.profiles import Profile
from ..backends.openai.route import refuses_completions
from ..errors import BackendError, PermanentBackendError, TransientBackendError
from .prefix_cache import cache_verdict
from .report import K_TRIED, DoctorReport, LabelReport, PrefixCacheReport

T = TypeVar("T")

CONTEXT = "Claim: the sky is blue.\nI think this Claim is"
"""What a label word follows in the probes: like every task prompt, it ends in a word."""

_SPACE_MARKS = (" ", "\u0120", "\u2581")  # a space; GPT-2 BPE's "Ġ"; SentencePiece's "▁"


class Stop(Exception):
    """A problem after which the later checks cannot run."""


class Checks:
    """The checks, in order, filling in the report's fields as they find them."""

    def __init__(
        self,
        base_url: str,
        model: str | None,
        labels: tuple[str, ...],
        api_key: str | None,
        api_key_env: str,
        timeout: float,
        client: httpx2.AsyncClient,
    ) -> None:
        self.base_url, self.model, self.labels = base_url, model, labels
        self.api_key, self.api_key_env = api_key, api_key_env
        self.timeout, self.client = timeout, client
        self.server = self.backend(model)  # validates the URL (ConfigError: exit 2)
        self.endpoint = self.server.completions_url.removesuffix("/completions")
        self.models: list[str] = []
        self.latency_s: float | None = None
        self.profile: Profile | None = None
        self.label_reports: list[LabelReport] = [LabelReport(label=w) for w in labels]
        self.prefix_cache: PrefixCacheReport | None = None
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.chat_logprobs: bool | None = None

    def backend(
        self, model: str | None, *, provider: str | Profile = "generic", top_k: int = K_TRIED
    ) -> OpenAICompletions:
        return OpenAICompletions(
            self.base_url,
            model,
            provider=provider,
            api_key=self.api_key,
            api_key_env=self.api_key_env,
            top_k=top_k,
            max_top_k=max(top_k, K_TRIED),
            timeout=self.timeout,
            client=self.client,
        )

    def report(self) -> DoctorReport:
        p = self.profile
        return DoctorReport(
            endpoint=self.endpoint,
            model=self.model,
            models=self.models,
            latency_s=self.latency_s,
            logprobs=p is not None,
            max_logprobs=None if p is None else p.max_logprobs or K_TRIED,
            tokenizer=None if p is None else p.tokenizer,
            token_prompts=None if p is None else p.token_prompts,
            prompt_lists=None if p is None else p.prompt_lists,
            logprob_token_ids=None if p is None else p.explicit_token_logprobs,
            echo=None if p is None else p.echo != "none",
            labels=self.label_reports,
            prefix_cache=self.prefix_cache,
            problems=self.problems,
            notes=self.notes,
            chat_logprobs=self.chat_logprobs,
        )

    def fail(self, what: str, exc: BackendError) -> Stop:
        """Record ``exc`` as a problem; raise the result to end the checks."""
        if isinstance(exc, TransientBackendError):
            why = "unreachable" if exc.status is None else "the server is failing or busy"
            self.problems.append(f"{what}: {why}: {exc}")
        else:
            self.problems.append(f"{what}: {exc}")
        return Stop()

    async def fatal(self, what: str, step: Awaitable[T]) -> T:
        """``step``'s result; a backend error becomes a problem and ends the checks."""
        try:
            return await step
        except BackendError as exc:
            raise self.fail(what, exc) from None

    async def run(self, prefix_tokens: int) -> None:
        await self.list_models()
        server = self.backend(self.model)
        payload: dict[str, object] = {"model": self.model, "prompt": CONTEXT, "max_tokens": 1}
        start = time.perf_counter()
        try:
            await server.call("POST", "/v1/completions", payload)
        except PermanentBackendError as exc:
            if refuses_completions(exc) and await self.chat_route(exc):
                return
            raise self.fail("completion", exc) from None
        except BackendError as exc:
            raise self.fail("completion", exc) from None
        self.latency_s = round(time.perf_counter() - start, 4)

        forget_probes()  # ask afresh: the server may have been restarted with other flags
        self.profile = profile = await self.fatal(
            "logprobs", probe(server, top_k=server.top_k, echo=True)
        )
        await self.tokenize_labels(server, profile)
        k = min(20, profile.max_logprobs or 20)
        scorer = self.backend(self.model, provider=profile, top_k=k)
        result = await self.fatal("scoring", scorer.score(ScoreRequest(CONTEXT, self.labels)))
        self.label_reports = [
            lab.model_copy(update={"logprob": lp, "in_top_k": not bounded})
            for lab, lp, bounded in zip(
                self.label_reports, result.logprobs, result.bounded, strict=True
            )
        ]
        self.advise(scorer.multi_token_labels, k)
        if prefix_tokens > 0:
            await self.measure_prefix_cache(server, prefix_tokens)

    async def chat_route(self, refusal: PermanentBackendError) -> bool:
        """Where ``/v1/completions`` is refused for the model: whether its chat endpoint
        returns ``top_logprobs`` (then the labels are scored through it, and a note says
        what that route is)."""
        chat = OpenAIChat(
            self.base_url,
            self.model,
            api_key=self.api_key,
            api_key_env=self.api_key_env,
            top_k=5,  # what every chat API takes (Fireworks' most)
            timeout=self.timeout,
            client=self.client,
        )
        start = time.perf_counter()
        try:
            result = await chat.score(ScoreRequest(CONTEXT, self.labels))
        except BackendError as exc:
            self.chat_logprobs = False
            self.problems.append(f"completion: {refusal}; chat logprobs: {exc}")
            return False
        self.latency_s = round(time.perf_counter() - start, 4)
        self.chat_logprobs = True
        self.label_reports = [
            lab.model_copy(update={"logprob": lp, "in_top_k": not bounded})
            for lab, lp, bounded in zip(
                self.label_reports, result.logprobs, result.bounded, strict=True
            )
        ]
        self.notes.append(
            f"/v1/completions is refused for this model ({refusal.status}); its chat endpoint "
            "returns top_logprobs, so `icm --api auto` (the default) scores through chat: an "
            "instruct model, the prototyping route, not the base model ICM assumes"
        )
        return True

    async def list_models(self) -> None:
        try:
            body = await self.server.call("GET", "/v1/models", None)
        except BackendError as exc:
            auth = isinstance(exc, PermanentBackendError) and exc.status in (401, 403)
            if auth or isinstance(exc, TransientBackendError) or self.model is None:
                raise self.fail("model list", exc) from None
            self.notes.append(f"no model list ({exc})")
            return
        data = body.get("data") if isinstance(body, dict) else None
        entries = data if isinstance(data, list) else []
        ids = [m.get("id") for m in entries if isinstance(m, dict)]
        self.models = [i for i in ids if isinstance(i, str) and i]
        if self.model is None:
            if not self.models:
                self.problems.append("the server lists no model: pass --model")
                raise Stop
            self.model = self.models[0]
        elif self.models and self.model not in self.models:
            self.notes.append(
                f"model {self.model!r} is not in the server's list ({', '.join(self.models)})"
            )

    async def tokenize_labels(self, server: OpenAICompletions, profile: Profile) -> None:
        """Each label word's tokens right after ``CONTEXT``: the tokens of context + label
        beyond those of the context alone (a word can tokenize differently on its own)."""
        if profile.tokenizer == "none":
            return
        context = await self.pieces(server, profile.tokenizer, CONTEXT)
        reports = []
        for lab in self.label_reports:
            full = await self.pieces(server, profile.tokenizer, CONTEXT + lab.label)
            if context is None or full is None:
                reports.append(lab)
                continue
            same = 0
            while same < min(len(context), len(full)) and context[same] == full[same]:
                same += 1
            tail = full[same:]
            if same < len(context):
                self.notes.append(
                    f"label {lab.label!r} merges with the end of the prompt into other tokens"
                )
            names = [piece for _, piece in tail]
            pieces = [n for n in names if n is not None]
            if len(pieces) != len(names):
                pieces = []
            reports.append(
                lab.model_copy(
                    update={
                        "token_ids": [i for i, _ in tail],
                        "pieces": pieces or None,
                        "single_token": len(tail) == 1 and same == len(context),
                        "leading_space": pieces[0].startswith(_SPACE_MARKS) if pieces else None,
                    }
                )
            )
        self.label_reports = reports

    async def pieces(
        self, server: OpenAICompletions, shape: str, text: str
    ) -> list[tuple[int, str | None]] | None:
        """``text``'s tokens (id, text) without BOS, from the server's ``/tokenize``."""
        if shape == "llamacpp":
            payload: dict[str, object] = {"content": text, "add_special": False}
            payload["with_pieces"] = True
        else:
            payload = {"model": self.model, "prompt": text, "add_special_tokens": False}
            payload["return_token_strs"] = True
        try:
            body = await server.call("POST", "/tokenize", payload)
        except BackendError as exc:
            self.notes.append(f"/tokenize failed: {exc}")
            return None
        tokens = body.get("tokens") if isinstance(body, dict) else None
        strs = body.get("token_strs") if isinstance(body, dict) else None
        if not isinstance(tokens, list):
            return None
        out: list[tuple[int, str | None]] = []
        for n, tok in enumerate(tokens):
            if isinstance(tok, dict) and isinstance(tok.get("id"), int):  # llama.cpp pieces
                piece = tok.get("piece")
                out.append((tok["id"], piece if isinstance(piece, str) else None))
            elif isinstance(tok, int):
                piece = strs[n] if isinstance(strs, list) and n < len(strs) else None
                out.append((tok, piece if isinstance(piece, str) else None))
            else:
                return None
        return out

    def advise(self, multi_token_exact: bool, k: int) -> None:
        for lab in self.label_reports:
            if lab.token_ids is not None and not lab.single_token:
                n = len(lab.token_ids)
                if multi_token_exact:
                    self.notes.append(
                        f"label {lab.label!r} is {n} tokens: scored exactly, token by token"
                    )
                else:
                    self.problems.append(
                        f"label {lab.label!r} is {n} tokens for this model, and this server "
                        "can only score the single next token: choose one-token label words"
                    )
            if lab.in_top_k is False:
                self.notes.append(
                    f"label {lab.label!r} is not in the top {k} after the probe prompt: its "
                    "logprob is an upper bound (a larger --top-k helps, where the server allows)"
                )
        cap = self.profile.max_logprobs if self.profile is not None else None
        if cap is not None and cap < 20:
            self.notes.append(f"the server returns at most {cap} logprobs: pass --top-k {cap}")

    async def measure_prefix_cache(self, server: OpenAICompletions, n_tokens: int) -> None:
        payload: dict[str, object] = {
            "model": self.model,
            "prompt": _long_prompt(n_tokens),
            "max_tokens": 1,
            "temperature": 0,
            "logprobs": 1,
        }
        try:
            start = time.perf_counter()
            await server.call("POST", "/v1/completions", payload)
            middle = time.perf_counter()
            repeat = await server.call("POST", "/v1/completions", payload)
            end = time.perf_counter()
        except BackendError as exc:
            self.notes.append(f"prefix cache not measured: {exc}")
            return
        self.prefix_cache = cache_verdict(repeat, middle - start, end - middle)
        if self.prefix_cache.effective is False:
            self.notes.append(
                "the prefix cache did not serve a repeated prompt: every ICM request will "
                "recompute its shared demonstrations (vLLM: --enable-prefix-caching)"
            )


def _long_prompt(n_tokens: int) -> str:
    """About ``n_tokens`` tokens of demonstrations, new ones each time (a random first line),
    so that the first request cannot be a cache hit."""
    lines = [f"Session {uuid.uuid4().hex[:12]}: statements to judge.\n\n"]
    for i in range(max(1, n_tokens // 24)):  # ~24 tokens a line
        lines.append(
            f"Claim {i}: river {i} flows through valley {(i * 37) % 1000}.\n"
            "I think this Claim is True\n\n"
        )
    lines.append(CONTEXT)
    return "".join(lines)
