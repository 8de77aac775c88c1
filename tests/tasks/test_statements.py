"""The geometry-of-truth statement tasks: their relations on crafted statements and on rows
of the real files (read by path; skipped without the shared data). Gold labels only check
the relations here; the relations themselves never see them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from icm_client.dataset import Example, load_dataset
from icm_client.tasks import BUILTIN_TASKS, get_task
from icm_client.tasks.statements import comparison_claim, translation_claim

SAME = frozenset({(0, 0), (1, 1)})
OPPOSITE = frozenset({(0, 1), (1, 0)})
NOT_BOTH_TRUE = frozenset({(0, 1), (1, 0), (1, 1)})
NOT_BOTH_FALSE = frozenset({(0, 0), (0, 1), (1, 0)})

# per task: files, columns to drop (gold-derived), least constraints expected
FILES = {
    "cities": (("cities.csv",), ("correct_country",)),
    "neg_cities": (("neg_cities.csv",), ("correct_country",)),
    "sp_en_trans": (("sp_en_trans.csv", "neg_sp_en_trans.csv"), ()),
    "neg_sp_en_trans": (("neg_sp_en_trans.csv",), ()),
    "larger_than": (("larger_than.csv",), ("diff", "abs_diff")),
    "smaller_than": (("smaller_than.csv", "larger_than.csv"), ("diff", "abs_diff")),
}


def st(i: int, statement: str, **fields: str) -> Example:
    return Example(f"e{i}", {"statement": statement, **fields})


def pairs(task: str, examples: list[Example]) -> dict[tuple[int, int], frozenset[tuple[int, int]]]:
    return {(c.i, c.j): c.allowed for c in get_task(task).constraints(examples)}


def test_registry_has_the_statement_tasks() -> None:
    assert set(FILES) <= set(BUILTIN_TASKS)


def test_cities_with_negations() -> None:
    examples = [
        st(0, "The city of Paris is in France.", city="Paris", country="France"),
        st(1, "The city of Paris is in Japan.", city="Paris", country="Japan"),
        st(2, "The city of Paris is not in France.", city="Paris", country="France"),
        st(3, "The city of Paris is not in Japan.", city="Paris", country="Japan"),
        st(4, "The city of Tokyo is in Japan.", city="Tokyo", country="Japan"),
    ]
    assert pairs("neg_cities", examples) == {
        (0, 1): NOT_BOTH_TRUE,  # one city, two countries
        (0, 2): OPPOSITE,  # "is in" / "is not in"
        (0, 3): frozenset({(0, 0), (1, 0), (1, 1)}),  # in France => not in Japan
        (1, 2): frozenset({(0, 0), (1, 0), (1, 1)}),
        (1, 3): OPPOSITE,
        (2, 3): NOT_BOTH_FALSE,  # it is in at most one of them
    }
    assert pairs("cities", examples) == pairs("neg_cities", examples)
    assert get_task("cities").group(examples[2]) == "Paris"


def test_translations() -> None:
    examples = [
        st(0, "The Spanish word 'uno' means 'one'."),
        st(1, "The Spanish word 'uno' does not mean 'one'."),
        st(2, "The Spanish word 'uno' means 'a'."),  # words have several meanings
        st(3, "The Spanish word 'dos' means 'two'."),
        st(4, "The Spanish word 'uno' means 'one'."),
    ]
    assert pairs("sp_en_trans", examples) == {(0, 1): OPPOSITE, (0, 4): SAME, (1, 4): OPPOSITE}
    assert get_task("sp_en_trans").group(examples[2]) == "uno"
    assert translation_claim(st(9, "Something else.")) is None


def test_number_comparisons() -> None:
    examples = [
        st(0, "Fifty-one is larger than fifty-two."),
        st(1, "Fifty-two is larger than fifty-one."),
        st(2, "Fifty-one is smaller than fifty-two."),
        st(3, "Fifty-two is smaller than fifty-one."),
        st(4, "Sixty is larger than fifty-one."),
    ]
    assert pairs("larger_than", examples) == {
        (0, 1): OPPOSITE,
        (0, 2): OPPOSITE,
        (0, 3): SAME,
        (1, 2): SAME,
        (1, 3): OPPOSITE,
        (2, 3): OPPOSITE,
    }
    groups = {get_task("smaller_than").group(ex) for ex in examples[:4]}
    assert groups == {"fifty-one | fifty-two"}
    assert comparison_claim(st(9, "Ten is larger than ten.")) is None


def test_relations_ignore_gold_and_gold_derived_columns() -> None:
    base = [
        st(0, "The city of Paris is in France.", city="Paris", country="France"),
        st(1, "The city of Paris is in Japan.", city="Paris", country="Japan"),
        st(2, "Two is larger than one."),
        st(3, "One is larger than two."),
    ]
    leaked = [
        Example(ex.id, {**ex.fields, "label": "1", "correct_country": "France", "diff": "1"})
        for ex in base
    ]
    for name in FILES:
        task = get_task(name)
        assert task.constraints(base) == task.constraints(leaked)


@pytest.mark.parametrize("name", sorted(FILES))
def test_real_rows_parse_and_gold_satisfies_every_constraint(name: str, shared_data: Path) -> None:
    files, drop = FILES[name]
    folder = shared_data / "geometry-of-truth"
    examples: list[Example] = []
    labels: list[int] = []
    for file in files:
        ds = load_dataset(folder / file, id_field=None, drop=drop)
        assert ds.gold is not None
        assert not set(drop) & set(ds.examples[0].fields)
        examples += ds.examples
        labels += [0 if ds.gold.by_id[ex.id] == "True" else 1 for ex in ds.examples]
    task = get_task(name)
    relation = task.relation
    assert relation is not None
    assert all(relation.parse(ex) is not None for ex in examples)  # type: ignore[attr-defined]
    constraints = task.constraints(examples)
    assert all(c.satisfied(labels[c.i], labels[c.j]) for c in constraints)
    assert all(task.group(examples[c.i]) == task.group(examples[c.j]) for c in constraints)
    reasons = Counter(c.reason for c in constraints)
    if name in ("cities", "neg_cities"):
        assert reasons == {"different answers": 748}  # every city: its two countries
    elif name == "sp_en_trans":  # both files: every statement against its negation
        assert reasons["negation"] == 360
    elif name == "larger_than":
        assert reasons == {"negation": 990}  # every pair in both orders
    elif name == "smaller_than":  # with larger_than: 4 statements per pair of numbers
        assert reasons == {"negation": 3960, "same claim": 1980}
