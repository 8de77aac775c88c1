"""Evaluation: how good are the labels, next to what cheaper labelings would have given?

``evaluate`` predicts a held-out test split by many-shot prompting, with demonstrations
labeled by ICM and by the baselines (``core``); ``split_by_group`` makes the held-out split
without cutting a consistency group (``split``).
"""

from __future__ import annotations

from .core import CONDITIONS, Condition, EvalConfig, evaluate
from .results import ConditionResult, EvalResult, SeedResult
from .split import split_by_group, straddling

__all__ = [
    "CONDITIONS",
    "Condition",
    "ConditionResult",
    "EvalConfig",
    "EvalResult",
    "SeedResult",
    "evaluate",
    "split_by_group",
    "straddling",
]
