"""The default run and the recommended strategy reach what their model knows: simulated
models whose ceiling, the labeling of highest full-context U, is known and the same for
every strategy (``icm_client.testing.ceiling``).

Every run goes through the real HTTP path (httpx2 MockTransport; one case per regime on a
loopback server), so prompts are rendered, sent and parsed as in production; gold labels
reach the simulator only. Seeds 0, 1, 2 run on TruthfulQA-, GSM8K- and comparison-shaped
data respectively, so every regime and strategy meets every kind of relation; the
two-concept regime, where a spurious concept competes with the truth only on TruthfulQA-
shaped data (the relations of the others rule it out), runs seeds 0-2 there too.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable
from typing import Any

import pytest

from icm_client.advice import advise
from icm_client.diagnostics import diagnose, markdown
from icm_client.run import LabelConfig
from icm_client.search.config import SearchConfig
from icm_client.tasks import get_task
from icm_client.testing import (
    SHAPES,
    SimulatedRun,
    TwoConcept,
    ceiling,
    full_context_u,
    simulate,
    simulated_ceiling,
    simulated_model,
)

pytestmark = pytest.mark.anyio

SHAPE_OF_SEED = dict(enumerate(SHAPES))  # 0: truthfulqa, 1: gsm8k, 2: comparison
STRATEGIES = {  # the default, and the README's recommended cheap strategy
    "exact": {"strategy": "exact"},
    "bounded-8": {"strategy": "bounded", "context_size": 8},
}
#: Full-context U within this of the ceiling's is at the ceiling (examples the model
#: leaves near even odds can take either label at almost no cost in U).
AT_CEILING_U = 0.05


def config(strategy: str, seed: int, **search: int) -> LabelConfig:
    return LabelConfig(**STRATEGIES[strategy], search=SearchConfig(seed=seed, **search))  # type: ignore[arg-type]


def check_at_ceiling(run: SimulatedRun) -> None:
    s = run.result.summary
    where = f"{run.regime} {run.shape} N={run.n} {run.config.strategy} seed={run.seed}"
    assert s.converged is True and s.stopped is None, where
    assert s.unlabeled == 0 and s.labeled_by_search == run.n, where
    assert run.energy_gap <= AT_CEILING_U or run.agreement >= run.ceiling.agreement - 0.01, (
        f"{where}: agreement {run.agreement:.3f} (ceiling {run.ceiling.agreement:.3f}), "
        f"U {run.energy:.3f} < ceiling's {run.ceiling.energy:.3f}"
    )
    if run.regime == "oracle":
        assert run.agreement == 1.0, where
    if run.ceiling.violated == 0:  # a consistent labeling is at the ceiling
        assert s.inconsistencies == 0, f"{where}: {s.violated_pairs}"
    assert s.never_reproposed == 0, where
    assert s.chains and s.energy >= s.chains[0].energy - 1e-9, where  # polish only raises U


def check_reaches_gold(runs: list[SimulatedRun]) -> None:
    """Where gold is the ceiling's labeling: mean agreement >= 95%, no seed below 90%."""
    decided = [r for r in runs if r.ceiling.agreement >= 0.95]
    for r in decided:
        assert r.agreement >= 0.9, f"{r.shape} seed {r.seed}: {r.agreement:.3f}"
    if decided:
        assert statistics.mean(r.agreement for r in decided) >= 0.95


def grid(cases: Iterable[tuple[object, ...]], default: set[tuple[object, ...]]) -> list[Any]:
    """``cases`` as parameters: those in ``default`` run in the default suite, one case per
    behaviour; the rest of the grid (N = 128, the exact strategy's O(N^3) runs, every shape)
    is marked ``benchmark``, which ``.ci/run`` runs on its own."""
    return [
        pytest.param(*case, marks=() if case in default else pytest.mark.benchmark)
        for case in cases
    ]


def seeds(n: int, strategy: str) -> range:
    """Seeds 0-2; one for ``exact`` at N = 128 (3 chains of O(N^3) tokens each: about a
    minute a run here; ``benchmarks/quality_sim.py`` runs the rest)."""
    return range(1) if (n, strategy) == (128, "exact") else range(3)


