"""Command-line options generated from a pydantic settings model's fields.

Each default and description is written once, on the model's field; the option takes its
flag (``--context-size`` for ``context_size``), type, choices (a ``Literal``), default and
help from there; a ``tuple[X, ...]`` field is a repeatable option. A field's difference on
the command line (another flag, a metavar, a parser or choices of its own, a help text for
the command) is a ``Flag`` given beside the call. ``read`` is the way back: the
parsed options as the model, equal to the defaults when no option was given.

    add_options(group, LabelConfig())        # --strategy ... --seed, --chains ...
    config = read(LabelConfig(), args)
"""

from __future__ import annotations

import argparse
import types
from collections.abc import Callable, Mapping, Sequence
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
    type: Callable[[str], Any] | None = None  # default: the field's type
    choices: Sequence[object] | None = None  # default: a Literal's values


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
    if default is not None and default != () and not isinstance(default, bool):
        shown = f"default: {default}"
        text = f"{text} ({shown})" if text else shown
    return text.replace("%", "%%") if text else None  # argparse formats help with %


def _argument(name: str, field: FieldInfo, default: object, flag: Flag) -> dict[str, Any]:
    """argparse's keyword arguments for the field ``name``."""
    kind = _base(field.annotation)
    kwargs: dict[str, Any] = {"dest": name, "default": default}
    kwargs["help"] = _help(field, flag, default)
    if kind is bool:
        kwargs["action"] = argparse.BooleanOptionalAction if default else "store_true"
        return kwargs
    if get_origin(kind) is tuple and get_args(kind)[1:] == (Ellipsis,):
        kind = get_args(kind)[0]  # repeated: the values given, else the default
        kwargs |= {"action": "append", "default": None}
    if get_origin(kind) is Literal:
        choices = list(get_args(kind))
        kinds = {type(c) for c in choices}
        if len(kinds) != 1 or next(iter(kinds)) not in _SCALARS:
            raise TypeError(f"field {name!r}: a Literal of one scalar type has a flag")
        kwargs |= {"type": next(iter(kinds)), "choices": choices}
    elif kind in _SCALARS or flag.type is not None:
        kwargs["type"] = kind
    else:
        raise TypeError(f"field {name!r}: no flag for {kind!r}; skip it or give it by hand")
    mine = {"type": flag.type, "choices": flag.choices, "metavar": flag.metavar}
    return kwargs | {k: v for k, v in mine.items() if v is not None}


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
        elif isinstance(parsed := getattr(args, name), list):  # a repeated option
            values[name] = tuple(parsed)
        else:
            values[name] = value if parsed is None and isinstance(value, tuple) else parsed
    try:
        return type(defaults).model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = str(err["loc"][0]) if err["loc"] else type(defaults).__name__
        raise ConfigError(f"{flag_name(where, flags)}: {err['msg']}") from None
