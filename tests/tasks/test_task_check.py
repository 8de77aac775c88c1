"""Stumble 1 of issue 18: a typo in a task file must fail at once, before any model call,
naming the missing field, the fields there are and the closest one; a relation that finds no
pair is an error unless allowed; ``group`` takes a list of fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fault_server import fault_server

from icm_client.cli import main
from icm_client.dataset import Example, load_dataset
from icm_client.errors import TaskError
from icm_client.tasks import get_task
from icm_client.tasks.check import check_task, task_fields

TASK = """name = "arithmetic"
template = "Claim: {{question}} = {{answer}}\\nI think this claim is"
group = {group}

[relation]
kind = "answer_consistency"
answer = "{answer}"
"""


def write(tmp_path: Path, *, answer: str = "answer", group: str = '"question"') -> Path:
    task = tmp_path / "task.toml"
    task.write_text(TASK.format(answer=answer, group=group))
    return task


def data(tmp_path: Path, rows: list[dict[str, object]] | None = None) -> Path:
    rows = rows or [
        {"id": f"r{i}", "question": f"{i // 2} + 1", "answer": str(i % 3), "label": i % 2 == 0}
        for i in range(8)
    ]
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_typo_in_relation_field_fails_with_the_fields_and_a_close_match(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = write(tmp_path, answer="anwser")
    code = main(["task", "check", str(task), str(data(tmp_path))])
    err = capsys.readouterr().err
    assert code == 2
    assert "'anwser'" in err and "relation.answer" in err
    assert "the fields are: answer, question" in err
    assert "did you mean 'answer'?" in err


def test_typo_stops_icm_label_before_any_model_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = write(tmp_path, answer="tgt")
    out = tmp_path / "labels.jsonl"
    with fault_server() as server:
        code = main(
            [
                *("label", str(data(tmp_path)), "--task", str(task), "--out", str(out)),
                *("--base-url", server.base_url, "--no-cache", "--quiet"),
            ]
        )
        assert sum(server.requests.values()) == 0  # not even the model list or a probe
    assert code == 2
    assert "'tgt'" in capsys.readouterr().err
    assert not out.exists()


def test_pairs_are_counted_and_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = data(tmp_path)
    assert main(["task", "check", str(write(tmp_path)), str(path)]) == 0
    out = capsys.readouterr().out
    task = get_task(write(tmp_path))
    pairs = len(task.constraints(load_dataset(path).examples))
    assert pairs > 0
    assert f"relation answer_consistency: {pairs} constrained pairs" in out
    assert "groups: 4" in out


def test_a_relation_with_no_pairs_is_an_error_unless_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows: list[dict[str, object]] = [
        {"id": f"r{i}", "question": f"q{i}", "answer": "1"} for i in range(5)
    ]  # every example its own group: no pair
    args = ["task", "check", str(write(tmp_path)), str(data(tmp_path, rows))]
    assert main(args) == 2
    assert "no constrained pair" in capsys.readouterr().err
    assert main([*args, "--allow-empty-relation"]) == 0
    assert "0 constrained pairs" in capsys.readouterr().out


def test_group_takes_a_list_of_fields(tmp_path: Path) -> None:
    task = get_task(write(tmp_path, group='["subject", "relation"]'))
    rows = [
        {"id": "a", "subject": "Paris", "relation": "capital of", "answer": "France"},
        {"id": "b", "subject": "Paris", "relation": "capital of", "answer": "Spain"},
        {"id": "c", "subject": "Paris", "relation": "largest city of", "answer": "Spain"},
        {"id": "d", "subject": "Rome", "relation": "capital of", "answer": "Spain"},
    ]
    examples = load_dataset(data(tmp_path, [{**r, "question": "x"} for r in rows])).examples
    pairs = task.constraints(examples)
    assert [(c.i, c.j, c.reason) for c in pairs] == [(0, 1, "different answers")]
    assert task.group(examples[0]) == task.group(examples[1]) != task.group(examples[2])
    assert ("group", "subject") in task_fields(task) and ("group", "relation") in task_fields(task)
    assert check_task(task, examples).pairs == 1
    no_relation = [
        Example(ex.id, {k: v for k, v in ex.fields.items() if k != "relation"}) for ex in examples
    ]
    with pytest.raises(TaskError, match="reads field 'relation' \\(group\\)"):
        check_task(task, no_relation)


def test_task_check_without_data_lists_the_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["task", "check", str(write(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "template=question" in out and "relation.answer=answer" in out


@pytest.mark.parametrize("command", ["task check", "label"])
def test_a_template_typo_gets_the_same_did_you_mean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    task = tmp_path / "task.toml"
    task.write_text(
        TASK.format(answer="answer", group='"question"').replace("{question}", "{qestion}")
    )
    argv = [*command.split(), str(data(tmp_path)), "--task", str(task)]
    if command == "task check":
        argv = ["task", "check", str(task), str(data(tmp_path))]
    else:
        argv += ["--out", str(tmp_path / "l.jsonl"), "--base-url", "http://127.0.0.1:9/v1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "'qestion' (template)" in err and "the fields are: answer, question" in err
    assert "did you mean 'question'?" in err


def test_a_row_without_the_field_is_named_by_its_line_where_it_has_no_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows: list[dict[str, object]] = [
        {"question": f"{i} + 1", "answer": str(i + 1)} for i in range(4)
    ]
    rows[2] = {"qestion": "2 + 1", "answer": "3"}
    path = data(tmp_path, rows)
    assert main(["task", "check", str(write(tmp_path)), str(path), "--allow-empty-relation"]) == 2
    err = capsys.readouterr().err
    assert f"{path}:3 (example " in err and "needs field 'question'" in err
    assert "did you mean 'qestion'?" in err and "Traceback" not in err


def test_label_words_without_a_leading_space_are_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = write(tmp_path)
    task.write_text(task.read_text() + "")
    text = task.read_text().replace(
        'group = "question"', 'group = "question"\nlabels = ["True", " False"]'
    )
    task.write_text(text)
    assert main(["task", "check", str(task), str(data(tmp_path))]) == 0
    err = capsys.readouterr().err
    assert "icm: warning:" in err and "label words ['True'] have no leading space" in err
    assert "' True'" in err
    assert main(["task", "check", str(write(tmp_path)), str(data(tmp_path))]) == 0
    assert "leading space" not in capsys.readouterr().err  # the default words carry it