@pytest.mark.parametrize(
    ("regime", "n", "strategy"),
    grid(
        itertools.product(("oracle", "noisy", "in-context"), (32, 128), STRATEGIES),
        {(regime, 32, "bounded-8") for regime in ("oracle", "noisy", "in-context")}
        | {("oracle", 32, "exact")},
    ),
)
async def test_runs_reach_the_ceiling(regime: str, n: int, strategy: str) -> None:
    runs = [
        await simulate(SHAPE_OF_SEED[seed], regime, n, config(strategy, seed), seed=seed)
        for seed in seeds(n, strategy)
    ]
    for run in runs:
        check_at_ceiling(run)
    check_reaches_gold(runs)


#: Where the spurious concept competes (TruthfulQA-shaped: no relation rules it out), and
#: the other shapes (their relations do).
TWO_CONCEPT = [("truthfulqa", seed) for seed in range(3)] + [("gsm8k", 1), ("comparison", 2)]


@pytest.mark.parametrize(
    ("n", "strategy"), grid(itertools.product((32, 128), STRATEGIES), {(32, "bounded-8")})
)
async def test_two_concepts_the_truth_wins(n: int, strategy: str) -> None:
    cases = TWO_CONCEPT[:3] if (n, strategy) == (128, "exact") else TWO_CONCEPT
    runs = [
        await simulate(shape, "two-concept", n, config(strategy, seed), seed=seed)
        for shape, seed in cases
    ]
    for run in runs:
        check_at_ceiling(run)
        if n == 128:  # at N = 32 the truth may win by less than e^2 in likelihood
            assert not run.result.summary.undecided, (run.shape, run.seed)
    check_reaches_gold(runs)


async def test_one_chain_ends_on_the_spurious_concept_where_several_do_not() -> None:
    """The regime is hard for the paper's single run: it ends on the spurious concept,
    and the chains find the truth (the zero-shot chain) and pick it by full-context U."""
    one = await simulate("truthfulqa", "two-concept", 32, config("exact", 1, chains=1), seed=1)
    assert one.agreement < 0.6 and one.energy_gap > 0.5
    many = await simulate("truthfulqa", "two-concept", 32, config("exact", 1), seed=1)
    assert many.agreement >= 0.95 and many.energy_gap <= AT_CEILING_U
    starts = {c.start: c for c in many.result.summary.chains}
    assert starts["zero-shot"].energy == max(c.energy for c in many.result.summary.chains)


@pytest.mark.parametrize("shape", grid(((shape,) for shape in SHAPES), {("truthfulqa",)}))
def test_gold_is_the_two_concept_ceiling(shape: str) -> None:
    """In the default settings, gold is the labeling of highest full-context U (up to
    examples near even odds), the spurious labeling and its complement are far below it,
    and the zero-shot prior is weak."""
    zero_shot = []
    search = SearchConfig()
    for n, seed in itertools.product((32, 128), range(3)):
        data, model = simulated_model(shape, "two-concept", n, seed)
        assert isinstance(model, TwoConcept)
        best = simulated_ceiling(shape, "two-concept", n, seed, search)
        assert best.agreement >= 0.95, (n, seed)
        assert best.energy >= full_context_u(model, data.gold)
        for h in (model.spurious_labels, [1 - y for y in model.spurious_labels]):
            assert full_context_u(model, h) < best.energy - 0.5
        if n == 128:
            prior = zip(model.prior, data.gold, strict=True)
            zero_shot.append(statistics.mean((p < 0) == y for p, y in prior))
    assert 0.62 <= statistics.mean(zero_shot) <= 0.72


def test_the_ceiling_is_the_best_labeling() -> None:
    """Against brute force over every labeling of a small set: the optimiser's restarts
    find the maximum of full-context U."""
    for shape, seed in itertools.product(SHAPES, range(2)):
        data = SHAPES[shape](10, seed)
        model = TwoConcept(get_task(data.task), data.examples, data.gold, seed=seed)
        brute = max(
            full_context_u(model, labels) for labels in itertools.product((0, 1), repeat=10)
        )
        assert ceiling(model).energy == pytest.approx(brute, abs=1e-9), (shape, seed)


async def test_full_context_u_is_what_an_exact_run_optimises() -> None:
    """``full_context_u`` computed from the model equals the U the exact run computed from
    the scores it received over HTTP."""
    run = await simulate("gsm8k", "in-context", 32, config("exact", 0), seed=0)
    assert run.energy == pytest.approx(run.result.summary.energy, abs=1e-6)


