"""The objective: U(D) = alpha * mutual predictability - I(D), of a labeling under one scorer.

Mutual predictability is the sum over the labeled examples of log P(y_i | x_i, D \\ i), or
its mean (the ``objective`` setting); I(D) counts the violated constraints.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence

from ..aio import gather
from ..scoring.base import Scorer
from ..tasks.base import Label
from .config import SearchConfig
from .consistency import Consistency
from .state import State


class Energy:
    """Scores labelings: each labeled example's prediction given the others (as ``scorer``
    builds its context), mutual predictability and U."""

    def __init__(self, scorer: Scorer, consistency: Consistency, config: SearchConfig) -> None:
        self.scorer = scorer
        self.consistency = consistency
        self.config = config

    async def evaluate(
        self, labels: dict[int, Label], base: State | None = None, changed: Iterable[int] = ()
    ) -> State:
        """The state of ``labels`` (kept as given, not copied). With ``base``, the state that
        ``labels`` differs from in the ``changed`` examples only: the violated constraints
        are updated from its own rather than counted again."""
        preds = await self.scorer.predict_many(sorted(labels), labels)
        mp = math.fsum(preds[i].logprobs[y] for i, y in labels.items())  # order-independent
        if self.config.objective == "mean" and labels:
            mp /= len(labels)
        if base is None:
            violated = self.consistency.violated(labels)
        else:
            violated = self.consistency.update(set(base.violated), labels, list(changed))
        energy = self.config.alpha * mp - len(violated)
        return State(labels, preds, frozenset(violated), mp, energy)

    async def evaluate_many(
        self, assignments: Sequence[tuple[dict[int, Label], Sequence[int]]], base: State
    ) -> list[State]:
        """``evaluate`` of each (labels, changed) relative to ``base``, concurrently."""
        return await gather(
            [
                functools.partial(self.evaluate, labels, base, changed)
                for labels, changed in assignments
            ]
        )
