"""The ``icm`` command: the one sync edge of the package (``anyio.run`` over the async API).

Each subcommand is a module with ``add_parser(sub)``, which registers an async ``run(args)``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

import anyio

from .. import __version__
from ..errors import ICMError, InputError
from . import doctor, export, label, report, review, scale, task
from . import eval as eval_cmd


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="icm",
        description="Label a dataset without human labels by Internal Coherence Maximization "
        "(ICM), from a base model's log-probabilities.",
        epilog="Start with: icm label sample:reviews --task reviews --strategy bounded "
        "--context-size 8 --calibrate --steps 40 --chains 1 --out labels.jsonl; check a task "
        "file with icm task check.",
    )
    parser.add_argument("--version", action="version", version=f"icm-client {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    label.add_parser(sub)
    doctor.add_parser(sub)
    for command in (scale, eval_cmd, export, report, review, task):
        command.add_parser(sub)
    return parser


TERMINATED = 143
"""Exit code after SIGTERM (128 + 15, as a shell reports it); Ctrl-C's is 130."""


class Terminated(Exception):
    """SIGTERM arrived (``timeout``, systemd, Kubernetes, Slurm): the command stopped as it
    does on Ctrl-C, its run's spending, checkpoint and summary written."""


async def _run(args: argparse.Namespace) -> int:
    """The command, cancelled like Ctrl-C cancels it when SIGTERM arrives."""
    if threading.current_thread() is not threading.main_thread():
        code: int = await args.run(args)  # signals reach the main thread only
        return code
    terminated = False
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            nonlocal terminated
            with anyio.open_signal_receiver(signal.SIGTERM) as signals:
                async for _ in signals:
                    terminated = True
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(watch)
        code = await args.run(args)
        tg.cancel_scope.cancel()
    if terminated:
        raise Terminated
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous: Any = signal.getsignal(signal.SIGTERM)
    try:
        code: int = anyio.run(_run, args)
    except (ICMError, ExceptionGroup) as caught:
        exc = _icm_error(caught)
        if exc is None:  # a bug, not a failure we meant: keep the traceback
            raise
        print(f"icm: error: {exc}", file=sys.stderr)  # bad input exits 2;
        return 2 if isinstance(exc, InputError) else 1  # a failing backend (after retries) 1
    except KeyboardInterrupt:
        print("icm: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("icm: terminated (SIGTERM); the same command continues the run", file=sys.stderr)
        return TERMINATED
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)  # as it was before the command
    return code


def _icm_error(exc: BaseException) -> ICMError | None:
    """``exc``, or the first error of a task group (concurrent requests that failed alike)
    when all of them are ours; None if any is not."""
    if isinstance(exc, ICMError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        leaves = [_icm_error(e) for e in exc.exceptions]
        if leaves and all(leaf is not None for leaf in leaves):
            return leaves[0]
    return None
