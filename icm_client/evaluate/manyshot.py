"""Many-shot prediction: one fixed block of demonstrations in front of every target.

The demonstrations of a seed are drawn once (``select_demos``) and reused, in the same order,
for every test example and for every labeling of them (gold, ICM, random...): conditions
differ only in the label words, so their accuracies are paired comparisons, and every
prompt of a seed shares the whole demonstration block as a prefix, which the server's
prefix cache processes once.

Tokens are *estimated* as ``ceil(characters / chars_per_token)`` (4 by default, about right
for English with the usual BPE vocabularies, and cheaper than a ``/tokenize`` call per
demonstration). The budget covers the demonstrations only; the server's context must also
hold the longest test example, which ``icm eval`` checks with one request before it starts.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..backends.base import CountingBackend
from ..dataset import Example
from ..scoring.base import Prediction
from ..scoring.context import ContextScorer
from ..tasks.base import Label, PairConstraint, Task


def estimate_tokens(text: str, chars_per_token: float = 4.0) -> int:
    return math.ceil(len(text) / chars_per_token)


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
        cost = estimate_tokens(f"{task.render(pool[j])}{longest}\n\n", chars_per_token)
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
    backend: CountingBackend,
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


async def bootstrap_labels(
    task: Task,
    examples: Sequence[Example],
    backend: CountingBackend,
    demos: Sequence[int],
    start: Mapping[int, Prediction],
    *,
    rounds: int,
    folds: int,
    calibrate: bool = False,
) -> tuple[dict[int, Label], int]:
    """Bootstrapped few-shot labels of ``demos``: the zero-shot predictions ``start``, then
    ``rounds`` times: predict every demonstration in the context of the others labeled by the
    previous round, take the argmax, repair inconsistencies with the task's relation.

    Out-of-fold, not leave-one-out: the demonstrations are dealt into ``folds`` folds by
    position and a fold is predicted after all the other folds' demonstrations, so all the
    prompts of a fold share one prefix (``folds`` long prompts a round instead of one per
    demonstration; ``folds=1`` is leave-one-out, each demonstration after all the others).
    Returns the labels and the number of repairs over all rounds.
    """
    members = list(demos)
    sub = [examples[j] for j in members]
    local = {j: k for k, j in enumerate(members)}
    constraints = [
        PairConstraint(members[c.i], members[c.j], c.allowed, c.reason)
        for c in task.constraints(sub)
    ]
    labels = {j: start[j].argmax() for j in members}
    repairs = fix_inconsistencies(labels, start, constraints)
    k = max(1, min(folds, len(members)))
    for _ in range(rounds):
        preds: dict[int, Prediction] = {}
        for f in range(k):
            held = [j for j in members if local[j] % k == f]
            context = [j for j in members if local[j] % k != f] if k > 1 else members
            preds.update(
                await predict(task, examples, backend, context, labels, held, calibrate=calibrate)
            )
        labels = {j: preds[j].argmax() for j in members}
        repairs += fix_inconsistencies(labels, preds, constraints)
    return labels, repairs


def longest_prompt(
    task: Task,
    pool: Sequence[Example],
    test: Sequence[Example],
    seeds: int,
    *,
    max_tokens: int,
    max_demos: int | None,
    chars_per_token: float,
) -> str:
    """The longest prompt an evaluation will send (the longest demonstration block of any
    seed, labeled with the longest label word, before the longest test example): one
    request with it shows a context overflow before the run."""
    longest = max(range(len(task.labels)), key=lambda k: len(task.labels[k]))
    blocks = [
        "".join(
            f"{task.render(pool[j])}{task.labels[longest]}\n\n"
            for j in select_demos(
                task,
                pool,
                seed,
                max_tokens=max_tokens,
                max_demos=max_demos,
                chars_per_token=chars_per_token,
            )
        )
        for seed in range(seeds)
    ]
    return max(blocks, key=len) + max((task.render(ex) for ex in test), key=len)
