"""Datasets larger than one context: ICM in batches on a seed set, propagation to the rest.

    result = await label_large(examples, task, backend, ScaleConfig(seed_examples=2048))

See ``pipeline`` for the steps and the run directory, ``plan`` for how the data is cut.
"""

from .pipeline import ScaleConfig, ScaleResult, ScaleRow, ScaleSummary, label_large
from .plan import Plan, plan
from .propagate import Propagated, propagate_chunk

__all__ = [
    "Plan",
    "Propagated",
    "ScaleConfig",
    "ScaleResult",
    "ScaleRow",
    "ScaleSummary",
    "label_large",
    "plan",
    "propagate_chunk",
]
