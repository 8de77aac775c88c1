"""Exact continuation scoring (``mode="echo"``; ``completions.py`` says why it is off by
default): each ``prompt + label`` is sent with ``echo`` and the label tokens' echoed logprobs
are summed.
"""

from __future__ import annotations

from ...errors import CapabilityError, PermanentBackendError
from ..base import ScoreRequest, ScoreResult
from ..transport import token_counts
from .label_tokens import ContextTokens
from .logprobs import echo_sequences, suffix_logprob
from .requests import CompletionsRequests, Served


class EchoScoring:
    """``mode="echo"``: the label's own tokens' logprobs, echoed back with the prompt."""

    def __init__(self, requests: CompletionsRequests, tokens: ContextTokens) -> None:
        self.requests, self.tokens = requests, tokens

    async def score(self, served: Served, request: ScoreRequest) -> ScoreResult:
        profile = served.profile
        if profile.echo == "none":
            raise CapabilityError(
                f"exact continuation scoring needs echoed prompt logprobs, which this endpoint "
                f"(profile {profile.name!r}) does not give; use mode='next_token'",
                endpoint=self.requests.completions_url,
            )
        ctx: list[int] | None = None
        prompts: list[str] | list[list[int]]
        if profile.scores_token_ids:
            ctx, labels = await self.tokens.in_context(request)
            prompts = [ctx + ids for ids in labels]
        else:
            prompts = [request.prompt + label for label in request.labels]
        payload: dict[str, object] = {"max_tokens": 1, "temperature": 0, "logprobs": 1}
        if profile.echo == "fireworks":  # only the tail: enough tokens for the longest label
            payload["echo_last"] = max(len(label.encode()) for label in request.labels) + 1
        else:
            payload["echo"] = True
        bodies = await self.requests.post_prompts(served, list(prompts), payload)
        seqs = [s for body in bodies for s in echo_sequences(body, profile.echo)]
        if len(seqs) != len(prompts):
            raise PermanentBackendError(
                f"asked for {len(prompts)} echoed prompts, got {len(seqs)}",
                endpoint=self.requests.completions_url,
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
                        endpoint=self.requests.completions_url,
                    )
                values.append(sum(lp for lp in span if lp is not None))
            else:
                values.append(
                    suffix_logprob((tokens, lps), label, endpoint=self.requests.completions_url)
                )
        counts = [token_counts(body) for body in bodies]
        return ScoreResult(
            tuple(values),
            (False,) * len(values),
            sum(c[0] for c in counts),
            sum(c[1] for c in counts),
        )
