"""Internal Coherence Maximization: the paper's Algorithm 1 (simulated annealing over label
assignments) with Algorithm 2 (ConsistencyFix).

    U(D) = alpha * sum_i log P(y_i | x_i, D \\ i)  -  I(D)

By default the search runs until it has converged rather than for a fixed number of steps:

1. steps 1..N (N examples) follow the paper: weighted random proposals at temperature
   T0 / (1 + beta log n);
2. steps N+1..2N cool geometrically from T(N) to the final temperature, and a proposal
   that labels a still unlabeled example is always taken (every example joins the search,
   so its label is checked against the others before the run ends);
3. at the final temperature the search sweeps: each example is proposed once, in random
   order, against an unchanged state, and only strict improvements of U are accepted.
   After a sweep with no accepted step come the global moves: ConsistencyFix over every
   violated pair (during the search it repairs the pairs a step touched), every label set
   to the model's prediction given the others at once (a cluster that moves together) and, for a
   binary task, the complement of the labeling (every label flipped, then
   ConsistencyFix): a labeling and its complement are often equally coherent, single
   flips cannot cross from one to the other, and what the model knows zero-shot should
   decide. If neither raises U, the run has converged: every label is the model's own
   prediction given all the others, or changing it lowers U. An accepted step starts a
   new sweep. U rises strictly with every accepted step of this phase, so it ends;
   ``max_steps`` caps it anyway.

A proposal for a labeled example in an unchanged state is the prediction the state already
holds, so sweeps cost no model call until something changes.

``pinned`` labels (a human's, for what the model alone cannot decide) are part of the
labeled set from the start, so they are demonstrations in every prompt that takes the
labeled set; they are never proposed, never relabeled by ConsistencyFix or the complement
move, and they count in U like any other label: a labeling under which the pins are
predictable scores higher.

The search is pure: it does no I/O of its own (scores come from the ``Scorer`` it is given),
all randomness comes from one ``random.Random(seed)``, and random draws never depend on the
order in which concurrent scores arrive, so a run is deterministic given the scores.
"""

from __future__ import annotations

import functools
import itertools
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..aio import gather
from ..errors import BudgetExhausted
from ..scoring.base import Assignment, Prediction, Scorer
from ..tasks.base import Label, PairConstraint
from .config import SearchConfig
from .consistency import Consistency

#: Largest group of examples that ConsistencyFix relabels jointly (all their labelings).
JOINT_REPAIR = 6


@dataclass(frozen=True, slots=True)
class State:
    labels: dict[int, Label]
    predictions: dict[int, Prediction]  # leave-one-out predictions of the labeled examples
    violated: frozenset[int]  # indices of violated constraints
    mutual_predictability: float
    energy: float


