"""Propagation: label a chunk by many-shot prediction after ICM-labeled demonstrations.

Each chunk draws its own demonstrations from the pool (a seeded shuffle that fills the token
budget, as ``icm eval`` does), so one unlucky demonstration block cannot bias every label;
inside a chunk the block is shared, and the server's prefix cache processes it once. The
task's relation is then enforced inside the chunk (chunks hold whole components, so no
constraint crosses a chunk): each violated pair takes the allowed pair of labels the
predictions like best.

The confidence of a propagated label is its probability under the prediction, after the
repair: a label the repair flipped keeps the (low) probability the model gave it.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..backends.base import Backend
from ..dataset import Example
from ..scoring.manyshot import fix_inconsistencies, predict, select_demos
from ..tasks.base import Label, PairConstraint, Task

CANDIDATES = 4096  # pool members considered per chunk (a context holds at most a few hundred)


@dataclass(frozen=True)
class Propagated:
    """A chunk's labels by example index, their confidences, and what the chunk did."""

    labels: dict[int, Label]
    confidence: dict[int, float]
    demos: int
    repairs: int


async def propagate_chunk(
    task: Task,
    examples: Sequence[Example],
    backend: Backend,
    pool: Mapping[int, Label],
    chunk: Sequence[int],
    *,
    seed: int,
    max_demo_tokens: int,
    calibrate: bool = False,
) -> Propagated:
    """Labels for ``chunk`` (indices into ``examples``) after demonstrations drawn from
    ``pool`` (index -> label of examples already labeled)."""
    members = sorted(pool)
    if len(members) > CANDIDATES:  # the budget holds far fewer: do not render them all
        members = sorted(random.Random(f"icm-propagate:{seed}").sample(members, CANDIDATES))
    picked = select_demos(task, [examples[j] for j in members], seed, max_tokens=max_demo_tokens)
    demos = [members[k] for k in picked]
    # A local index space (demonstrations, then the chunk): the scorer never sees the rest.
    local = [examples[j] for j in demos] + [examples[i] for i in chunk]
    n = len(demos)
    targets = list(range(n, n + len(chunk)))
    preds = await predict(
        task,
        local,
        backend,
        list(range(n)),
        {k: pool[j] for k, j in enumerate(demos)},
        targets,
        calibrate=calibrate,
    )
    labels = {t: preds[t].argmax() for t in targets}
    constraints = [
        PairConstraint(c.i + n, c.j + n, c.allowed, c.reason)
        for c in task.constraints([examples[i] for i in chunk])
    ]
    repairs = fix_inconsistencies(labels, preds, constraints)
    return Propagated(
        labels={chunk[t - n]: y for t, y in labels.items()},
        confidence={chunk[t - n]: preds[t].prob(y) for t, y in labels.items()},
        demos=len(demos),
        repairs=repairs,
    )
