"""The few statistics an evaluation reports, without numpy.

* ``mean_ci``: the mean over seeds with a two-sided 95% Student-t interval,
  ``mean ± t(0.975, n-1) · sd / √n``. It measures how much the result depends on which
  demonstrations were drawn (and in which order), not the test set's own sampling error;
* ``binomial_half_width``: that sampling error, the normal-approximation 95% half-width of an
  accuracy measured on ``n`` test examples (``1.96 · √(p(1-p)/n)``);
* ``auroc``: the threshold-free ranking quality of a binary score. Small base models often
  carry the concept with a True/False bias that puts every argmax on one side; AUROC shows
  the concept where accuracy shows only the bias.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# two-sided 95% quantiles of Student's t, by degrees of freedom
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
_Z95 = 1.959963984540054


def t95(df: int) -> float:
    if df < 1:
        raise ValueError("a t interval needs at least two values")
    return _T95[df - 1] if df <= len(_T95) else _Z95


def mean_ci(values: Sequence[float]) -> tuple[float, float | None]:
    """(mean, half-width of the 95% interval); the half-width is None for fewer than two
    values (a deterministic condition has nothing to vary over)."""
    if not values:
        raise ValueError("no values")
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return mean, None
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, t95(n - 1) * math.sqrt(var / n)


def binomial_half_width(p: float, n: int) -> float:
    return _Z95 * math.sqrt(p * (1 - p) / n) if n else math.nan


def auroc(scores: Sequence[float], positive: Sequence[bool]) -> float | None:
    """P(score of a random positive > that of a random negative), ties counting half;
    None when one class is absent. O(n log n) by ranks."""
    pos = sum(positive)
    neg = len(positive) - pos
    if len(scores) != len(positive):
        raise ValueError("scores and labels differ in length")
    if pos == 0 or neg == 0:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    rank_sum = 0.0
    k = 0
    while k < len(order):  # average ranks over ties
        end = k
        while end + 1 < len(order) and scores[order[end + 1]] == scores[order[k]]:
            end += 1
        avg = (k + end) / 2 + 1
        rank_sum += avg * sum(positive[order[m]] for m in range(k, end + 1))
        k = end + 1
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)
