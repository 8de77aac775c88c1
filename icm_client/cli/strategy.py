"""The scoring-strategy options that ``icm label`` and ``icm scale`` share, read once."""

from __future__ import annotations

import argparse
from typing import Any, get_args

from ..run import LabelConfig, Strategy


def add_strategy_arguments(group: Any, defaults: LabelConfig) -> None:
    """``--strategy``, ``--context-size`` and ``--context-share``, defaulting to ``defaults``."""
    group.add_argument("--strategy", choices=list(get_args(Strategy)), default=defaults.strategy)
    group.add_argument(
        "--context-size",
        type=int,
        default=defaults.context_size,
        help="demonstrations for 'bounded'",
    )
    group.add_argument(
        "--context-share",
        type=int,
        default=defaults.context_share,
        metavar="N",
        help="'bounded': N examples take the same demonstrations, so a server's prefix cache "
        "computes their shared context once",
    )


def strategy_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The ``LabelConfig`` fields those options set."""
    return {
        "strategy": args.strategy,
        "context_size": args.context_size,
        "context_share": args.context_share,
    }
