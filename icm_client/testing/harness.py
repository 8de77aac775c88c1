"""One labeling run on a simulated model, measured against its ceiling.

Shared by the search-quality tests and ``benchmarks/quality_sim.py``: the data are made,
the model is built with the gold labels, ``label()`` runs through the real HTTP path (in
memory, or on a loopback server), and the result is compared with the model's ceiling: the
labeling of highest full-context U, the same for every strategy (computed once per model).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..backends import OpenAICompletions
from ..run import LabelConfig, LabelResult, label
from ..search.config import SearchConfig
from ..tasks import get_task
from ..tasks.base import Task
from .ceiling import Ceiling, ceiling, full_context_u
from .data import SHAPES, SimulatedData
from .models import InContext, LabelCopying, Noisy, Oracle, SimulatedModel, TwoConcept
from .protocol import CompletionsApp
from .server import MOCK_URL, LoopbackServer, mock_client

ModelFactory = Callable[[Task, SimulatedData, int], SimulatedModel]

REGIMES: dict[str, ModelFactory] = {
    "oracle": lambda task, data, seed: Oracle(task, data.examples, data.gold),
    "noisy": lambda task, data, seed: Noisy(task, data.examples, data.gold, 0.9, seed=seed),
    "in-context": lambda task, data, seed: InContext(task, data.examples, data.gold, seed=seed),
    "label-copying": lambda task, data, seed: LabelCopying(task, data.examples, data.gold),
    "two-concept": lambda task, data, seed: TwoConcept(task, data.examples, data.gold, seed=seed),
    "two-concept-tied": lambda task, data, seed: TwoConcept(
        task, data.examples, data.gold, spurious=1.0, seed=seed
    ),
}
"""The simulated regimes by name, each built from (task, data, seed). In "two-concept-tied"
the spurious concept is as salient as the truth: the model may not decide between them."""


@dataclass(frozen=True)
class SimulatedRun:
    shape: str
    regime: str
    n: int
    seed: int
    config: LabelConfig
    result: LabelResult
    ceiling: Ceiling
    agreement: float  # of the run's final labels with gold
    energy: float  # full-context U of the run's final labels
    wall_s: float
    server_prompts: int  # completions the server computed
    server_requests: int  # HTTP requests it answered

    @property
    def gap(self) -> float:
        """Ceiling minus agreement (negative: the run beat the ceiling)."""
        return self.ceiling.agreement - self.agreement

    @property
    def energy_gap(self) -> float:
        """The ceiling's full-context U minus the run's (about 0 at the ceiling)."""
        return self.ceiling.energy - self.energy


@functools.lru_cache(maxsize=256)
def simulated_model(
    shape: str, regime: str, n: int, seed: int = 0
) -> tuple[SimulatedData, SimulatedModel]:
    """The data and model that ``simulate`` uses (built once per process)."""
    data = SHAPES[shape](n, seed)
    return data, REGIMES[regime](get_task(data.task), data, seed)


@functools.lru_cache(maxsize=256)
def simulated_ceiling(
    shape: str, regime: str, n: int, seed: int = 0, search: SearchConfig | None = None
) -> Ceiling:
    """The ceiling that ``simulate`` judges a run against (computed once per process)."""
    return ceiling(simulated_model(shape, regime, n, seed)[1], search)


async def simulate(
    shape: str,
    regime: str,
    n: int,
    config: LabelConfig,
    *,
    seed: int = 0,
    loopback: bool = False,
) -> SimulatedRun:
    """Label ``n`` examples shaped like ``shape`` (a key of ``data.SHAPES``) on the
    ``regime`` model (a key of ``REGIMES``), data and model drawn from ``seed``; the search
    seed is ``config.search.seed``."""
    data, model = simulated_model(shape, regime, n, seed)
    task = model.task
    app = CompletionsApp(model)
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if loopback:
            server = stack.enter_context(LoopbackServer(app))
            backend = OpenAICompletions(server.base_url, app.name)
        else:
            backend = OpenAICompletions(MOCK_URL, app.name, client=mock_client(app))
        try:
            result = await label(data.examples, task, backend, config)
        finally:
            await backend.aclose()
    wall = time.perf_counter() - start
    best = simulated_ceiling(shape, regime, n, seed, config.search)
    words = [w.strip() for w in task.labels]
    agreement = sum(
        row.label == words[y] for row, y in zip(result.rows, data.gold, strict=True)
    ) / len(data.gold)
    # an example a budget-stopped run never reached counts as the second label
    labels = [words.index(row.label) if row.label in words else 1 for row in result.rows]
    return SimulatedRun(
        shape,
        regime,
        n,
        seed,
        config,
        result,
        best,
        agreement,
        full_context_u(model, labels, config.search),
        wall,
        app.prompts,
        sum(app.requests.values()),
    )
