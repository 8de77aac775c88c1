"""Many-shot prediction: one fixed block of demonstrations in front of every target.

The demonstrations of a seed are drawn once (``select_demos``) and reused, in the same order,
for every test example and for every labeling of them (gold, ICM, random...): conditions
differ only in the label words, so their accuracies are paired comparisons, and every
prompt of a seed shares the whole demonstration block as a prefix, which the server's
prefix cache processes once.

Tokens are *estimated* as ``ceil(characters / chars_per_token)`` (4 by default, about right
for English with the usual BPE vocabularies, and cheaper than a ``/tokenize`` call per
demonstration). The budget covers the demonstrations only; the server's context must also
hold the longest target.

``icm eval`` predicts its test examples this way, ``icm scale`` the examples outside its seed
set (``fix_inconsistencies`` then enforces the task's relation on the predicted labels).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..backends.base import Backend
from ..backends.base import estimate_tokens as estimate_tokens  # re-exported: one estimate
from ..dataset import Example
from ..tasks.base import Label, PairConstraint, Task, demo_text
from .base import Prediction
from .context import ContextScorer


def select_demos(
    task: Task,
    pool: Sequence[Example],
    seed: int,
    *,
    max_tokens: int,
    max_demos: int | None = None,
    chars_per_token: float = 4.0,
) -> list[int]:
    """Indices into ``pool``, in prompt order: a seeded shuffle of the pool, keeping each
    demonstration that still fits the budget (costed with the longest label word, so the
    choice does not depend on the labels), up to ``max_demos``."""
    order = list(range(len(pool)))
    random.Random(f"icm-eval-demos:{seed}").shuffle(order)
    longest = max(task.labels, key=len)
    used = 0
    chosen: list[int] = []
    for j in order:
        if max_demos is not None and len(chosen) >= max_demos:
            break
        cost = estimate_tokens(demo_text(task.render(pool[j]), longest), chars_per_token)
        if used + cost <= max_tokens:
            chosen.append(j)
            used += cost
    return chosen


@dataclass(frozen=True)
class FixedContext:
    """The same demonstrations, in the same order, for every target (never the target
    itself: a demonstration predicted in its own context would read its label)."""

    order: tuple[int, ...]
    name: str = "fixed"

    def context(self, target: int, labeled: Sequence[int]) -> list[int]:
        return [j for j in self.order if j != target]


async def predict(
    task: Task,
    examples: Sequence[Example],
    backend: Backend,
    demos: Sequence[int],
    labels: Mapping[int, Label],
    targets: Sequence[int],
    *,
    calibrate: bool = False,
) -> dict[int, Prediction]:
    """Predictions for ``targets`` (indices into ``examples``) after the demonstrations
    ``demos`` (indices, in prompt order) labeled by ``labels``."""
    if not targets:
        return {}
    scorer = ContextScorer(task, examples, backend, FixedContext(tuple(demos)), calibrate=calibrate)
    return await scorer.predict_many(list(targets), {j: labels[j] for j in demos})


def fix_inconsistencies(
    labels: dict[int, Label],
    predictions: Mapping[int, Prediction],
    constraints: Sequence[PairConstraint],
    max_passes: int = 10,
) -> int:
    """Repair violated constraints in place: each violated pair takes the allowed label pair
    the predictions like best (the sum of its two log-probabilities). Passes repeat while a
    repair broke another pair, at most ``max_passes`` times. Returns the number of repairs."""
    repairs = 0
    for _ in range(max_passes):
        changed = False
        for c in constraints:
            if c.i not in labels or c.j not in labels or c.satisfied(labels[c.i], labels[c.j]):
                continue
            pi, pj = predictions[c.i].logprobs, predictions[c.j].logprobs
            a, b = max(sorted(c.allowed), key=lambda ab: pi[ab[0]] + pj[ab[1]])
            labels[c.i], labels[c.j] = a, b
            repairs += 1
            changed = True
        if not changed:
            break
    return repairs
