"""Each default is written once, in the pydantic configs; the CLI reads it from there.

A command's options left at their defaults must build exactly the config's defaults: an
option whose default drifts from its config field (a literal written again in argparse)
makes the two configs differ, and the failure names the field.
"""

from __future__ import annotations

import argparse

import pytest

from icm_client.backends.config import BackendConfig
from icm_client.cli import build_parser
from icm_client.cli import eval as eval_cmd
from icm_client.cli import label as label_cmd
from icm_client.cli import scale as scale_cmd
from icm_client.cli.backend_options import backend_config
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
def test_backend_defaults_are_the_backend_config_defaults(command: str) -> None:
    assert backend_config(parse(command)) == BackendConfig()


@pytest.mark.parametrize("command", sorted(MINIMAL))
def test_every_command_takes_the_backend_options_into_one_config(command: str) -> None:
    argv = [*MINIMAL[command], "--base-url", "http://a/v1", "--base-url", "http://b/v1"]
    argv += ["--concurrency", "3", "--max-response-mb", "0.5", "--api", "chat", "--top-k", "5"]
    config = backend_config(build_parser().parse_args(argv))
    assert config == BackendConfig(
        base_url=("http://a/v1", "http://b/v1"),
        max_concurrency=3,
        max_response_bytes=2**19,
        api="chat",
        top_k=5,
    )


def test_a_default_written_again_in_argparse_would_be_caught() -> None:
    args = parse("label")
    args.alpha = LabelConfig().search.alpha + 1  # what a drifted literal would give
    assert label_cmd._config(args) != LabelConfig()
