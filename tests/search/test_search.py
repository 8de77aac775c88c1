"""The search on scorers whose optimum is known: determinism, recovery, ConsistencyFix."""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Callable, Sequence

import pytest

from icm_client.scoring.base import Assignment, Prediction
from icm_client.search.anneal import Checkpoint, ICMSearch
from icm_client.search.config import SearchConfig
from icm_client.search.consistency import Consistency, consistency_fix
from icm_client.search.energy import Energy
from icm_client.search.inputs import SearchInputs
from icm_client.search.sampling import Sampler
from icm_client.search.schedule import Phase, Schedule, acceptance
from icm_client.search.state import State
from icm_client.tasks.base import PairConstraint

pytestmark = pytest.mark.anyio


class LatentScorer:
    """A model with a latent truth and a zero-shot prior towards it: a context that agrees
    with the truth makes it more confident, one that contradicts it pulls towards the flip."""

    def __init__(self, truth: Sequence[int], strength: float = 3.0, prior: float = 2.0) -> None:
        self.truth = list(truth)
        self.strength = strength
        self.prior = prior
        self.calls: list[tuple[int, tuple[tuple[int, int], ...]]] = []

    async def predict_many(
        self, targets: Sequence[int], labels: Assignment
    ) -> dict[int, Prediction]:
        out = {}
        for t in targets:
            ctx = [j for j in labels if j != t]
            self.calls.append((t, tuple(sorted((j, labels[j]) for j in ctx))))
            agree = (
                sum(1 if labels[j] == self.truth[j] else -1 for j in ctx) / len(ctx) if ctx else 0.0
            )
            sign = 1 if self.truth[t] == 0 else -1
            logit = 0.3 + (self.prior + self.strength * agree) * sign
            p0 = 1 / (1 + math.exp(-logit))
            out[t] = Prediction((math.log(p0), math.log(1 - p0)))
        return out


