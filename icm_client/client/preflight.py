"""One real request before a long run, so that a wrong setting fails in seconds.

Inside a run, every transient failure is retried for minutes (a busy server recovers) and a
permanent one stops the run hours in. Before the run, the same failures mean something else:
a host that never answers is a wrong URL, a 401 a wrong key, a 404 a wrong model, a context
overflow an example the model cannot hold. ``preflight`` asks once, with few retries, and
reports those as ``ConfigError``/``TaskError`` (the CLI's exit code 2) naming what to fix.

The probe goes around the client's retry policy and concurrency limit but not around its
budget (it reaches the server: it is a call) nor its cache: a probe whose score is cached
costs no call, and a fresh one is stored for the run to reuse. The single-token check asks
the client's backend itself, whatever the policies.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from ..backends.base import Backend, ScoreRequest, ScoreResult
from ..errors import (
    BackendError,
    ConfigError,
    ContextLengthError,
    NoAnswerError,
    PermanentBackendError,
    TaskError,
    TransientBackendError,
)
from .policies import PREFLIGHT_RETRY, Retry

if TYPE_CHECKING:
    from .client import ScoringClient


async def preflight(
    client: ScoringClient,
    probe: ScoreRequest,
    *,
    probe_name: str = "the first prompt",
    labels_of: str = "the task",
    check_labels: bool = True,
    retry: Retry = PREFLIGHT_RETRY,
) -> ScoreResult | None:
    """Resolve the model, score ``probe`` once, and check that each label word is one token.

    ``probe`` should be the run's longest single-example prompt, so that a context overflow
    shows here; ``probe_name`` names it in messages ("example 'q7' of data.jsonl") and
    ``labels_of`` names the owner of the label words ("task 'cities'"). Transient failures
    are retried as ``retry`` says (by default 3 attempts, waits of at most 2 s).
    ``check_labels=False`` skips the single-token check (a probe whose labels are no task's).

    Returns the probe's score, or None when the server kept answering "busy": it exists and
    speaks HTTP, and the run's own patient retries are the right tool for a busy server.
    Raises ``ConfigError`` when the server cannot be reached or refuses (URL, key, model,
    endpoint without logprobs), naming the endpoint and what it said, and ``TaskError`` when
    a label word is several tokens for the served model.
    """
    try:
        await client.prepare(retry)
        result = await client.cached(probe)
        if result is None:
            result = await client.score_now(probe, retry)
    except ContextLengthError as exc:
        raise ConfigError(
            f"{probe_name} alone does not fit the model's context ({exc}); shorten or drop "
            "that example, or serve the model with a longer context"
        ) from None
    except PermanentBackendError as exc:
        raise ConfigError(f"the server refused a test request before the run: {exc}") from None
    except NoAnswerError as exc:
        raise ConfigError(
            f"the server does not answer: {exc}; check the URL (is it the API's port?) and "
            "the server's log, or allow more time with --timeout"
        ) from None
    except TransientBackendError as exc:
        if exc.status is not None:
            return None  # it answers, but busy: let the run's retries wait for it
        raise ConfigError(
            f"cannot reach the server: {exc}; check the URL and that the server is running"
        ) from None
    if check_labels:
        await _check_single_tokens(client.backend, probe.labels, labels_of)
    return result


async def _check_single_tokens(inner: Backend, labels: tuple[str, ...], labels_of: str) -> None:
    """Scores read off the next token's top-k never contain a label word of two tokens: the
    run would silently compare upper bounds. Checked unless the backend scores several
    tokens exactly (``multi_token_labels``), and where the server has a tokenizer
    (llama.cpp, vLLM); hosted APIs without one are taken on trust."""
    if inner.multi_token_labels:
        return
    for word in labels:
        try:
            tokens = await inner.tokenize(word)
        except PermanentBackendError as exc:
            raise ConfigError(f"the server refused a test request before the run: {exc}") from None
        except BackendError as exc:
            warnings.warn(
                f"could not check that the label words are single tokens: {exc}",
                RuntimeWarning,
                stacklevel=2,
            )
            return
        if tokens is None:
            return
        if len(tokens) != 1:
            raise TaskError(
                f"label word {word!r} is {len(tokens)} tokens for the served model, not one: "
                "ICM reads the log-probabilities of the single next token, so each label "
                "word must be one token (try a shorter or more common word, with its "
                "leading space)",
                location=labels_of,
                field="labels",
            )
