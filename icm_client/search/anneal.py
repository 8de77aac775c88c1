"""Internal Coherence Maximization: the paper's Algorithm 1 (simulated annealing over label
assignments) with Algorithm 2 (ConsistencyFix) after every step.

    U(D) = alpha * sum_i log P(y_i | x_i, D \\ i)  -  I(D)

The parts live beside this module: ``schedule`` (the phases anneal, cool and sweep, their
temperature and acceptance rule), ``sampling`` (which example a step proposes), ``energy``
(U of a labeling), ``consistency`` (I(D) and ConsistencyFix), ``moves`` (the global moves)
and ``state`` (the values a search hands out). ``ICMSearch`` walks the phases.

By default the search runs until it has converged rather than for a fixed number of steps:
after annealing and cooling, it sweeps at the final temperature (each example proposed
once, in random order, against an unchanged state; only strict improvements of U
accepted). After a sweep with no accepted step come the global moves; if they do not raise
U either, the run has converged: every label is the model's own prediction given all the
others, or changing it lowers U. An accepted step starts a new sweep. U rises strictly with
every accepted step of this phase, so it ends; ``max_steps`` caps it anyway.

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

import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import BudgetExhausted
from ..scoring.base import Scorer
from ..tasks.base import Label
from .consistency import consistency_fix
from .energy import Energy
from .inputs import SearchInputs
from .moves import global_moves
from .sampling import Sampler, draw_once
from .schedule import Phase, Schedule
from .state import Checkpoint, SearchResult, State, Step, Tally

# Checkpoint, State and Step are imported from here by the run, its checkpoints and progress.
__all__ = ["Checkpoint", "ICMSearch", "SearchResult", "State", "Step"]


@dataclass
class _Walk:
    """Where a run is: its state, the best state seen, the next step's number and the steps
    taken so far."""

    state: State
    best: State
    n: int = 1
    trajectory: list[Step] = field(default_factory=list)


class ICMSearch:
    """Runs Algorithm 1 over the examples of ``inputs``."""

    def __init__(self, inputs: SearchInputs) -> None:
        self.inputs = inputs
        self.scorer: Scorer = inputs.scorer
        self.consistency = inputs.consistency
        self.groups = list(inputs.groups)
        self.n = len(self.groups)
        self.n_labels = inputs.n_labels
        self.config = inputs.config
        self.pinned: dict[int, Label] = dict(inputs.pinned)
        if any(not 0 <= i < self.n or not 0 <= y < self.n_labels for i, y in self.pinned.items()):
            raise ValueError("a pinned label does not fit this dataset and task")
        self.rng = random.Random(self.config.seed)
        self.schedule = Schedule(self.config, self.n)
        self.energy = Energy(self.scorer, self.consistency, self.config)
        self.sampler = Sampler(
            self.groups, self.consistency, self.pinned, self.config.related_weight
        )
        self._tally = Tally()

    async def evaluate(self, labels: Mapping[int, Label]) -> State:
        """The state of ``labels``: every labeled example's prediction given the others (as
        this search's scorer builds its context), mutual predictability and U."""
        return await self.energy.evaluate(dict(labels))

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
        self._tally = Tally()
        # Until a first state is scored, the best state is the empty one: a budget spent
        # this early (calibration, the seed labels) leaves every example unlabeled.
        empty = State({}, {}, frozenset(), 0.0, 0.0)
        walk = _Walk(empty, empty)
        try:
            if resume is None:
                walk.state = await self._begin(start)
                sweeps = self.schedule.first(Phase.SWEEP)
                walk.n = sweeps if start is not None and sweeps is not None else 1
            else:
                walk.state = await self._resume(resume)
                walk.n = resume.n + 1
            walk.best = walk.state
            if len(self.pinned) == self.n:  # nothing left to search
                return await self._finish(walk.state, [], None, self.schedule.converging or None)
            converged = await self._walk(walk)
        except BudgetExhausted:  # stop where we are, with the best state seen
            unfinished = False if self.schedule.converging else None
            return await self._finish(walk.best, walk.trajectory, "budget", unfinished)
        stopped = "max-steps" if converged is False else None
        return await self._finish(walk.state, walk.trajectory, stopped, converged)

    async def _begin(self, start: Mapping[int, Label] | None) -> State:
        """The first state: ``start``, or ``initial_labeled`` random labels; then
        ConsistencyFix. Checkpointed as step 0."""
        if start is not None:
            labels = {**start, **self.pinned}
        else:
            free = [i for i in range(self.n) if i not in self.pinned]
            initial = self.rng.sample(free, min(self.config.initial_labeled, len(free)))
            labels = {i: self.rng.randrange(self.n_labels) for i in initial} | self.pinned
        state, self._tally.pairs_fixed = await self._fix(await self.energy.evaluate(labels))
        self._tally.seeds = frozenset(state.labels).difference(self.pinned)
        self._checkpoint(0, state)
        return state

    async def _resume(self, resume: Checkpoint) -> State:
        if any(i >= self.n or y >= self.n_labels for i, y in resume.labels.items()) or any(
            resume.labels.get(i) != y for i, y in self.pinned.items()
        ):
            raise ValueError("checkpoint does not fit this dataset, task and pins")
        self.rng.setstate(resume.rng_state)
        if resume.tally is not None:
            self._tally = Tally.from_json(resume.tally)
        return await self.energy.evaluate(dict(resume.labels))

    async def _walk(self, walk: _Walk) -> bool | None:
        """Steps from ``walk.n`` up to the cap, phase by phase. Returns whether the run
        converged: None for a fixed number of steps, False at a converging run's cap."""
        last = self.schedule.last
        while walk.n <= last and self.schedule.phase(walk.n) is not Phase.SWEEP:
            self._advance(walk, *await self._step(walk.state, walk.n, None))
        if not self.schedule.converging:
            return None
        while walk.n <= last:
            if await self._sweep(walk):
                continue  # an accepted step starts a new sweep
            if walk.n > last:
                break
            if not self._advance(walk, *await self._settle(walk.state, walk.n)):
                return True  # neither a sweep nor the global moves found anything
        return False

    async def _sweep(self, walk: _Walk) -> bool:
        """One sweep: each example not pinned proposed once, in random order, until a step
        is accepted. False when none was (or the cap came first)."""
        order = [i for i in range(self.n) if i not in self.pinned]
        while order and walk.n <= self.schedule.last:
            if self._advance(walk, *await self._step(walk.state, walk.n, order)):
                return True
        return False

    def _advance(self, walk: _Walk, state: State, step: Step) -> bool:
        """Record ``step``, which left ``state``; True when it was accepted."""
        walk.state = state
        walk.trajectory.append(step)
        if self.inputs.on_step is not None:
            self.inputs.on_step(step)
        if step.accepted:
            self._checkpoint(walk.n, state)
            walk.best = state if state.energy > walk.best.energy else walk.best
        walk.n += 1
        return step.accepted

    def _checkpoint(self, n: int, state: State) -> None:
        if self.inputs.on_checkpoint is not None:
            version, internal, gauss = self.rng.getstate()
            rng = (version, internal, gauss)
            self.inputs.on_checkpoint(Checkpoint(n, dict(state.labels), rng, self._tally.to_json()))

    async def _step(self, state: State, n: int, order: list[int] | None) -> tuple[State, Step]:
        """Propose one example's predicted label: drawn by the sampling weights, or from a
        sweep's ``order``; the schedule decides whether to take it."""
        temperature = self.schedule.temperature(n)
        if order is None:
            i = self.sampler.draw(state.labels, self.rng)
        else:
            i = draw_once(order, self.rng)
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
            return state, Step.after(n, temperature, i, previous, proposed, state, None, False)
        candidate, fixed = await self._fix(
            await self.energy.evaluate({**state.labels, i: proposed}, state, [i]), {i}
        )
        delta = candidate.energy - state.energy
        accepted = self.schedule.accepts(n, delta, previous is None, self.rng)
        if accepted:
            tally.pairs_fixed += fixed
            tally.flips += previous is not None
        new = candidate if accepted else state
        return new, Step.after(n, temperature, i, previous, proposed, new, candidate, accepted)

    async def _fix(self, state: State, focus: set[int] | None = None) -> tuple[State, int]:
        return await consistency_fix(
            state,
            self.consistency,
            self.energy.evaluate_many,
            self.rng,
            self.n_labels,
            pinned=self.pinned,
            cap=self.config.fix_iterations,
            focus=focus,
        )

    async def _settle(self, state: State, n: int) -> tuple[State, Step]:
        """The global moves (``moves.global_moves``), tried when a sweep found nothing;
        taken if it strictly raises U. Recorded as a step with ``example == -1``."""
        temperature = self.schedule.temperature(n)
        candidate, fixed = await global_moves(
            state, self.energy, self._fix, self.pinned, self.n_labels
        )
        accepted = candidate.energy > state.energy
        if accepted:
            self._tally.pairs_fixed += fixed
            self._tally.flips += sum(candidate.labels[i] != y for i, y in state.labels.items())
        new = candidate if accepted else state
        return new, Step.after(n, temperature, -1, None, -1, new, candidate, accepted)

    async def _finish(
        self,
        state: State,
        trajectory: list[Step],
        stopped: str | None,
        converged: bool | None,
    ) -> SearchResult:
        seeds = self._tally.seeds
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
