"""Declarative task configs (JSON / TOML): good files build tasks, bad ones say where."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from icm_client.dataset import Example
from icm_client.errors import TaskError
from icm_client.tasks import AnswerConsistency, Asymmetry, Equivalence, Negation, get_task
from icm_client.tasks.config import load_task_config

GOOD_TOML = """
name = "claims"
template = "Question: {question}\\nClaim: {claim}\\nI think this Claim is"
labels = [" Yes", " No"]
group = "question"

[relation]
kind = "answer_consistency"
answer = "final"
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path) -> str:
    with pytest.raises(TaskError) as info:
        load_task_config(path)
    return str(info.value)


def test_good_toml(tmp_path: Path) -> None:
    task = get_task(write(tmp_path, "claims.toml", GOOD_TOML))
    assert task.name == "claims" and task.labels == (" Yes", " No")
    example = Example("x", {"question": "Q?", "claim": "C.", "final": "1"})
    assert task.render(example) == "Question: Q?\nClaim: C.\nI think this Claim is"
    assert task.group(example) == "Q?"
    assert task.relation == AnswerConsistency("question", "final")


@pytest.mark.parametrize(
    ("relation", "expected"),
    [
        ({"kind": "asymmetry", "first": "a", "second": "b"}, Asymmetry("g", "a", "b")),
        (
            {"kind": "asymmetry", "group": "h", "first": "a", "second": "b"},
            Asymmetry("h", "a", "b"),
        ),
        ({"kind": "equivalence", "key": "claim"}, Equivalence("claim")),
        ({"kind": "negation", "field": "claim"}, Negation("claim")),
        ({"kind": "none"}, None),
    ],
)
def test_good_json_relations(tmp_path: Path, relation: dict[str, str], expected: object) -> None:
    config = {"name": "t", "template": "Claim: {claim}\nI think this Claim is", "group": "g"}
    task = load_task_config(write(tmp_path, "t.json", json.dumps({**config, "relation": relation})))
    assert task.relation == expected
    assert task.labels == (" True", " False")  # the default


def test_get_task_by_string_path(tmp_path: Path) -> None:
    path = write(tmp_path, "claims.toml", GOOD_TOML)
    assert get_task(str(path)).name == "claims"


def test_unknown_key(tmp_path: Path) -> None:
    path = write(tmp_path, "t.toml", 'colour = "red"\n' + GOOD_TOML)
    assert error_of(path) == f"{path}: field 'colour': invalid task config: colour: unknown key"
    nested = write(tmp_path, "n.toml", GOOD_TOML + 'colour = "red"\n')  # inside [relation]
    assert "relation.colour: unknown key" in error_of(nested)


def test_missing_template(tmp_path: Path) -> None:
    path = write(tmp_path, "t.json", json.dumps({"name": "t"}))
    assert error_of(path) == (
        f"{path}: field 'template': invalid task config: template: required key is missing"
    )


def test_bad_relation_kind(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "t.json",
        json.dumps({"name": "t", "template": "{x}", "relation": {"kind": "implies"}}),
    )
    msg = error_of(path)
    assert msg.startswith(
        f"{path}: field 'relation': invalid task config: relation: Input tag 'implies'"
    )
    assert "'answer_consistency'" in msg and "'asymmetry'" in msg


def test_relation_missing_field_names_it_without_tag(tmp_path: Path) -> None:
    rel = {"kind": "asymmetry", "group": "q", "first": "a"}
    path = write(tmp_path, "t.json", json.dumps({"name": "t", "template": "{x}", "relation": rel}))
    assert "relation.second: required key is missing" in error_of(path)


def test_relation_without_group(tmp_path: Path) -> None:
    rel = {"kind": "answer_consistency", "answer": "a"}
    path = write(tmp_path, "t.json", json.dumps({"name": "t", "template": "{x}", "relation": rel}))
    assert error_of(path).startswith(
        f"{path}: field 'relation.group': relation 'answer_consistency'"
    )


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("Claim: {claim", "template does not parse"),
        ("Claim: {}", "positional"),
        ("Claim: {0}", "positional"),
        ("No fields at all", "uses no example field"),
    ],
)
def test_bad_templates(tmp_path: Path, template: str, fragment: str) -> None:
    path = write(tmp_path, "t.json", json.dumps({"name": "t", "template": template}))
    msg = error_of(path)
    assert msg.startswith(f"{path}: field 'template': ") and fragment in msg


def test_label_with_trailing_whitespace(tmp_path: Path) -> None:
    path = write(
        tmp_path, "t.json", json.dumps({"name": "t", "template": "{x}", "labels": [" A ", " B"]})
    )
    msg = error_of(path)
    assert msg.startswith(f"{path}: field 'labels': ") and "ends in whitespace" in msg


def test_syntax_errors_and_missing_file(tmp_path: Path) -> None:
    assert error_of(write(tmp_path, "t.toml", "name = \n")).startswith(
        f"{tmp_path / 't.toml'}: invalid TOML"
    )
    assert error_of(write(tmp_path, "t.json", '{\n"name": }')).startswith(
        f"{tmp_path / 't.json'}:2: invalid JSON"
    )
    assert (
        error_of(tmp_path / "none.toml") == f"{tmp_path / 'none.toml'}: task config file not found"
    )
    assert "must be a table/object" in error_of(write(tmp_path, "l.json", "[1]"))


def test_template_field_missing_from_example(tmp_path: Path) -> None:
    task = load_task_config(write(tmp_path, "t.toml", GOOD_TOML))
    with pytest.raises(TaskError) as info:
        task.render(Example("e1", {"question": "Q?"}))
    assert str(info.value).startswith("example 'e1': field 'claim': template of task 'claims'")
