"""What one search is given, as one value: ``ICMSearch`` runs it, ``Chains`` varies its
scorer, seed and checkpoint callback from chain to chain."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..scoring.base import Scorer
from ..tasks.base import Label
from .config import SearchConfig
from .consistency import Consistency
from .state import Checkpoint, Step


@dataclass(frozen=True, slots=True)
class SearchInputs:
    """The scores, the task's structure over ``len(groups)`` examples, the settings and the
    callbacks of a search. ``groups[i]`` relates examples for the sampling weight;
    ``consistency`` holds the task's pairwise constraints; ``pinned`` labels (a human's) are
    part of the labeled set from the start and never change."""

    scorer: Scorer
    consistency: Consistency
    groups: Sequence[str | None]
    n_labels: int
    config: SearchConfig = field(default_factory=SearchConfig)
    on_step: Callable[[Step], None] | None = None
    on_checkpoint: Callable[[Checkpoint], None] | None = None
    pinned: Mapping[int, Label] = field(default_factory=dict, kw_only=True)
