"""``await evaluate(...)``: test-split accuracy of many-shot prompting under each way of
labeling the demonstrations, with the paper's baselines.

Conditions (``EvalConfig.conditions``):

* ``zero-shot``: no demonstrations;
* ``icm``: the demonstrations labeled by ICM (a labels file of ``icm label``);
* ``gold``: labeled by the train file's gold labels, the ceiling;
* ``random``: uniformly random labels;
* ``perturbed``: gold labels with exactly as many of them changed, at random, as ICM got
  wrong on the same demonstrations: the paper's Figure 8 (is ICM better or worse than its
  accuracy alone predicts?);
* ``bootstrap``: bootstrapped few-shot, labels from the model's own zero-shot predictions,
  re-predicted in context for a few rounds with the task's consistency relation repairing
  inconsistent pairs (``demos.bootstrap_labels``): the cheap unsupervised baseline;
* ``chat``: a chat model's zero-shot answers (``baselines.zero_shot``), when one is given.

Every seed draws one demonstration set (``scoring.manyshot.select_demos``) that all
conditions share, so differences between conditions are the labels' doing. ``majority``
(always the test split's most common gold label) is reported beside them: no model, the
floor to beat.
Gold labels of the test split only score; those of the train split only feed ``gold`` and
``perturbed`` and report how accurate each condition's demonstration labels were.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..backends.base import Backend
from ..baselines.zero_shot import ChatModel, zero_shot_labels
from ..dataset import Example, GoldLabels, examples_of
from ..errors import ConfigError, DataError
from ..scoring.base import Prediction
from ..scoring.manyshot import estimate_tokens, predict, select_demos
from ..tasks.base import Label, Task
from .demos import bootstrap_labels
from .results import ConditionResult, EvalResult, SeedResult

Condition = Literal["zero-shot", "icm", "gold", "random", "perturbed", "bootstrap", "chat"]
#: The demonstration labels of a condition, given the seed and the demonstrations.
LabelFn = Callable[[int, list[int]], Mapping[int, Label]]

CONDITIONS: tuple[Condition, ...] = (
    "zero-shot",
    "icm",
    "gold",
    "random",
    "perturbed",
    "bootstrap",
    "chat",
)


class EvalConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    conditions: tuple[Condition, ...] = CONDITIONS
    seeds: int = Field(3, ge=1, description="demonstration draws (subset and order)")
    max_demo_tokens: int = Field(2048, ge=1, description="estimated tokens of demonstrations")
    max_demos: int | None = Field(None, ge=1)
    chars_per_token: float = Field(4.0, gt=0, description="for the token estimate")
    calibrate: bool = Field(False, description="contextual calibration (see scoring.context)")
    bootstrap_rounds: int = Field(2, ge=1)
    bootstrap_folds: int = Field(4, ge=1, description="1: leave-one-out (costly)")


def _indices(words: Mapping[str, str], task: Task, what: str) -> dict[str, Label]:
    """Label words (no spaces) to label indices; anything else is a ``DataError``."""
    known = {w.strip(): k for k, w in enumerate(task.labels)}
    out = {}
    for ex_id, word in words.items():
        if word not in known:
            raise DataError(
                f"{what}: label {word!r} of example {ex_id!r} is not a label word of task "
                f"{task.name!r} ({', '.join(known)})"
            )
        out[ex_id] = known[word]
    return out


async def evaluate(
    task: Task,
    backend: Backend,
    train: Sequence[Example],
    test: Sequence[Example],
    test_gold: GoldLabels,
    *,
    train_gold: GoldLabels | None = None,
    icm_labels: Mapping[str, str] | None = None,
    chat: ChatModel | None = None,
    config: EvalConfig | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> EvalResult:
    """Accuracy on ``test`` (those with a gold label) of every condition in ``config``.

    ``icm_labels`` maps example ids to label words (a labels file's ``id`` and ``label``);
    only train examples are used, and only those with a label form the demonstration pool.
    Conditions that lack what they need (no ICM labels, no train gold, no chat model) are
    reported as skipped, with the reason.
    """
    config = config or EvalConfig()
    train, test = examples_of(train), examples_of(test)
    gold_test = _indices(dict(test_gold.by_id), task, "test gold")
    scored = [i for i, ex in enumerate(test) if ex.id in gold_test]
    if not scored:
        raise DataError("no test example has a gold label: nothing to score")
    icm = _indices(dict(icm_labels), task, "ICM labels") if icm_labels is not None else None
    gold_train = _indices(dict(train_gold.by_id), task, "train gold") if train_gold else {}
    pool = demo_pool(train, icm)
    examples = (*pool, *test)  # demonstrations index the pool, targets follow it
    targets = [len(pool) + i for i in scored]
    truth = {len(pool) + i: gold_test[test[i].id] for i in scored}
    await backend.prepare()
    say = on_progress or (lambda _msg: None)
    draws = [
        select_demos(
            task,
            pool,
            seed,
            max_tokens=config.max_demo_tokens,
            max_demos=config.max_demos,
            chars_per_token=config.chars_per_token,
        )
        for seed in range(config.seeds)
    ]
    shots = {"icm", "gold", "random", "perturbed", "bootstrap"} & set(config.conditions)
    if shots and not any(draws):
        shortest = min(estimate_tokens(task.render(ex), config.chars_per_token) for ex in pool)
        raise ConfigError(
            f"--max-demo-tokens {config.max_demo_tokens} holds no demonstration (the "
            f"shortest is about {shortest} tokens): raise it",
            field="max_demo_tokens",
        )
    pool_gold = [gold_train.get(ex.id) for ex in pool]
    zero: dict[int, Prediction] = {}

    async def zero_shot(indices: Sequence[int]) -> dict[int, Prediction]:
        todo = [i for i in indices if i not in zero]
        zero.update(
            await predict(task, examples, backend, [], {}, todo, calibrate=config.calibrate)
        )
        return {i: zero[i] for i in indices}

    def demo_accuracy(labels: Mapping[int, Label], demos: Sequence[int]) -> float | None:
        known = [(labels[j], pool_gold[j]) for j in demos if pool_gold[j] is not None]
        return sum(a == b for a, b in known) / len(known) if known else None

    async def many_shot(seed: int, labels: Mapping[int, Label]) -> SeedResult:
        demos = draws[seed]
        preds = await predict(
            task, examples, backend, demos, labels, targets, calibrate=config.calibrate
        )
        return SeedResult.of(seed, preds, truth, len(demos), demo_accuracy(labels, demos))

    async def seeds_of(label_fn: LabelFn) -> list[SeedResult]:
        out = []
        for seed, demos in enumerate(draws):
            say(f"seed {seed + 1}/{config.seeds}: {len(demos)} demonstrations")
            out.append(await many_shot(seed, label_fn(seed, demos)))
        return out

    missing_gold = sum(1 for g in pool_gold if g is None)

    async def run(name: Condition) -> list[SeedResult] | str:
        """The seeds' results, or why the condition cannot run."""
        if name == "zero-shot":
            preds = await zero_shot(targets)
            return [SeedResult.of(0, preds, truth, 0, None)]
        if name == "icm":
            if icm is None:
                return "no ICM labels given (--labels)"
            labels = {j: icm[ex.id] for j, ex in enumerate(pool)}
            return await seeds_of(lambda _s, _d: labels)
        if name == "random":
            return await seeds_of(
                lambda s, d: _random_labels(d, len(task.labels), f"icm-eval-random:{s}")
            )
        if name == "bootstrap":
            results = []
            for seed, demos in enumerate(draws):
                say(f"seed {seed + 1}/{config.seeds}: bootstrapping {len(demos)} labels")
                start = await zero_shot(demos)
                labels, _ = await bootstrap_labels(
                    task,
                    examples,
                    backend,
                    demos,
                    start,
                    rounds=config.bootstrap_rounds,
                    folds=config.bootstrap_folds,
                    calibrate=config.calibrate,
                )
                results.append(await many_shot(seed, labels))
            return results
        if name == "chat":
            if chat is None:
                return "no chat model configured (--chat-model)"
            answers = await zero_shot_labels([test[i] for i in scored], task, chat)
            right = sum(
                y is not None and y == truth[t]
                for y, t in zip(answers.labels, targets, strict=True)
            )
            return [SeedResult(seed=0, accuracy=right / len(targets), unparsed=answers.unparsed)]
        # gold and perturbed need the train split's gold labels
        if not gold_train:
            return "the train examples have no gold labels"
        if missing_gold:
            return f"{missing_gold} of {len(pool)} demonstration candidates have no gold label"
        gold = {j: y for j, y in enumerate(pool_gold) if y is not None}
        if name == "gold":
            return await seeds_of(lambda _s, _d: gold)
        if icm is None:
            return "no ICM labels to match the accuracy of (--labels)"
        return await seeds_of(
            lambda s, d: _perturbed(gold, {j: icm[pool[j].id] for j in d}, d, len(task.labels), s)
        )

    results: list[ConditionResult] = []
    for name in config.conditions:
        say(f"condition {name}")
        before, start = backend.counted().as_dict(), time.perf_counter()
        outcome = await run(name)
        after = backend.counted().as_dict()
        usage = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}
        results.append(
            ConditionResult.of(name, outcome, len(targets), usage, time.perf_counter() - start)
        )
    counts = Counter(truth.values())
    top, n_top = counts.most_common(1)[0]
    return EvalResult(
        task=task.name,
        backend=backend.identity,
        train_examples=len(train),
        demo_pool=len(pool),
        test_examples=len(test),
        scored_examples=len(targets),
        majority_label=task.labels[top].strip(),
        majority_accuracy=n_top / len(targets),
        config=config.model_dump(mode="json"),
        conditions=results,
    )


def demo_pool(train: Sequence[Example], icm_labels: Mapping[str, object] | None) -> list[Example]:
    """The demonstration candidates: the train examples (with an ICM label, when given)."""
    pool = [ex for ex in train if icm_labels is None or ex.id in icm_labels]
    if icm_labels is not None and not pool:
        raise DataError("the ICM labels name none of the train examples (labels of another file?)")
    return pool


def _random_labels(demos: Sequence[int], n_labels: int, key: str) -> dict[int, Label]:
    rng = random.Random(key)
    return {j: rng.randrange(n_labels) for j in demos}


def _perturbed(
    gold: Mapping[int, Label],
    icm: Mapping[int, Label],
    demos: Sequence[int],
    n_labels: int,
    seed: int,
) -> dict[int, Label]:
    """Gold labels of ``demos`` with exactly as many changed, at random, as ICM got wrong."""
    rng = random.Random(f"icm-eval-perturb:{seed}")
    wrong = sum(icm[j] != gold[j] for j in demos)
    labels = {j: gold[j] for j in demos}
    for j in rng.sample(list(demos), wrong):
        labels[j] = rng.choice([y for y in range(n_labels) if y != gold[j]])
    return labels
