"""The progress bar of ``icm label``: steps, starting where a resumed run stands, with the
labeled count, U, calls and an ETA that settles (``estimate.Eta``)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from tqdm import tqdm

from ..estimate import Eta, format_eta
from ..search.anneal import Step


def progress_bar(steps: int | None, done: int) -> tqdm[Any]:
    """Steps, starting at those a resumed run has done (``steps`` None: a converging run,
    whose length is not known, counts without a bar); the ETA is ours (``Eta``), since
    tqdm's follows the last steps' rate, which swings with each step's cost."""
    shape = "{l_bar}{bar}| {n_fmt}/{total_fmt}" if steps is not None else "{desc}: {n_fmt}"
    return tqdm(
        total=steps,
        initial=done,
        desc="icm",
        unit="step",
        file=sys.stderr,
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
