"""Components: examples joined by sharing ``task.group`` or by any constraint of the task's
relation.

Whatever cuts a dataset in parts (a train/test split, a large run's seed set, batches and
chunks) cuts between components, so no part holds one side of a group or a constraint.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..dataset import Example
from .base import Task


def components(examples: Sequence[Example], task: Task) -> list[list[int]]:
    """Indices of ``examples`` in connected components, each sorted, in first-index order."""
    parent = list(range(len(examples)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    first: dict[str, int] = {}
    for i, ex in enumerate(examples):
        group = task.group(ex)
        if group is not None:
            union(i, first.setdefault(group, i))
    for c in task.constraints(examples):
        union(c.i, c.j)
    out: dict[int, list[int]] = {}
    for i in range(len(examples)):
        out.setdefault(find(i), []).append(i)
    return list(out.values())
