"""The global moves: relabelings of many examples at once, tried when a sweep at the final
temperature accepted nothing (single flips cannot reach them)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..tasks.base import Label
from .energy import Energy
from .state import State

#: ConsistencyFix with the search's settings: the state it reaches and its repairs.
Fix = Callable[[State], Awaitable[tuple[State, int]]]


def followed(state: State, pinned: dict[int, Label]) -> dict[int, Label]:
    """Every label of ``state`` set at once to the model's prediction given the others (the
    predictions the state already holds); pinned labels stay."""
    return {i: p.argmax() for i, p in state.predictions.items()} | pinned


async def global_moves(
    state: State, energy: Energy, fix: Fix, pinned: dict[int, Label], n_labels: int
) -> tuple[State, int]:
    """The best of the global moves from ``state`` and its ConsistencyFix repairs (the
    caller takes it if it strictly raises U):

    * ConsistencyFix over every violated pair (during the search a repair looks only at
      the pairs a step touched: a pair judged past repair stays so until a label near it
      changes, which this catches at the end);
    * follow: ``followed`` labels, then ConsistencyFix. A cluster of labels that only move
      together (each one flipped alone lowers U: the others still teach the old rule)
      moves in one step; from the zero-shot labels this is what reaches the concept the
      model knows;
    * for a binary task, the complement: every label flipped, or every label then set to
      the model's prediction given that complement (the predictions its evaluation already
      holds), whichever has the higher U, then ConsistencyFix (under "not both True" the
      complement of a consistent labeling violates many pairs). A model that learns from
      its demonstrations finds a labeling and its complement about equally coherent, and
      single flips cannot cross from one to the other: what the model knows zero-shot
      decides.
    """
    candidate, fixed = await fix(state)
    follow = followed(state, pinned)
    if follow != state.labels:
        moved, moved_fixed = await fix(await energy.evaluate(follow))
        if moved.energy > candidate.energy:
            candidate, fixed = moved, moved_fixed
    if n_labels == 2:
        flipped = {i: 1 - y for i, y in state.labels.items()} | pinned
        mirror = await energy.evaluate(flipped)
        follow = {i: mirror.predictions[i].argmax() for i in flipped} | pinned
        if follow != flipped:
            other = await energy.evaluate(follow)
            mirror = other if other.energy > mirror.energy else mirror
        mirror, mirror_fixed = await fix(mirror)
        if mirror.energy > candidate.energy:
            candidate, fixed = mirror, mirror_fixed
    return candidate, fixed
