"""Checking a task against data before any model call (``icm task check``, and the start of
every command).

A task names fields: the template's placeholders, the group, the relation's keys. An example
that lacks a relation's field simply gets no constraint, so a typo in a task file
(``answer = "tgt"``) would silently turn the consistency term off. ``check_task`` fails
instead, naming the missing field, the fields the data has and the closest of them; it then
counts the constrained pairs the relation finds, and a relation that should constrain
something (answer consistency, asymmetry) but finds no pair is an error unless allowed.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ..dataset import Example
from ..errors import TaskError
from .base import Relation, Task, TemplateTask
from .config import check_template
from .relations import AllOf, AnswerConsistency, Asymmetry, Equivalence, Negation, Propositions

#: Relations that exist to constrain pairs: finding none means the data does not match.
_EXPECT_PAIRS = (AnswerConsistency, Asymmetry)


@dataclass(frozen=True)
class TaskCheck:
    """What ``check_task`` found: the fields the task reads (role → field) and the pairs."""

    task: str
    examples: int
    fields: tuple[tuple[str, str], ...]
    relation: str | None
    pairs: int
    groups: int | None
    warnings: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        named = ", ".join(f"{role}={field}" for role, field in self.fields) or "none"
        out = [f"task {self.task!r} on {self.examples} examples: fields {named}"]
        if self.groups is not None:
            out.append(f"groups: {self.groups}")
        if self.relation is None:
            out.append("relation: none (no consistency term)")
        else:
            out.append(
                f"relation {self.relation}: {self.pairs} constrained pairs (pairs of examples "
                "whose labels the relation restricts)"
            )
        return out


def task_fields(task: Task) -> list[tuple[str, str]]:
    """(role, field) for every input field the task names: template placeholders, the group
    field(s) and the relation's keys (keys computed by a function are not named)."""
    out: list[tuple[str, str]] = []
    if isinstance(task, TemplateTask):
        if task.render_fn is None and task.template:
            out += [("template", name) for name in dict.fromkeys(check_template(task.template))]
        if task.group_fn is None:
            out += [("group", name) for name in _names(task.group_field)]
        if task.relation is not None:
            out += list(_relation_fields(task.relation))
    return list(dict.fromkeys(out))


def check_task(
    task: Task,
    examples: Sequence[Example],
    *,
    source: str = "the data",
    allow_empty_relation: bool = False,
) -> TaskCheck:
    """``TaskError`` if a field the task names is in no example (with the fields there are
    and a close match), or if a relation meant to constrain pairs finds none."""
    present: dict[str, None] = {}
    for ex in examples:
        present.update(dict.fromkeys(ex.fields))
    fields = task_fields(task)
    for role, name in fields:
        if name not in present:
            close = difflib.get_close_matches(name, list(present), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TaskError(
                f"task {task.name!r} reads field {name!r} ({role}), which no example of "
                f"{source} has; the fields are: {', '.join(sorted(present)) or 'none'}{hint}",
                field=name,
            )
    relation = task.relation if isinstance(task, TemplateTask) else None
    pairs = len(task.constraints(examples))
    groups = None
    if isinstance(task, TemplateTask) and (task.group_field or task.group_fn):
        groups = len({g for g in (task.group(ex) for ex in examples) if g is not None})
    kind = None if relation is None else _kind(relation)
    if (
        relation is not None
        and pairs == 0
        and len(examples) > 1
        and _expects_pairs(relation)
        and not allow_empty_relation
    ):
        raise TaskError(
            f"task {task.name!r}: relation {kind} finds no constrained pair among the "
            f"{len(examples)} examples of {source} ({groups} groups), so the search would have "
            "no consistency term; check the group and key fields, or pass "
            "--allow-empty-relation if that is intended"
        )
    return TaskCheck(
        task.name, len(examples), tuple(fields), kind, pairs, groups, label_warnings(task)
    )


def label_warnings(task: Task) -> tuple[str, ...]:
    """Label words without a leading space: prompts end without one, so the model reads
    "is" + "True" where it learnt "is" + " True" (a different, rarer token)."""
    bare = [word for word in task.labels if not word.startswith((" ", "\n"))]
    if not bare:
        return ()
    return (
        f"task {task.name!r}: label words {bare} have no leading space; prompts end without "
        "one, so the label word carries it (" + ", ".join(repr(" " + w) for w in bare) + ")",
    )


def _names(spec: object) -> tuple[str, ...]:
    if isinstance(spec, str):
        return (spec,)
    if isinstance(spec, tuple) and all(isinstance(s, str) for s in spec):
        return spec
    return ()


def _relation_fields(relation: Relation) -> Iterator[tuple[str, str]]:
    if isinstance(relation, AllOf):
        for inner in relation.relations:
            yield from _relation_fields(inner)
    elif isinstance(relation, AnswerConsistency):
        yield from (("relation.group", n) for n in _names(relation.group_field))
        yield from (("relation.answer", n) for n in _names(relation.answer))
    elif isinstance(relation, Asymmetry):
        yield from (("relation.group", n) for n in _names(relation.group_field))
        yield ("relation.first", relation.first_field)
        yield ("relation.second", relation.second_field)
    elif isinstance(relation, Equivalence):
        yield from (("relation.key", n) for n in _names(relation.key))
    elif isinstance(relation, Negation):
        yield ("relation.field", relation.field)


def _expects_pairs(relation: Relation) -> bool:
    if isinstance(relation, AllOf):
        return any(_expects_pairs(r) for r in relation.relations)
    return isinstance(relation, _EXPECT_PAIRS)


def _kind(relation: Relation) -> str:
    names = {
        AnswerConsistency: "answer_consistency",
        Asymmetry: "asymmetry",
        Equivalence: "equivalence",
        Negation: "negation",
        Propositions: "propositions (statements about one subject, which must agree)",
    }
    return names.get(type(relation), type(relation).__name__.lower())
