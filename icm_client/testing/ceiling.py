"""The ceiling of a simulated model: the labeling of highest full-context U, whatever
strategy the run being judged used.

The search maximises U(D) = alpha * MP(D) - I(D), where MP is the mean (or sum) of each
label's log-probability given the other labels. The paper's objective (the ``exact``
strategy) puts every other labeled example in context; a cheaper strategy estimates it.
Judged against its own estimate, a strategy that optimises a noisy objective would set its
own bar, so every run here is judged against one labeling: the maximiser of full-context U,
computed from the simulated model directly (no HTTP).

* ``full_context_u(model, labels)``: a labeling's full-context U (public: any run can be
  scored against the ceiling's).
* Context-free models (``Oracle``, ``Noisy``): U splits over the connected components of
  the constraints, so the maximiser is found exactly by enumerating each component's
  labelings (ties go to the labeling that agrees most with gold).
* Models that learn in context: the best of many restarts of an offline optimiser (exact
  search is out of reach at N = 32): coordinate ascent over single flips, constrained pairs
  and the flips of whole task groups, plus the complement, from gold, the zero-shot labels,
  their complements and ``restarts`` random labelings.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from ..search.config import SearchConfig
from ..tasks.base import PairConstraint
from .models import SimulatedModel

#: Largest constraint component whose labelings are enumerated.
MAX_COMPONENT = 16
#: Random starts of the offline optimiser (on top of gold, zero-shot and their complements).
RESTARTS = 8


@dataclass(frozen=True)
class Ceiling:
    labels: list[int]  # the labeling at the ceiling
    agreement: float  # its agreement with gold
    energy: float  # its full-context U
    violated: int  # constraints it violates (0 when a consistent labeling is best)
    exact: bool  # True: enumerated; False: best of the optimiser's restarts


def _log_sigmoid(z: float) -> float:
    return -math.log1p(math.exp(-z)) if z > -30 else z


def _logp(z: float, y: int) -> float:
    """log P(label y) when the log-odds of label 0 over label 1 is z."""
    return _log_sigmoid(z if y == 0 else -z)


def _sign(y: int) -> int:
    return 1 if y == 0 else -1


class _FullContext:
    """The model under full context: ``z_i = b_i + sum_{j != i} w_ij s_j``, U and its
    changes under flips, computed incrementally."""

    def __init__(self, model: SimulatedModel, config: SearchConfig) -> None:
        n = len(model.examples)
        self.n = n
        self.constraints = model.task.constraints(model.examples)
        self.coef = config.alpha / n if config.objective == "mean" else config.alpha
        self.base: list[float] = []
        self.holders: list[list[tuple[int, float]]] = [[] for _ in range(n)]  # k -> (i, w_ik)
        self.weights: list[list[tuple[int, float]]] = []  # i -> (j, w_ij)
        for i in range(n):
            others = [j for j in range(n) if j != i]
            b, ws = model.linear(i, others)
            self.base.append(b)
            row = [(j, w) for j, w in zip(others, ws, strict=True) if w]
            self.weights.append(row)
            for j, w in row:
                self.holders[j].append((i, w))
        self.touching: list[list[PairConstraint]] = [[] for _ in range(n)]
        for c in self.constraints:
            self.touching[c.i].append(c)
            self.touching[c.j].append(c)

    def logits(self, labels: Sequence[int]) -> list[float]:
        return [
            b + sum(w * _sign(labels[j]) for j, w in row)
            for b, row in zip(self.base, self.weights, strict=True)
        ]

    def violated(self, labels: Sequence[int]) -> int:
        return sum(not c.satisfied(labels[c.i], labels[c.j]) for c in self.constraints)

    def energy(self, labels: Sequence[int]) -> float:
        z = self.logits(labels)
        mp = math.fsum(_logp(z[i], labels[i]) for i in range(self.n))
        return self.coef * mp - self.violated(labels)

    def ascend(self, start: Sequence[int], moves: Sequence[tuple[int, ...]]) -> list[int]:
        """Coordinate ascent from ``start`` over ``moves`` (sets of examples flipped
        together) and the complement, while one strictly raises U."""
        labels = list(start)
        z = self.logits(labels)

        def delta(flips: Sequence[int]) -> float:
            dz: dict[int, float] = {}
            for k in flips:
                for i, w in self.holders[k]:
                    dz[i] = dz.get(i, 0.0) - 2 * w * _sign(labels[k])
            flipped = set(flips)
            gain = 0.0
            for i in flipped | dz.keys():
                y_new = 1 - labels[i] if i in flipped else labels[i]
                gain += _logp(z[i] + dz.get(i, 0.0), y_new) - _logp(z[i], labels[i])
            new = {k: 1 - labels[k] for k in flipped}
            cons = {id(c): c for k in flipped for c in self.touching[k]}.values()
            before = sum(not c.satisfied(labels[c.i], labels[c.j]) for c in cons)
            after = sum(
                not c.satisfied(new.get(c.i, labels[c.i]), new.get(c.j, labels[c.j])) for c in cons
            )
            return self.coef * gain - (after - before)

        def apply(flips: Sequence[int]) -> None:
            for k in flips:
                for i, w in self.holders[k]:
                    z[i] -= 2 * w * _sign(labels[k])
                labels[k] = 1 - labels[k]

        improved = True
        while improved:
            improved = False
            for move in moves:
                if delta(move) > 1e-12:
                    apply(move)
                    improved = True
            flipped = [1 - y for y in labels]
            if self.energy(flipped) > self.energy(labels) + 1e-12:
                labels = flipped
                z = self.logits(labels)
                improved = True
        return labels


def full_context_u(
    model: SimulatedModel, labels: Sequence[int], config: SearchConfig | None = None
) -> float:
    """U of ``labels`` (one label index per example) with every other example in context:
    the ``exact`` strategy's objective, from ``model`` directly."""
    if len(labels) != len(model.examples):
        raise ValueError(f"{len(labels)} labels for {len(model.examples)} examples")
    return _FullContext(model, config or SearchConfig()).energy(labels)


