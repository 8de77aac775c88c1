"""Relations on crafted examples and on the paper's files (read by path, skipped if absent)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from icm_client.dataset import Example, load_dataset
from icm_client.errors import TaskError
from icm_client.tasks import (
    AllOf,
    AnswerConsistency,
    Asymmetry,
    Equivalence,
    Negation,
    PairConstraint,
    Relation,
    get_task,
)
from icm_client.tasks.builtin import extract_final_answer

PAPER = Path("/work/shared/data/icm-paper/data")
GOT = Path("/work/shared/data/geometry-of-truth")

NOT_BOTH_TRUE = frozenset({(0, 1), (1, 0), (1, 1)})
SAME = frozenset({(0, 0), (1, 1)})
EXACTLY_ONE = frozenset({(0, 1), (1, 0)})


def ex(i: int, **fields: str | None) -> Example:
    return Example(f"e{i}", fields)


def pairs(constraints: list[PairConstraint]) -> dict[tuple[int, int], frozenset[tuple[int, int]]]:
    return {(c.i, c.j): c.allowed for c in constraints}


def test_relations_implement_protocol() -> None:
    for rel in (
        AnswerConsistency("g", "a"),
        Asymmetry("g", "x", "y"),
        Equivalence("k"),
        Negation("s"),
        AllOf(()),
    ):
        assert isinstance(rel, Relation)


def test_answer_consistency() -> None:
    examples = [
        ex(0, q="Q1", a="5"),
        ex(1, q="Q2", a="5"),
        ex(2, q="Q1", a="7"),
        ex(3, q="Q1", a=" 5 "),
        ex(4, q="Q1", a=None),
        ex(5, q=None, a="5"),
    ]
    got = pairs(AnswerConsistency("q", "a").constraints(examples, 2))
    assert got == {(0, 2): NOT_BOTH_TRUE, (0, 3): SAME, (2, 3): NOT_BOTH_TRUE}


def test_answer_consistency_with_function_and_order() -> None:
    examples = [ex(i, q="Q", s=f"The answer is {v}.") for i, v in enumerate([3, 4, 3])]
    rel = AnswerConsistency("q", lambda e: extract_final_answer(str(e.fields["s"])))
    out = rel.constraints(examples, 2)
    assert [(c.i, c.j, c.reason) for c in out] == [
        (0, 1, "different answers"),
        (0, 2, "same answer"),
        (1, 2, "different answers"),
    ]


def test_group_size_guard() -> None:
    examples = [ex(i, q="same", a=str(i)) for i in range(5)]
    with pytest.raises(TaskError, match="5 examples share one group"):
        AnswerConsistency("q", "a", max_group_size=4).constraints(examples, 2)


def test_asymmetry_detects_swaps_within_group_only() -> None:
    examples = [
        ex(0, q="Q", x="A", y="B"),
        ex(1, q="Q", x="C", y="D"),
        ex(2, q="Q", x="B ", y=" A"),  # swap of 0 after normalisation
        ex(5, q="Q", x="b", y="a"),  # case differs: not a swap
        ex(3, q="Other", x="D", y="C"),  # swap of 1 but another question
        ex(4, q="Q", x="E", y="E"),  # self-swap: no constraint
    ]
    assert pairs(Asymmetry("q", "x", "y").constraints(examples, 2)) == {(0, 2): EXACTLY_ONE}
    with pytest.raises(TaskError, match="exactly two labels"):
        Asymmetry("q", "x", "y").constraints(examples, 3)


def test_equivalence_and_truthfulqa_duplicates() -> None:
    examples = [
        ex(0, question="Q", choice="Nothing happens."),
        ex(1, question="Q", choice="It breaks."),
        ex(2, question="Q", choice="  nothing   HAPPENS."),
        ex(3, question="Other", choice="Nothing happens."),
    ]
    assert pairs(get_task("truthfulqa").constraints(examples)) == {(0, 2): SAME}
    assert pairs(Equivalence("choice").constraints(examples, 2)) == {
        (0, 2): SAME,
        (0, 3): SAME,
        (2, 3): SAME,
    }


def test_cities_relation() -> None:
    examples = [
        ex(0, city="Paris", country="France"),
        ex(1, city="Paris", country="Japan"),
        ex(2, city="Tokyo", country="Japan"),
        ex(3, city="Paris", country="France"),
    ]
    got = pairs(get_task("cities").constraints(examples))
    assert got == {(0, 1): NOT_BOTH_TRUE, (0, 3): SAME, (1, 3): NOT_BOTH_TRUE}


def test_negation_and_all_of() -> None:
    examples = [
        ex(0, s="The city of Paris is in France."),
        ex(1, s="The city of Paris is not in France."),
        ex(2, s="The city of Paris is not in Japan."),
    ]
    assert pairs(Negation("s").constraints(examples, 2)) == {(0, 1): EXACTLY_ONE}
    both = AllOf((Negation("s"), Equivalence(lambda e: "k"))).constraints(examples, 2)
    assert pairs(both) == {(0, 1): frozenset(), (0, 2): SAME, (1, 2): SAME}


def test_relations_never_read_labels() -> None:
    """Adding a 'label' field (as if leaked) changes nothing the relations compute."""
    base = [ex(i, question="Q", choice=f"c{i % 2}") for i in range(4)]
    leaked = [Example(e.id, {**e.fields, "label": str(i % 2 == 0)}) for i, e in enumerate(base)]
    for name in ("truthfulqa", "cities", "gsm8k", "comparison"):
        task = get_task(name)
        assert task.constraints(base) == task.constraints(leaked)


# --- real files ----------------------------------------------------------------------------


def needs(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


def test_gsm8k_real_file_constraints_within_questions() -> None:
    ds = load_dataset(needs(PAPER / "test_gsm8k.json"), fields={"cot": "solution"})
    examples = ds.examples
    constraints = get_task("gsm8k").constraints(examples)
    assert constraints
    for c in constraints:
        assert c.i < c.j
        assert examples[c.i].fields["question"] == examples[c.j].fields["question"]
    # the file's own 'answer' field agrees with what we extract from the text almost always
    agree = sum(
        extract_final_answer(str(e.fields["solution"]))
        == extract_final_answer(str(e.fields["answer"]))
        for e in examples
    )
    assert agree / len(examples) > 0.98


def test_alpaca_real_file_swaps_found() -> None:
    ds = load_dataset(needs(PAPER / "test_alpaca.json"), drop=["candidate_label"])
    constraints = get_task("comparison").constraints(ds.examples)
    assert len(constraints) == 467  # every one of the 467 swapped pairs, nothing else
    assert all(c.allowed == EXACTLY_ONE for c in constraints)
    gold = ds.gold
    assert gold is not None
    labels = [gold.by_id[e.id] for e in ds.examples]
    assert all(labels[c.i] != labels[c.j] for c in constraints)  # gold satisfies every one
    ids = [e.fields["consistency_id"] for e in ds.examples]
    assert all(ids[c.i] == ids[c.j] for c in constraints)


def test_cities_real_file() -> None:
    ds = load_dataset(needs(GOT / "cities.csv"))
    constraints = get_task("cities").constraints(ds.examples)
    gold = ds.gold
    assert gold is not None
    labels = [gold.by_id[e.id] for e in ds.examples]
    reasons = Counter(c.reason for c in constraints)
    assert reasons["different answers"] >= 700
    assert all(
        c.satisfied(0 if labels[c.i] == "True" else 1, 0 if labels[c.j] == "True" else 1)
        for c in constraints
    )


def test_negation_real_files() -> None:
    pos = load_dataset(needs(GOT / "cities.csv"), id_field=None).examples
    neg = load_dataset(needs(GOT / "neg_cities.csv"), id_field=None).examples
    constraints = Negation("statement").constraints(pos + neg, 2)
    assert len(constraints) >= 1400
    assert all(c.i < len(pos) <= c.j for c in constraints)


def test_truthfulqa_real_file_only_within_question() -> None:
    ds = load_dataset(needs(PAPER / "train_truthfulqa.json"))
    for c in get_task("truthfulqa").constraints(ds.examples):
        a, b = ds.examples[c.i], ds.examples[c.j]
        assert a.fields["question"] == b.fields["question"] and c.allowed == SAME
