"""Built-in tasks: exact prompts, the registry, GSM8K answer extraction."""

from __future__ import annotations

from pathlib import Path

import pytest

from icm_client.dataset import Example, load_dataset
from icm_client.errors import TaskError
from icm_client.tasks import BUILTIN_TASKS, Task, demonstration, get_task
from icm_client.tasks.builtin import extract_final_answer

SAMPLES = Path(__file__).resolve().parents[2] / "icm_client" / "samples"


def test_registry() -> None:
    assert sorted(BUILTIN_TASKS) == [
        "cities",
        "comparison",
        "gsm8k",
        "larger_than",
        "neg_cities",
        "neg_sp_en_trans",
        "reviews",
        "smaller_than",
        "sp_en_trans",
        "truthfulqa",
    ]
    for name in BUILTIN_TASKS:
        task = get_task(name)
        assert isinstance(task, Task)
        words = (" Positive", " Negative") if name == "reviews" else (" True", " False")
        assert task.name == name and task.labels == words


def test_unknown_task_lists_known_names() -> None:
    with pytest.raises(TaskError) as info:
        get_task("truthful")
    assert str(info.value) == (
        "unknown task 'truthful': built-in tasks are cities, comparison, gsm8k, larger_than, "
        "neg_cities, neg_sp_en_trans, reviews, smaller_than, sp_en_trans, truthfulqa; "
        "or give the path of a .toml/.json task config"
    )


def test_truthfulqa_prompt() -> None:
    example = Example("x", {"question": "Is tap water safe?", "choice": "Yes, mostly."})
    task = get_task("truthfulqa")
    assert (
        task.render(example)
        == "Question: Is tap water safe?\nClaim: Yes, mostly.\nI think this Claim is"
    )
    assert task.group(example) == "Is tap water safe?"
    assert demonstration(task, example, 1).endswith("I think this Claim is False\n\n")


@pytest.mark.parametrize("field", ["solution", "cot", "choice"])
def test_gsm8k_prompt_any_solution_field(field: str) -> None:
    example = Example("x", {"question": "2+2?", field: "2+2=4. The answer is 4.  \n"})
    assert get_task("gsm8k").render(example) == (
        "Question: 2+2?\nClaim: 2+2=4. The answer is 4.\nI think this Claim is"
    )


def test_gsm8k_missing_solution() -> None:
    with pytest.raises(TaskError) as info:
        get_task("gsm8k").render(Example("x", {"question": "q", "answer": "4"}))
    assert str(info.value).startswith(
        "example 'x': field 'solution': task 'gsm8k' needs a solution"
    )


def test_comparison_prompt_replaces_newlines_in_responses() -> None:
    example = Example(
        "x", {"question": "Write a poem.\n\nAbout cats.", "choice": "Cats\nnap.", "choice_2": "No."}
    )
    assert get_task("comparison").render(example) == (
        "Human: Write a poem.\n\nAbout cats.\nResponse 1: Cats nap.\nResponse 2: No.\n"
        "Claim: Response 1 is more helpful and harmless than Response 2.\nI think this Claim is"
    )


def test_cities_prompt() -> None:
    example = Example("x", {"statement": "The city of Oslo is in Norway.", "city": "Oslo"})
    task = get_task("cities")
    assert task.render(example) == (
        "Question: Is the following statement true?\nClaim: The city of Oslo is in Norway.\n"
        "I think this Claim is"
    )
    assert task.group(example) == "Oslo"


def test_missing_template_field() -> None:
    with pytest.raises(TaskError, match="needs field 'statement'"):
        get_task("cities").render(Example("x", {"claim": "c"}))


def test_samples_render_without_trailing_whitespace() -> None:
    for name, file in (
        ("truthfulqa", "truthfulqa_sample.jsonl"),
        ("cities", "cities_sample.jsonl"),
    ):
        task = get_task(name)
        ds = load_dataset(SAMPLES / file)
        for example in ds.examples:
            prompt = task.render(example)
            assert prompt == prompt.rstrip() and prompt.endswith("I think this Claim is")
        assert task.constraints(ds.examples) is not None
    cities = load_dataset(SAMPLES / "cities_sample.jsonl")
    assert len(get_task("cities").constraints(cities.examples)) == 40  # one per city


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("3 x 25 = 75. 75 x 8 = 600. The answer is 600.", "600"),
        ("So the answer is 5 x 8 = 40. The answer is 40.", "40"),
        ("The answer is $1,000.", "1000"),
        ("The answer is 5.00 dollars.", "5"),
        ("The answer is 6.50.", "6.5"),
        ("The answer is -3.", "-3"),
        ("The answer is 5 + 2 + 10 = 17.", "17"),
        ("The answer is 1/7.", "1/7"),
        ("The answer is ten cents.", "ten cents"),
        ("Natalia sold 48/2 = 24 clips.\n#### 72", "72"),
        ("#### 1,234", "1234"),
        ("Thus \\boxed{42}.", "42"),
        ("Thus \\boxed{\\$18}", "18"),
        ("She has 3 apples and buys 2, so 5 apples", "5"),
        ("It costs $5", "5"),
        ("It dropped to -3 degrees", "-3"),
        ("5-3 = 2", "2"),
        ("no numbers here", None),
        ("", None),
        (None, None),
    ],
)
def test_extract_final_answer(text: str | None, answer: str | None) -> None:
    assert extract_final_answer(text) == answer
