"""Declarative tasks: a JSON or TOML file that defines a ``TemplateTask`` without code.

Example (TOML)::

    name = "claims"
    template = "Question: {question}\\nClaim: {claim}\\nI think this Claim is"
    labels = [" True", " False"]      # optional; this is the default
    group = "question"                # optional; a list of fields: ["subject", "relation"]
    [relation]                        # optional
    kind = "answer_consistency"       # or asymmetry / equivalence / negation / none
    answer = "final_answer"           # group defaults to the top-level group

Label words are used exactly as written. A leading space (" True") is conventional: the
template ends without a space and the label word carries it, matching how tokenizers split
"is True". Trailing whitespace is rejected. Files are validated strictly (unknown keys are
errors) so that a typo cannot silently turn a relation off; every problem is reported as a
``TaskError`` naming the file and the field.
"""

from __future__ import annotations

import json
import string
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import TaskError
from .base import Relation, TemplateTask, template_parts, validate_labels
from .relations import AnswerConsistency, Asymmetry, Equivalence, Negation


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


#: One field, or several whose values together make the group.
GroupSpec = str | Annotated[list[str], Field(min_length=1)]


class AnswerConsistencyConfig(_Strict):
    kind: Literal["answer_consistency"]
    answer: str
    group: GroupSpec | None = None


class AsymmetryConfig(_Strict):
    kind: Literal["asymmetry"]
    first: str
    second: str
    group: GroupSpec | None = None


class EquivalenceConfig(_Strict):
    kind: Literal["equivalence"]
    key: str


class NegationConfig(_Strict):
    kind: Literal["negation"]
    field: str


class NoRelationConfig(_Strict):
    kind: Literal["none"]


RelationConfig = Annotated[
    AnswerConsistencyConfig
    | AsymmetryConfig
    | EquivalenceConfig
    | NegationConfig
    | NoRelationConfig,
    Field(discriminator="kind"),
]


class TaskConfig(_Strict):
    """The file's schema."""

    name: str = Field(min_length=1)
    template: str = Field(min_length=1)
    labels: tuple[str, ...] = (" True", " False")
    group: GroupSpec | None = None
    relation: RelationConfig | None = None
    description: str = ""


def load_task_config(path: str | Path) -> TemplateTask:
    """Read, validate and build a task from a ``.json`` or ``.toml`` file."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise TaskError("task config file not found", location=where)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TaskError(f"not UTF-8 (byte offset {exc.start})", location=where) from None
    suffix = path.suffix.lower()
    if suffix == ".toml":
        try:
            raw: object = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise TaskError(f"invalid TOML: {exc}", location=where) from None
        except RecursionError:
            raise TaskError("invalid TOML: nests too deeply", location=where) from None
    elif suffix == ".json":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TaskError(f"invalid JSON: {exc.msg}", location=f"{path}:{exc.lineno}") from None
        except (ValueError, RecursionError) as exc:  # nesting, an integer of > 4300 digits
            raise TaskError(f"invalid JSON: {type(exc).__name__}", location=where) from None
    else:
        raise TaskError("a task config must be a .toml or .json file", location=where)
    if not isinstance(raw, dict):
        raise TaskError("a task config must be a table/object at the top level", location=where)
    return task_from_config(raw, source=where)


def task_from_config(raw: dict[str, object], *, source: str = "<config>") -> TemplateTask:
    """Build a task from an already parsed mapping (``source`` names it in errors)."""
    try:
        config = TaskConfig.model_validate(raw)
    except ValidationError as exc:
        raise _readable(exc, source) from None
    check_template(config.template, source=source)
    try:
        validate_labels(config.labels, task=config.name)
    except TaskError as exc:
        raise TaskError(str(exc), location=source, field="labels") from None
    return TemplateTask(
        name=config.name,
        template=config.template,
        labels=config.labels,
        relation=_relation(config, source),
        group_field=_group(config.group),
        description=config.description,
    )


def check_template(template: str, *, source: str = "<config>") -> list[str]:
    """The template's field names; ``TaskError`` if it does not parse or uses positional
    fields ("{}", "{0}"), which a per-example field mapping can never fill."""
    names: list[str] = []
    try:
        for _, name, spec, conversion in string.Formatter().parse(template):
            if name is None:
                continue
            if spec or conversion or any(c in name for c in ".[]"):
                template_parts(template)  # raises, saying which placeholder and why
            base = name.split(".", 1)[0].split("[", 1)[0]
            if not base or base.isdigit():
                raise TaskError(
                    f"template placeholder {{{name}}} is positional; name the field, "
                    "e.g. {question}",
                    location=source,
                    field="template",
                )
            names.append(base)
    except ValueError as exc:
        raise TaskError(
            f"template does not parse: {exc} (write literal braces as {{{{ and }}}})",
            location=source,
            field="template",
        ) from None
    if not names:
        raise TaskError("template uses no example field", location=source, field="template")
    return names


def _relation(config: TaskConfig, source: str) -> Relation | None:
    rel = config.relation
    if rel is None or isinstance(rel, NoRelationConfig):
        return None
    if isinstance(rel, EquivalenceConfig):
        return Equivalence(rel.key)
    if isinstance(rel, NegationConfig):
        return Negation(rel.field)
    group = _group(rel.group or config.group)
    if group is None:
        raise TaskError(
            f"relation {rel.kind!r} needs a group: set relation.group or the top-level group",
            location=source,
            field="relation.group",
        )
    if isinstance(rel, AnswerConsistencyConfig):
        return AnswerConsistency(group, rel.answer)
    return Asymmetry(group, rel.first, rel.second)


def _group(spec: str | list[str] | None) -> str | tuple[str, ...] | None:
    if isinstance(spec, list):
        return spec[0] if len(spec) == 1 else tuple(spec)
    return spec


def _readable(exc: ValidationError, source: str) -> TaskError:
    """One line per problem: ``field: message``; the first field also goes in ``field``."""
    lines = []
    fields = []
    for err in exc.errors():
        parts = [str(p) for p in err["loc"]]
        if len(parts) > 2 and parts[0] == "relation":
            del parts[1]  # the union member's tag ("relation.asymmetry.first" → "relation.first")
        loc = ".".join(parts) or "<top level>"
        fields.append(loc)
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["type"] == "missing":
            message = "required key is missing"
        lines.append(f"{loc}: {message}")
    return TaskError(
        "invalid task config: " + "; ".join(lines),
        location=source,
        field=fields[0] if fields else None,
    )
