"""The labeling options that ``icm label`` and ``icm scale`` share: every field of
``LabelConfig`` (the scoring strategy) and of its ``SearchConfig``, generated from them."""

from __future__ import annotations

import argparse
from typing import Any

from ..run import LabelConfig
from .fields import Flag, add_options, read

FLAGS = {"context_share": Flag(metavar="N"), "chains": Flag(metavar="K")}


def add_label_options(group: Any, defaults: LabelConfig) -> None:
    """An option for each setting of ``defaults``, defaulting to its value there."""
    add_options(group, defaults, flags=FLAGS)


def label_config(args: argparse.Namespace, defaults: LabelConfig) -> LabelConfig:
    """The ``LabelConfig`` those options give (a ``ConfigError`` naming a bad one)."""
    return read(defaults, args, flags=FLAGS)
