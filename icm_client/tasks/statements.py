"""True/false statement tasks with input-derived logic: the geometry-of-truth datasets.

Marks & Tegmark's statement files (``cities``, ``neg_cities``, ``sp_en_trans``,
``neg_sp_en_trans``, ``larger_than``, ``smaller_than``) have a simple logical structure that
the statements themselves reveal, which is exactly what ICM's consistency term needs:

* cities: one city, two countries: "X is in C1" and "X is in C2" cannot both be True;
  "X is in C" and "X is not in C" have opposite labels;
* translations: "'w' means 'm'" and "'w' does not mean 'm'" have opposite labels (a word
  may have several meanings, so two meanings are not exclusive);
* number comparisons: "a is larger than b", "b is larger than a", "a is smaller than b"...
  are one claim about the pair {a, b} or its negation (the numbers are distinct), so each
  pair of such statements gets equal or opposite labels.

Every task parses its statements with ``Propositions`` (see ``relations``), which handles
affirmative and negated statements alike: a file that mixes a dataset with its negation
(``cities.csv`` and ``neg_cities.csv`` concatenated) gets the cross constraints too. Nothing
is read from the label or from gold-derived columns (``correct_country``; ``diff`` and
``abs_diff`` of the comparison files): load those files with ``drop=`` to be sure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from ..dataset import Example
from .base import TemplateTask
from .relations import Proposition, Propositions, normalize_text

STATEMENT_TEMPLATE = (
    "Question: Is the following statement true?\nClaim: {statement}\nI think this Claim is"
)

_NEGATED = re.compile(r"\b(?:is|are|was|were|does|do|did) not\b", re.IGNORECASE)
_TRANSLATION = re.compile(
    r"^the spanish word '(?P<word>.+?)' (?P<verb>means|does not mean) '(?P<meaning>.+)'\.?$"
)
_COMPARISON = re.compile(
    r"^(?P<a>.+?) is (?P<neg>not )?(?P<rel>larger|greater|bigger|smaller|less) than (?P<b>.+?)\.?$"
)
_SMALLER = frozenset({"smaller", "less"})


def _statement(example: Example) -> str | None:
    value = example.fields.get("statement")
    return None if value is None else normalize_text(value)


def city_claim(example: Example) -> Proposition | None:
    """Topic the city, atom the country (fields ``city`` and ``country``), negated when the
    statement says "is not"."""
    city, country = example.fields.get("city"), example.fields.get("country")
    if city is None or country is None:
        return None
    text = _statement(example)
    negated = text is not None and _NEGATED.search(text) is not None
    return Proposition(normalize_text(city), normalize_text(country), negated)


def translation_claim(example: Example) -> Proposition | None:
    """Topic the Spanish word, atom the English meaning, from the statement text."""
    text = _statement(example)
    match = None if text is None else _TRANSLATION.match(text)
    if match is None:
        return None
    return Proposition(match["word"], match["meaning"], match["verb"] != "means")


def comparison_claim(example: Example) -> Proposition | None:
    """Topic and atom the unordered pair of numbers (as written); negated when the statement
    claims the order opposite to the pair's canonical (sorted) one. None for "a ... a"."""
    text = _statement(example)
    match = None if text is None else _COMPARISON.match(text)
    if match is None or match["a"] == match["b"]:
        return None
    # the claim as "x > y"
    x, y = (match["b"], match["a"]) if match["rel"] in _SMALLER else (match["a"], match["b"])
    low, high = min(x, y), max(x, y)
    negated = (x != low) != bool(match["neg"])
    pair = f"{low} | {high}"
    return Proposition(pair, pair, negated)


def _translation_word(example: Example) -> str | None:
    claim = translation_claim(example)
    return None if claim is None else str(claim.topic)


def _number_pair(example: Example) -> str | None:
    claim = comparison_claim(example)
    return None if claim is None else str(claim.topic)


_CITIES_LOGIC = (
    " Two statements placing one city in different countries cannot both be True; "
    "'is in C' and 'is not in C' get opposite labels (the relation reads the polarity from "
    "the statement, so a file mixing cities and neg_cities works too). Drop the gold-derived "
    "column correct_country."
)
_TRANSLATION_LOGIC = (
    " 'w' means 'm' and 'w' does not mean 'm' get opposite labels; a file mixing sp_en_trans "
    "and neg_sp_en_trans gets those constraints (a single file has almost none)."
)
_COMPARISON_LOGIC = (
    " Statements about one pair of numbers, larger or smaller, in either order, get equal or "
    "opposite labels (the numbers are distinct). Drop the gold-derived columns diff and "
    "abs_diff."
)


def _task(
    name: str,
    what: str,
    logic: str,
    relation: Propositions,
    *,
    fields: str = "statement",
    group_field: str | None = None,
    group_fn: Callable[[Example], str | None] | None = None,
) -> TemplateTask:
    return TemplateTask(
        name=name,
        template=STATEMENT_TEMPLATE,
        relation=relation,
        group_field=group_field,
        group_fn=group_fn,
        description=f"{what} (fields: {fields}).{logic}",
    )


_CITY = Propositions(city_claim, exclusive=True)
_TRANSLATE = Propositions(translation_claim)
_COMPARE = Propositions(comparison_claim)

STATEMENT_TASKS: Mapping[str, TemplateTask] = {
    t.name: t
    for t in (
        _task(
            "cities",
            "Statements 'The city of X is in Y.'",
            _CITIES_LOGIC,
            _CITY,
            fields="statement, city, country",
            group_field="city",
        ),
        _task(
            "neg_cities",
            "Statements 'The city of X is not in Y.'",
            _CITIES_LOGIC,
            _CITY,
            fields="statement, city, country",
            group_field="city",
        ),
        _task(
            "sp_en_trans",
            "Statements \"The Spanish word 'w' means 'm'.\"",
            _TRANSLATION_LOGIC,
            _TRANSLATE,
            group_fn=_translation_word,
        ),
        _task(
            "neg_sp_en_trans",
            "Statements \"The Spanish word 'w' does not mean 'm'.\"",
            _TRANSLATION_LOGIC,
            _TRANSLATE,
            group_fn=_translation_word,
        ),
        _task(
            "larger_than",
            "Statements 'a is larger than b.' (numbers in words)",
            _COMPARISON_LOGIC,
            _COMPARE,
            group_fn=_number_pair,
        ),
        _task(
            "smaller_than",
            "Statements 'a is smaller than b.' (numbers in words)",
            _COMPARISON_LOGIC,
            _COMPARE,
            group_fn=_number_pair,
        ),
    )
}