@dataclass(frozen=True, slots=True)
class Step:
    """One iteration of Algorithm 1, for progress bars and the run's trajectory."""

    n: int
    temperature: float
    example: int
    previous: Label | None
    proposed: Label
    changed: bool  # False when the proposal equals the current label (no evaluation)
    accepted: bool
    energy: float  # U of the state after this step
    candidate_energy: float | None
    labeled: int
    inconsistencies: int


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Everything needed to continue a search after step ``n``: the labels and the RNG state.

    Predictions and energies are not stored: given the scores (which a disk cache keeps),
    they are recomputed exactly, so a resumed search ends with the labels of an uninterrupted
    one. Emitted after the initial ConsistencyFix (``n == 0``) and after every accepted step;
    rejected steps after the last checkpoint are replayed on resume (their scores are cached).
    """

    n: int
    labels: dict[int, Label]
    rng_state: tuple[int, tuple[int, ...], float | None]  # random.Random.getstate()
    # The search's counts up to step n (``Tally.to_json``), so that a resumed search reports
    # the figures of the whole search; None in checkpoints written before they were kept.
    tally: dict[str, object] | None = None

    def to_json(self) -> dict[str, object]:
        version, internal, gauss = self.rng_state
        data: dict[str, object] = {
            "n": self.n,
            "labels": {str(i): y for i, y in sorted(self.labels.items())},
            "rng_state": [version, list(internal), gauss],
        }
        if self.tally is not None:
            data["tally"] = self.tally
        return data

    @classmethod
    def from_json(cls, data: object) -> Checkpoint:
        """Rebuild from ``to_json`` output; raises ``ValueError`` on anything malformed."""
        if not isinstance(data, dict) or not {"n", "labels", "rng_state"} <= data.keys():
            raise ValueError("checkpoint is not an object with n, labels and rng_state")
        n, labels, rng_state = data["n"], data["labels"], data["rng_state"]
        if type(n) is not int or n < 0 or not isinstance(labels, dict):  # not True, not -1
            raise ValueError("checkpoint n or labels malformed")
        if not all(isinstance(i, str) and i.isascii() and i.isdecimal() for i in labels):
            raise ValueError("checkpoint labels are not keyed by example index")
        try:
            parsed = {int(i): y for i, y in labels.items()}
            version, internal, gauss = rng_state
            state = (version, tuple(internal), gauss)
            random.Random().setstate(state)  # validates version and the 625 words
        except (TypeError, ValueError) as exc:
            raise ValueError(f"checkpoint labels or rng_state malformed: {exc}") from None
        if not all(type(y) is int and y >= 0 for y in parsed.values()):
            raise ValueError("checkpoint labels are not label indices")
        tally = data.get("tally")
        if tally is not None:
            _Tally.from_json(tally)  # validates
        return cls(n, parsed, state, tally)


@dataclass
class SearchResult:
    labels: dict[int, Label]  # every example: searched labels plus end-of-run predictions
    searched: frozenset[int]  # examples whose label came from the search itself
    predictions: dict[int, Prediction]  # final leave-one-out prediction of every example
    energy: float
    mutual_predictability: float
    violated: list[PairConstraint]  # constraints violated by the final labels of all examples
    trajectory: list[Step] = field(default_factory=list)
    stopped: str | None = None  # "budget", or "max-steps" (a converging run hit its cap)
    converged: bool | None = None  # None: a fixed number of steps was asked for
    flips: int = 0  # accepted steps that changed an existing label
    pairs_fixed: int = 0  # ConsistencyFix repairs kept in the accepted states
    free_proposals: int = 0  # proposals answered from the state's predictions: no model call
    never_reproposed: int | None = None  # initial labels never proposed again (None: resumed)


@dataclass
class _Tally:
    """The search's counts, kept in each checkpoint (the steps replayed on resume add the
    same counts again, so a resumed search ends with an uninterrupted one's figures)."""

    flips: int = 0
    pairs_fixed: int = 0
    free_proposals: int = 0
    proposed: set[int] = field(default_factory=set)
    seeds: frozenset[int] | None = None  # the initial labels (None: not known)

    def to_json(self) -> dict[str, object]:
        return {
            "flips": self.flips,
            "pairs_fixed": self.pairs_fixed,
            "free_proposals": self.free_proposals,
            "proposed": sorted(self.proposed),
            "seeds": None if self.seeds is None else sorted(self.seeds),
        }

    @classmethod
    def from_json(cls, data: object) -> _Tally:
        """Raises ``ValueError`` on anything but a ``to_json`` value."""
        counts = ("flips", "pairs_fixed", "free_proposals")
        if not isinstance(data, dict) or not {*counts, "proposed", "seeds"} <= data.keys():
            raise ValueError("checkpoint tally malformed")
        proposed, seeds = data["proposed"], data["seeds"]
        values = [data[k] for k in counts]
        indices = [*proposed, *(seeds or [])] if isinstance(proposed, list) else None
        if (
            not all(isinstance(v, int) and v >= 0 for v in values)
            or indices is None
            or not (seeds is None or isinstance(seeds, list))
            or not all(isinstance(i, int) and i >= 0 for i in indices)
        ):
            raise ValueError("checkpoint tally malformed")
        flips, fixed, free = values
        return cls(flips, fixed, free, set(proposed), None if seeds is None else frozenset(seeds))


