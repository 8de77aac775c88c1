"""The demonstrations of an evaluation: bootstrapped few-shot labels for them, and the
longest prompt they make (sent once before a run to show a context overflow early).

Prediction itself, after a fixed demonstration block, is ``scoring.manyshot``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..backends.base import Backend
from ..dataset import Example
from ..scoring.base import Prediction
from ..scoring.manyshot import fix_inconsistencies, predict, select_demos
from ..tasks.base import Label, PairConstraint, Task, demonstration


async def bootstrap_labels(
    task: Task,
    examples: Sequence[Example],
    backend: Backend,
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
            demonstration(task, pool[j], longest)
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
