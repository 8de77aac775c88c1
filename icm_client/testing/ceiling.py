"""The ceiling of a simulated model: the best agreement with gold that a labeling the model
supports can reach, under the search's own objective and scoring strategy.

The search maximises U(D) = alpha * MP(D) - I(D), where MP is the mean (or sum) of each
label's log-probability given the demonstrations the strategy puts in its prompt. The
labeling it should find is therefore U's maximiser, not gold: a noisy model's confident
mistakes, or an in-context model's outliers, are part of what the model "knows".

* Context-free models (``Oracle``, ``Noisy``): U splits over the connected components of
  the constraints, so the maximiser is found exactly by enumerating each component's
  labelings (ties go to the labeling that agrees most with gold).
* Models that learn in context: the labeling reached from gold by the search's own moves
  (single flips, and every consistent option of a constrained pair) taken while they raise
  U: the fixed point of the model nearest gold. Its agreement is the ceiling.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..scoring.context import ContextStrategy
from ..search.anneal import SearchConfig
from ..tasks.base import PairConstraint
from .models import SimulatedModel

#: Largest constraint component whose labelings are enumerated.
MAX_COMPONENT = 16


@dataclass(frozen=True)
class Ceiling:
    labels: list[int]  # the labeling at the ceiling
    agreement: float  # its agreement with gold
    energy: float  # its U
    violated: int  # constraints it violates (0 when a consistent labeling is best)


def _log_sigmoid(z: float) -> float:
    return -math.log1p(math.exp(-z)) if z > -30 else z


def _logp(z: float, y: int) -> float:
    """log P(label y) when the log-odds of label 0 over label 1 is z."""
    return _log_sigmoid(z if y == 0 else -z)


def ceiling(
    model: SimulatedModel, strategy: ContextStrategy, config: SearchConfig | None = None
) -> Ceiling:
    """The labeling ``model`` supports best when scored with ``strategy`` (see module)."""
    config = config or SearchConfig()
    n = len(model.examples)
    constraints = model.task.constraints(model.examples)
    coef = config.alpha / n if config.objective == "mean" else config.alpha
    everyone = tuple(range(n))
    contexts = [strategy.context(i, everyone) for i in range(n)]
    lin = [model.linear(i, contexts[i]) for i in range(n)]
    if model.context_free:
        labels = _enumerate(n, [b for b, _ in lin], constraints, coef, model.gold)
    else:
        labels = _ascend(model.gold, contexts, lin, constraints, coef)
    z = [
        b + sum(w * (1 if labels[j] == 0 else -1) for w, j in zip(ws, contexts[i], strict=True))
        for i, (b, ws) in enumerate(lin)
    ]
    violated = sum(not c.satisfied(labels[c.i], labels[c.j]) for c in constraints)
    energy = coef * math.fsum(_logp(z[i], labels[i]) for i in range(n)) - violated
    agreement = sum(a == b for a, b in zip(labels, model.gold, strict=True)) / n
    return Ceiling(labels, agreement, energy, violated)


def _components(n: int, constraints: Sequence[PairConstraint]) -> list[list[int]]:
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for c in constraints:
        parent[find(c.i)] = find(c.j)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


def _enumerate(
    n: int,
    logits: Sequence[float],
    constraints: Sequence[PairConstraint],
    coef: float,
    gold: Sequence[int],
) -> list[int]:
    by_member: dict[int, list[PairConstraint]] = {}
    for c in constraints:
        by_member.setdefault(c.i, []).append(c)
    labels = [0] * n
    for members in _components(n, constraints):
        if len(members) > MAX_COMPONENT:
            raise ValueError(
                f"a constraint component of {len(members)} examples is too large to enumerate"
            )
        inside = [c for i in members for c in by_member.get(i, [])]
        best: tuple[float, int] | None = None
        for option in itertools.product((0, 1), repeat=len(members)):
            y = dict(zip(members, option, strict=True))
            u = coef * sum(_logp(logits[i], y[i]) for i in members)
            u -= sum(not c.satisfied(y[c.i], y[c.j]) for c in inside)
            agree = sum(y[i] == gold[i] for i in members)
            if best is None or (u, agree) > best:
                best = (u, agree)
                for i in members:
                    labels[i] = y[i]
    return labels


def _ascend(
    gold: Sequence[int],
    contexts: Sequence[Sequence[int]],
    lin: Sequence[tuple[float, list[float]]],
    constraints: Sequence[PairConstraint],
    coef: float,
) -> list[int]:
    n = len(gold)
    labels = list(gold)
    sign = [1 if y == 0 else -1 for y in labels]
    holders: list[list[tuple[int, float]]] = [[] for _ in range(n)]  # k -> (i, w_ik)
    for i, (_, ws) in enumerate(lin):
        for j, w in zip(contexts[i], ws, strict=True):
            if w:
                holders[j].append((i, w))
    z = [
        b + sum(w * sign[j] for w, j in zip(ws, contexts[i], strict=True))
        for i, (b, ws) in enumerate(lin)
    ]
    touching: list[list[PairConstraint]] = [[] for _ in range(n)]
    for c in constraints:
        touching[c.i].append(c)
        touching[c.j].append(c)

    def delta(flips: Sequence[int]) -> float:
        """U after flipping ``flips`` minus U now."""
        dz: dict[int, float] = {}
        for k in flips:
            for i, w in holders[k]:
                dz[i] = dz.get(i, 0.0) - 2 * w * sign[k]
        flipped = set(flips)
        gain = 0.0
        for i in flipped | dz.keys():
            y_new = 1 - labels[i] if i in flipped else labels[i]
            gain += _logp(z[i] + dz.get(i, 0.0), y_new) - _logp(z[i], labels[i])
        new = {k: 1 - labels[k] for k in flipped}
        cons = {id(c): c for k in flipped for c in touching[k]}.values()
        before = sum(not c.satisfied(labels[c.i], labels[c.j]) for c in cons)
        after = sum(
            not c.satisfied(new.get(c.i, labels[c.i]), new.get(c.j, labels[c.j])) for c in cons
        )
        return coef * gain - (after - before)

    def apply(flips: Sequence[int]) -> None:
        for k in flips:
            for i, w in holders[k]:
                z[i] -= 2 * w * sign[k]
            labels[k] = 1 - labels[k]
            sign[k] = -sign[k]

    moves: list[tuple[int, ...]] = [(k,) for k in range(n)]
    moves += [(c.i, c.j) for c in constraints]
    improved = True
    while improved:
        improved = False
        for move in moves:
            if delta(move) > 1e-12:
                apply(move)
                improved = True
    return labels
