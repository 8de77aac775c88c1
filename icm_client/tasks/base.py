"""What a task is: how an example becomes a prompt, which words are labels, which labelings
are logically consistent.

Consistency is a list of pairwise constraints over example *indices*: for each related pair
(i, j) the set of allowed (label_i, label_j) index pairs. That one shape covers every
relation ICM needs (mutual exclusion, equivalence, asymmetry) and lets ConsistencyFix
enumerate "all consistent label options of a pair" by reading the allowed set.
Constraints are computed from the inputs alone; a task never sees gold labels.
"""

from __future__ import annotations

import difflib
import functools
import json
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..dataset import Example
from ..errors import TaskError

#: A label is an index into ``Task.labels``.
Label = int


@functools.lru_cache(maxsize=256)
def template_parts(template: str) -> tuple[tuple[str, str | None], ...]:
    """(literal text, field name or None) pieces of a prompt template.

    Only plain ``{field}`` placeholders are allowed: ``str.format`` would also follow
    attributes and indexes (``{question.__class__.__mro__}`` shows interpreter internals)
    and obey format specs (``{question:>900000000}`` pads to 900 MB), and a task file is
    input. ``ValueError`` names the first placeholder that is more than a field name.
    """
    parts: list[tuple[str, str | None]] = []
    for literal, name, spec, conversion in string.Formatter().parse(template):
        if name is not None:
            plain = name and not any(c in name for c in ".[]") and not name.isdigit()
            if not plain or spec or conversion:
                shown = (
                    name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
                )
                raise ValueError(
                    f"template placeholder {{{shown[:60]}}} is not a plain field name: only "
                    "{field} is allowed (no attributes, indexes, conversions or format specs)"
                )
        parts.append((literal, name))
    return tuple(parts)


def fill_template(template: str, values: Mapping[str, object]) -> str:
    """``template`` with each ``{field}`` replaced by ``str(values[field])``; ``KeyError``
    for a missing field, ``ValueError`` for a template that is not plain fields only."""
    out: list[str] = []
    for literal, name in template_parts(template):
        out.append(literal)
        if name is not None:
            out.append(str(values[name]))
    return "".join(out)


@dataclass(frozen=True, slots=True)
class PairConstraint:
    """Examples ``i`` and ``j`` (i < j) may only take the label pairs in ``allowed``.

    ``reason`` is a short human-readable name for reports ("different answers").
    """

    i: int
    j: int
    allowed: frozenset[tuple[Label, Label]]
    reason: str = ""

    def satisfied(self, yi: Label, yj: Label) -> bool:
        return (yi, yj) in self.allowed


@runtime_checkable
class Relation(Protocol):
    """Computes the constraints among examples from their inputs."""

    def constraints(self, examples: Sequence[Example], n_labels: int) -> list[PairConstraint]: ...


@runtime_checkable
class Task(Protocol):
    """A labeling task. ``labels[0]`` is by convention the positive word (" True").

    ``name`` and ``labels`` are read-only properties so that frozen dataclasses (such as
    ``TemplateTask``) satisfy the protocol for the type checker too.
    """

    @property
    def name(self) -> str: ...

    @property
    def labels(self) -> tuple[str, ...]: ...

    def render(self, example: Example) -> str:
        """The prompt for one example, up to (not including) the label word. No trailing space."""
        ...

    def constraints(self, examples: Sequence[Example]) -> list[PairConstraint]: ...

    def group(self, example: Example) -> str | None:
        """The consistency group (e.g. the question) or None. Examples of one group are
        "related": the search samples them first, batches keep them together."""
        ...


@dataclass(frozen=True)
class TemplateTask:
    """The usual task: a ``str.format`` template over the example's fields, label words and an
    optional relation. Users define their own tasks with this class or the declarative config.

    ``render_fn`` replaces the template when formatting needs code (e.g. stripping newlines).
    ``group_field`` names the input field whose value is the consistency group (or several
    fields, whose values together are the group: subject and relation); ``group_fn`` computes
    it instead when it is not a field (the Spanish word of a translation statement).
    """

    name: str
    template: str
    labels: tuple[str, ...] = (" True", " False")
    relation: Relation | None = None
    render_fn: Callable[[Example], str] | None = None
    group_field: str | tuple[str, ...] | None = None
    description: str = ""
    group_fn: Callable[[Example], str | None] | None = None

    def __post_init__(self) -> None:
        validate_labels(self.labels, task=self.name)

    def render(self, example: Example) -> str:
        if self.render_fn is not None:
            text = self.render_fn(example)
        else:
            try:
                text = fill_template(self.template, example.fields)
            except ValueError as exc:
                raise TaskError(
                    str(exc), location=f"task {self.name!r}", field="template"
                ) from None
            except KeyError as exc:
                close = difflib.get_close_matches(str(exc.args[0]), list(example.fields), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise TaskError(
                    f"template of task {self.name!r} needs field {exc.args[0]!r}, "
                    f"which the example does not have (it has {sorted(example.fields)}){hint}",
                    location=f"example {example.id!r}",
                    field=str(exc.args[0]),
                ) from None
        return text.rstrip()

    def constraints(self, examples: Sequence[Example]) -> list[PairConstraint]:
        if self.relation is None:
            return []
        return self.relation.constraints(examples, len(self.labels))

    def group(self, example: Example) -> str | None:
        if self.group_fn is not None:
            return self.group_fn(example)
        if self.group_field is None:
            return None
        if isinstance(self.group_field, tuple):
            values = [example.fields.get(name) for name in self.group_field]
            if any(v is None for v in values):
                return None
            return json.dumps([str(v) for v in values], ensure_ascii=False)
        value = example.fields.get(self.group_field)
        return None if value is None else str(value)


def validate_labels(labels: Sequence[str], *, task: str) -> None:
    if len(labels) < 2:
        raise TaskError(f"task {task!r} needs at least two label words, got {list(labels)!r}")
    if len(set(labels)) != len(labels):
        raise TaskError(f"task {task!r} has duplicate label words: {list(labels)!r}")
    for word in labels:
        if not word.strip():
            raise TaskError(f"task {task!r} has an empty label word: {list(labels)!r}")
        if word != word.rstrip():
            raise TaskError(f"label word {word!r} of task {task!r} ends in whitespace")


DEMO_END = "\n\n"
"""What ends a demonstration: a blank line before the next one, or before the target."""


def demo_text(rendered: str, word: str) -> str:
    """One in-context demonstration: a rendered example, its label word (with its leading
    space), a blank line. Every prompt is these, then the target's rendering, so every cache
    key depends on this exact text: it is written here only."""
    return f"{rendered}{word}{DEMO_END}"


def demonstration(task: Task, example: Example, label: Label) -> str:
    """``example`` labeled ``label`` as an in-context demonstration (``demo_text``)."""
    return demo_text(task.render(example), task.labels[label])
