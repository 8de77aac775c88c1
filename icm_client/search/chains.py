"""Several independent searches over the same scores, judged by full-context U.

One annealing run ends in the coherent labeling nearest its random start. When the model's
in-context learning carries two concepts (the truth, and a salient feature independent of
it), both labelings are fixed points, and which one a run ends on is luck. So:

1. ``chains`` searches run one after the other over one scorer (its memo, and the
   client's disk cache, make a score asked twice free): chain 0 is the paper's annealing with
   ``seed``; chain 1 is a greedy ascent from the model's zero-shot labels (what it knows
   with no demonstrations points at the truth more often than at a feature independent of
   it), after "follow" rounds that set every label to its prediction given the others at
   once; chains 2, 3, ... anneal from seeds ``seed + 2``, ``seed + 3``, ...
2. Every distinct final labeling is scored under full-context U (every other example in
   context: the ``exact`` strategy's objective, which a cheaper strategy only estimates)
   by the ``judge``, and the highest wins.
3. Under a cheaper strategy the winner is then polished under full context by follow
   rounds: every label set to its full-context prediction given the others, kept while
   that raises full-context U.
4. The chains' ends are reported: their full-context U and how far they agree with the
   winner. Two chains on different labelings with nearly equal U (``undecided``) mean the
   model does not decide between them; the run says so rather than choosing silently.

Pure like the search: no I/O, every chain's randomness from its own seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from ..errors import BudgetExhausted
from ..scoring.base import Scorer
from .anneal import ICMSearch
from .inputs import SearchInputs
from .moves import followed
from .state import Checkpoint, SearchResult, State

#: Two labelings whose full-context log-likelihoods (the sum over the labels of log P(y_i |
#: the others), U without the weight alpha or the mean) differ by less than this many nats
#: are "nearly equal": a likelihood ratio below e^2 (about 7), the model does not decide
#: between them.
UNDECIDED_NATS = 2.0
#: Share of labels two chains must share to be on the same labeling.
SAME_LABELING = 0.9
#: Most "follow" rounds (every label set to its prediction at once) from the zero-shot
#: labels, and in the full-context polish of a cheaper strategy's winner.
FOLLOW_ROUNDS = 4


@dataclass(frozen=True, slots=True)
class ChainEnd:
    """Where one chain ended."""

    seed: int
    start: Literal["random", "zero-shot"]
    energy: float  # full-context U of its final labels
    agreement: float  # share of its labels equal to the winner's
    converged: bool | None
    stopped: str | None


@dataclass
class ChainsResult:
    result: SearchResult  # the winner, polished; its energy is full-context U
    chains: list[ChainEnd] = field(default_factory=list)
    winner: int = 0  # index into ``chains``
    polished: int = 0  # labels the polish changed

    @property
    def undecided(self) -> list[ChainEnd]:
        """Chains that end on another labeling (below ``SAME_LABELING`` of the winner's
        labels; its complement included: the same concept with the opposite meaning) at a
        full-context U within the margin of the winner's."""
        return [
            c
            for k, c in enumerate(self.chains)
            if k != self.winner
            and c.agreement < SAME_LABELING
            and self.result.energy - c.energy < self.margin
        ]

    margin: float = 0.0  # "nearly equal" in U (set from alpha and the objective)


