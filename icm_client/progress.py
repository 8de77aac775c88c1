"""Plan and progress of a labeling run, as ``icm label`` prints them: the plan line before
the first model call (``estimate.plan_label``), then a progress bar of steps, starting where
a resumed run stands, with the labeled count, U, calls and an ETA that settles
(``estimate.Eta``).

From Python, ``Progress`` is the same thing as one value to pass as ``label``'s ``on_step``::

    progress = icm.Progress(examples, task, config, client)  # prints the plan
    result = await icm.label(examples, task, client, config, on_step=progress)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from tqdm import tqdm

from .estimate import Eta, RunPlan, format_eta, plan_label
from .search.anneal import Step

if TYPE_CHECKING:
    from .backends.base import Backend
    from .dataset import Example
    from .run import LabelConfig
    from .tasks.base import Task


def progress_bar(steps: int | None, done: int, file: TextIO | None = None) -> tqdm[Any]:
    """Steps, starting at those a resumed run has done (``steps`` None: a converging run,
    whose length is not known, counts without a bar); the ETA is ours (``Eta``), since
    tqdm's follows the last steps' rate, which swings with each step's cost."""
    shape = "{l_bar}{bar}| {n_fmt}/{total_fmt}" if steps is not None else "{desc}: {n_fmt}"
    return tqdm(
        total=steps,
        initial=done,
        desc="icm",
        unit="step",
        file=file or sys.stderr,
        bar_format=shape + " [{elapsed}{postfix}]",
    )


def step_reporter(
    bar: tqdm[Any] | None, eta: Eta, calls: Callable[[], int]
) -> Callable[[Step], None]:
    """The search's ``on_step``: advance ``bar`` (None: quiet) and show the ETA."""
    started = time.monotonic()

    def on_step(step: Step) -> None:
        if bar is None:
            return
        bar.update(1)
        made = calls()
        left = eta.seconds_left(step.n, made, time.monotonic() - started)
        bar.set_postfix(
            labeled=step.labeled,
            U=f"{step.energy:.1f}",
            calls=made,
            eta=format_eta(left),
            refresh=False,
        )

    return on_step


class Progress:
    """``label``'s ``on_step`` that prints like ``icm label``: the plan when made (calls and
    prompt tokens, estimated from the prompts' sizes), then a progress bar with an ETA.
    ``client`` (a ``ScoringClient``, or a backend that counts its ``usage``) feeds the ETA;
    ``file``: where to print (default stderr). ``close()`` ends the bar (the last step
    does too, for a fixed number of steps)."""

    def __init__(
        self,
        examples: Sequence[Example],
        task: Task,
        config: LabelConfig,
        client: Backend | None = None,
        *,
        file: TextIO | None = None,
    ) -> None:
        self.plan: RunPlan = plan_label(examples, task, config)
        out = file or sys.stderr
        print(f"icm: {self.plan.line()}", file=out, flush=True)
        usage = client.usage if client is not None else None
        self._bar = progress_bar(config.search.steps, 0, out)
        self._steps = config.search.steps
        self._report = step_reporter(
            self._bar, Eta(self.plan), lambda: usage.calls if usage is not None else 0
        )

    def __call__(self, step: Step) -> None:
        self._report(step)
        if self._steps is not None and step.n >= self._steps:
            self.close()

    def close(self) -> None:
        self._bar.close()
