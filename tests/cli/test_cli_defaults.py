"""Options written by hand beside a config: left at their defaults they must build exactly
the config's defaults. (``icm label``'s and ``icm scale``'s settings are generated from their
models: tests/cli/test_fields.py.)
"""

from __future__ import annotations

import argparse

import pytest

from icm_client.backends.config import BackendConfig
from icm_client.cli import build_parser
from icm_client.cli import eval as eval_cmd
from icm_client.cli.backend_options import backend_config
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
