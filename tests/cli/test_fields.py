"""Options generated from a settings model's fields (``icm_client.cli.fields``): each
default is written once, on the model, and comes back unchanged through the command line."""

from __future__ import annotations

import argparse
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from icm_client.cli import build_parser
from icm_client.cli import scale as scale_cmd
from icm_client.cli.fields import Flag, add_options, flag_name, read
from icm_client.cli.label_options import label_config
from icm_client.errors import ConfigError
from icm_client.run import LabelConfig
from icm_client.scale import ScaleConfig
from icm_client.search.config import SearchConfig


class Inner(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    rate: float = Field(0.5, gt=0, description="how fast")
    cap: int | None = Field(None, ge=1, description="at most this many; default: no cap")


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["fast", "slow"] = Field("fast", description="which way")
    size: int = Field(3, ge=1, description="how many, 100% sure")
    loud: bool = Field(False, description="say more")
    quiet: bool = Field(True, description="say less")
    name: str = "x"
    tags: tuple[str, ...] = Field((), description="repeat for more")
    inner: Inner = Inner()


def parser(defaults: BaseModel, flags: dict[str, Flag] | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="t", exit_on_error=False)
    add_options(p, defaults, flags=flags)
    return p


@pytest.mark.parametrize(
    "defaults", [Settings(), Settings(size=7, tags=("a",), inner=Inner(cap=2))]
)
def test_no_option_given_reads_back_the_defaults(defaults: Settings) -> None:
    assert read(defaults, parser(defaults).parse_args([])) == defaults


def test_each_field_becomes_an_option_of_its_type() -> None:
    args = ["--mode", "slow", "--size", "9", "--loud", "--no-quiet", "--name", "y"]
    args += ["--rate", "2.5", "--cap", "4", "--tags", "a", "--tags", "b"]
    got = read(Settings(), parser(Settings()).parse_args(args))
    want = Settings(mode="slow", size=9, loud=True, quiet=False, name="y", tags=("a", "b"))
    assert got == want.model_copy(update={"inner": Inner(rate=2.5, cap=4)})


def test_a_literal_gives_choices_and_the_help_says_description_and_default() -> None:
    text = parser(Settings()).format_help()
    assert "--mode {fast,slow}" in text
    assert "which way (default: fast)" in text
    assert "how many, 100% sure (default: 3)" in text  # a % in a description is kept
    assert "at most this many; default: no cap" in text  # None: the description says it


@pytest.mark.parametrize(
    ("argv", "flag"),
    [(["--mode", "medium"], "--mode"), (["--size", "many"], "--size"), (["--rate", "x"], "--rate")],
)
def test_a_value_of_the_wrong_type_or_choice_is_an_argparse_error_naming_the_flag(
    argv: list[str], flag: str
) -> None:
    with pytest.raises(argparse.ArgumentError, match=flag):
        parser(Settings()).parse_args(argv)


@pytest.mark.parametrize(("argv", "flag"), [(["--size", "0"], "--size"), (["--cap", "0"], "--cap")])
def test_a_value_the_model_refuses_is_a_config_error_naming_the_flag(
    argv: list[str], flag: str
) -> None:
    with pytest.raises(ConfigError, match=f"^{flag}: Input should be greater than or equal to 1"):
        read(Settings(), parser(Settings()).parse_args(argv))


def test_a_flag_given_beside_the_field_renames_it_and_reads_back() -> None:
    flags = {"size": Flag(name="--count", metavar="N", help="items")}
    p = parser(Settings(), flags)
    assert "--count N" in p.format_help() and "items (default: 3)" in p.format_help()
    assert read(Settings(), p.parse_args(["--count", "5"]), flags=flags).size == 5
    assert flag_name("size", flags) == "--count" and flag_name("rate") == "--rate"
    with pytest.raises(ConfigError, match=r"^--count: "):
        read(Settings(), p.parse_args(["--count", "0"]), flags=flags)


def test_a_flag_may_bring_its_own_parser_and_choices() -> None:
    def upper(text: str) -> str:
        if not text.isalpha():
            raise argparse.ArgumentTypeError(f"not a word: {text!r}")
        return text.upper()

    flags = {"name": Flag(type=upper, choices=["A", "B"])}
    p = parser(Settings(), flags)
    assert read(Settings(), p.parse_args(["--name", "b"]), flags=flags).name == "B"
    for bad in ("c", "1"):
        with pytest.raises(argparse.ArgumentError, match="--name"):
            p.parse_args(["--name", bad])


def test_a_field_with_no_flag_type_must_be_skipped() -> None:
    class Listy(BaseModel):
        items: list[int] = []

    with pytest.raises(TypeError, match="items"):
        parser(Listy())
    assert read(Listy(items=[1]), argparse.Namespace(), skip=frozenset({"items"})).items == [1]


MINIMAL = ["in.jsonl", "--task", "cities", "--out", "out.jsonl"]


def test_icm_label_has_an_option_for_every_setting_at_its_default() -> None:
    args = build_parser().parse_args(["label", *MINIMAL])
    for model in (LabelConfig(), SearchConfig()):
        for name in type(model).model_fields:
            if name != "search":
                assert getattr(args, name) == getattr(model, name), name
    assert label_config(args, LabelConfig()) == LabelConfig()


def test_icm_scale_shares_the_label_options_with_its_own_defaults() -> None:
    label_args = build_parser().parse_args(["label", *MINIMAL])
    scale_args = build_parser().parse_args(["scale", *MINIMAL])
    label_flags = {a for a in vars(label_args) if a in LabelConfig.model_fields}
    search_flags = {a for a in vars(scale_args) if a in SearchConfig.model_fields}
    assert search_flags == set(SearchConfig.model_fields)
    assert label_flags <= set(vars(scale_args))
    # the batch and demonstration budgets follow the context window: one that leaves
    # the config's default
    room = ScaleConfig().batch_tokens
    assert scale_cmd._config(scale_args, 0, room + 16) == ScaleConfig()


def test_scale_seed_seeds_the_plan_and_the_search() -> None:
    args = build_parser().parse_args(["scale", *MINIMAL, "--seed", "5", "--chains", "1"])
    config = scale_cmd._config(args, 0, 4096)
    assert (config.seed, config.label.search.seed, config.label.search.chains) == (5, 5, 1)
