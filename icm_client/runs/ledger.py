"""What a run has cost over its whole life, across the invocations that resumed it.

A run directory outlives a single ``icm label`` command: one is stopped by a budget or by
Ctrl-C, the next continues it, a third re-runs it from the cache. ``RUN_DIR/ledger.json``
adds each invocation's figures to the run's totals when the invocation ends, however it
ends, so the summary can say both what the run cost in total and what the last invocation
did; budgets (``--max-calls``/``--max-tokens``) are spent against the totals.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from ..backends.base import Usage
from ..errors import ConfigError
from .atomic import atomic

LEDGER = "ledger.json"


class Figures(BaseModel):
    """Calls, tokens, cache hits, retries and wall time: of one invocation or a total."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    calls: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    cache_hits: int = 0
    retries: int = 0
    wall_time_s: float = 0.0

    @classmethod
    def of(cls, usage: Usage, wall_time_s: float) -> Figures:
        return cls(
            calls=usage.calls,
            prompt_tokens=usage.prompt_tokens,
            cached_tokens=usage.cached_tokens,
            cache_hits=usage.cache_hits,
            retries=usage.retries,
            wall_time_s=round(wall_time_s, 3),
        )

    def __add__(self, other: Figures) -> Figures:
        return Figures(
            calls=self.calls + other.calls,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            cache_hits=self.cache_hits + other.cache_hits,
            retries=self.retries + other.retries,
            wall_time_s=round(self.wall_time_s + other.wall_time_s, 3),
        )


class Ledger(BaseModel):
    """A run's totals over ``invocations`` commands, and the last invocation's own figures.
    ``unfinished`` counts invocations that ended early (Ctrl-C, a failing backend)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    invocations: int = 0
    unfinished: int = 0
    total: Figures = Figures()
    last: Figures = Figures()

    def add(self, figures: Figures, *, finished: bool) -> Ledger:
        return Ledger(
            invocations=self.invocations + 1,
            unfinished=self.unfinished + (not finished),
            total=self.total + figures,
            last=figures,
        )


def load_ledger(run_dir: str | os.PathLike[str]) -> Ledger:
    """The run's ledger so far (an empty one for a new run)."""
    path = Path(run_dir) / LEDGER
    if not path.is_file():
        return Ledger()
    try:
        return Ledger.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValidationError) as exc:
        raise ConfigError(f"cannot read the run's ledger: {exc}", location=str(path)) from None


def record(run_dir: str | os.PathLike[str], figures: Figures, *, finished: bool) -> Ledger:
    """Add one invocation to the run's ledger (written atomically) and return it."""
    ledger = load_ledger(run_dir).add(figures, finished=finished)
    path = Path(run_dir) / LEDGER
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with atomic(path) as fh:
        fh.write(ledger.model_dump_json(indent=2) + "\n")
    return ledger


def remaining(budget: int | None, spent: int) -> int | None:
    """What is left of a budget for the whole run after ``spent`` (never below 0)."""
    return None if budget is None else max(budget - spent, 0)
