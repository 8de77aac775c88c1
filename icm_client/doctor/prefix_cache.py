"""Reading a repeated prompt's answer: was it served from the server's prefix cache?"""

from __future__ import annotations

from .report import PrefixCacheReport


def _int_at(body: object, *path: str) -> int | None:
    for key in path:
        body = body.get(key) if isinstance(body, dict) else None
    return body if isinstance(body, int) and not isinstance(body, bool) else None


def cache_verdict(repeat: object, first_s: float, repeat_s: float) -> PrefixCacheReport:
    """Whether the repeat was served from the cache: by the server's own count where it
    gives one (OpenAI-style ``cached_tokens``, llama.cpp's ``timings``), else by time."""
    prompt = _int_at(repeat, "usage", "prompt_tokens")
    cached = _int_at(repeat, "usage", "prompt_tokens_details", "cached_tokens")
    cache_n = _int_at(repeat, "timings", "cache_n")
    prompt_n = _int_at(repeat, "timings", "prompt_n")
    times = f"first {first_s:.2f} s, repeat {repeat_s:.2f} s"
    effective: bool | None
    if cached is not None and prompt:
        effective = cached >= prompt / 2
        evidence = f"{cached} of {prompt} prompt tokens cached on the repeat ({times})"
    elif cache_n is not None and prompt_n is not None:
        effective = cache_n >= (cache_n + prompt_n) / 2
        evidence = f"{cache_n} tokens reused, {prompt_n} computed on the repeat ({times})"
    elif first_s >= 0.25:
        effective = repeat_s < first_s / 2
        evidence = f"by time, the server reports no cached-token count ({times})"
    else:
        effective = None
        evidence = (
            f"too fast to tell by time and no cached-token count ({times}); vLLM reports "
            "one with --enable-prompt-tokens-details"
        )
    return PrefixCacheReport(
        prompt_tokens=prompt,
        first_s=round(first_s, 4),
        repeat_s=round(repeat_s, 4),
        cached_tokens=cached,
        cache_n=cache_n,
        prompt_n=prompt_n,
        effective=effective,
        evidence=evidence,
    )
