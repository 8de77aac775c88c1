"""Many prompts in one ``/v1/completions`` request, gathered from concurrent scores.

``prompt`` may be a list (vLLM, the OpenAI legacy endpoint; llama.cpp's server takes lists
but counts the usage of the first prompt only, so it is not sent any): the answer
holds one choice per prompt, each naming its prompt by ``index``. Scores run concurrently
(the scorer starts hundreds at once), so a prompt that arrives while another waits to be
sent joins it: the HTTP cost (connection, headers, JSON framing, the server's request
handling) is paid once per batch instead of once per prompt, and a hosted endpoint's
requests-per-minute budget goes as far again.

``MicroBatcher`` bounds both the size of a batch and how long its first prompt waits for
others: the first prompt's task (the leader) yields to the event loop until no new prompt
joined for a few turns, the batch is full, or ``max_wait`` passed, then sends the batch and
hands every member its own choice. Prompts are batched only with prompts whose other fields
are identical (one key per payload). Each backend (one per server) has its own batcher, so
routing's affinity to a replica is kept.

If the leader is cancelled, its batch fails with a ``TransientBackendError`` for the other
members (their retries send them again) instead of leaving them waiting.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import anyio

from ...errors import PermanentBackendError, TransientBackendError

DEFAULT_MAX_BATCH = 32
"""Prompts per request at most."""

DEFAULT_MAX_WAIT = 0.002
"""Seconds the first prompt of a batch waits for others at most."""

_IDLE_TURNS = 3  # event-loop turns without a new prompt after which a batch goes

Send = Callable[[list[object], dict[str, object]], Awaitable[list[object]]]


class _Batch:
    def __init__(self, payload: dict[str, object]) -> None:
        self.payload = payload
        self.prompts: list[object] = []
        self.answers: list[object] = []
        self.error: BaseException | None = None
        self.done = anyio.Event()


class MicroBatcher:
    """Sends prompts of one ``key`` (identical other fields) together, ``max_batch`` at most,
    after at most ``max_wait`` seconds. ``send(prompts, payload)`` makes the request(s) and
    returns one answer per prompt, in order (an exception: that prompt's error);
    ``submit`` returns its prompt's answer or raises its error."""

    def __init__(
        self, send: Send, *, max_batch: int = DEFAULT_MAX_BATCH, max_wait: float = DEFAULT_MAX_WAIT
    ) -> None:
        if max_batch < 1 or max_wait < 0:
            raise ValueError(f"max_batch >= 1 and max_wait >= 0, got {max_batch}, {max_wait}")
        self._send = send
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._open: dict[str, _Batch] = {}

    async def submit(self, key: str, prompt: object, payload: dict[str, object]) -> object:
        batch = self._open.get(key)
        leader = batch is None
        if batch is None:
            batch = self._open[key] = _Batch(payload)
        index = len(batch.prompts)
        batch.prompts.append(prompt)
        if len(batch.prompts) >= self.max_batch and self._open.get(key) is batch:
            del self._open[key]  # full: later prompts start a new batch
        if leader:
            await self._lead(key, batch)
        else:
            await batch.done.wait()
        error = batch.error if batch.error is not None else batch.answers[index]
        if isinstance(error, BaseException):
            # each member raises its own copy: retry layers annotate the error they catch
            raise error if leader else copy.copy(error)
        return batch.answers[index]

    async def _lead(self, key: str, batch: _Batch) -> None:
        try:
            deadline = time.monotonic() + self.max_wait
            idle, seen = 0, 0
            while self._open.get(key) is batch and idle < _IDLE_TURNS:
                await anyio.sleep(0)
                if time.monotonic() >= deadline:
                    break
                idle = idle + 1 if len(batch.prompts) == seen else 0
                seen = len(batch.prompts)
            if self._open.get(key) is batch:
                del self._open[key]
            batch.answers = await self._send(list(batch.prompts), batch.payload)
            if len(batch.answers) != len(batch.prompts):
                raise ValueError("send returned a different number of answers than prompts")
        except BaseException as exc:  # cancellation included: the others must not hang
            if self._open.get(key) is batch:
                del self._open[key]
            batch.error = (
                exc
                if isinstance(exc, Exception)
                else TransientBackendError("the request carrying this prompt was cancelled")
            )
            raise
        finally:
            batch.done.set()


def split_batch(
    body: object, prompts: Sequence[object], *, endpoint: str | None = None
) -> list[object]:
    """One body per prompt from the answer to a list request: ``choices`` matched to prompts
    by ``index`` (each of 0..n-1 exactly once, else ``PermanentBackendError``), ``usage``
    shared out in proportion to the prompts' lengths (the totals stay exact)."""
    n = len(prompts)
    choices = body.get("choices") if isinstance(body, Mapping) else None
    if not isinstance(choices, list) or len(choices) != n:
        got = len(choices) if isinstance(choices, list) else "no"
        raise PermanentBackendError(
            f"asked for {n} prompts in one request, got {got} choices", endpoint=endpoint
        )
    by_index: dict[int, Any] = {}
    for choice in choices:
        idx = choice.get("index") if isinstance(choice, Mapping) else None
        if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < n or idx in by_index:
            raise PermanentBackendError(
                f"a batched answer's choice has a missing, out-of-range or repeated index "
                f"({idx!r} of {n} prompts): cannot tell which prompt it answers",
                endpoint=endpoint,
            )
        by_index[idx] = choice
    usage = body.get("usage") if isinstance(body, Mapping) else None
    sizes = [len(p) if isinstance(p, str | list) else 1 for p in prompts]
    shares = _shares(usage, sizes)
    return [{"choices": [{**by_index[i], "index": 0}], "usage": shares[i]} for i in range(n)]


def _shares(usage: object, sizes: list[int]) -> list[dict[str, object]]:
    """``usage``'s prompt and cached tokens split in proportion to ``sizes``, summing exactly."""
    if not isinstance(usage, Mapping):
        return [{} for _ in sizes]
    prompt = usage.get("prompt_tokens")
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, Mapping) else None
    prompt_parts = _split(prompt, sizes)
    cached_parts = _split(cached, sizes)
    return [
        {"prompt_tokens": p, "prompt_tokens_details": {"cached_tokens": c}}
        for p, c in zip(prompt_parts, cached_parts, strict=True)
    ]


def _split(total: object, sizes: list[int]) -> list[int]:
    if not isinstance(total, int) or isinstance(total, bool) or total <= 0:
        return [0] * len(sizes)
    whole = sum(sizes) or 1
    parts = [total * s // whole for s in sizes]
    parts[-1] += total - sum(parts)
    return parts