@pytest.mark.parametrize(
    "regime",
    grid([("oracle",), ("noisy",), ("in-context",), ("two-concept",)], {("oracle",)}),
)
async def test_on_a_loopback_server_too(regime: str) -> None:
    run = await simulate("gsm8k", regime, 32, config("bounded-8", 4), seed=4, loopback=True)
    check_at_ceiling(run)
    assert run.server_requests >= run.result.summary.calls  # every score crossed the socket


async def test_the_ceiling_is_below_gold_where_the_model_is_wrong() -> None:
    """The ceilings are not trivially 100%: a noisy model's confident mistakes and an
    in-context model's outliers stay wrong, and the run still reaches the ceiling."""
    noisy = await simulate("truthfulqa", "noisy", 128, config("bounded-8", 0), seed=0)
    assert 0.8 < noisy.ceiling.agreement < 1.0
    check_at_ceiling(noisy)
    in_context = await simulate("truthfulqa", "in-context", 128, config("bounded-8", 0), seed=0)
    assert in_context.ceiling.agreement < 1.0
    check_at_ceiling(in_context)


@pytest.mark.parametrize("shape", grid([("truthfulqa",), ("gsm8k",)], {("truthfulqa",)}))
async def test_a_label_copying_model_ends_with_the_collapse_warning(shape: str) -> None:
    # (On comparison data the asymmetry relation forces one True per pair: no collapse.)
    run = await simulate(shape, "label-copying", 64, config("bounded-8", 0), seed=0)
    r = run.result
    d = diagnose(r.summary.model_dump(), r.trajectory, [row.model_dump() for row in r.rows])
    assert d.collapse != "none", r.summary.label_counts
    assert {"all-same", "near-constant"} & {f.code for f in d.warnings}


async def test_convergence_costs_no_call_once_the_labels_settle() -> None:
    """The final sweeps propose every example against an unchanged state: answered from the
    predictions the search holds, they cost nothing and the summary says so."""
    run = await simulate("gsm8k", "oracle", 32, config("exact", 0), seed=0)
    s = run.result.summary
    assert s.free_proposals >= run.n
    sweep = run.result.trajectory[-run.n - 1 : -1]
    assert not any(step["accepted"] for step in sweep)
    assert s.calls == run.server_prompts  # nothing was asked twice


async def test_pairs_left_violated_are_counted_and_listed_in_the_report() -> None:
    # A noisy model confident in two contradicting solutions: at N=32 keeping both beats
    # repairing (alpha / N outweighs one violation), so the ceiling itself leaves pairs.
    run = await simulate("gsm8k", "noisy", 32, config("exact", 1), seed=1)
    s = run.result.summary
    assert s.inconsistencies == run.ceiling.violated > 0
    assert len(s.violated_pairs) == s.inconsistencies
    r = run.result
    d = diagnose(s.model_dump(), r.trajectory, [row.model_dump() for row in r.rows])
    report = markdown(d, s.model_dump())
    assert "## Violated pairs left" in report
    for a, b, why in s.violated_pairs:
        assert f"| {a} | {b} | {why} |" in report


async def test_a_run_says_when_the_model_does_not_decide() -> None:
    """Truth and spurious concept equally salient: two chains end on different labelings
    whose full-context likelihoods are within e^2 of each other. The run does not present
    one as the answer silently: the summary flags it, and the warning and advice say what
    to do; a run whose chains agree does not."""
    run = await simulate("truthfulqa", "two-concept-tied", 32, config("exact", 1), seed=1)
    s = run.result.summary
    assert s.undecided and len(s.chains) >= 2
    assert min(c.agreement for c in s.chains) < 0.9
    d = diagnose(s.model_dump(), run.result.trajectory, [r.model_dump() for r in run.result.rows])
    assert "undecided" in {f.code for f in d.warnings}
    advice = " ".join(advise(d, s.model_dump()))
    assert "more examples" in advice and "larger base model" in advice and "--pin" in advice
    report = markdown(d, s.model_dump())
    assert "## Chains" in report and "zero-shot" in report
    decided = await simulate("truthfulqa", "two-concept", 32, config("exact", 0), seed=0)
    assert not decided.result.summary.undecided