def ceiling(
    model: SimulatedModel, config: SearchConfig | None = None, *, restarts: int = RESTARTS
) -> Ceiling:
    """The labeling of highest full-context U for ``model`` (see module)."""
    config = config or SearchConfig()
    full = _FullContext(model, config)
    n = full.n
    if model.context_free:
        labels = _enumerate(n, full.base, full.constraints, full.coef, model.gold)
        exact = True
    else:
        labels = _optimise(model, full, restarts)
        exact = False
    agreement = sum(a == b for a, b in zip(labels, model.gold, strict=True)) / n
    return Ceiling(labels, agreement, full.energy(labels), full.violated(labels), exact)


def _optimise(model: SimulatedModel, full: _FullContext, restarts: int) -> list[int]:
    n = full.n
    rng = random.Random(f"ceiling\x00{n}")
    groups: dict[str, list[int]] = {}
    for i, ex in enumerate(model.examples):
        if (g := model.task.group(ex)) is not None:
            groups.setdefault(g, []).append(i)
    moves: list[tuple[int, ...]] = [(k,) for k in range(n)]
    moves += [(c.i, c.j) for c in full.constraints]
    moves += [tuple(m) for m in groups.values() if len(m) > 1]
    zero_shot = [0 if b >= 0 else 1 for b in full.base]
    starts = [list(model.gold), zero_shot]
    starts += [[1 - y for y in s] for s in starts]
    starts += [[rng.randrange(2) for _ in range(n)] for _ in range(restarts)]
    best: tuple[float, int, list[int]] | None = None
    for start in starts:
        labels = full.ascend(start, moves)
        key = (full.energy(labels), sum(a == b for a, b in zip(labels, model.gold, strict=True)))
        if best is None or key > best[:2]:
            best = (*key, labels)
    assert best is not None
    return best[2]


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
