"""``evaluate`` and ``icm eval``: splits by group, the demonstration budget, every condition's
labels, statistics, and the CLI over a real loopback server.

Most tests use ``Learner``, a stand-in model that learns from its demonstrations (it counts
how demonstrations of the target's kind were labeled), so that the labels of a condition
visibly decide its accuracy; it also fails loudly if a target ever appears in its own
context. The CLI tests use ``FaultServer`` (hash-based logprobs over real HTTP).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import httpx2
import pytest
from fault_server import FaultServer

from icm_client.backends import Backend, OpenAICompletions, ScoreRequest, ScoreResult, Usage
from icm_client.backends.anthropic import AnthropicChat
from icm_client.cli import main
from icm_client.client import ScoringClient
from icm_client.dataset import Example, GoldLabels, load_dataset
from icm_client.errors import ConfigError, DataError
from icm_client.evaluate import (
    EvalConfig,
    evaluate,
    split_by_group,
    straddling,
)
from icm_client.evaluate.demos import bootstrap_labels
from icm_client.evaluate.results import ConditionResult, EvalResult
from icm_client.evaluate.stats import auroc, mean_ci
from icm_client.scoring.base import Prediction
from icm_client.scoring.manyshot import estimate_tokens, fix_inconsistencies, select_demos
from icm_client.tasks import Equivalence, PairConstraint, TemplateTask, get_task
from icm_client.tasks.components import components
from icm_client.tasks.relations import EXACTLY_ONE_POSITIVE, Negation

SAMPLES = Path(__file__).resolve().parents[2] / "icm_client" / "samples"

# "Claim: alpha 3 (topic t1)": alpha claims are True, beta claims False. Two claims per topic.
TASK = TemplateTask(
    "kinds", "Claim: {kind} {n} (topic {topic})\nI think this Claim is", group_field="topic"
)


def kinds_data(n: int = 40) -> tuple[list[Example], GoldLabels]:
    examples = [
        Example(f"x{i}", {"kind": "alpha" if i % 3 else "beta", "n": i, "topic": f"t{i // 2}"})
        for i in range(n)
    ]
    gold = GoldLabels(
        {ex.id: "True" if ex.fields["kind"] == "alpha" else "False" for ex in examples}
    )
    return examples, gold


class Learner(Backend):
    """P(True) after a prompt = share of True among the demonstrations of the target's kind
    (add-one smoothed). Zero-shot it knows nothing (a tie, so the argmax says True)."""

    identity = "learner"

    def __init__(self) -> None:
        self.usage: Usage = Usage()
        self.prompts: list[str] = []

    async def score(self, request: ScoreRequest) -> ScoreResult:
        self.prompts.append(request.prompt)
        *demos, target = request.prompt.split("\n\n")
        assert all(not d.startswith(target) for d in demos), "a target is in its own context"
        kind = target.removeprefix("Claim: ").split(" ")[0]
        true = 1 + sum(d.startswith(f"Claim: {kind} ") and d.endswith(" True") for d in demos)
        false = 1 + sum(d.startswith(f"Claim: {kind} ") and d.endswith(" False") for d in demos)
        self.usage.calls += 1
        total = true + false
        return ScoreResult((math.log(true / total), math.log(false / total)), (False, False))

    async def aclose(self) -> None:
        pass


def by_name(result: EvalResult) -> dict[str, ConditionResult]:
    return {c.name: c for c in result.conditions}


# --- statistics -----------------------------------------------------------------------------


def test_mean_ci_and_auroc() -> None:
    assert mean_ci([0.5]) == (0.5, None)
    mean, half = mean_ci([0.4, 0.5, 0.6])
    assert mean == pytest.approx(0.5) and half == pytest.approx(4.303 * 0.1 / math.sqrt(3))
    assert auroc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert auroc([0.1, 0.2, 0.9, 0.8], [True, True, False, False]) == 0.0
    assert auroc([0.5, 0.5, 0.5, 0.5], [True, False, True, False]) == 0.5
    assert auroc([0.3, 0.7, 0.5], [True, True, False]) == 0.5  # one pair above, one below
    assert auroc([0.1, 0.2], [True, True]) is None


# --- splits ---------------------------------------------------------------------------------


def test_split_keeps_groups_and_constraints_together() -> None:
    examples = [Example(f"e{i}", {"q": f"q{i // 3}", "c": f"c{i % 4}"}) for i in range(60)]
    task = TemplateTask("t", "{q} {c}", group_field="q", relation=Equivalence("c"))
    assert len(components(examples, task)) == 1  # the relation joins everything: no split
    plain = TemplateTask("t", "{q} {c}", group_field="q")
    train, test = split_by_group(examples, plain, 0.3, seed=1)
    assert len(train) + len(test) == 60 and len(test) == 18
    assert {e.fields["q"] for e in train}.isdisjoint({e.fields["q"] for e in test})
    assert straddling(train, test, plain) == 0
    assert straddling(train[:-1], (*test, train[-1]), plain) == 1
    again = split_by_group(examples, plain, 0.3, seed=1)
    assert again == (train, test) and split_by_group(examples, plain, 0.3, seed=2) != again


def test_split_of_a_real_file_never_cuts_a_city(shared_data: Path) -> None:
    path = shared_data / "geometry-of-truth" / "cities.csv"
    ds = load_dataset(path, limit=200, drop=("correct_country",))
    train, test = split_by_group(ds.examples, get_task("cities"), 0.5)
    assert {e.fields["city"] for e in train}.isdisjoint({e.fields["city"] for e in test})
    assert len(test) == 100


# --- demonstrations -------------------------------------------------------------------------


def test_demos_fit_the_budget_and_differ_by_seed() -> None:
    examples, _ = kinds_data(40)
    cost = estimate_tokens(TASK.render(examples[0]) + " False\n\n")
    demos = select_demos(TASK, examples, 0, max_tokens=10 * cost)
    assert 8 <= len(demos) <= 10
    assert sum(estimate_tokens(TASK.render(examples[j]) + " False\n\n") for j in demos) <= (
        10 * cost
    )
    assert select_demos(TASK, examples, 0, max_tokens=10 * cost) == demos
    assert select_demos(TASK, examples, 1, max_tokens=10 * cost) != demos
    assert len(select_demos(TASK, examples, 0, max_tokens=10**6, max_demos=5)) == 5
    assert select_demos(TASK, examples, 0, max_tokens=1) == []


def test_fix_inconsistencies_takes_the_best_allowed_pair() -> None:
    one = PairConstraint(0, 1, EXACTLY_ONE_POSITIVE)
    preds = {
        0: Prediction.from_raw([math.log(0.9), math.log(0.1)]),
        1: Prediction.from_raw([math.log(0.6), math.log(0.4)]),
    }
    labels = {0: 0, 1: 0}
    assert fix_inconsistencies(labels, preds, [one]) == 1
    assert labels == {0: 0, 1: 1}
    assert fix_inconsistencies(labels, preds, [one]) == 0


# --- evaluate -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_conditions_are_decided_by_their_labels() -> None:
    examples, gold = kinds_data(60)
    train, test = split_by_group(examples, TASK, 0.5)
    # ICM got every label of the train split inverted
    inverted = {ex.id: "False" if gold.get(ex.id) == "True" else "True" for ex in train}
    learner = Learner()
    config = EvalConfig(max_demo_tokens=400, conditions=("zero-shot", "gold", "icm", "perturbed"))
    result = await evaluate(
        TASK, learner, train, test, gold, train_gold=gold, icm_labels=inverted, config=config
    )
    got = by_name(result)
    true_share = sum(gold.get(ex.id) == "True" for ex in test) / len(test)
    assert got["zero-shot"].accuracy == pytest.approx(true_share)  # a tie: always " True"
    assert got["gold"].accuracy == 1.0 and got["gold"].demo_accuracy == 1.0
    assert got["icm"].accuracy == 0.0 and got["icm"].demo_accuracy == 0.0
    assert got["perturbed"].accuracy == 0.0  # as wrong as ICM: every gold label changed
    assert result.majority_accuracy == max(true_share, 1 - true_share)
    # every seed's conditions share one demonstration set
    for seed in range(3):
        assert len({c.seeds[seed].demos for c in result.conditions if c.name != "zero-shot"}) == 1
    assert got["gold"].ci95 == 0.0 and got["zero-shot"].ci95 is None
    assert "majority" in result.table() and "| gold | 100.0% |" in result.table("markdown")


@pytest.mark.anyio
async def test_perturbed_labels_match_icm_accuracy_on_every_seed() -> None:
    examples, gold = kinds_data(80)
    train, test = split_by_group(examples, TASK, 0.5)
    icm = {
        ex.id: (gold.by_id[ex.id] if k % 10 < 7 else "True")  # about 85% right
        for k, ex in enumerate(train)
    }
    config = EvalConfig(max_demo_tokens=600, conditions=("icm", "perturbed", "random"), seeds=4)
    result = await evaluate(
        TASK, Learner(), train, test, gold, train_gold=gold, icm_labels=icm, config=config
    )
    got = by_name(result)
    icm_acc = [s.demo_accuracy for s in got["icm"].seeds]
    assert [s.demo_accuracy for s in got["perturbed"].seeds] == icm_acc
    known = [a for a in icm_acc if a is not None]
    assert len(known) == len(icm_acc) and 0.6 < sum(known) / len(known) < 1.0
    assert got["random"].ci95 is not None and got["random"].ci95 > 0


@pytest.mark.anyio
async def test_skipped_conditions_say_why() -> None:
    examples, gold = kinds_data(20)
    train, test = split_by_group(examples, TASK, 0.5)
    result = await evaluate(TASK, Learner(), train, test, gold, config=EvalConfig(seeds=1))
    got = by_name(result)
    assert "ICM" in (got["icm"].skipped or "") and "gold" in (got["gold"].skipped or "")
    assert "chat" in (got["chat"].skipped or "") and got["random"].skipped is None
    with pytest.raises(DataError, match="none of the train examples"):
        await evaluate(TASK, Learner(), train, test, gold, icm_labels={"nope": "True"})
    with pytest.raises(DataError, match="'Maybe'"):
        await evaluate(TASK, Learner(), train, test, gold, icm_labels={train[0].id: "Maybe"})
    with pytest.raises(DataError, match="no test example has a gold label"):
        await evaluate(TASK, Learner(), train, test, GoldLabels({}))
    with pytest.raises(ConfigError, match="holds no demonstration"):
        await evaluate(TASK, Learner(), train, test, gold, config=EvalConfig(max_demo_tokens=3))
    zero_only = EvalConfig(max_demo_tokens=3, conditions=("zero-shot",))
    assert (await evaluate(TASK, Learner(), train, test, gold, config=zero_only)).conditions


@pytest.mark.anyio
async def test_bootstrap_repairs_with_the_relation_and_never_self_predicts() -> None:
    """Statement and negation pairs: zero-shot says True to both (a tie), which the relation
    forbids; the repaired labels of every round satisfy it."""
    task = TemplateTask("neg", "Claim: {s}\nI think this Claim is", relation=Negation("s"))
    examples = [
        Example(f"e{i}", {"s": f"item {i // 2} is {'not ' if i % 2 else ''}red"}) for i in range(20)
    ]
    learner = Learner()
    demos = list(range(20))
    zero = {i: Prediction.from_raw([0.0, 0.0]) for i in demos}
    labels, repairs = await bootstrap_labels(
        task, examples, learner, demos, zero, rounds=2, folds=4
    )
    constraints = task.constraints(examples)
    assert len(constraints) == 10 and repairs >= 10
    assert all(c.satisfied(labels[c.i], labels[c.j]) for c in constraints)
    assert learner.usage.calls == 2 * 20  # each demonstration once a round, out of fold


@pytest.mark.anyio
async def test_chat_condition_through_the_anthropic_sdk() -> None:
    examples, gold = kinds_data(20)
    train, test = split_by_group(examples, TASK, 0.5)

    def reply(request: httpx2.Request) -> httpx2.Response:
        text = json.loads(request.content)["messages"][0]["content"][0]["text"]
        answer = "True" if "alpha" in text else "Maybe" if " 0 " in text else "False"
        return httpx2.Response(
            200,
            json={
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-test",
                "content": [{"type": "text", "text": answer}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 30, "output_tokens": 1},
            },
        )

    client = httpx2.AsyncClient(transport=httpx2.MockTransport(reply))
    chat = AnthropicChat("claude-test", api_key="k", base_url="https://x.test", http_client=client)
    config = EvalConfig(conditions=("chat",), seeds=1)
    result = await evaluate(TASK, Learner(), train, test, gold, chat=chat, config=config)
    (row,) = result.conditions
    assert row.seeds[0].unparsed == sum(ex.fields["n"] == 0 for ex in test)
    assert row.accuracy == (len(test) - row.seeds[0].unparsed) / len(test)


# --- the CLI over HTTP ------------------------------------------------------------------------


def test_icm_eval_cli_writes_json_and_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval.json"
    prefix = tmp_path / "cities"
    with FaultServer() as server:
        args = ["--base-url", server.base_url, "--no-cache", "--quiet", "--max-demo-tokens", "200"]
        code = main(
            [
                "eval",
                "sample:cities",
                "--split",
                "0.5",
                "--task",
                "cities",
                "--out",
                str(out),
                "--write-split",
                str(prefix),
                "--conditions",
                "zero-shot,gold,random,bootstrap",
                "--seeds",
                "2",
                *args,
            ]
        )
        assert code == 0
        printed = capsys.readouterr().out
        data = json.loads(out.read_text())
        assert [c["name"] for c in data["conditions"]] == [
            "zero-shot",
            "gold",
            "random",
            "bootstrap",
        ]
        assert data["test_examples"] == 40 and data["train_examples"] == 40
        gold = data["conditions"][1]
        assert len(gold["seeds"]) == 2 and gold["demo_accuracy"] == 1.0
        assert gold["usage"]["calls"] > 0
        assert "zero-shot" in printed and "bootstrap" in printed
        train = load_dataset(prefix.with_name("cities.train.jsonl"))
        test = load_dataset(prefix.with_name("cities.test.jsonl"))
        assert train.gold is not None and len(train) == 40 and len(test) == 40
        # the two written files evaluate the same as the split they came from
        out2 = tmp_path / "eval2.json"
        code = main(
            [
                "eval",
                "--train",
                str(prefix.with_name("cities.train.jsonl")),
                "--test",
                str(prefix.with_name("cities.test.jsonl")),
                "--task",
                "cities",
                "--out",
                str(out2),
                "--conditions",
                "zero-shot,gold,random",
                "--seeds",
                "2",
                *args,
            ]
        )
    assert code == 0
    again = json.loads(out2.read_text())
    assert again["straddling"] == 0
    for a, b in zip(again["conditions"], data["conditions"], strict=False):
        assert a["accuracy"] == b["accuracy"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--split", "0.5", "--train", "x"], "not both"),
        (["--split", "1.5"], "--split"),
        (["--conditions", "zero-shot,magic"], "magic"),
        (["--split", "0.5", "--seeds", "0"], "--seeds"),
        (["--split", "0.5", "--labels", "missing.jsonl"], "missing.jsonl"),
    ],
)
def test_icm_eval_bad_input_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    out = tmp_path / "eval.json"
    args = ["eval", "sample:cities", "--task", "cities", "--out", str(out)]
    args += ["--base-url", "http://127.0.0.1:9/v1", "--no-cache", *extra]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_eval_of_a_test_file_without_gold_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "nogold.jsonl"
    data.write_text('{"id": "a", "statement": "S.", "city": "c", "country": "k"}\n')
    args = ["eval", "--train", str(SAMPLES / "cities_sample.jsonl"), "--test", str(data)]
    args += ["--task", "cities", "--out", str(tmp_path / "e.json"), "--no-cache"]
    assert main([*args, "--base-url", "http://127.0.0.1:9/v1"]) == 2
    assert "no gold labels" in capsys.readouterr().err


# --- the real model -------------------------------------------------------------------------


# Behind the benchmark marker: icm eval on the real model; icm eval end to end:
# test_icm_eval_cli_writes_json_and_table
@pytest.mark.benchmark
@pytest.mark.anyio
async def test_eval_with_the_embedded_model_on_cities(local_server: str, shared_data: Path) -> None:
    """A handful of real rows through the real model: every condition that needs no extra
    input produces a valid accuracy, and gold demonstrations are what they claim to be."""
    path = shared_data / "geometry-of-truth" / "cities.csv"
    ds = load_dataset(path, limit=16, drop=("correct_country",))
    assert ds.gold is not None
    task = get_task("cities")
    train, test = split_by_group(ds.examples, task, 0.5)
    backend = ScoringClient(OpenAICompletions(local_server), cache=False)
    try:
        config = EvalConfig(
            seeds=2,
            max_demo_tokens=200,
            conditions=("zero-shot", "gold", "bootstrap"),
            bootstrap_rounds=1,
            bootstrap_folds=2,
            calibrate=True,
        )
        result = await evaluate(
            task, backend, train, test, ds.gold, train_gold=ds.gold, config=config
        )
    finally:
        await backend.aclose()
    got = by_name(result)
    assert all(c.accuracy is not None and 0.0 <= c.accuracy <= 1.0 for c in result.conditions)
    assert got["gold"].demo_accuracy == 1.0 and (got["gold"].demos or 0) > 3
    assert got["zero-shot"].auroc is not None
    assert got["gold"].usage["calls"] > 0
