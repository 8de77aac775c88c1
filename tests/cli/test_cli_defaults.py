"""Each default is written once, in the pydantic configs; the CLI reads it from there.

A command's options left at their defaults must build exactly the config's defaults: an
option whose default drifts from its config field (a literal written again in argparse)
makes the two configs differ, and the failure names the field.
"""

from __future__ import annotations

import argparse

import pytest

from icm_client.cli import build_parser
from icm_client.cli import eval as eval_cmd
from icm_client.cli import label as label_cmd
from icm_client.cli import scale as scale_cmd
from icm_client.client.policies import DEFAULT_CONCURRENCY
from icm_client.connection import DEFAULT_TIMEOUT
from icm_client.evaluate import EvalConfig
from icm_client.run import LabelConfig
from icm_client.scale import ScaleConfig

MINIMAL = {
    "label": ["label", "in.jsonl", "--task", "cities", "--out", "out.jsonl"],
    "scale": ["scale", "in.jsonl", "--task", "cities", "--out", "out.jsonl"],
    "eval": ["eval", "in.jsonl", "--task", "cities", "--out", "out.json"],
}


def parse(command: str) -> argparse.Namespace:
    return build_parser().parse_args(MINIMAL[command])


def test_label_defaults_are_the_label_config_defaults() -> None:
    assert label_cmd._config(parse("label")) == LabelConfig()


def test_scale_defaults_are_the_scale_config_defaults() -> None:
    # Batch and demonstration budgets follow the context window (what is left beside the
    # longest example and its label, 16 tokens): a window that leaves the config's default.
    room = ScaleConfig().batch_tokens
    assert ScaleConfig().max_demo_tokens == room
    assert scale_cmd._config(parse("scale"), 0, room + 16) == ScaleConfig()


def test_eval_defaults_are_the_eval_config_defaults() -> None:
    assert eval_cmd._config(parse("eval")) == EvalConfig()


@pytest.mark.parametrize("command", sorted(MINIMAL))
def test_backend_defaults_are_the_connection_defaults(command: str) -> None:
    args = parse(command)
    assert (args.timeout, args.concurrency) == (DEFAULT_TIMEOUT, DEFAULT_CONCURRENCY)


def test_a_default_written_again_in_argparse_would_be_caught() -> None:
    args = parse("label")
    args.alpha = LabelConfig().search.alpha + 1  # what a drifted literal would give
    assert label_cmd._config(args) != LabelConfig()
