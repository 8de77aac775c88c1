"""The default run reaches what its model knows: simulated models whose ceiling is known.

Every run goes through the real HTTP path (httpx2 MockTransport; one case per regime on a
loopback server), so prompts are rendered, sent and parsed as in production; gold labels
reach the simulator only. Seeds 0, 1, 2 run on TruthfulQA-, GSM8K- and comparison-shaped
data respectively, so every regime and strategy meets every kind of relation.
"""

from __future__ import annotations

import itertools

import pytest

from icm_client.diagnostics import diagnose, markdown
from icm_client.run import LabelConfig
from icm_client.search.anneal import SearchConfig
from icm_client.testing import SHAPES, SimulatedRun, simulate

pytestmark = pytest.mark.anyio

SHAPE_OF_SEED = dict(enumerate(SHAPES))  # 0: truthfulqa, 1: gsm8k, 2: comparison
STRATEGIES = {
    "exact": {"strategy": "exact"},
    "bounded-8": {"strategy": "bounded", "context_size": 8},
    "bounded-16": {"strategy": "bounded", "context_size": 16},
}
CASES = list(itertools.product(("oracle", "noisy", "in-context"), (32, 128), STRATEGIES, range(3)))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def config(strategy: str, seed: int) -> LabelConfig:
    return LabelConfig(**STRATEGIES[strategy], search=SearchConfig(seed=seed))  # type: ignore[arg-type]


def check_at_ceiling(run: SimulatedRun) -> None:
    s = run.result.summary
    where = f"{run.regime} {run.shape} N={run.n} {run.config.strategy} seed={run.seed}"
    assert s.converged is True and s.stopped is None, where
    assert s.unlabeled == 0 and s.labeled_by_search == run.n, where
    assert run.agreement >= run.ceiling.agreement - 0.01, (
        f"{where}: agreement {run.agreement:.3f} < ceiling {run.ceiling.agreement:.3f}"
    )
    if run.regime == "oracle":
        assert run.agreement == 1.0, where
    if run.ceiling.violated == 0:  # a consistent labeling is at the ceiling
        assert s.inconsistencies == 0, f"{where}: {s.violated_pairs}"
    assert s.never_reproposed == 0, where


@pytest.mark.parametrize(("regime", "n", "strategy", "seed"), CASES)
async def test_default_run_reaches_the_ceiling(
    regime: str, n: int, strategy: str, seed: int
) -> None:
    check_at_ceiling(
        await simulate(SHAPE_OF_SEED[seed], regime, n, config(strategy, seed), seed=seed)
    )


@pytest.mark.parametrize("regime", ["oracle", "noisy", "in-context"])
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


@pytest.mark.parametrize("shape", ["truthfulqa", "gsm8k"])
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
