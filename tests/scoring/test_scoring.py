"""Context assembly and the scorer: exact prompts, memoisation, bounded contexts."""

from __future__ import annotations

import math
import random

import anyio
import pytest

from icm_client.backends.base import Backend, ScoreRequest, ScoreResult, Usage
from icm_client.dataset import Example
from icm_client.scoring.base import Prediction
from icm_client.scoring.context import BoundedContext, ContextScorer, ExactContext
from icm_client.tasks.base import TemplateTask

pytestmark = pytest.mark.anyio


class RecordingBackend(Backend):
    """Answers every prompt with fixed logprobs and remembers what it was asked."""

    identity = "recording"

    def __init__(self) -> None:
        self.usage: Usage = Usage()
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


def test_a_group_of_targets_shares_one_context_of_other_examples() -> None:
    ids = [f"ex{i}" for i in range(60)]
    strategy = BoundedContext(ids, size=6, seed=3, share=5)
    labeled = tuple(range(60))
    groups: dict[int, list[int]] = {}
    for t in range(60):
        groups.setdefault(strategy._group[t], []).append(t)
    assert sorted(len(g) for g in groups.values()) == [5] * 12
    for members in groups.values():
        contexts = {tuple(strategy.context(t, labeled)) for t in members}
        assert len(contexts) == 1  # every target of the group gets the same prompt context
        [ctx] = contexts
        assert len(ctx) == 6 and list(ctx) == sorted(ctx) and not set(ctx) & set(members)
    # groups differ, and the dealing follows the seed
    assert len({tuple(strategy.context(g[0], labeled)) for g in groups.values()}) > 1
    assert BoundedContext(ids, size=6, seed=4, share=5)._group != strategy._group


def test_a_group_takes_its_own_members_only_when_others_run_out() -> None:
    ids = [f"ex{i}" for i in range(12)]
    strategy = BoundedContext(ids, size=8, seed=0, share=4)
    labeled = list(range(12))
    for t in range(12):
        ctx = strategy.context(t, labeled)
        mates = [j for j in range(12) if strategy._group[j] == strategy._group[t]]
        outsiders = [j for j in ctx if j not in mates]
        # 8 outsiders exist: all of them, and no group member (leave-one-out holds)
        assert len(ctx) == 8 and t not in ctx and len(outsiders) == 8
    few = [j for j in range(12) if strategy._group[j] != strategy._group[0]][:6]
    few += [j for j in range(1, 12) if strategy._group[j] == strategy._group[0]][:3]
    ctx = strategy.context(0, sorted({0, *few}))
    assert len(ctx) == 8 and 0 not in ctx  # 6 others, then 2 group members fill it


def test_share_one_is_the_per_target_context() -> None:
    ids = [f"ex{i}" for i in range(30)]
    plain, shared1 = BoundedContext(ids, size=4, seed=2), BoundedContext(ids, 4, 2, share=1)
    assert all(plain.context(t, range(30)) == shared1.context(t, range(30)) for t in range(30))
    assert len({tuple(plain.context(t, range(30))) for t in range(30)}) > 20


class OrderBackend(RecordingBackend):
    """Records when each prompt starts and ends, answering after a yield."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, str]] = []

    async def score(self, request: ScoreRequest) -> ScoreResult:
        self.events.append(("start", request.prompt))
        for _ in range(3):
            await anyio.sleep(0)
        self.events.append(("end", request.prompt))
        return await super().score(request)


async def test_prompts_of_one_context_wait_for_the_first_so_the_server_caches_it() -> None:
    ids = [str(i) for i in range(40)]
    examples = [Example(i, {"q": f"q{i}"}) for i in ids]
    backend = OrderBackend()
    strategy = BoundedContext(ids, size=5, seed=1, share=4)
    scorer = ContextScorer(TASK, examples, backend, strategy, calibrate=True)
    labels = {i: i % 2 for i in range(40)}
    await scorer.predict_many(list(range(40)), labels)
    # 10 groups of 4 targets: 40 prompts and one content-free prompt per group
    assert backend.usage.calls == 40 + 10
    null = scorer._content_free
    contexts: dict[str, list[str]] = {}
    for kind, prompt in backend.events:
        if kind == "start":
            cut = prompt.rfind("Q: ")
            contexts.setdefault(prompt[:cut], []).append(prompt)
    assert len(contexts) == 10 and all(len(p) == 5 for p in contexts.values())
    assert sum(p.endswith(null) for ps in contexts.values() for p in ps) == 10
    for prompts in contexts.values():
        first_end = backend.events.index(("end", prompts[0]))
        for later in prompts[1:]:
            assert backend.events.index(("start", later)) > first_end
    # and the groups themselves run at the same time
    starts = [i for i, (kind, _) in enumerate(backend.events) if kind == "start"]
    first_end = min(i for i, (kind, _) in enumerate(backend.events) if kind == "end")
    assert sum(i < first_end for i in starts) == 10
