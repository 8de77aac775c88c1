"""Next-token scoring (``mode="next_token"``, ``completions.py`` describes both paths): label
words looked up by text in the top-k, or labels of any length scored by token id with the
chain rule; either retried once with a larger k when a label is outside the top-k.
"""

from __future__ import annotations

from ...errors import PermanentBackendError
from ..base import ScoreRequest, ScoreResult
from ..transport import token_counts
from .label_tokens import ContextTokens
from .logprobs import Entry, label_logprobs, parse_top_entries, parse_top_logprobs, token_logprobs
from .requests import CompletionsRequests, Served

MAX_LOGPROB_TOKEN_IDS = 128
"""vLLM's cap on ``logprob_token_ids`` (``vllm/sampling_params.py``)."""


class NextTokenScoring:
    """``mode="next_token"``: the distribution over the token after the prompt, asked for
    ``top_k`` entries, and once more for ``max_top_k`` when a label is not among them."""

    def __init__(
        self, requests: CompletionsRequests, tokens: ContextTokens, top_k: int, max_top_k: int
    ) -> None:
        self.requests, self.tokens = requests, tokens
        self.top_k, self.max_top_k = top_k, max_top_k
        self._escalate = True  # off once the server refuses the larger k
        self._explicit: bool | None = None  # logprob_token_ids honoured? None: not seen yet

    async def score(self, served: Served, request: ScoreRequest) -> ScoreResult:
        if served.profile.scores_token_ids:
            return await self._score_ids(served, request)
        return await self._score_text(served, request)

    async def _score_text(self, served: Served, request: ScoreRequest) -> ScoreResult:
        k, big = self.requests.capped(self.top_k), self.requests.capped(self.max_top_k)
        body = await self._complete(served, request.prompt, k)
        top = parse_top_logprobs(body, endpoint=self.requests.completions_url)[0]
        logprobs, bounded = label_logprobs(top, request.labels)
        prompt_tokens, cached_tokens = token_counts(body)
        if any(bounded) and self._escalate and big > k:
            try:
                body = await self._complete(served, request.prompt, big)
            except PermanentBackendError as exc:
                self._stop_escalating(exc)
            else:
                top = parse_top_logprobs(body, endpoint=self.requests.completions_url)[0]
                logprobs, bounded = label_logprobs(top, request.labels)
                prompt_tokens, cached_tokens = token_counts(body)
        self.requests.usage.bounded_labels += sum(bounded)
        return ScoreResult(logprobs, bounded, prompt_tokens, cached_tokens)

    async def _score_ids(self, served: Served, request: ScoreRequest) -> ScoreResult:
        ctx, labels = await self.tokens.labels_in_context(request)
        if ctx is None and any(len(ids) > 1 for ids in labels):  # chains need the prompt's ids
            ctx, labels = await self.tokens.in_context(request)
        # The chain-rule positions, deduplicated (labels may share first tokens); P comes
        # first so that the shared prefix is computed once, by the first element.
        positions: dict[tuple[int, ...], int] = {}
        for ids in labels:
            for j in range(len(ids)):
                positions.setdefault(tuple(ids[:j]), len(positions))
        # Single-token labels known for this ending: the prompt as text (the server's own
        # tokenization is tok(prompt)), no /tokenize round trip.
        prompts: list[object] = (
            [request.prompt] if ctx is None else [ctx + list(prefix) for prefix in positions]
        )
        wanted = sorted({t for ids in labels for t in ids})
        extra: dict[str, object] = {}
        if served.profile.token_id_keys:
            extra["return_tokens_as_token_ids"] = True
        explicit = (
            served.profile.explicit_token_logprobs
            and self._explicit is not False
            and len(wanted) <= MAX_LOGPROB_TOKEN_IDS
        )
        k, big = self.requests.capped(self.top_k), self.requests.capped(self.max_top_k)
        tops, counts = await self._complete_ids(served, prompts, k, extra, wanted, explicit)
        if explicit:
            honoured = all(set(wanted) <= {tid for tid, _, _ in top} for top in tops)
            if self._explicit is None or not honoured:
                self._explicit = honoured  # vLLM ignores unknown fields: read it off the answer
            if not honoured:
                self.requests.usage.mark("explicit_ignored")
        values, bounded = self._chain(tops, positions, labels)
        if any(bounded) and self._escalate and big > k:
            try:
                tops, counts = await self._complete_ids(served, prompts, big, extra, wanted, False)
            except PermanentBackendError as exc:
                self._stop_escalating(exc)
            else:
                values, bounded = self._chain(tops, positions, labels)
        self.requests.usage.bounded_labels += sum(bounded)
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
                (lp,), (bd,) = token_logprobs(top, [tid], endpoint=self.requests.completions_url)
                total += lp
                bounded = bounded or bd
            values.append(total)
            flags.append(bounded)
        return tuple(values), tuple(flags)

    def _stop_escalating(self, exc: PermanentBackendError) -> None:
        """A refused larger k means the server caps k: keep the bound from now on."""
        if exc.status not in (400, 422) or "logprob" not in str(exc).lower():
            raise exc
        self._escalate = False

    async def _complete(self, served: Served, prompt: object, k: int) -> object:
        payload: dict[str, object] = {"max_tokens": 1, "temperature": 0, "logprobs": k}
        [body] = await self.requests.post_prompts(served, [prompt], payload)
        return body

    async def _complete_ids(
        self,
        served: Served,
        prompts: list[object],
        k: int,
        extra: dict[str, object],
        wanted: list[int],
        explicit: bool,
    ) -> tuple[list[list[Entry]], tuple[int, int]]:
        """First-position top-k entries of each prompt, and (prompt, cached) tokens."""
        payload: dict[str, object] = {"max_tokens": 1, "temperature": 0, "logprobs": k, **extra}
        if explicit:
            payload["logprob_token_ids"] = wanted
        try:
            bodies = await self.requests.post_prompts(served, list(prompts), payload)
        except PermanentBackendError as exc:
            # A server that knows the field but refuses it here: ask without it from now on.
            if not explicit or exc.status not in (400, 422) or "logprob_token_ids" not in str(exc):
                raise
            self._explicit = False
            payload.pop("logprob_token_ids")
            bodies = await self.requests.post_prompts(served, list(prompts), payload)
        tops = [
            top
            for body in bodies
            for top in parse_top_entries(body, endpoint=self.requests.completions_url)
        ]
        if len(tops) != len(prompts):
            raise PermanentBackendError(
                f"asked for {len(prompts)} prompts, got {len(tops)} choices",
                endpoint=self.requests.completions_url,
            )
        counts = [token_counts(body) for body in bodies]
        return tops, (sum(c[0] for c in counts), sum(c[1] for c in counts))
