"""Process helpers for the tests that start, interrupt and watch processes: whether one is
still running, and a child that Ctrl-C reaches."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

HANG_S = 1800.0
"""Seconds after which a test gives up on a process or a wait: a guard against a hung
process hanging CI forever, never a timing assertion. A busy machine makes a test slower,
not red; how fast things are is what ``benchmarks/`` measure."""


def alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie is gone for our purposes (reaped, or about to be)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def gone_soon(pid: int, seconds: float = HANG_S) -> bool:
    """Whether ``pid`` has stopped within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def ctrl_c_reaches_it() -> None:
    """``preexec_fn`` for a CLI a test interrupts with SIGINT. A test run started as a shell's
    background job ignores SIGINT and its children inherit that, so the interrupt would
    never arrive; in a terminal, where a user presses Ctrl-C, it is not ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
