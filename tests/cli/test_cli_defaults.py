"""Options written by hand beside a config: left at their defaults they must build exactly
the config's defaults. (``icm label``'s and ``icm scale``'s settings are generated from their
models: tests/cli/test_fields.py.)
"""

from __future__ import annotations

import argparse

import pytest

from icm_client.cli import build_parser
from icm_client.cli import eval as eval_cmd
from icm_client.connection import DEFAULT_CONCURRENCY, DEFAULT_TIMEOUT
from icm_client.evaluate import EvalConfig

MINIMAL = {
    "label": ["label", "in.jsonl", "--task", "cities", "--out", "out.jsonl"],
    "scale": ["scale", "in.jsonl", "--task", "cities", "--out", "out.jsonl"],
    "eval": ["eval", "in.jsonl", "--task", "cities", "--out", "out.json"],
}


def parse(command: str) -> argparse.Namespace:
    return build_parser().parse_args(MINIMAL[command])


def test_eval_defaults_are_the_eval_config_defaults() -> None:
    assert eval_cmd._config(parse("eval")) == EvalConfig()


@pytest.mark.parametrize("command", sorted(MINIMAL))
def test_backend_defaults_are_the_connection_defaults(command: str) -> None:
    args = parse(command)
    assert (args.timeout, args.concurrency) == (DEFAULT_TIMEOUT, DEFAULT_CONCURRENCY)
