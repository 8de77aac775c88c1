"""Context assembly and the scorer: exact prompts, memoisation, bounded contexts."""

from __future__ import annotations

import math
import random

import pytest

from icm_client.backends.base import ScoreRequest, ScoreResult, Usage
from icm_client.dataset import Example
from icm_client.scoring.base import Prediction
from icm_client.scoring.context import BoundedContext, ContextScorer, ExactContext
from icm_client.tasks.base import TemplateTask

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class RecordingBackend:
    """Answers every prompt with fixed logprobs and remembers what it was asked."""

    identity = "recording"

    def __init__(self) -> None:
        self.usage = Usage()
        self.prompts: list[str] = []

    async def score(self, request: ScoreRequest) -> ScoreResult:
        self.prompts.append(request.prompt)
        self.usage.calls += 1
        return ScoreResult((-0.5, -1.5), (False, True))

    async def aclose(self) -> None:
        pass


TASK = TemplateTask("t", "Q: {q}\nI think this Claim is")
EXAMPLES = [Example(str(i), {"q": f"question {i}"}) for i in range(6)]


async def test_exact_prompt_is_demonstrations_in_dataset_order_then_target() -> None:
    backend = RecordingBackend()
    scorer = ContextScorer(TASK, EXAMPLES, backend)
    await scorer.predict_many([2], {4: 1, 0: 0, 2: 0})
    assert backend.prompts == [
        "Q: question 0\nI think this Claim is True\n\n"
        "Q: question 4\nI think this Claim is False\n\n"
        "Q: question 2\nI think this Claim is"
    ]
    assert not backend.prompts[0].endswith((" ", "\n"))


async def test_same_prompt_is_never_paid_twice() -> None:
    backend = RecordingBackend()
    scorer = ContextScorer(TASK, EXAMPLES, backend)
    labels = {0: 0, 1: 1, 2: 0}
    first = await scorer.predict_many([0, 1, 2], labels)
    again = await scorer.predict_many([0, 1, 2], dict(labels))
    assert first == again
    assert backend.usage.calls == 3
    assert scorer.stats.memo_hits == 3
    # Changing only example 1's label leaves 1's own prompt unchanged (it is left out).
    await scorer.predict_many([0, 1, 2], {0: 0, 1: 0, 2: 0})
    assert backend.usage.calls == 5


async def test_predictions_are_normalised_over_the_label_set_and_flag_bounds() -> None:
    scorer = ContextScorer(TASK, EXAMPLES, RecordingBackend())
    pred = (await scorer.predict_many([0], {}))[0]
    assert math.exp(pred.logprobs[0]) + math.exp(pred.logprobs[1]) == pytest.approx(1.0)
    assert pred.logprobs[0] - pred.logprobs[1] == pytest.approx(1.0)
    assert pred.bounded and scorer.stats.bounded == 1


def test_prediction_with_no_information_is_uniform() -> None:
    pred = Prediction.from_raw([-math.inf, -math.inf])
    assert pred.logprobs == pytest.approx((math.log(0.5), math.log(0.5)))
    assert pred.bounded and pred.argmax() == 0


def test_bounded_context_is_deterministic_sized_and_excludes_target() -> None:
    ids = [f"ex{i}" for i in range(50)]
    strategy = BoundedContext(ids, size=5, seed=1)
    labeled = list(range(50))
    ctx = strategy.context(7, labeled)
    assert len(ctx) == 5 and 7 not in ctx and ctx == sorted(ctx)
    assert BoundedContext(ids, size=5, seed=1).context(7, labeled) == ctx
    assert BoundedContext(ids, size=5, seed=2).context(7, labeled) != ctx
    # A label change outside a target's context cannot change its prompt.
    assert strategy.context(7, [j for j in labeled if j not in ctx][:3]) != ctx
    assert ExactContext().context(3, [1, 3, 5]) == [1, 5]


async def test_bounded_strategy_rescoring_touches_only_affected_targets() -> None:
    ids = [str(i) for i in range(30)]
    examples = [Example(i, {"q": f"q{i}"}) for i in ids]
    backend = RecordingBackend()
    scorer = ContextScorer(TASK, examples, backend, BoundedContext(ids, size=4))
    labels = {i: i % 2 for i in range(30)}
    await scorer.predict_many(list(range(30)), labels)
    assert backend.usage.calls == 30
    changed = 11
    affected = [t for t in range(30) if changed in scorer.strategy.context(t, list(range(30)))]
    await scorer.predict_many(list(range(30)), {**labels, changed: 1 - labels[changed]})
    assert backend.usage.calls == 30 + len(affected)
    assert len(affected) < 30


def test_bounded_context_is_the_smallest_keys_whatever_the_call_history() -> None:
    # The strategy ranks incrementally and remembers the sets it was called with; whatever
    # came before (sets growing and shrinking, a tuple passed again), a context must be the
    # ``size`` other labeled examples of smallest (key, index), in dataset order.
    rng = random.Random(3)
    ids = [f"ex{i}" for i in range(40)]
    for size in (1, 3, 8):
        strategy = BoundedContext(ids, size=size, seed=4)
        labeled: set[int] = set()
        for _ in range(150):
            if rng.random() < 0.7:
                labeled.add(rng.randrange(40))
            elif labeled:
                labeled.discard(rng.choice(sorted(labeled)))
            ordered = sorted(labeled)
            call: list[int] | tuple[int, ...] = tuple(ordered) if rng.random() < 0.5 else ordered
            for target in rng.sample(range(40), 6):
                others = [j for j in ordered if j != target]
                best = sorted(others, key=lambda j: (strategy._key(target, j), j))[:size]
                assert strategy.context(target, call) == sorted(best)


async def test_identical_prompts_of_different_examples_are_paid_once() -> None:
    # Examples 1 and 2 read the same: with the same labels, 1's prompt (0, 2, then 1) and
    # 2's prompt (0, 1, then 2) are the same text, and are asked once.
    examples = [Example("a", {"q": "alpha"}), Example("b", {"q": "beta"})]
    examples.append(Example("c", {"q": "beta"}))
    backend = RecordingBackend()
    scorer = ContextScorer(TASK, examples, backend)
    preds = await scorer.predict_many([0, 1, 2], {0: 0, 1: 1, 2: 1})
    assert backend.usage.calls == 2 and scorer.stats.memo_hits == 1
    assert preds[1] == preds[2]
    assert backend.prompts[1] == scorer.prompt(1, {0: 0, 1: 1, 2: 1})


async def test_a_relabeled_demonstration_changes_the_prompt_asked() -> None:
    backend = RecordingBackend()
    scorer = ContextScorer(TASK, EXAMPLES, backend)
    await scorer.predict_many([0], {0: 0, 3: 0})
    await scorer.predict_many([0], {0: 0, 3: 1})
    await scorer.predict_many([0], {0: 1, 3: 1})  # the target's own label is not in its prompt
    assert backend.prompts == [
        "Q: question 3\nI think this Claim is True\n\nQ: question 0\nI think this Claim is",
        "Q: question 3\nI think this Claim is False\n\nQ: question 0\nI think this Claim is",
    ]