class Chains:
    """Runs ``inputs.config.chains`` searches of ``inputs`` and keeps the labeling of
    highest full-context U.

    Each chain is ``inputs`` with its own seed. ``judge`` scores a labeling with every
    other example in context (``None``: the scorer itself, as under ``exact``). The pinned
    labels are given to every chain, and to the zero-shot prediction as its context.
    ``on_checkpoint`` follows chain 0 only: a resumed run continues chain 0 and re-runs the
    others from the score cache.
    """

    def __init__(self, inputs: SearchInputs, judge: Scorer | None = None) -> None:
        self.inputs = inputs
        self.judge_scorer = judge
        self.scorer = inputs.scorer
        self.consistency = inputs.consistency
        self.pinned = dict(inputs.pinned)
        self.n = len(inputs.groups)
        self.config = inputs.config

    def _search(
        self, scorer: Scorer, seed: int, on_checkpoint: Callable[[Checkpoint], None] | None
    ) -> ICMSearch:
        config = self.config.model_copy(update={"seed": seed})
        return ICMSearch(
            replace(self.inputs, scorer=scorer, config=config, on_checkpoint=on_checkpoint)
        )

    @property
    def margin(self) -> float:
        margin = self.config.alpha * UNDECIDED_NATS
        return margin / max(self.n, 1) if self.config.objective == "mean" else margin

    async def run(self, resume: Checkpoint | None = None) -> ChainsResult:
        seed = self.config.seed
        first = self._search(self.scorer, seed, self.inputs.on_checkpoint)
        ends: list[tuple[int, Literal["random", "zero-shot"], SearchResult]] = []
        ends.append((seed, "random", await first.run(resume)))
        if self.n == 0 or self.config.chains == 1 or ends[0][2].stopped == "budget":
            # One chain is the paper's single run: nothing to judge between, no polish.
            return ChainsResult(ends[0][2], margin=self.margin)
        judge = self._search(self.judge_scorer or self.scorer, seed, None)
        try:
            for k in range(1, self.config.chains):
                chain = self._search(self.scorer, seed + k, None)
                if k == 1:
                    zero = await self.scorer.predict_many(list(range(self.n)), self.pinned)
                    start = {i: p.argmax() for i, p in zero.items()} | self.pinned
                    start = (await self._follow(chain, await chain.evaluate(start))).labels
                    ends.append((seed + k, "zero-shot", await chain.run(start=start)))
                else:
                    ends.append((seed + k, "random", await chain.run()))
            states = [await judge.evaluate(result.labels) for _, _, result in ends]
            winner = max(range(len(ends)), key=lambda k: (states[k].energy, -k))
            best = states[winner]
            if self.judge_scorer is not None:
                best = await self._follow(judge, best)
        except BudgetExhausted:  # keep what the chains that ended found, unjudged
            result = max((r for _, _, r in ends), key=lambda r: r.energy)
            return ChainsResult(replace(result, stopped="budget"), margin=self.margin)
        won = ends[winner][2]
        polished = sum(best.labels[i] != y for i, y in won.labels.items())
        chains = [
            ChainEnd(
                s,
                start,
                state.energy,
                sum(state.labels[i] == best.labels[i] for i in range(self.n)) / self.n,
                r.converged,
                r.stopped,
            )
            for (s, start, r), state in zip(ends, states, strict=True)
        ]
        violated = [self.consistency.constraints[k] for k in sorted(best.violated)]
        result = replace(
            won,
            labels=dict(sorted(best.labels.items())),
            predictions=best.predictions,
            energy=best.energy,
            mutual_predictability=best.mutual_predictability,
            violated=violated,
            flips=sum(r.flips for _, _, r in ends),
            pairs_fixed=sum(r.pairs_fixed for _, _, r in ends),
            free_proposals=sum(r.free_proposals for _, _, r in ends),
        )
        return ChainsResult(result, chains, winner, polished, self.margin)

    async def _follow(self, search: ICMSearch, state: State) -> State:
        """Set every label at once to its prediction given the others (as ``search``
        scores them), while that raises U; pinned labels stay. One pass of predictions a
        round: from the zero-shot labels it reaches the concept the model knows, and on a
        cheaper strategy's result it is the full-context polish."""
        for _ in range(FOLLOW_ROUNDS):
            follow = followed(state, self.pinned)
            if follow == state.labels:
                break
            candidate = await search.evaluate(follow)
            if candidate.energy <= state.energy:
                break
            state = candidate
        return state
