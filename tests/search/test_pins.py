"""Pinned labels: fixed for the whole run, demonstrations from the start, out of the gold
agreement; bad pins fail early; ``icm review`` writes the least-certain labels as pins,
and a pinned re-run reuses the scores of the first run."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest

import icm_client as icm
from icm_client.backends import OpenAICompletions
from icm_client.cli import main
from icm_client.dataset import GoldLabels
from icm_client.errors import DataError
from icm_client.pins import least_certain, read_pins
from icm_client.run import LabelResult
from icm_client.scoring.context import BoundedContext
from icm_client.search.anneal import Step
from icm_client.testing import (
    MOCK_URL,
    CompletionsApp,
    InContext,
    LoopbackServer,
    Oracle,
    SimulatedData,
    comparison_like,
    gsm8k_like,
    mock_client,
    truthfulqa_like,
)

pytestmark = pytest.mark.anyio


def words(data: SimulatedData) -> dict[str, str]:
    """Gold as id -> label word (what a careful human would pin)."""
    labels = [w.strip() for w in icm.get_task(data.task).labels]
    return {ex.id: labels[y] for ex, y in zip(data.examples, data.gold, strict=True)}


def agreement(result: LabelResult, gold: Mapping[str, str]) -> float:
    rows = [r for r in result.rows if not r.pinned]
    return sum(r.label == gold[r.id] for r in rows) / len(rows)


async def run_label(
    data: SimulatedData,
    app: CompletionsApp,
    pins: Mapping[str, str] | None = None,
    on_step: object = None,
    **config: object,
) -> LabelResult:
    task = icm.get_task(data.task)
    async with OpenAICompletions(MOCK_URL, app.name, client=mock_client(app)) as backend:
        return await icm.label(
            data.examples,
            task,
            backend,
            icm.LabelConfig(**config),
            on_step,  # type: ignore[arg-type]
            pins=pins,
        )


def inverted(data: SimulatedData, seed: int) -> CompletionsApp:
    """A model whose in-context learning carries the concept but whose zero-shot prior is
    mostly wrong: the unsupervised search settles on the complement of gold."""
    task = icm.get_task(data.task)
    return CompletionsApp(InContext(task, data.examples, data.gold, seed=seed, prior_accuracy=0.3))


@pytest.mark.parametrize("seed", [0, 1, 2])
async def test_a_few_least_certain_pins_pull_a_flipped_run_to_gold(seed: int) -> None:
    data = truthfulqa_like(32, seed)
    gold = words(data)
    app = inverted(data, seed)
    free = await run_label(data, app)
    assert agreement(free, gold) <= 0.05  # the complement: the model alone cannot decide

    chosen = least_certain([r.model_dump() for r in free.rows], 4)
    pins = {r["id"]: gold[r["id"]] for r in chosen}
    pinned = (await run_label(data, app, pins)).with_gold(GoldLabels(gold))
    assert agreement(pinned, gold) >= 0.95
    assert pinned.summary.pinned == 4 and pinned.summary.gold_examples == 28


async def test_pins_are_never_proposed_nor_relabeled_even_against_the_model() -> None:
    """An oracle disagrees with every pin here: proposals, ConsistencyFix (GSM8K answers
    bind solutions together) and the complement move all would change them."""
    data = gsm8k_like(24, 0)
    task = icm.get_task(data.task)
    gold = words(data)
    app = CompletionsApp(Oracle(task, data.examples, data.gold))
    wrong = {ex.id: "False" if gold[ex.id] == "True" else "True" for ex in data.examples[:3]}
    index = {ex.id: i for i, ex in enumerate(data.examples)}
    bound = {c.i for c in task.constraints(data.examples)} | {
        c.j for c in task.constraints(data.examples)
    }
    assert bound & {index[i] for i in wrong}  # ConsistencyFix has partners of pins to move
    steps: list[Step] = []
    result = await run_label(data, app, wrong, steps.append)
    assert steps and not {s.example for s in steps} & {index[i] for i in wrong}
    rows = {r.id: r for r in result.rows}
    for i, word in wrong.items():
        assert rows[i].label == word and rows[i].pinned and not rows[i].searched
        assert rows[i].agrees is False  # the model says otherwise, the pin holds
    assert all(not r.pinned for r in result.rows if r.id not in wrong)
    assert result.summary.pinned == 3
    assert result.summary.labeled_by_search == len(data.examples) - 3
    assert result.summary.inconsistencies == 0  # the partners followed the pins


async def test_python_pins_take_label_words_and_refuse_bad_ones() -> None:
    data = comparison_like(8, 0)
    app = CompletionsApp(Oracle(icm.get_task(data.task), data.examples, data.gold))
    gold = words(data)
    first = data.examples[0].id
    result = await run_label(data, app, {first: f" {gold[first]}"})  # the task's own word
    assert next(r for r in result.rows if r.id == first).pinned
    everything = await run_label(data, app, gold)  # nothing left to search
    assert all(r.pinned for r in everything.rows) and everything.summary.steps == 0
    assert everything.summary.labeled_by_search == 0 and everything.summary.converged
    with pytest.raises(DataError, match="unknown example id 'nope'"):
        await run_label(data, app, {"nope": "True"})
    with pytest.raises(DataError, match="label 'Maybe' is not one of the task's labels"):
        await run_label(data, app, {first: "Maybe"})
    a, b = data.examples[0].id, data.examples[1].id  # one pair and its swap
    with pytest.raises(DataError, match="consistency relation"):
        await run_label(data, app, {a: "True", b: "True"})


@pytest.mark.parametrize("share", [1, 4])
def test_bounded_contexts_take_the_pins_first_up_to_half(share: int) -> None:
    ids = [f"ex{i}" for i in range(50)]
    labeled = list(range(50))
    plain = BoundedContext(ids, size=8, seed=1, share=share)
    assert BoundedContext(ids, 8, 1, share, frozenset()).context(7, labeled) == plain.context(
        7, labeled
    )
    few, many = frozenset({3, 10}), frozenset({3, 10, 20, 30, 40, 45})
    for pins in (few, many):
        strategy = BoundedContext(ids, size=8, seed=1, share=share, pinned=pins)
        for target in range(50):
            ctx = strategy.context(target, labeled)
            assert len(ctx) == 8 and target not in ctx and ctx == sorted(ctx)
            group = strategy._group  # a group's own examples are not its demonstrations
            eligible = [p for p in pins if p != target and group[p] != group[target]]
            assert len(pins & set(ctx)) == min(4, len(eligible))


def write_data(path: Path, data: SimulatedData) -> None:
    gold = words(data)
    path.write_text(
        "".join(
            json.dumps({"id": ex.id, **ex.fields, "label": gold[ex.id] == "True"}) + "\n"
            for ex in data.examples
        )
    )


@pytest.mark.parametrize(
    ("pins", "message"),
    [
        ('{"id": "q0-0", "label": "True"}\n{oops\n', "pins.jsonl:2"),
        ('{"id": "q0-0"}\n', "pins.jsonl:1: field 'label'"),
        ('\n{"id": "q0-0", "label": true}\n', "pins.jsonl:2: field 'label'"),
        ('["q0-0", "True"]\n', "pins.jsonl:1"),
        ('{"id": "q0-0", "label": "True"}\n{"id": "zz", "label": "True"}\n', "pins.jsonl:2"),
        ('{"id": "q0-1", "label": "Maybe"}\n', "pins.jsonl:1: pin of 'q0-1': label 'Maybe'"),
        (
            '{"id": "q0-0", "label": "True"}\n{"id": "q0-0", "label": "False"}\n',
            "pins.jsonl:2: id 'q0-0' is pinned to 'True' on line 1",
        ),
        ("\n\n", "pins.jsonl: pins file holds no pins"),
        (None, "pins.jsonl: pins file not found"),
    ],
    ids=[
        "not-json",
        "no-label",
        "label-not-text",
        "not-an-object",
        "unknown-id",
        "unknown-label",
        "conflicting-duplicate",
        "empty",
        "missing",
    ],
)
def test_bad_pins_files_exit_2_naming_the_line_before_any_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pins: str | None, message: str
) -> None:
    data = tmp_path / "data.jsonl"
    write_data(data, truthfulqa_like(8, 0))
    if pins is not None:
        (tmp_path / "pins.jsonl").write_text(pins)
    out = tmp_path / "labels.jsonl"
    args = ["label", str(data), "--task", "truthfulqa", "--out", str(out), "--quiet"]
    args += ["--base-url", "http://127.0.0.1:9/v1", "--no-cache"]  # nothing listens there
    assert main([*args, "--pin", str(tmp_path / "pins.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("icm: error:") and message in err, err
    assert list(tmp_path.glob("labels*")) == []


def test_pins_that_break_the_relation_name_both_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = comparison_like(8, 0)
    data = tmp_path / "data.jsonl"
    write_data(data, sim)
    a, b = sim.examples[0].id, sim.examples[1].id  # "1 is better" cannot hold both ways
    (tmp_path / "pins.jsonl").write_text(
        f'{{"id": "{a}", "label": "True"}}\n\n{{"id": "{b}", "label": "True"}}\n'
    )
    args = ["label", str(data), "--task", "comparison", "--out", str(tmp_path / "o.jsonl")]
    args += ["--base-url", "http://127.0.0.1:9/v1", "--no-cache", "--quiet"]
    assert main([*args, "--pin", str(tmp_path / "pins.jsonl")]) == 2
    err = capsys.readouterr().err
    assert f"{a!r} = True and {b!r} = True (lines 1 and 3)" in err and "pins.jsonl" in err


def test_duplicate_pins_that_agree_are_one_pin(tmp_path: Path) -> None:
    path = tmp_path / "pins.jsonl"
    path.write_text('{"id": "a", "label": "True", "note": "x"}\n{"id": "a", "label": " True"}\n')
    pins = read_pins(path)
    assert pins.labels == {"a": "True"} and pins.where("a") == f"{path}:1"


def test_review_then_pinned_rerun_from_the_cache_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``icm label`` on a loopback server lands on the complement of gold; ``icm review``
    lists the least-certain labels; a person corrects them; ``icm label --pin`` reaches
    gold, and the server computes no prompt a second time."""
    sim = truthfulqa_like(32, 1)
    gold = words(sim)
    data = tmp_path / "data.jsonl"
    write_data(data, sim)
    computed: list[str] = []
    model = inverted(sim, 1).model

    def recording(prompt: str) -> list[tuple[str, float]]:
        computed.append(prompt)
        return model(prompt)

    with LoopbackServer(recording) as server:
        base = ["label", str(data), "--task", "truthfulqa", "--base-url", server.base_url]
        base += ["--cache-dir", str(tmp_path / "cache"), "--quiet"]
        first = tmp_path / "labels.jsonl"
        assert main([*base, "--out", str(first)]) == 0
        free = json.loads((tmp_path / "labels.jsonl.summary.json").read_text())["summary"]
        assert free["gold_agreement"] <= 0.05 and free["pinned"] == 0
        capsys.readouterr()

        pins = tmp_path / "pins.jsonl"
        review = ["review", str(tmp_path / "labels.jsonl.run"), "-n", "4", "--out", str(pins)]
        assert main(review) == 0
        shown = capsys.readouterr().out
        rows = [json.loads(line) for line in first.read_text().splitlines()]
        expected = [r["id"] for r in sorted(rows, key=lambda r: (r["agrees"], r["confidence"]))]
        written = [json.loads(line) for line in pins.read_text().splitlines()]
        assert [w["id"] for w in written] == expected[:4]
        by_id = {r["id"]: r for r in rows}
        assert all(w["label"] == by_id[w["id"]]["label"] for w in written)  # pre-filled
        assert all(w["input"]["question"] for w in written)  # what to check by hand
        assert "4 least-certain labels of 32" in shown and f"--pin {pins}" in shown
        assert main(["review", str(first), "--out", str(pins)]) == 2  # never overwritten
        assert "exists" in capsys.readouterr().err

        # a person checks the four and corrects them
        pins.write_text("".join(json.dumps({**w, "label": gold[w["id"]]}) + "\n" for w in written))
        before = len(computed)
        second = tmp_path / "pinned.jsonl"
        assert main([*base, "--out", str(second), "--pin", str(pins)]) == 0
    summary = json.loads((tmp_path / "pinned.jsonl.summary.json").read_text())["summary"]
    assert summary["gold_agreement"] >= 0.95 and summary["gold_examples"] == 28
    assert summary["pinned"] == 4
    assert summary["cache_hits"] > 0
    assert not set(computed[:before]) & set(computed[before:])  # none computed again
    assert "4 pinned" in capsys.readouterr().out
    pinned_rows = [json.loads(line) for line in second.read_text().splitlines()]
    assert sorted(r["id"] for r in pinned_rows if r["pinned"]) == sorted(w["id"] for w in written)

    # a review of the pinned run keeps its pins, then lists new labels to check
    again = tmp_path / "pins2.jsonl"
    assert main(["review", str(second), "-n", "2", "--out", str(again)]) == 0
    kept = [json.loads(line) for line in again.read_text().splitlines()]
    assert sorted(k["id"] for k in kept[:4]) == sorted(w["id"] for w in written)
    assert all(k["label"] == gold[k["id"]] for k in kept[:4])
    assert len(kept) == 6 and not {k["id"] for k in kept[4:]} & {w["id"] for w in written}


def test_resuming_with_other_pins_is_refused_naming_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = truthfulqa_like(12, 0)
    data = tmp_path / "data.jsonl"
    write_data(data, sim)
    pins = tmp_path / "pins.jsonl"
    pins.write_text('{"id": "q0-0", "label": "True"}\n')
    app = inverted(sim, 0)
    with LoopbackServer(app) as server:
        args = ["label", str(data), "--task", "truthfulqa", "--base-url", server.base_url]
        args += ["--cache-dir", str(tmp_path / "cache"), "--quiet", "--out", str(tmp_path / "o")]
        assert main([*args, "--pin", str(pins)]) == 0
        assert main([*args, "--pin", str(pins)]) == 0  # the same pins: resumed
        pins.write_text('{"id": "q0-0", "label": "False"}\n{"id": "q0-1", "label": "True"}\n')
        capsys.readouterr()
        assert main([*args, "--pin", str(pins)]) == 2
        err = capsys.readouterr().err
        assert "other pins (1 added, 1 relabeled)" in err and "--restart" in err
        assert main([*args]) == 2  # no pins at all is other pins too
        assert "other pins (1 removed)" in capsys.readouterr().err
        assert main([*args, "--pin", str(pins), "--restart"]) == 0
