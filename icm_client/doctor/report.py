"""What ``icm doctor`` found: the report as data (``--json``) and as text for a terminal."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, computed_field

K_TRIED = 100
"""The largest ``logprobs`` k tried; a server that takes it may take more."""


class LabelReport(BaseModel):
    """How one label word tokenizes after a prompt, and what the model gives it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: str
    token_ids: list[int] | None = None  # in context; None without a tokenizer endpoint
    pieces: list[str] | None = None  # the tokens' text, where the server says
    single_token: bool | None = None
    leading_space: bool | None = None  # the (first) token carries the label's space
    logprob: float | None = None  # after checks.CONTEXT, through the labeling code path
    in_top_k: bool | None = None  # False: logprob is only an upper bound


class PrefixCacheReport(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt_tokens: int | None
    first_s: float
    repeat_s: float
    cached_tokens: int | None  # usage.prompt_tokens_details.cached_tokens of the repeat
    cache_n: int | None  # llama.cpp: timings.cache_n (reused) of the repeat
    prompt_n: int | None  # llama.cpp: timings.prompt_n (computed) of the repeat
    effective: bool | None  # None: cannot tell
    evidence: str


class DoctorReport(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    endpoint: str
    model: str | None = None
    models: list[str] = []
    latency_s: float | None = None
    logprobs: bool = False
    max_logprobs: int | None = None  # the largest accepted k (K_TRIED: that or more)
    tokenizer: str | None = None  # /tokenize shape: "llamacpp", "vllm" or "none"
    token_prompts: bool | None = None
    prompt_lists: bool | None = None
    logprob_token_ids: bool | None = None  # vLLM's explicit label logprobs take effect
    echo: bool | None = None
    labels: list[LabelReport] = []
    prefix_cache: PrefixCacheReport | None = None
    problems: list[str] = []
    notes: list[str] = []
    chat_logprobs: bool | None = None  # checked where /v1/completions is refused

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self) -> str:
        """The report for a terminal."""
        yes = {True: "yes", False: "no", None: "unknown"}
        rows: list[tuple[str, str]] = [("model", self.model or "?")]
        if self.models:
            rows.append(("served models", ", ".join(self.models)))
        if self.latency_s is not None:
            rows.append(("latency", f"{self.latency_s:.2f} s (a one-token completion)"))
        if self.logprobs:
            k = self.max_logprobs
            most = f"at least {k} (the most tried)" if k == K_TRIED else f"at most {k}"
            rows.append(("logprobs", f"yes; top-k: {most}"))
        if self.chat_logprobs is not None:
            rows.append(("chat logprobs", "yes" if self.chat_logprobs else "no"))
        if self.prompt_lists is not None:
            lists = (
                "yes (concurrent prompts share requests)"
                if self.prompt_lists
                else "no (refused, or the usage of a list counts fewer prompts than it holds)"
            )
            rows.append(("batched prompts", lists))
        if self.tokenizer is not None:
            rows.append(("tokenizer", "none" if self.tokenizer == "none" else self.tokenizer))
            rows.append(("token-id prompts", yes[self.token_prompts]))
            rows.append(("logprob_token_ids", yes[self.logprob_token_ids]))
            rows.append(("echo", yes[self.echo]))
        for lab in self.labels:
            if lab.token_ids is not None or lab.logprob is not None:  # something was learnt
                rows.append((f"label {lab.label!r}", _label_text(lab)))
        if self.prefix_cache is not None:
            pc = self.prefix_cache
            rows.append(("prefix cache", f"{yes[pc.effective]}: {pc.evidence}"))
        width = max(len(k) for k, _ in rows)
        lines = [f"icm doctor: {self.endpoint}"]
        lines += [f"  {k.ljust(width)}  {v}" for k, v in rows]
        lines += [f"note: {n}" for n in self.notes]
        lines += [f"problem: {p}" for p in self.problems]
        verdict = "can serve ICM" if self.ok else "CANNOT serve ICM"
        lines.append(f"verdict: {verdict}")
        return "\n".join(lines)


def _label_text(lab: LabelReport) -> str:
    parts = []
    if lab.token_ids is None:
        parts.append("tokenization unknown (no /tokenize)")
    else:
        n = len(lab.token_ids)
        pieces: list[str | None] = list(lab.pieces) if lab.pieces else [None] * n
        shown = ", ".join(
            str(i) if p is None else f"{i} {p!r}"
            for i, p in zip(lab.token_ids, pieces, strict=True)
        )
        parts.append(f"{n} token{'s' if n != 1 else ''} [{shown}]")
        if lab.leading_space is not None:
            parts.append("leading space in the token" if lab.leading_space else "no space")
    if lab.logprob is not None:
        where = "" if lab.in_top_k else " (upper bound: not in the top-k)"
        parts.append(f"logprob {lab.logprob:.3f}{where}")
    return ", ".join(parts)
