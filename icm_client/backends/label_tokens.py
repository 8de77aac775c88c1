"""Label words' token ids in context, learned once per prompt ending instead of per score.

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

from collections.abc import Awaitable, Callable

import anyio

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
        self._learning: dict[Key, anyio.Event] = {}
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
        while (pending := self._learning.get(key)) is not None:
            await pending.wait()
        if key in self._known:
            return self._known[key], False
        done = self._learning[key] = anyio.Event()
        try:
            ids = await learn(key[0], labels)
            if len(self._known) >= self._max:
                del self._known[next(iter(self._known))]
            self._known[key] = ids
        finally:
            del self._learning[key]
            done.set()
        return ids, True
