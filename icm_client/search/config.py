"""The search's settings: the paper's annealing schedule and the choices around it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SearchConfig(BaseModel):
    """Annealing settings; the defaults are the paper's."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    alpha: float = Field(
        50.0,
        gt=0,
        description="weight of mutual predictability against the inconsistency I(D) in "
        "U = alpha * P(D) - I(D)",
    )
    initial_temperature: float = Field(
        10.0, gt=0, description="T0 of the annealing schedule T = T0 / (1 + beta * log n)"
    )
    final_temperature: float = Field(
        0.01, gt=0, description="the schedule's floor: the temperature never falls below it"
    )
    cooling: float = Field(0.99, gt=0, description="beta in T = T0 / (1 + beta * log n)")
    initial_labeled: int = Field(8, ge=1, description="K random labels to start from")
    steps: int | None = Field(
        None,
        ge=0,
        description="a fixed number of annealing steps at the paper's schedule, then stop "
        "(no convergence phase); default: run until the search has converged, at most "
        "max_steps",
    )
    max_steps: int | None = Field(
        None,
        ge=1,
        description="cap of a converging run; the summary says when it was hit; default: "
        "10 x the dataset size + 100",
    )
    fix_iterations: int | None = Field(
        None,
        ge=0,
        description="cap of ConsistencyFix repairs per call; default: repair until no "
        "consistent option of any violated pair raises U",
    )
    related_weight: float = Field(
        100.0, gt=0, description="sampling weight of unlabeled examples related to a labeled one"
    )
    objective: Literal["mean", "sum"] = Field(
        "mean",
        description="mean: alpha times the average log P(y_i | x_i, D \\ i), as the released "
        "reference code (which produced the paper's numbers) normalises; sum: the paper's "
        "formula alpha * sum_i log P. Under sum every added example costs alpha times its "
        "own log-probability, and the search stalls near its K random seeds unless the "
        "model is near-certain (see tests/search/test_search.py)",
    )
    chains: int = Field(
        3,
        ge=1,
        description="independent searches over the same scores: the paper's annealing from "
        "random seeds (seed, seed + 2, ...) and a greedy ascent from the zero-shot labels "
        "(the second chain); the labeling of highest full-context U wins (search/chains.py), "
        "and the run warns when two end on different labelings with nearly equal U; "
        "1: the paper's single run, its result neither judged nor polished",
    )
    seed: int = Field(
        0,
        description="the search's random draws (chain k draws from seed + k) and, under "
        "'bounded', the demonstrations drawn",
    )
