"""Logical consistency: counting violations I(D) and Algorithm 2 (ConsistencyFix).

Constraints only bind examples that are both labeled. The counting is incremental (only
constraints touching changed examples are re-checked) so a search step stays cheap on large
datasets.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

from ..tasks.base import Label, PairConstraint
from .state import State

#: Largest group of examples that ConsistencyFix relabels jointly (all their labelings).
JOINT_REPAIR = 6

#: Scores candidate labelings, each (labels, the examples changed from ``base``), at once.
EvaluateMany = Callable[
    [Sequence[tuple[dict[int, Label], Sequence[int]]], State], Awaitable[list[State]]
]


class Consistency:
    """The constraints of one dataset, indexed by example."""

    def __init__(self, constraints: Sequence[PairConstraint], n_examples: int) -> None:
        self.constraints = tuple(constraints)
        self.by_example: list[list[int]] = [[] for _ in range(n_examples)]
        for k, c in enumerate(self.constraints):
            if not (0 <= c.i < n_examples and 0 <= c.j < n_examples) or c.i == c.j:
                raise ValueError(f"constraint {k} refers to examples ({c.i}, {c.j}) out of range")
            self.by_example[c.i].append(k)
            self.by_example[c.j].append(k)

    def partners(self, i: int) -> list[int]:
        out: list[int] = []
        for k in self.by_example[i]:
            c = self.constraints[k]
            out.append(c.j if c.i == i else c.i)
        return out

    def violated(self, labels: Mapping[int, Label]) -> set[int]:
        """Indices of the constraints that ``labels`` violates (both ends labeled)."""
        return {k for k, c in enumerate(self.constraints) if self._violates(c, labels)}

    def update(
        self, violated: set[int], labels: Mapping[int, Label], changed: set[int] | Sequence[int]
    ) -> set[int]:
        """The violated set after ``changed`` examples took their values in ``labels``."""
        out = set(violated)
        for i in changed:
            for k in self.by_example[i]:
                if self._violates(self.constraints[k], labels):
                    out.add(k)
                else:
                    out.discard(k)
        return out

    @staticmethod
    def _violates(c: PairConstraint, labels: Mapping[int, Label]) -> bool:
        yi = labels.get(c.i)
        if yi is None:
            return False
        yj = labels.get(c.j)
        if yj is None:
            return False
        return (yi, yj) not in c.allowed


async def consistency_fix(
    state: State,
    consistency: Consistency,
    evaluate_many: EvaluateMany,
    rng: random.Random,
    n_labels: int,
    *,
    pinned: Mapping[int, Label] | None = None,
    cap: int | None = None,
    focus: Iterable[int] | None = None,
) -> tuple[State, int]:
    """Algorithm 2 over every violated pair of ``state``; returns the state and the number of
    repairs.

    A repair tries every consistent option of a violated pair, and takes the best one if it
    strictly raises U; one pass goes over the violated pairs in random order (``rng``), and
    passes repeat until one repairs nothing: no option of any violated pair raises U (or
    ``cap`` repairs were made). Violated pairs that share an example are repaired together:
    the options are every labeling of their examples (up to ``JOINT_REPAIR`` of them) that
    violates fewer of the constraints among them, so a move that needs three labels to
    change at once is found (one pair at a time, each step would have to lower U). With
    ``focus``, only the pairs that touch those examples (and the examples each repair
    relabels) are looked at. ``pinned`` examples keep their labels.
    """
    pins = pinned or {}
    fixed = 0
    focus = None if focus is None else set(focus)
    improved = True
    while improved and state.violated and (cap is None or fixed < cap):
        improved = False
        units = _repair_units(consistency, state.violated)  # stale ones are skipped below
        if focus is not None:
            units = [u for u in units if not focus.isdisjoint(u)]
        rng.shuffle(units)
        for members in units:
            if cap is not None and fixed >= cap:
                break
            options = _options(consistency, members, state.labels, n_labels, pins)
            if not options:  # nothing violated among them any more
                continue
            candidates = await evaluate_many(
                [
                    ({**state.labels, **dict(zip(members, o, strict=True))}, members)
                    for o in options
                ],
                state,
            )
            best = candidates[0]
            for cand in candidates[1:]:
                if cand.energy > best.energy:
                    best = cand
            if best.energy > state.energy:
                state = best
                fixed += 1
                improved = True
                if focus is not None:
                    focus.update(members)
    return state, fixed


def _repair_units(consistency: Consistency, violated: frozenset[int]) -> list[list[int]]:
    """The examples of each group of violated pairs that share examples (sorted), or each
    pair alone where a group has more than ``JOINT_REPAIR`` examples."""
    constraints = consistency.constraints
    parent: dict[int, int] = {}

    def find(i: int) -> int:
        while parent.setdefault(i, i) != i:
            i = parent[i]
        return i

    for k in sorted(violated):
        c = constraints[k]
        parent[find(c.i)] = find(c.j)
    groups: dict[int, set[int]] = {}
    pairs: dict[int, list[int]] = {}
    for k in sorted(violated):
        root = find(constraints[k].i)
        groups.setdefault(root, set()).update((constraints[k].i, constraints[k].j))
        pairs.setdefault(root, []).append(k)
    units: list[list[int]] = []
    for root in sorted(groups):
        if len(groups[root]) <= JOINT_REPAIR:
            units.append(sorted(groups[root]))
        else:
            units += [[constraints[k].i, constraints[k].j] for k in pairs[root]]
    return units


def _options(
    consistency: Consistency,
    members: list[int],
    labels: Mapping[int, Label],
    n_labels: int,
    pinned: Mapping[int, Label],
) -> list[tuple[Label, ...]]:
    """Every labeling of ``members`` that violates fewer of the constraints among them than
    ``labels`` does (for one violated pair: its consistent options), pinned members keeping
    their pins."""
    where = {i: pos for pos, i in enumerate(members)}
    inside = [
        (where[c.i], where[c.j], c.allowed)
        for k in sorted({k for i in members for k in consistency.by_example[i]})
        if (c := consistency.constraints[k]).i in where and c.j in where
    ]

    def violations(option: Sequence[Label]) -> int:
        return sum((option[a], option[b]) not in allowed for a, b, allowed in inside)

    now = violations([labels[i] for i in members])
    choices = [(pinned[i],) if i in pinned else range(n_labels) for i in members]
    return [option for option in itertools.product(*choices) if violations(option) < now]
