"""The model's context window, as the server reports it, for sizing batches and prompts.

vLLM lists ``max_model_len`` with each model under ``/v1/models``; llama.cpp's server reports
the context of one slot (what one request may use) as ``default_generation_settings.n_ctx``
under ``/props``. Hosted APIs mostly report neither: the caller then needs the number from
the model's documentation. A server that answers neither route (404, an error, no number)
is "unknown", not an error: nothing about scoring depends on it. A server that does not
answer at all raises ``NoAnswerError``.
"""

from __future__ import annotations

from ...errors import BackendError, NoAnswerError
from .completions import OpenAICompletions


async def context_window(backend: OpenAICompletions) -> int | None:
    """Tokens one request may hold on ``backend``'s server; None when it does not say."""
    try:
        body = await backend.call("GET", "/v1/models", None)
    except NoAnswerError:
        raise  # a server that does not answer is not one that does not say
    except BackendError:
        body = None
    data = body.get("data") if isinstance(body, dict) else None
    if isinstance(data, list):
        wanted = backend.model
        for entry in data:
            if not isinstance(entry, dict) or (wanted and entry.get("id") != wanted):
                continue
            value = entry.get("max_model_len")
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    try:
        props = await backend.call("GET", "/props", None)
    except BackendError:
        return None
    settings = props.get("default_generation_settings") if isinstance(props, dict) else None
    n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
    if isinstance(n_ctx, int) and not isinstance(n_ctx, bool) and n_ctx > 0:
        return n_ctx
    return None
