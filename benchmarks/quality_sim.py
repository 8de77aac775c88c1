"""Search quality on simulated models: do the default run and the recommended strategy reach
the labeling of highest full-context U?

    .venv/bin/python benchmarks/quality_sim.py [--quick] [--n 32 128] [--seeds 0 1 2]

For each regime of ``icm_client.testing`` (oracle, noisy p=0.9, in-context kernel model,
two-concept: the truth and a salient spurious feature independent of it, two-concept-tied:
both equally salient, label-copying), data shape (TruthfulQA-, GSM8K- and comparison-shaped),
scoring strategy (exact, bounded C=8) and N, the default ``label()`` run goes through the
real HTTP path (httpx2 MockTransport) on a model whose ceiling is computed offline: the
labeling of highest full-context U (every other example in context), the same bar for every
strategy. Reported per cell: agreement with gold per seed and the ceiling's, the U gap to
the ceiling (its full-context U minus the run's), the chains run and how far they agree
with the winner, runs that said "undecided", violated pairs left, prompt tokens per final
label and wall time; prompt tokens and wall time also as a ratio to ``exact`` in the same
run. ``exact`` runs for N <= 128 only (its cost grows as N^3 in tokens).
The reference implementation's best case at N = 128 is 720,600 prompt tokens per label
(``../shared/research/ref-cost.md``); target: the recommended strategy (bounded C=8) within
36,000 at the ceiling.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

from _grid import Row, run_grid

from icm_client.run import LabelConfig
from icm_client.search.config import SearchConfig
from icm_client.testing import REGIMES, SHAPES, SimulatedRun, simulate

RESULTS = Path(__file__).parent / "results"
STRATEGIES: dict[str, dict[str, Any]] = {
    "exact": {"strategy": "exact"},
    "bounded 8": {"strategy": "bounded", "context_size": 8},
    "bounded 16": {"strategy": "bounded", "context_size": 16},
    "bounded 8/1": {"strategy": "bounded", "context_size": 8, "context_share": 1},
    "bounded 16/1": {"strategy": "bounded", "context_size": 16, "context_share": 1},
    "bounded 8/8": {"strategy": "bounded", "context_size": 8, "context_share": 8},
    "bounded 16/8": {"strategy": "bounded", "context_size": 16, "context_share": 8},
}
REFERENCE_TOKENS_PER_LABEL_N128 = 720_600


def cell(runs: list[SimulatedRun]) -> dict[str, Any]:
    s = [r.result.summary for r in runs]
    others = [c.agreement for x in s for c in x.chains[1:]]
    return {
        "agreement": statistics.mean(r.agreement for r in runs),
        "agreement_per_seed": [round(r.agreement, 4) for r in runs],
        "ceiling": statistics.mean(r.ceiling.agreement for r in runs),
        "ceiling_per_seed": [round(r.ceiling.agreement, 4) for r in runs],
        "worst_gap": max(r.gap for r in runs),
        "u_gap": statistics.mean(r.energy_gap for r in runs),
        "u_gap_worst": max(r.energy_gap for r in runs),
        "chains": statistics.mean(len(x.chains) for x in s),
        "chains_agreement": min(others) if others else 1.0,
        "undecided": sum(x.undecided for x in s),
        "polished": statistics.mean(x.polished for x in s),
        "violated": statistics.mean(x.inconsistencies for x in s),
        "ceiling_violated": statistics.mean(r.ceiling.violated for r in runs),
        "converged": all(x.converged for x in s),
        "steps": statistics.mean(x.steps for x in s),
        "calls": statistics.mean(x.calls for x in s),
        "tokens_per_label": statistics.mean(
            x.prompt_tokens / r.n for x, r in zip(s, runs, strict=True)
        ),
        "tokens_per_label_worst": max(x.prompt_tokens / r.n for x, r in zip(s, runs, strict=True)),
        "wall_s": statistics.mean(r.wall_s for r in runs),
        "label_counts": [x.label_counts for x in s],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N=32, one seed (CI)")
    parser.add_argument("--n", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument(
        "--strategies",
        nargs="+",
        default=["exact", "bounded 8"],
        choices=list(STRATEGIES),
        help="'bounded C/S': C demonstrations shared by groups of S (default S: LabelConfig's)",
    )
    parser.add_argument("--max-exact", type=int, default=128, help="largest N run with exact")
    parser.add_argument("--out", type=Path, default=RESULTS / "quality_sim.json")
    args = parser.parse_args()
    if args.quick:
        args.n, args.seeds = [32], [0]
    exact: dict[tuple[str, str, int], Row] = {}  # each (regime, shape, N)'s exact row

    async def one_cell(regime: str, shape: str, n: int, name: str) -> list[Row]:
        if name == "exact" and (n > args.max_exact or regime == "label-copying"):
            return []  # label-copying has no ceiling to reach: bounded shows it
        runs = []
        for seed in args.seeds:
            config = LabelConfig(**STRATEGIES[name], search=SearchConfig(seed=seed))
            runs.append(await simulate(shape, regime, n, config, seed=seed))
        row = cell(runs)
        if name == "exact":
            exact[regime, shape, n] = row
        if (base := exact.get((regime, shape, n))) is not None:
            row["tokens_vs_exact"] = row["tokens_per_label"] / base["tokens_per_label"]
            row["wall_vs_exact"] = row["wall_s"] / base["wall_s"]
        print(
            f"{regime:13} {shape:10} N={n:<4} {name:10} agreement "
            f"{row['agreement_per_seed']} ceiling {row['ceiling']:.3f} "
            f"U gap {row['u_gap_worst']:.3f} chains {row['chains_agreement']:.2f} "
            f"tokens/label {row['tokens_per_label']:,.0f} {row['wall_s']:.1f} s",
            file=sys.stderr,
            flush=True,
        )
        return [row]

    headers = ["regime", "shape", "N", "strategy", "agreement per seed", "ceiling", "U gap"]
    headers += ["chains (agree)", "undecided", "violated (ceiling)", "tokens/label", "vs exact"]
    headers += ["wall s"]
    run_grid(
        "quality_sim",
        args,
        one_cell,
        headers,
        lambda r: [
            r["regime"],
            r["shape"],
            r["n"],
            r["strategy"],
            " / ".join(f"{a:.0%}" for a in r["agreement_per_seed"]),
            f"{r['ceiling']:.1%}",
            f"{r['u_gap_worst']:.3f}",
            f"{r['chains']:.1f} ({r['chains_agreement']:.0%})",
            r["undecided"],
            f"{r['violated']:.1f} ({r['ceiling_violated']:.1f})",
            round(r["tokens_per_label"]),
            f"{r['tokens_vs_exact']:.3f}" if "tokens_vs_exact" in r else "-",
            r["wall_s"],
        ],
        reference_tokens_per_label_n128=REFERENCE_TOKENS_PER_LABEL_N128,
    )


if __name__ == "__main__":
    main()
