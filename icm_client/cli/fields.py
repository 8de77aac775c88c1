"""Command-line options generated from a pydantic settings model's fields.

Each default and description is written once, on the model's field; the option takes its
flag (``--context-size`` for ``context_size``), type, choices (a ``Literal``), default and
help from there. A field's difference on the command line (a metavar, another flag, a help
text for the command) is a ``Flag`` given beside the call. ``read`` is the way back: the
parsed options as the model, equal to the defaults when no option was given.

    add_options(group, LabelConfig())        # --strategy ... --seed, --chains ...
    config = read(LabelConfig(), args)
"""

from __future__ import annotations

import argparse
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from ..errors import ConfigError

M = TypeVar("M", bound=BaseModel)

_SCALARS = (int, float, str, Path)


@dataclass(frozen=True)
class Flag:
    """How one field differs on the command line from what its model says."""

    name: str | None = None  # default: ``--`` and the field name, dashed
    metavar: str | None = None
    help: str | None = None  # default: the field's description


def flag_name(field: str, flags: Mapping[str, Flag] | None = None) -> str:
    given = (flags or {}).get(field, Flag()).name
    return given or "--" + field.replace("_", "-")


def _base(annotation: Any) -> Any:
    """The annotation without ``| None`` (a None default is the option's default)."""
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [a for a in get_args(annotation) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def _help(field: FieldInfo, flag: Flag, default: object) -> str | None:
    text = flag.help if flag.help is not None else field.description
    if default is not None and not isinstance(default, bool):
        shown = f"default: {default}"
        text = f"{text} ({shown})" if text else shown
    return text.replace("%", "%%") if text else None  # argparse formats help with %


def _argument(name: str, field: FieldInfo, default: object, flag: Flag) -> dict[str, Any]:
    """argparse's keyword arguments for the field ``name``."""
    kind = _base(field.annotation)
    kwargs: dict[str, Any] = {"default": default, "help": _help(field, flag, default)}
    if kind is bool:
        kwargs["action"] = argparse.BooleanOptionalAction if default else "store_true"
        return kwargs
    if get_origin(kind) is Literal:
        choices = list(get_args(kind))
        kinds = {type(c) for c in choices}
        if len(kinds) != 1 or next(iter(kinds)) not in _SCALARS:
            raise TypeError(f"field {name!r}: a Literal of one scalar type has a flag")
        kwargs |= {"type": next(iter(kinds)), "choices": choices}
    elif kind in _SCALARS:
        kwargs["type"] = kind
    else:
        raise TypeError(f"field {name!r}: no flag for {kind!r}; skip it or give it by hand")
    if flag.metavar is not None:
        kwargs["metavar"] = flag.metavar
    return kwargs


def add_options(
    group: Any,
    defaults: BaseModel,
    *,
    skip: frozenset[str] = frozenset(),
    flags: Mapping[str, Flag] | None = None,
) -> None:
    """An option for each field of ``defaults``'s model, defaulting to its value there.

    A field holding a model (``LabelConfig.search``) adds that model's options in turn;
    ``skip`` names the fields the command sets otherwise."""
    flags = flags or {}
    for name, field in type(defaults).model_fields.items():
        if name in skip:
            continue
        value = getattr(defaults, name)
        if isinstance(value, BaseModel):
            add_options(group, value, skip=skip, flags=flags)
            continue
        flag = flags.get(name, Flag())
        group.add_argument(flag_name(name, flags), **_argument(name, field, value, flag))


def read(
    defaults: M,
    args: argparse.Namespace,
    *,
    skip: frozenset[str] = frozenset(),
    flags: Mapping[str, Flag] | None = None,
    **given: object,
) -> M:
    """The model of ``add_options(group, defaults, ...)`` from the parsed ``args``: the
    skipped fields as in ``defaults``, unless ``given``. A value the model refuses (out of
    its range) is a ``ConfigError`` naming the option."""
    flags = flags or {}
    values: dict[str, object] = {}
    for name in type(defaults).model_fields:
        value = getattr(defaults, name)
        if name in given:
            values[name] = given[name]
        elif name in skip:
            values[name] = value
        elif isinstance(value, BaseModel):
            values[name] = read(value, args, skip=skip, flags=flags)
        else:
            values[name] = getattr(args, flag_name(name, flags)[2:].replace("-", "_"))
    try:
        return type(defaults).model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = str(err["loc"][0]) if err["loc"] else type(defaults).__name__
        raise ConfigError(f"{flag_name(where, flags)}: {err['msg']}") from None
