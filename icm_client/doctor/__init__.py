"""``icm doctor``: can this endpoint serve ICM, and how well? Found out by asking it.

The checks run in the order in which a failure explains the later ones: the model list
(reachable? key accepted? which model?), one plain completion (the model answers; its
latency), the capability probe the backend itself uses (``backends.openai.probe``: logprobs and the
largest k, tokenizer, token-id prompts, ``logprob_token_ids``, echo), how each label word
tokenizes right after a prompt, one real score through the same code path as ``icm label``,
and the prefix cache (the same ~1,500-token prompt twice: the server's own count of cached
tokens where it reports one, else the time of the repeat).

A *problem* means ICM cannot run against the endpoint (unreachable, bad key, unknown model,
no logprobs, a label word the backend cannot score); a *note* means it can, with a caveat
(a small k cap, a label outside the top-k, an ineffective prefix cache). ``ok`` is no
problems. Every probe is a few tokens except the prefix-cache pair.
"""

from __future__ import annotations

import contextlib

import httpx2

from ..backends.config import DEFAULT_API_KEY_ENV, DEFAULT_TIMEOUT
from .checks import CONTEXT, Checks, Stop
from .report import K_TRIED, DoctorReport, LabelReport, PrefixCacheReport

__all__ = ["CONTEXT", "K_TRIED", "DoctorReport", "LabelReport", "PrefixCacheReport", "diagnose"]


async def diagnose(
    base_url: str,
    *,
    model: str | None = None,
    labels: tuple[str, ...] = (" True", " False"),
    api_key: str | None = None,
    api_key_env: str = DEFAULT_API_KEY_ENV,
    prefix_tokens: int = 1500,
    timeout: float = DEFAULT_TIMEOUT,
    client: httpx2.AsyncClient | None = None,
) -> DoctorReport:
    """Probe ``base_url`` (see the module docstring). Raises ``ConfigError`` only for a
    malformed URL; whatever the server does wrong ends up in the report's ``problems``.

    ``prefix_tokens``: size of the prefix-cache probe prompt (0 skips it). ``client`` is the
    test seam; one made here is closed at the end.
    """
    http = client if client is not None else httpx2.AsyncClient(timeout=timeout)
    try:
        checks = Checks(base_url, model, labels, api_key, api_key_env, timeout, http)
        with contextlib.suppress(Stop):  # a problem that ends the checks early
            await checks.run(prefix_tokens)
        return checks.report()
    finally:
        if client is None:
            await http.aclose()