def make_search(
    scorer: LatentScorer,
    n: int,
    constraints: Sequence[PairConstraint] = (),
    *,
    on_checkpoint: Callable[[Checkpoint], None] | None = None,
    **cfg: object,
) -> ICMSearch:
    return ICMSearch(
        SearchInputs(
            scorer,
            Consistency(constraints, n),
            groups=[str(i // 4) for i in range(n)],
            n_labels=2,
            config=SearchConfig(**cfg),
            on_checkpoint=on_checkpoint,
        )
    )


TRUTH = [0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 0, 0, 1, 0, 1, 0, 0, 1, 1, 0, 1, 0, 0, 1]


async def test_recovers_latent_labels_up_to_symmetry() -> None:
    result = await make_search(LatentScorer(TRUTH), len(TRUTH), steps=80, seed=3).run()
    acc = sum(result.labels[i] == TRUTH[i] for i in range(len(TRUTH))) / len(TRUTH)
    assert max(acc, 1 - acc) >= 0.9
    assert set(result.labels) == set(range(len(TRUTH)))


async def test_paper_sum_objective_is_available_and_stalls_on_a_weak_model() -> None:
    # The paper's formula: each added example costs alpha * log P, so with random seeds
    # the search rarely grows D; the mean objective (default) labels everything.
    total = await make_search(
        LatentScorer(TRUTH), len(TRUTH), steps=80, seed=3, objective="sum"
    ).run()
    mean = await make_search(LatentScorer(TRUTH), len(TRUTH), steps=80, seed=3).run()
    assert len(mean.searched) > len(total.searched)
    state = await make_search(LatentScorer(TRUTH), len(TRUTH), objective="sum").evaluate(
        {0: 0, 1: 1}
    )
    assert state.energy == pytest.approx(
        50.0 * (state.predictions[0].logprobs[0] + state.predictions[1].logprobs[1])
    )


async def test_same_seed_same_run_and_different_seed_differs() -> None:
    a = await make_search(LatentScorer(TRUTH), len(TRUTH), steps=40, seed=7).run()
    b = await make_search(LatentScorer(TRUTH), len(TRUTH), steps=40, seed=7).run()
    c = await make_search(LatentScorer(TRUTH), len(TRUTH), steps=40, seed=8).run()
    assert a.labels == b.labels and a.trajectory == b.trajectory and a.energy == b.energy
    assert [s.example for s in a.trajectory] != [s.example for s in c.trajectory]


def test_a_fixed_number_of_steps_anneals_at_the_papers_temperature_throughout() -> None:
    paper = Schedule(SearchConfig(steps=10**6), 10)
    assert paper.temperature(1) == 10.0
    assert paper.temperature(100) == pytest.approx(10 / (1 + 0.99 * math.log(100)))
    assert Schedule(SearchConfig(steps=10**6, final_temperature=5.0), 10).temperature(10**6) == 5.0
    assert {paper.phase(n) for n in range(1, 1000)} == {Phase.ANNEAL}
    assert paper.first(Phase.COOL) is None and paper.first(Phase.SWEEP) is None
    assert paper.last == 10**6


def test_acceptance_is_guarded_against_overflow() -> None:
    assert acceptance(-1e9, 0.01) == 0.0
    assert acceptance(1e9, 0.01) == 1.0
    assert acceptance(-1.0, 1.0) == pytest.approx(math.exp(-1.0))


class TableScorer:
    """Predictions fixed per (target, own preferred label): lets a test set U by hand."""

    def __init__(self, prefs: dict[int, tuple[float, float]]) -> None:
        self.prefs = prefs

    async def predict_many(
        self, targets: Sequence[int], labels: Assignment
    ) -> dict[int, Prediction]:
        return {t: Prediction.from_raw(self.prefs[t]) for t in targets}


EXCLUSIVE = frozenset({(0, 1), (1, 0), (1, 1)})  # not both True


async def fix(
    scorer: TableScorer,
    constraints: Sequence[PairConstraint],
    labels: dict[int, int],
    alpha: float,
    cap: int | None = None,
) -> tuple[State, State, int]:
    """ConsistencyFix from ``labels``: the state before, the state after and the repairs."""
    consistency = Consistency(constraints, len(labels))
    energy = Energy(scorer, consistency, SearchConfig(alpha=alpha))
    state = await energy.evaluate(labels)
    fixed, repairs = await consistency_fix(
        state, consistency, energy.evaluate_many, random.Random(0), 2, cap=cap
    )
    return state, fixed, repairs


async def test_consistency_fix_enumerates_all_options_and_picks_the_best() -> None:
    # Both examples strongly "want" True, which is inconsistent; of the consistent options,
    # (True, False) is best because example 0 wants True more than example 1 does.
    scorer = TableScorer({0: (0.0, -5.0), 1: (0.0, -0.2)})
    pair = [PairConstraint(0, 1, EXCLUSIVE)]
    state, fixed, repairs = await fix(scorer, pair, {0: 0, 1: 0}, alpha=1.0)
    assert state.violated == {0}
    assert fixed.labels == {0: 0, 1: 1}
    assert not fixed.violated and repairs == 1


async def test_consistency_fix_keeps_state_unless_u_strictly_improves() -> None:
    # With a huge alpha, breaking the tie costs more predictability than the one
    # inconsistency it removes: the fix must leave the labels alone.
    scorer = TableScorer({0: (0.0, -5.0), 1: (0.0, -5.0)})
    pair = [PairConstraint(0, 1, EXCLUSIVE)]
    state, kept, repairs = await fix(scorer, pair, {0: 0, 1: 0}, alpha=1000.0)
    assert state.violated and kept.labels == {0: 0, 1: 0} and repairs == 0


async def test_consistency_fix_can_choose_both_false() -> None:
    # Both prefer False mildly when alone... but start inconsistent (both True): (F, F) is
    # consistent for mutual exclusion and must be among the options tried.
    scorer = TableScorer({0: (-2.0, 0.0), 1: (-2.0, 0.0)})
    pair = [PairConstraint(0, 1, EXCLUSIVE)]
    _, fixed, _ = await fix(scorer, pair, {0: 0, 1: 0}, alpha=1.0)
    assert fixed.labels == {0: 1, 1: 1}


async def test_consistency_fix_keeps_pinned_labels() -> None:
    # Example 0 mildly prefers False, example 1 strongly prefers True, both start True
    # (inconsistent). Unpinned, example 0 gives way; a pin holds whatever the preferences.
    scorer = TableScorer({0: (-0.2, 0.0), 1: (0.0, -5.0)})
    consistency = Consistency([PairConstraint(0, 1, EXCLUSIVE)], 2)
    energy = Energy(scorer, consistency, SearchConfig(alpha=0.1))
    state = await energy.evaluate({0: 0, 1: 0})
    free, _ = await consistency_fix(state, consistency, energy.evaluate_many, random.Random(0), 2)
    assert free.labels == {0: 1, 1: 0}  # unpinned, the weaker preference gives way
    pinned, repairs = await consistency_fix(
        state, consistency, energy.evaluate_many, random.Random(0), 2, pinned={1: 0}
    )
    assert pinned.labels == {0: 1, 1: 0} and repairs == 1
    kept, _ = await consistency_fix(
        state, consistency, energy.evaluate_many, random.Random(0), 2, pinned={0: 0}
    )
    assert kept.labels == {0: 0, 1: 1}  # the pin holds; the other example gives way


async def test_final_labels_respect_constraints_found_by_search() -> None:
    # Pairs (2k, 2k+1) are exclusive; the latent truth satisfies them, so the search should
    # end with no violated constraint.
    truth = [0, 1] * 8
    constraints = [PairConstraint(2 * k, 2 * k + 1, EXCLUSIVE) for k in range(8)]
    result = await make_search(LatentScorer(truth), 16, constraints, steps=60, seed=1).run()
    assert result.violated == []


async def test_no_assignment_is_scored_twice_by_an_honest_scorer() -> None:
    # The search itself may ask again (the scorer memoises); here we only check that the
    # search asks for every labeled example when evaluating, and nothing unlabeled.
    scorer = LatentScorer(TRUTH)
    await make_search(scorer, len(TRUTH), steps=5, seed=2).run()
    assert scorer.calls


async def test_resuming_from_any_checkpoint_ends_like_an_uninterrupted_run() -> None:
    constraints = [PairConstraint(2 * k, 2 * k + 1, frozenset({(0, 1), (1, 0)})) for k in range(4)]
    checkpoints: list[Checkpoint] = []
    search = make_search(
        LatentScorer(TRUTH),
        len(TRUTH),
        constraints,
        on_checkpoint=checkpoints.append,
        steps=40,
        seed=11,
    )
    full = await search.run()
    assert checkpoints[0].n == 0 and len(checkpoints) == 1 + sum(
        s.accepted for s in full.trajectory
    )
    for cp in checkpoints:
        restored = Checkpoint.from_json(json.loads(json.dumps(cp.to_json())))
        assert restored == cp
        scorer = LatentScorer(TRUTH)
        resumed = await make_search(scorer, len(TRUTH), constraints, steps=40, seed=11).run(
            restored
        )
        assert resumed.labels == full.labels
        assert resumed.energy == full.energy
        assert [s.n for s in resumed.trajectory] == list(range(cp.n + 1, 41))
        assert resumed.trajectory == full.trajectory[cp.n :]


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        {"n": -1, "labels": {}, "rng_state": []},
        {"n": 1, "labels": {"a": 0}},
        {"n": 1, "labels": {"0": 0}, "rng_state": [3, [1, 2], None]},
        {"n": 1, "labels": {"0": "True"}, "rng_state": list(random.Random(0).getstate())},
    ],
)
def test_malformed_checkpoints_are_refused(data: object) -> None:
    with pytest.raises(ValueError, match="checkpoint"):
        Checkpoint.from_json(data)


