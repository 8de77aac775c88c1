"""Which example a step proposes: weighted at random while annealing (the paper's sampling
weights), each one once in random order during a sweep."""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping, Sequence

from ..tasks.base import Label
from .consistency import Consistency


class Sampler:
    """The paper's sampling weights over ``len(groups)`` examples: an unlabeled example
    related to a labeled one (same group, or a constraint partner) weighs ``related_weight``,
    a pinned one 0 (never proposed), every other example 1."""

    def __init__(
        self,
        groups: Sequence[str | None],
        consistency: Consistency,
        pinned: Mapping[int, Label],
        related_weight: float,
    ) -> None:
        self.groups = groups
        self.consistency = consistency
        self.pinned = pinned
        self.related_weight = related_weight
        self.n = len(groups)
        self._members: dict[str, list[int]] = {}
        for i, g in enumerate(groups):
            if g is not None:
                self._members.setdefault(g, []).append(i)
        self._key: frozenset[int] = frozenset()
        self._weights = [1.0] * self.n
        self._cum = list(itertools.accumulate(self._weights))

    def draw(self, labels: Mapping[int, Label], rng: random.Random) -> int:
        """One example, drawn with the weights of ``labels``."""
        return rng.choices(range(self.n), cum_weights=self.cumulative(labels))[0]

    def cumulative(self, labels: Mapping[int, Label]) -> list[float]:
        """The cumulative sampling weights given ``labels``.

        Kept up to date incrementally: a step labels at most a few new examples, and only
        their group and partners change weight. ``choices(cum_weights=...)`` draws exactly
        what ``choices(weights=...)`` draws, so seeds and checkpoints mean what they meant.
        """
        key = frozenset(labels)
        added = key - self._key
        if self._key - key or len(added) > 64:  # labels removed (resume, best state)
            self._weights = [1.0] * self.n
            added = key
        w = self.related_weight
        for j in added:
            self._weights[j] = 0.0 if j in self.pinned else 1.0
            group = self.groups[j]
            related = self._members.get(group, []) if group is not None else []
            for i in (*related, *self.consistency.partners(j)):
                if i not in key:
                    self._weights[i] = w
        if added or self._key - key:
            self._cum = list(itertools.accumulate(self._weights))
        self._key = key
        return self._cum


def draw_once(order: list[int], rng: random.Random) -> int:
    """Remove and return one example of a sweep's ``order``, uniformly at random."""
    k = rng.randrange(len(order))
    i = order[k]
    order[k] = order[-1]
    order.pop()
    return i
