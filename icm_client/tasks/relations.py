"""Relations: logical consistency constraints computed from the inputs alone.

ICM's consistency term only helps if it is derived from what the search is allowed to see.
The reference implementation keyed TruthfulQA's consistency on the gold label, which hands the
search the gold partition of every group; every relation here reads ``Example.fields`` only,
so permuting the gold labels of a dataset cannot change a single constraint.

Label convention: index 0 is the positive word (" True"), index 1 the negative one.

Cost: examples are bucketed by key with a dict in O(n); pairs are formed only inside a
bucket. A bucket larger than ``max_group_size`` raises ``TaskError`` instead of silently
producing millions of pairs (a constant group field is the usual cause). Constraints always
have ``i < j`` and come sorted by ``(i, j)``, so runs are reproducible.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations, product

from ..dataset import Example
from ..errors import TaskError
from .base import Label, PairConstraint, Relation

#: Reads a value out of an example: a field name, several field names (their values
#: together; None if any is missing), or a function (None = "no value").
Getter = str | tuple[str, ...] | Callable[[Example], Hashable | None]

DEFAULT_MAX_GROUP_SIZE = 1000

POSITIVE: Label = 0
NEGATIVE: Label = 1


def normalize_text(value: object) -> str:
    """Whitespace-collapsed, case-folded text: the comparison key for answers and claims."""
    return " ".join(str(value).split()).casefold()


def _getter(spec: Getter, *, fold_case: bool = True) -> Callable[[Example], Hashable | None]:
    if callable(spec):
        return spec
    if isinstance(spec, tuple):
        parts = [_getter(name, fold_case=fold_case) for name in spec]

        def get_all(example: Example) -> Hashable | None:
            values = tuple(part(example) for part in parts)
            return None if any(v is None for v in values) else values

        return get_all
    name = spec

    def get(example: Example) -> Hashable | None:
        value = example.fields.get(name)
        if value is None:
            return None
        return normalize_text(value) if fold_case else " ".join(str(value).split())

    return get


def _buckets(
    examples: Sequence[Example], key: Callable[[Example], Hashable | None], max_size: int, what: str
) -> list[list[int]]:
    """Indices grouped by key (None keys skipped), in first-seen order; O(n)."""
    return _group_keys([key(ex) for ex in examples], examples, max_size, what)


def _group_keys(
    keys: Sequence[Hashable | None], examples: Sequence[Example], max_size: int, what: str
) -> list[list[int]]:
    groups: dict[Hashable, list[int]] = {}
    for index, k in enumerate(keys):
        if k is not None:
            groups.setdefault(k, []).append(index)
    out = list(groups.values())
    for members in out:
        if len(members) > max_size:
            first = examples[members[0]]
            raise TaskError(
                f"{what}: {len(members)} examples share one group (e.g. example {first.id!r}), "
                f"more than max_group_size={max_size}; pairs grow quadratically. Is the group "
                "field constant? Raise max_group_size if this is intended."
            )
    return out


def _all_pairs(n_labels: int) -> frozenset[tuple[Label, Label]]:
    return frozenset(product(range(n_labels), range(n_labels)))


def same_label(n_labels: int) -> frozenset[tuple[Label, Label]]:
    """Allowed pairs for "must agree"."""
    return frozenset((a, a) for a in range(n_labels))


def not_both_positive(n_labels: int) -> frozenset[tuple[Label, Label]]:
    """Allowed pairs for "cannot both be True"."""
    return _all_pairs(n_labels) - {(POSITIVE, POSITIVE)}


EXACTLY_ONE_POSITIVE: frozenset[tuple[Label, Label]] = frozenset(
    {(POSITIVE, NEGATIVE), (NEGATIVE, POSITIVE)}
)


def _need_binary(n_labels: int, what: str) -> None:
    if n_labels != 2:
        raise TaskError(f"{what} needs exactly two labels (True, False), the task has {n_labels}")


def _sorted(constraints: Iterable[PairConstraint]) -> list[PairConstraint]:
    return sorted(constraints, key=lambda c: (c.i, c.j))


@dataclass(frozen=True)
class AnswerConsistency:
    """Claims about one question that give a final answer (GSM8K solutions, city → country).

    Within a group: different answers cannot both be True; the same answer must get the same
    label (as in the reference implementation; note that GSM8K gold labels also judge the
    reasoning, so gold itself breaks "same answer ⇒ same label" in a few groups). Examples with
    no group or no answer (None) get no constraints.
    """

    group_field: str | tuple[str, ...]
    answer: Getter
    max_group_size: int = DEFAULT_MAX_GROUP_SIZE

    def constraints(self, examples: Sequence[Example], n_labels: int) -> list[PairConstraint]:
        answer_of = _getter(self.answer)
        answers = [answer_of(ex) for ex in examples]
        group_of = _getter(self.group_field)
        differ = not_both_positive(n_labels)
        agree = same_label(n_labels)
        out: list[PairConstraint] = []
        for members in _buckets(examples, group_of, self.max_group_size, "AnswerConsistency"):
            answered = [i for i in members if answers[i] is not None]
            for i, j in combinations(answered, 2):
                if answers[i] == answers[j]:
                    out.append(PairConstraint(i, j, agree, "same answer"))
                else:
                    out.append(PairConstraint(i, j, differ, "different answers"))
        return _sorted(out)


@dataclass(frozen=True)
class Asymmetry:
    """Pairwise comparisons: "A beats B" and the swapped "B beats A" — exactly one is True.

    A pair is detected when, inside one group, one example's (first, second) equals another's
    (second, first) after whitespace normalisation. Case is kept: responses "Happy" and
    "happy" are different responses (the paper's Alpaca file has exactly that pair).
    Self-swaps (first == second) are skipped: they would be their own opposite.
    """

    group_field: str | tuple[str, ...]
    first_field: str
    second_field: str

    def constraints(self, examples: Sequence[Example], n_labels: int) -> list[PairConstraint]:
        _need_binary(n_labels, "Asymmetry")
        group_of, first_of, second_of = (
            _getter(f, fold_case=False)
            for f in (self.group_field, self.first_field, self.second_field)
        )
        index: dict[tuple[Hashable, Hashable, Hashable], list[int]] = {}
        keys: list[tuple[Hashable, Hashable, Hashable] | None] = []
        for i, ex in enumerate(examples):
            g, a, b = group_of(ex), first_of(ex), second_of(ex)
            key = None if g is None or a is None or b is None or a == b else (g, a, b)
            keys.append(key)
            if key is not None:
                index.setdefault(key, []).append(i)
        out: list[PairConstraint] = []
        for i, key in enumerate(keys):
            if key is None:
                continue
            g, a, b = key
            for j in index.get((g, b, a), ()):
                if i < j:
                    out.append(PairConstraint(i, j, EXACTLY_ONE_POSITIVE, "swapped pair"))
        return _sorted(out)


@dataclass(frozen=True)
class Equivalence:
    """Examples with the same key must get the same label (e.g. duplicate claims).

    ``key`` is a field name or a function; None means "no key" (no constraint).
    """

    key: Getter
    max_group_size: int = DEFAULT_MAX_GROUP_SIZE

    def constraints(self, examples: Sequence[Example], n_labels: int) -> list[PairConstraint]:
        agree = same_label(n_labels)
        out = [
            PairConstraint(i, j, agree, "equivalent")
            for members in _buckets(examples, _getter(self.key), self.max_group_size, "Equivalence")
            for i, j in combinations(members, 2)
        ]
        return _sorted(out)


_NEGATION = re.compile(r"\b(is|are|was|were|does|do|did|can|will|has|have) not\b", re.IGNORECASE)


def _affirmative(text: str) -> str | None:
    """The statement with its first "is not" turned into "is", or None if it has no negation."""
    match = _NEGATION.search(text)
    if match is None:
        return None
    return text[: match.start()] + match.group(1) + text[match.end() :]


@dataclass(frozen=True)
class Negation:
    """A statement and its negation ("X is in C" / "X is not in C") have opposite labels.

    Detection is textual: a statement containing "is not" (or are/was/does/... not) is paired
    with every statement equal to it with the "not" removed (after whitespace/case
    normalisation). Cheap and conservative: other phrasings are not detected.
    """

    field: str

    def constraints(self, examples: Sequence[Example], n_labels: int) -> list[PairConstraint]:
        _need_binary(n_labels, "Negation")
        texts = [ex.fields.get(self.field) for ex in examples]
        plain: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            if text is not None:
                plain.setdefault(normalize_text(text), []).append(i)
        out: list[PairConstraint] = []
        for i, text in enumerate(texts):
            positive = None if text is None else _affirmative(normalize_text(text))
            for j in plain.get(positive, ()) if positive is not None else ():
                a, b = min(i, j), max(i, j)
                out.append(PairConstraint(a, b, EXACTLY_ONE_POSITIVE, "negation"))
        return _sorted(out)


@dataclass(frozen=True)
class AllOf:
    """Several relations at once. A pair constrained twice keeps the intersection of the
    allowed sets (both must hold), so each pair appears once in the output."""

    relations: tuple[Relation, ...]

    def constraints(self, examples: Sequence[Example], n_labels: int) -> list[PairConstraint]:
        merged: dict[tuple[int, int], PairConstraint] = {}
        for relation in self.relations:
            for c in relation.constraints(examples, n_labels):
                old = merged.get((c.i, c.j))
                if old is not None:
                    c = PairConstraint(
                        c.i, c.j, old.allowed & c.allowed, f"{old.reason}+{c.reason}"
                    )
                merged[(c.i, c.j)] = c
        return _sorted(merged.values())


@dataclass(frozen=True, slots=True)
class Proposition:
    """What a statement asserts: ``atom`` (or its negation) about ``topic``.

    "The city of Paris is not in Japan." is topic "paris", atom "japan", negated. Equal atoms
    of one topic are the same claim; ``Propositions(exclusive=True)`` makes different atoms of
    one topic mutually exclusive (a city is in one country).
    """

    topic: Hashable
    atom: Hashable
    negated: bool = False


def _flip(label: Label, negated: bool) -> Label:
    return (NEGATIVE if label == POSITIVE else POSITIVE) if negated else label


@dataclass(frozen=True)
class Propositions:
    """Statements that assert or deny claims about a topic, in any mix of polarities.

    ``parse`` reads a ``Proposition`` from an example's inputs (None: no constraints). Within
    a topic: two statements of the same atom get the same label if their polarities agree,
    opposite labels if not ("X is in C" / "X is not in C"); with ``exclusive``, two different
    atoms cannot both hold, which forbids, after each statement's polarity is applied, the
    label pair that would make both atoms true ("in C1" True and "not in C2" False).
    One relation thus covers a file of affirmative statements, of negated ones, or both.
    """

    parse: Callable[[Example], Proposition | None]
    exclusive: bool = False
    max_group_size: int = DEFAULT_MAX_GROUP_SIZE

    def constraints(self, examples: Sequence[Example], n_labels: int) -> list[PairConstraint]:
        _need_binary(n_labels, "Propositions")
        props = [self.parse(ex) for ex in examples]
        topics = [None if p is None else p.topic for p in props]
        buckets = _group_keys(topics, examples, self.max_group_size, "Propositions")
        out: list[PairConstraint] = []
        for members in buckets:
            for i, j in combinations(members, 2):
                pi, pj = props[i], props[j]
                assert pi is not None and pj is not None
                if pi.atom == pj.atom:
                    if pi.negated == pj.negated:
                        out.append(PairConstraint(i, j, same_label(2), "same claim"))
                    else:
                        out.append(PairConstraint(i, j, EXACTLY_ONE_POSITIVE, "negation"))
                elif self.exclusive:
                    allowed = frozenset(
                        (_flip(a, pi.negated), _flip(b, pj.negated))
                        for a, b in not_both_positive(2)
                    )
                    out.append(PairConstraint(i, j, allowed, "different answers"))
        return _sorted(out)
