"""Label words' token ids in context, learned once per prompt ending instead of per score.

``ContextTokens`` tokenizes a prompt and its labels on the server (``tok(prompt + label)``
minus ``tok(prompt)``, checked to be a prefix); ``LabelTokens`` is its memory per ending.

Scoring by token id needs each label's ids as the model sees them after the prompt:
``tok(prompt + label)`` minus ``tok(prompt)``. Asked for every score, that is three
``/tokenize`` round trips (prompt, prompt + each label) before the one completion. But the
ids at the boundary depend only on the prompt's last characters, and the prompts of one run
share their ending (the template's tail: "... I think this claim is"). So the first score
with an ending learns the ids from its own full prompt (exact for it) and checks them
against the ending alone, ``tok(ending + label)`` minus ``tok(ending)``: where the two agree,
no context further back changes the boundary, and later prompts with that ending reuse the
ids and go to the server as text (which it tokenizes itself, exactly as ``tok(prompt)``).
Where they differ (a tokenizer whose merges reach back further), the ending is marked
unstable and every prompt with it is tokenized in full, as before.

One memory per backend (per server), bounded; concurrent scores of a new ending wait for
the one that learns it instead of all asking.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from ...aio import SingleFlight, gather
from ...errors import CapabilityError
from ..base import ScoreRequest
from .requests import CompletionsRequests

ENDING_CHARS = 16
"""Characters of the prompt's end that key the memory (and are checked on their own)."""

MAX_ENDINGS = 4096
"""Endings remembered per backend; the oldest is forgotten first beyond this."""

LabelIds = tuple[tuple[int, ...], ...]
Key = tuple[str, tuple[str, ...]]


class LabelTokens:
    """What ``learn`` found per (prompt ending, label words): the labels' ids, or None where
    the ending's tokenization differs from the full prompt's (then: tokenize every prompt)."""

    def __init__(self, max_endings: int = MAX_ENDINGS) -> None:
        self._known: dict[Key, LabelIds | None] = {}
        self._learning: SingleFlight[Key, LabelIds | None] = SingleFlight(share_errors=False)
        self._max = max_endings

    @staticmethod
    def key(prompt: str, labels: tuple[str, ...]) -> Key:
        return prompt[-ENDING_CHARS:], labels

    def __len__(self) -> int:
        return len(self._known)

    async def get(
        self,
        prompt: str,
        labels: tuple[str, ...],
        learn: Callable[[str, tuple[str, ...]], Awaitable[LabelIds | None]],
    ) -> tuple[LabelIds | None, bool]:
        """(the remembered ids or None, whether this call learnt them now).

        ``learn(ending, labels)`` is awaited once per key, by the first caller; the others
        wait for it. If it fails, the next waiter tries (and the error is the caller's).
        """
        key = self.key(prompt, labels)
        if key in self._known:
            return self._known[key], False
        ids, shared = await self._learning.run(key, functools.partial(self._learn, key, learn))
        return ids, not shared

    async def _learn(
        self, key: Key, learn: Callable[[str, tuple[str, ...]], Awaitable[LabelIds | None]]
    ) -> LabelIds | None:
        ids = await learn(*key)
        if len(self._known) >= self._max:
            del self._known[next(iter(self._known))]
        self._known[key] = ids
        return ids


class ContextTokens:
    """Label words tokenized in context on ``requests``' server; ``remember=False`` tokenizes
    every prompt and label in full (three ``/tokenize`` requests per score)."""

    def __init__(self, requests: CompletionsRequests, *, remember: bool) -> None:
        self.requests = requests
        self.memory = LabelTokens() if remember else None

    async def in_context(self, request: ScoreRequest) -> tuple[list[int], list[list[int]]]:
        """``tok(prompt)`` with BOS as the server adds it, and each label's tokens in context:
        ``tok(prompt + label)`` after ``tok(prompt)``, which must be a prefix of it."""
        texts = [request.prompt, *(request.prompt + label for label in request.labels)]
        calls = [functools.partial(self.requests.tokenize, t, add_special=True) for t in texts]
        ctx, *wholes = await gather(calls)
        if ctx is None:
            raise CapabilityError(
                "the server has no /tokenize", endpoint=self.requests.completions_url
            )
        labels: list[list[int]] = []
        for label, whole in zip(request.labels, wholes, strict=True):
            if whole is None or whole[: len(ctx)] != ctx or len(whole) == len(ctx):
                raise CapabilityError(
                    f"label {label!r} does not tokenize as a continuation of the prompt (the "
                    f"prompt's last token merges with it: ...{ctx[-3:]} vs ...{(whole or [])[-4:]}"
                    "); end the prompt at a word boundary and start labels with a space",
                    endpoint=self.requests.completions_url,
                )
            labels.append(whole[len(ctx) :])
        return ctx, labels

    async def labels_in_context(
        self, request: ScoreRequest
    ) -> tuple[list[int] | None, list[list[int]]]:
        """Each label's tokens in context, and ``tok(prompt)``, or None in its place where the
        label ids came from memory (``LabelTokens``): the prompt may then go as text."""
        if self.memory is None:
            return await self.in_context(request)
        full: list[tuple[list[int], list[list[int]]]] = []

        async def learn(ending: str, labels: tuple[str, ...]) -> LabelIds | None:
            ctx, ids = await self.in_context(request)
            full.append((ctx, ids))
            alone = await self._ending_ids(ending, labels)
            if alone != ids:
                self.requests.usage.count("unstable_endings")
                return None
            return tuple(tuple(x) for x in ids)

        known, _ = await self.memory.get(request.prompt, request.labels, learn)
        if full:  # learnt just now, from this very prompt
            return full[0]
        if known is None:  # this ending tokenizes differently on its own: no shortcut
            return await self.in_context(request)
        return None, [list(x) for x in known]

    async def _ending_ids(self, ending: str, labels: tuple[str, ...]) -> list[list[int]] | None:
        """Each label's tokens after ``ending`` alone (no BOS), or None where a label merges
        with the ending's last token."""
        texts = [ending, *(ending + label for label in labels)]
        calls = [functools.partial(self.requests.tokenize, t) for t in texts]
        ctx, *wholes = await gather(calls)
        out: list[list[int]] = []
        for whole in wholes:
            if ctx is None or whole is None or whole[: len(ctx)] != ctx or len(whole) == len(ctx):
                return None
            out.append(whole[len(ctx) :])
        return out
