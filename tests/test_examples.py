"""The shipped examples stay true: the task config loads, renders its data and finds its
constraints from the inputs alone."""

from __future__ import annotations

from pathlib import Path

from icm_client.dataset import load_dataset
from icm_client.tasks import get_task

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_arithmetic_config_task_constrains_each_sum() -> None:
    task = get_task(str(EXAMPLES / "arithmetic_task.toml"))
    data = load_dataset(EXAMPLES / "arithmetic.jsonl")
    prompts = [task.render(ex) for ex in data.examples]
    assert all(p == p.rstrip() and p.endswith("I think this claim is") for p in prompts)
    assert prompts[0].startswith("Claim: 22 + 11 = 33\n")
    pairs = {(c.i, c.j) for c in task.constraints(data.examples)}
    # each sum has one right and one wrong result: one constrained pair per sum, no others
    assert pairs == {(2 * k, 2 * k + 1) for k in range(len(data.examples) // 2)}