class ICMSearch:
    """Runs Algorithm 1 over ``n_examples`` examples. ``groups[i]`` relates examples for the
    sampling weight; ``consistency`` holds the task's pairwise constraints."""

    def __init__(
        self,
        scorer: Scorer,
        consistency: Consistency,
        groups: Sequence[str | None],
        n_labels: int,
        config: SearchConfig | None = None,
        on_step: Callable[[Step], None] | None = None,
        on_checkpoint: Callable[[Checkpoint], None] | None = None,
        *,
        pinned: Mapping[int, Label] | None = None,
    ) -> None:
        self.scorer = scorer
        self.consistency = consistency
        self.groups = list(groups)
        self.n = len(self.groups)
        self.n_labels = n_labels
        self.config = config or SearchConfig()
        self.on_step = on_step
        self.on_checkpoint = on_checkpoint
        self.rng = random.Random(self.config.seed)
        self.pinned: dict[int, Label] = dict(pinned or {})
        if any(not 0 <= i < self.n or not 0 <= y < n_labels for i, y in self.pinned.items()):
            raise ValueError("a pinned label does not fit this dataset and task")
        self._members: dict[str, list[int]] = {}
        for i, g in enumerate(self.groups):
            if g is not None:
                self._members.setdefault(g, []).append(i)
        self._cum_key: frozenset[int] = frozenset()
        self._weights = [1.0] * self.n
        self._cum = list(itertools.accumulate(self._weights))
        self._tally = _Tally()

    @property
    def converging(self) -> bool:
        """True when the run ends at convergence (no fixed ``steps``)."""
        return self.config.steps is None

    @property
    def steps(self) -> int:
        """The most steps this search runs: ``steps``, or a converging run's cap."""
        if self.config.steps is not None:
            return self.config.steps
        if self.config.max_steps is not None:
            return self.config.max_steps
        return 10 * self.n + 100

    def temperature(self, n: int) -> float:
        return self.config.temperature(n, self.n if self.converging else None)

    def sweeping(self, n: int) -> bool:
        """Step ``n`` of a converging run is at the final temperature: sweeps, strict rule."""
        return self.converging and n >= 2 * self.n

    async def evaluate(self, labels: Mapping[int, Label]) -> State:
        """The state of ``labels``: every labeled example's prediction given the others (as
        this search's scorer builds its context), mutual predictability and U."""
        return await self._evaluate(dict(labels), None, labels.keys())

    async def run(
        self, resume: Checkpoint | None = None, start: Mapping[int, Label] | None = None
    ) -> SearchResult:
        """Search from scratch, or continue after ``resume`` (same scorer, same config).

        With ``start`` (a label for every example), a converging search begins at its final
        temperature from those labels: a greedy ascent (sweeps and global moves) from them.
        The returned trajectory holds the steps run by this call only.
        """
        if self.n == 0:
            return SearchResult({}, frozenset(), {}, 0.0, 0.0, [], converged=True)
        self._tally = _Tally()
        seeds: frozenset[int] | None = None
        # Until a first state is scored, the best state is the empty one: a budget spent
        # this early (calibration, the seed labels) leaves every example unlabeled.
        best = state = State({}, {}, frozenset(), 0.0, 0.0)
        trajectory: list[Step] = []
        sweep: list[int] = []  # examples not yet proposed in this sweep (final temperature)
        quiet = False  # a whole sweep went by with no accepted step
        converged: bool | None = False if self.converging else None
        stopped: str | None = None
        try:
            if resume is None:
                cfg, rng = self.config, self.rng
                if start is not None:
                    labels = {**start, **self.pinned}
                else:
                    free = [i for i in range(self.n) if i not in self.pinned]
                    initial = rng.sample(free, min(cfg.initial_labeled, len(free)))
                    labels = {i: rng.randrange(self.n_labels) for i in initial} | self.pinned
                state, self._tally.pairs_fixed = await self._fix(
                    await self._evaluate(labels, None, labels.keys())
                )
                seeds = self._tally.seeds = frozenset(state.labels).difference(self.pinned)
                self._checkpoint(0, state)
                start_step = 2 * self.n if start is not None and self.converging else 1
            else:
                if any(i >= self.n or y >= self.n_labels for i, y in resume.labels.items()) or any(
                    resume.labels.get(i) != y for i, y in self.pinned.items()
                ):
                    raise ValueError("checkpoint does not fit this dataset, task and pins")
                self.rng.setstate(resume.rng_state)
                if resume.tally is not None:
                    self._tally = _Tally.from_json(resume.tally)
                    seeds = self._tally.seeds
                state = await self._evaluate(dict(resume.labels), None, resume.labels.keys())
                start_step = resume.n + 1
            best = state
            if len(self.pinned) == self.n:  # nothing left to search
                return await self._finish(state, trajectory, None, self.converging or None, seeds)
            for n in range(start_step, self.steps + 1):
                sweeping = self.sweeping(n)
                if sweeping and quiet:
                    state, step = await self._settle(state, n)
                elif sweeping:
                    if not sweep:
                        sweep = [i for i in range(self.n) if i not in self.pinned]
                    state, step = await self._step(state, n, sweep)
                else:
                    state, step = await self._step(state, n, None)
                trajectory.append(step)
                if self.on_step is not None:
                    self.on_step(step)
                if step.accepted:
                    self._checkpoint(n, state)
                    best = state if state.energy > best.energy else best
                    sweep, quiet = [], False
                elif sweeping and quiet:  # the global moves found nothing either
                    converged = True
                    break
                elif sweeping and not sweep:
                    quiet = True
            else:
                stopped = "max-steps" if self.converging else None
        except BudgetExhausted:  # stop where we are, with the best state seen
            return await self._finish(best, trajectory, "budget", converged, seeds)
        return await self._finish(state, trajectory, stopped, converged, seeds)

    def _checkpoint(self, n: int, state: State) -> None:
        if self.on_checkpoint is not None:
            version, internal, gauss = self.rng.getstate()
            rng = (version, internal, gauss)
            self.on_checkpoint(Checkpoint(n, dict(state.labels), rng, self._tally.to_json()))

    def _draw(self, state: State, sweep: list[int] | None) -> int:
        if sweep is None:
            return self.rng.choices(range(self.n), cum_weights=self._cum_weights(state.labels))[0]
        k = self.rng.randrange(len(sweep))
        i = sweep[k]
        sweep[k] = sweep[-1]
        sweep.pop()
        return i

    async def _step(self, state: State, n: int, sweep: list[int] | None) -> tuple[State, Step]:
        temperature = self.temperature(n)
        i = self._draw(state, sweep)
        tally = self._tally
        tally.proposed.add(i)
        previous = state.labels.get(i)
        if previous is not None:  # the state holds i's prediction given all the others
            pred = state.predictions[i]
            tally.free_proposals += 1
        else:
            pred = (await self.scorer.predict_many([i], state.labels))[i]
        proposed = pred.argmax()
        if proposed == previous:
            return state, self._record(n, temperature, i, previous, proposed, state, None, False)
        candidate, fixed = await self._fix(
            await self._evaluate({**state.labels, i: proposed}, state, [i]), {i}
        )
        delta = candidate.energy - state.energy
        if sweep is not None:  # the final temperature: strict improvements only
            accepted = delta > 0 or previous is None
        elif previous is None and self.converging and n > self.n:
            accepted = True  # every example joins the search before it cools down
        else:
            accepted = delta > 0 or self.rng.random() < _acceptance(delta, temperature)
        if accepted:
            tally.pairs_fixed += fixed
            tally.flips += previous is not None
        new = candidate if accepted else state
        return new, self._record(n, temperature, i, previous, proposed, new, candidate, accepted)

    async def _settle(self, state: State, n: int) -> tuple[State, Step]:
        """The global moves, tried when a sweep found nothing; the best is taken if it
        strictly raises U. Recorded as a step with ``example == -1``.

        * ConsistencyFix over every violated pair (during the search a repair looks only at
          the pairs a step touched: a pair judged past repair stays so until a label near
          it changes, which this catches at the end);
        * follow: every label set at once to the model's prediction given the others (the
          predictions the state already holds), then ConsistencyFix. A cluster of labels
          that only move together (each one flipped alone lowers U: the others still
          teach the old rule) moves in one step; from the zero-shot labels this is what
          reaches the concept the model knows;
        * for a binary task, the complement: every label flipped, or every label then set to
          the model's prediction given that complement (the predictions its evaluation
          already holds), whichever has the higher U, then ConsistencyFix (under "not both
          True" the complement of a consistent labeling violates many pairs). A model that
          learns from its demonstrations finds a labeling and its complement about equally
          coherent, and single flips cannot cross from one to the other: what the model
          knows zero-shot decides.
        """
        temperature = self.temperature(n)
        candidate, fixed = await self._fix(state)
        followed = {i: p.argmax() for i, p in state.predictions.items()} | self.pinned
        if followed != state.labels:
            follow, follow_fixed = await self._fix(await self._evaluate(followed, None, followed))
            if follow.energy > candidate.energy:
                candidate, fixed = follow, follow_fixed
        if self.n_labels == 2:
            pins = self.pinned
            flipped = {i: 1 - y for i, y in state.labels.items()} | pins
            mirror = await self._evaluate(flipped, None, flipped)
            followed = {i: mirror.predictions[i].argmax() for i in flipped} | pins
            if followed != flipped:
                other = await self._evaluate(followed, None, followed)
                mirror = other if other.energy > mirror.energy else mirror
            mirror, mirror_fixed = await self._fix(mirror)
            if mirror.energy > candidate.energy:
                candidate, fixed = mirror, mirror_fixed
        accepted = candidate.energy > state.energy
        if accepted:
            self._tally.pairs_fixed += fixed
            self._tally.flips += sum(candidate.labels[i] != y for i, y in state.labels.items())
        new = candidate if accepted else state
        return new, self._record(n, temperature, -1, None, -1, new, candidate, accepted)

    def _record(
        self,
        n: int,
        t: float,
        i: int,
        prev: Label | None,
        prop: Label,
        state: State,
        candidate: State | None,
        accepted: bool,
    ) -> Step:
        return Step(
            n,
            t,
            i,
            prev,
            prop,
            candidate is not None,
            accepted,
            state.energy,
            None if candidate is None else candidate.energy,
            len(state.labels),
            len(state.violated),
        )

    def _cum_weights(self, labels: dict[int, Label]) -> list[float]:
        """Cumulative sampling weights: an unlabeled example related to a labeled one (same
        group, or a constraint partner) weighs ``related_weight``, a pinned one 0 (never
        proposed), every other example 1.

        Kept up to date incrementally: a step labels at most a few new examples, and only
        their group and partners change weight. ``choices(cum_weights=...)`` draws exactly
        what ``choices(weights=...)`` draws, so seeds and checkpoints mean what they meant.
        """
        key = frozenset(labels)
        added = key - self._cum_key
        if self._cum_key - key or len(added) > 64:  # labels removed (resume, best state)
            self._weights = [1.0] * self.n
            added = key
        w = self.config.related_weight
        for j in added:
            self._weights[j] = 0.0 if j in self.pinned else 1.0
            group = self.groups[j]
            related = self._members.get(group, []) if group is not None else []
            for i in (*related, *self.consistency.partners(j)):
                if i not in key:
                    self._weights[i] = w
        if added or self._cum_key - key:
            self._cum = list(itertools.accumulate(self._weights))
        self._cum_key = key
        return self._cum

    async def _fix(self, state: State, focus: set[int] | None = None) -> tuple[State, int]:
        """Algorithm 2 over every violated pair: a repair tries every consistent option of a
        violated pair, and takes the best one if it strictly raises U; one pass goes over
        the violated pairs in random order, and passes repeat until one repairs nothing: no
        option of any violated pair raises U (or ``fix_iterations`` repairs were made).
        Violated pairs that share an example are repaired together: the options are every
        labeling of their examples (up to ``JOINT_REPAIR`` of them) that violates fewer of
        the constraints among them, so a move that needs three labels to change at once is
        found (one pair at a time, each step would have to lower U). With ``focus``, only
        the pairs that touch those examples (and the examples each repair relabels) are
        looked at. Returns the state and the number of repairs."""
        cap = self.config.fix_iterations
        fixed = 0
        focus = None if focus is None else set(focus)
        improved = True
        while improved and state.violated and (cap is None or fixed < cap):
            improved = False
            units = self._repair_units(state.violated)  # stale ones are skipped below
            if focus is not None:
                units = [u for u in units if not focus.isdisjoint(u)]
            self.rng.shuffle(units)
            for members in units:
                if cap is not None and fixed >= cap:
                    break
                options = self._options(members, state.labels)
                if not options:  # nothing violated among them any more
                    continue
                candidates = await self._evaluate_many(
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

    def _repair_units(self, violated: frozenset[int]) -> list[list[int]]:
        """The examples of each group of violated pairs that share examples (sorted), or
        each pair alone where a group has more than ``JOINT_REPAIR`` examples."""
        constraints = self.consistency.constraints
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

    def _options(self, members: list[int], labels: Assignment) -> list[tuple[Label, ...]]:
        """Every labeling of ``members`` that violates fewer of the constraints among them
        than ``labels`` does (for one violated pair: its consistent options), pinned
        members keeping their pins."""
        where = {i: pos for pos, i in enumerate(members)}
        inside = [
            (where[c.i], where[c.j], c.allowed)
            for k in sorted({k for i in members for k in self.consistency.by_example[i]})
            if (c := self.consistency.constraints[k]).i in where and c.j in where
        ]

        def violations(option: Sequence[Label]) -> int:
            return sum((option[a], option[b]) not in allowed for a, b, allowed in inside)

        now = violations([labels[i] for i in members])
        choices = [(self.pinned[i],) if i in self.pinned else range(self.n_labels) for i in members]
        return [option for option in itertools.product(*choices) if violations(option) < now]

    async def _evaluate_many(
        self, assignments: list[tuple[dict[int, Label], list[int]]], base: State
    ) -> list[State]:
        return await gather(
            [
                functools.partial(self._evaluate, labels, base, changed)
                for labels, changed in assignments
            ]
        )

    async def _evaluate(
        self, labels: dict[int, Label], base: State | None, changed: Iterable[int]
    ) -> State:
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

    async def _finish(
        self,
        state: State,
        trajectory: list[Step],
        stopped: str | None,
        converged: bool | None,
        seeds: frozenset[int] | None,
    ) -> SearchResult:
        rest = [i for i in range(self.n) if i not in state.labels]
        try:
            extra = await self.scorer.predict_many(rest, state.labels) if rest else {}
        except BudgetExhausted:  # the examples the search never reached stay unlabeled
            extra, stopped = {}, "budget"
        final = dict(state.labels)
        final.update({i: p.argmax() for i, p in extra.items()})
        violated = [
            self.consistency.constraints[k] for k in sorted(self.consistency.violated(final))
        ]
        return SearchResult(
            labels=dict(sorted(final.items())),
            searched=frozenset(state.labels).difference(self.pinned),
            predictions={**state.predictions, **extra},
            energy=state.energy,
            mutual_predictability=state.mutual_predictability,
            violated=violated,
            trajectory=trajectory,
            stopped=stopped,
            converged=converged,
            flips=self._tally.flips,
            pairs_fixed=self._tally.pairs_fixed,
            free_proposals=self._tally.free_proposals,
            never_reproposed=None if seeds is None else len(seeds - self._tally.proposed),
        )


def _acceptance(delta: float, temperature: float) -> float:
    """exp(delta / T), guarded: a very negative exponent is 0, never an OverflowError."""
    x = delta / temperature
    if x >= 0:
        return 1.0
    return 0.0 if x < -745 else math.exp(x)
