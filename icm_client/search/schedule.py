"""The schedule of a search: which phase step ``n`` is in, its temperature, and the rule that
accepts a proposal there.

A converging run over N examples (no fixed ``steps``) has three phases:

* ``ANNEAL``, steps 1..N: the paper's weighted random proposals at T0 / (1 + beta log n),
  accepted by the Metropolis rule;
* ``COOL``, steps N+1..2N-1: the temperature falls geometrically from T(N) to the final
  temperature, and a proposal that labels a still unlabeled example is always taken (every
  example joins the search before it cools down);
* ``SWEEP``, from step 2N: the final temperature; each example is proposed once per sweep,
  and only strict improvements of U are accepted.

A run of a fixed number of steps anneals throughout, at the paper's temperature.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass

from .config import SearchConfig


class Phase(enum.Enum):
    ANNEAL = "anneal"
    COOL = "cool"
    SWEEP = "sweep"


def acceptance(delta: float, temperature: float) -> float:
    """The Metropolis probability exp(delta / T), guarded: a very negative exponent is 0,
    never an OverflowError."""
    x = delta / temperature
    if x >= 0:
        return 1.0
    return 0.0 if x < -745 else math.exp(x)


@dataclass(frozen=True, slots=True)
class Schedule:
    """The phases and temperatures of one search over ``n_examples`` examples."""

    config: SearchConfig
    n_examples: int

    @property
    def converging(self) -> bool:
        """True when the run ends at convergence (no fixed ``steps``)."""
        return self.config.steps is None

    @property
    def last(self) -> int:
        """The most steps the search runs: ``steps``, or a converging run's cap."""
        if self.config.steps is not None:
            return self.config.steps
        if self.config.max_steps is not None:
            return self.config.max_steps
        return 10 * self.n_examples + 100

    def first(self, phase: Phase) -> int | None:
        """The first step of ``phase``; None for a phase that a fixed-steps run never has."""
        if phase is Phase.ANNEAL:
            return 1
        if not self.converging:
            return None
        return self.n_examples + 1 if phase is Phase.COOL else 2 * self.n_examples

    def phase(self, n: int) -> Phase:
        for phase in (Phase.SWEEP, Phase.COOL):
            first = self.first(phase)
            if first is not None and n >= first:
                return phase
        return Phase.ANNEAL

    def temperature(self, n: int) -> float:
        """T at step ``n``: the paper's while annealing, then a geometric fall from T(N) to
        the final temperature, reached at the first sweep."""
        final = self.config.final_temperature
        phase = self.phase(n)
        if phase is Phase.ANNEAL:
            return self._paper(n)
        if phase is Phase.SWEEP:
            return final
        start = self._paper(self.n_examples)
        ratio = final / start
        return max(final, start * math.pow(ratio, (n - self.n_examples) / self.n_examples))

    def accepts(self, n: int, delta: float, joins: bool, rng: random.Random) -> bool:
        """Whether step ``n`` takes a proposal that changes U by ``delta``; ``joins``: it
        labels a still unlabeled example. Draws from ``rng`` only under the Metropolis rule
        and only when ``delta`` is not positive."""
        phase = self.phase(n)
        if phase is Phase.SWEEP:  # strict improvements only (an unlabeled example joins)
            return delta > 0 or joins
        if phase is Phase.COOL and joins:  # every example joins before it cools down
            return True
        return delta > 0 or rng.random() < acceptance(delta, self.temperature(n))

    def _paper(self, n: int) -> float:
        """The paper's schedule, floored at the final temperature."""
        cfg = self.config
        return max(
            cfg.final_temperature, cfg.initial_temperature / (1.0 + cfg.cooling * math.log(n))
        )