def test_incremental_sampling_weights_match_the_definition() -> None:
    """Unlabeled examples related to a labeled one (same group or a constraint partner) weigh
    ``related_weight``; the cached, incrementally updated weights must always say so."""
    n = 40
    constraints = [PairConstraint(k, k + 7, frozenset({(0, 1), (1, 0)})) for k in range(0, 30, 3)]
    groups = [None if i % 5 == 0 else str(i // 4) for i in range(n)]
    consistency = Consistency(constraints, n)
    sampler = Sampler(groups, consistency, {}, related_weight=100.0)
    rng = random.Random(5)
    labels: dict[int, int] = {}
    for _ in range(200):
        if rng.random() < 0.1 and labels:  # shrink now and then (resume, best state)
            labels = dict(rng.sample(sorted(labels.items()), len(labels) // 2))
        else:
            labels[rng.randrange(n)] = rng.randrange(2)
        near = {groups[j] for j in labels} - {None}
        expected = [
            100.0
            if i not in labels
            and (groups[i] in near or any(p in labels for p in consistency.partners(i)))
            else 1.0
            for i in range(n)
        ]
        assert sampler.cumulative(labels) == list(itertools.accumulate(expected))


async def test_consistency_fix_repairs_every_violated_pair_not_one() -> None:
    # Six exclusive pairs, all violated (every example wants True); each pair's best option
    # keeps the stronger example True. One call must repair all six (the reference repairs
    # each pair it examines; one sampled pair per round left five).
    prefs = {2 * k: (0.0, -3.0) for k in range(6)} | {2 * k + 1: (0.0, -0.5) for k in range(6)}
    constraints = [PairConstraint(2 * k, 2 * k + 1, EXCLUSIVE) for k in range(6)]
    state, fixed, repairs = await fix(
        TableScorer(prefs), constraints, dict.fromkeys(range(12), 0), 1.0
    )
    assert len(state.violated) == 6
    assert not fixed.violated and repairs == 6
    assert fixed.labels == {i: i % 2 for i in range(12)}
    _, capped, repairs = await fix(
        TableScorer(prefs), constraints, dict.fromkeys(range(12), 0), 1.0, cap=2
    )
    assert repairs == 2 and len(capped.violated) == 4


def test_converging_schedule_anneals_cools_then_sweeps_at_the_floor() -> None:
    cfg = SearchConfig()
    n = 50
    schedule, paper = Schedule(cfg, n), Schedule(SearchConfig(steps=10**6), n)
    phases = [schedule.phase(k) for k in range(1, 3 * n)]
    assert phases == [Phase.ANNEAL] * n + [Phase.COOL] * (n - 1) + [Phase.SWEEP] * n
    assert [schedule.first(p) for p in Phase] == [1, n + 1, 2 * n]
    assert all(schedule.temperature(k) == paper.temperature(k) for k in range(1, n + 1))
    assert schedule.temperature(n + 1) < paper.temperature(n)
    assert schedule.temperature(2 * n) == cfg.final_temperature
    temps = [schedule.temperature(k) for k in range(1, 3 * n)]
    assert all(a >= b for a, b in itertools.pairwise(temps))
    assert schedule.last == 10 * n + 100
    assert Schedule(SearchConfig(max_steps=7), n).last == 7


def test_acceptance_follows_the_phase() -> None:
    schedule, n = Schedule(SearchConfig(), 10), 10
    rng = random.Random(0)
    before = rng.getstate()
    # sweeps: strict improvements only, or an example that joins; no random draw
    assert not schedule.accepts(2 * n, 0.0, False, rng)
    assert schedule.accepts(2 * n, 1e-9, False, rng) and schedule.accepts(2 * n, -5.0, True, rng)
    # cooling: an unlabeled example always joins, whatever it costs
    assert schedule.accepts(n + 1, -1e9, True, rng)
    assert rng.getstate() == before
    # annealing (and cooling a labeled example): Metropolis, one draw when delta <= 0
    assert not schedule.accepts(1, -1e9, True, rng) and not schedule.accepts(
        n + 1, -1e9, False, rng
    )
    assert rng.getstate() != before
    draws = random.Random(3)
    expected = draws.random() < math.exp(-1.0 / schedule.temperature(5))
    assert schedule.accepts(5, -1.0, False, random.Random(3)) is expected


async def test_default_run_converges_and_reaches_a_fixed_point() -> None:
    """No fixed step count: the run ends after a sweep at the final temperature in which
    every example was proposed against an unchanged state and none was accepted."""
    scorer = LatentScorer(TRUTH)
    search = make_search(scorer, len(TRUTH), seed=3)
    result = await search.run()
    assert result.converged is True and result.stopped is None
    assert set(result.searched) == set(range(len(TRUTH)))  # every example joined the search
    assert result.never_reproposed == 0
    *sweep, complement = result.trajectory[-len(TRUTH) - 1 :]
    assert complement.example == -1 and not complement.accepted  # every label flipped
    last = [*sweep, complement]
    assert sorted(s.example for s in sweep) == list(range(len(TRUTH)))
    assert not any(s.accepted for s in last)
    assert all(s.temperature == search.config.final_temperature for s in last)
    # a fixed point: each label is the model's own prediction given all the others
    final = await scorer.predict_many(range(len(TRUTH)), result.labels)
    assert all(final[i].argmax() == result.labels[i] for i in range(len(TRUTH)))
    acc = sum(result.labels[i] == TRUTH[i] for i in range(len(TRUTH))) / len(TRUTH)
    assert max(acc, 1 - acc) == 1.0
    assert result.free_proposals >= len(TRUTH)  # the last sweep cost no model call


async def test_converging_run_stops_at_its_cap_and_says_so() -> None:
    result = await make_search(LatentScorer(TRUTH), len(TRUTH), seed=3, max_steps=30).run()
    assert result.converged is False and result.stopped == "max-steps"
    assert len(result.trajectory) == 30


async def test_fixed_steps_keep_the_papers_loop() -> None:
    result = await make_search(LatentScorer(TRUTH), len(TRUTH), steps=24, seed=3).run()
    assert result.converged is None and result.stopped is None
    assert len(result.trajectory) == 24
    assert all(s.temperature > 1.0 for s in result.trajectory)  # the paper's schedule


async def test_resuming_a_converging_run_ends_like_an_uninterrupted_one() -> None:
    checkpoints: list[Checkpoint] = []
    search = make_search(LatentScorer(TRUTH), len(TRUTH), on_checkpoint=checkpoints.append, seed=5)
    full = await search.run()
    assert full.converged
    for cp in checkpoints[:: max(1, len(checkpoints) // 6)]:
        resumed = await make_search(LatentScorer(TRUTH), len(TRUTH), seed=5).run(cp)
        assert resumed.labels == full.labels and resumed.converged
        assert resumed.trajectory == full.trajectory[cp.n :]
