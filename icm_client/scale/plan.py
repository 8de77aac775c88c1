"""How a large dataset is cut: an ICM seed set in batches that each fit one context, and the
rest in chunks for propagation. Every cut runs between components (examples joined by a
group or a constraint), so no consistency relation is ever split.

A batch is sized so that all its examples, rendered and labeled, fit in ``batch_tokens``:
then every example can be scored with all the others of its batch in context (the
``exact`` strategy, the paper's mutual predictability over the batch). Tokens are
estimated as in ``scoring.manyshot`` (characters / 4), with no tokenizer round trips.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from ..dataset import Example
from ..errors import ConfigError
from ..scoring.manyshot import estimate_tokens
from ..tasks.base import Task, demo_text
from ..tasks.components import components


@dataclass(frozen=True)
class Plan:
    """Indices into the dataset: ICM ``batches`` (the seed set) and propagation ``chunks``."""

    batches: tuple[tuple[int, ...], ...]
    chunks: tuple[tuple[int, ...], ...]

    @property
    def seed_size(self) -> int:
        return sum(len(b) for b in self.batches)

    @property
    def rest_size(self) -> int:
        return sum(len(c) for c in self.chunks)

    def to_json(self) -> dict[str, list[list[int]]]:
        return {
            "batches": [list(b) for b in self.batches],
            "chunks": [list(c) for c in self.chunks],
        }


def example_tokens(task: Task, example: Example) -> int:
    """An example's estimated cost as a demonstration: rendered, with the longest label."""
    return estimate_tokens(demo_text(task.render(example), max(task.labels, key=len)))


def pack(
    comps: Sequence[Sequence[int]], cost: Sequence[int], budget: int, what: str
) -> list[tuple[int, ...]]:
    """Components, in the given order, into consecutive bins of at most ``budget`` tokens.

    Order is kept (no bin packing by size): a batch is a random draw of components, not a
    bin of same-sized ones, so that long and short examples are demonstrations for each other.
    """
    bins: list[tuple[int, ...]] = []
    current: list[int] = []
    used = 0
    for comp in comps:
        size = sum(cost[i] for i in comp)
        if size > budget:
            raise ConfigError(
                f"a consistency group of {len(comp)} examples needs ~{size} tokens, more than "
                f"the {what} of {budget}: raise it (--context-window) or split the group "
                f"(first example at index {comp[0]})"
            )
        if current and used + size > budget:
            bins.append(tuple(sorted(current)))
            current, used = [], 0
        current += comp
        used += size
    if current:
        bins.append(tuple(sorted(current)))
    return bins


def plan(
    examples: Sequence[Example],
    task: Task,
    *,
    batch_tokens: int,
    seed_examples: int | None,
    chunk_size: int,
    seed: int = 0,
) -> Plan:
    """Draw the seed set (whole components at random, about ``seed_examples`` of them; all
    examples when None), cut it into batches of ``batch_tokens``, and the rest, in input
    order, into chunks of about ``chunk_size`` examples."""
    if batch_tokens < 1:
        raise ConfigError(f"the batch token budget must be positive, got {batch_tokens}")
    if chunk_size < 1:
        raise ConfigError(f"--chunk-size must be at least 1, got {chunk_size}")
    if seed_examples is not None and seed_examples < 1:
        raise ConfigError(f"--seed-examples must be at least 1, got {seed_examples}")
    comps = components(examples, task)
    order = list(range(len(comps)))
    random.Random(f"icm-scale-seed-set:{seed}").shuffle(order)
    target = len(examples) if seed_examples is None else min(seed_examples, len(examples))
    chosen: list[list[int]] = []
    taken = 0
    for k in order:
        if taken >= target:
            break
        chosen.append(comps[k])
        taken += len(comps[k])
    cost = [example_tokens(task, ex) for ex in examples]
    batches = pack(chosen, cost, batch_tokens, "batch token budget")
    in_seed = {i for comp in chosen for i in comp}
    rest = [comp for comp in comps if comp[0] not in in_seed]
    rest.sort(key=lambda comp: comp[0])
    chunks: list[tuple[int, ...]] = []
    current: list[int] = []
    for comp in rest:
        current += comp
        if len(current) >= chunk_size:
            chunks.append(tuple(sorted(current)))
            current = []
    if current:
        chunks.append(tuple(sorted(current)))
    return Plan(tuple(batches), tuple(chunks))
