"""Train/test splits that keep related examples together.

A question's claims, a comparison and its swap, a city's two statements: if one of them is a
demonstration and the other a test example, the test example's answer leaks from its
partner's label (and the consistency relation itself would tie them). Splits are therefore
made over whole components (``tasks.components``), so a split never cuts a group or a
constraint.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from ..dataset import Example
from ..errors import ConfigError
from ..tasks.base import Task
from ..tasks.components import components


def split_by_group(
    examples: Sequence[Example], task: Task, test_fraction: float, seed: int = 0
) -> tuple[tuple[Example, ...], tuple[Example, ...]]:
    """(train, test): whole components drawn at random (``seed``) into the test split until it
    holds ``test_fraction`` of the examples (as near as whole components allow). Both keep
    the input order."""
    if not 0 < test_fraction < 1:
        raise ConfigError(f"--split must be between 0 and 1, got {test_fraction}", field="split")
    comps = components(examples, task)
    if len(comps) < 2:
        raise ConfigError(
            f"cannot split {len(examples)} examples: they form one consistency group",
            field="split",
        )
    random.Random(f"icm-split:{seed}").shuffle(comps)
    target = round(test_fraction * len(examples))
    test: set[int] = set()
    for comp in comps[:-1]:  # the last component always goes to train: neither side is empty
        if len(test) >= target:
            break
        if not test or abs(len(test) + len(comp) - target) <= abs(len(test) - target):
            test.update(comp)
    if not test:
        test.update(comps[0])
    train = tuple(ex for i, ex in enumerate(examples) if i not in test)
    held = tuple(ex for i, ex in enumerate(examples) if i in test)
    return train, held


def straddling(train: Sequence[Example], test: Sequence[Example], task: Task) -> int:
    """How many test examples share a group or a constraint with a train example (a leaky
    split of two files given by the user)."""
    n = len(train)
    out = 0
    for comp in components([*train, *test], task):
        if comp[0] < n <= comp[-1]:
            out += sum(1 for i in comp if i >= n)
    return out
