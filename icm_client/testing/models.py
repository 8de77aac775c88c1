"""Simulated base models whose beliefs and in-context behaviour are set by hand.

A real small model cannot show whether the search reaches what a model knows (the embedded
270M model is at chance), so label quality is proven on models we control. Each regime is a
next-token function (``protocol.NextToken``): it reads the prompt the client really sent
(demonstrations, their labels and the target, found by their rendered text), forms the
log-odds of the first label word against the second, and answers with a distribution over
the stand-in vocabulary. Gold labels go to the simulator only, never to the search.

* ``Oracle``: the belief agrees with gold, whatever the context.
* ``Noisy``: the belief agrees with gold with probability ``p``, at a confidence that
  varies per example.
* ``InContext``: a kernel model of in-context learning. Each example has a hidden feature
  vector, clustered by its gold label; the prediction for a target is a weak zero-shot prior
  plus the labels of the demonstrations in its prompt, weighted by their similarity to the
  target. Mutual predictability is what finds the labels here.
* ``TwoConcept``: the same kernel model with two concepts in its features: the truth, and a
  salient spurious feature independent of it (a hidden per-example label). A labeling that
  follows the spurious feature is nearly as coherent as gold; a weak zero-shot prior
  (about 2 in 3 right) and the truth's slightly larger salience are all that set them apart.
* ``LabelCopying``: predicts the majority label of its demonstrations (the regime of the
  embedded 270M model); ICM must say so instead of pretending.

Binary tasks only: label 0 is the first label word of the task (" True").
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from ..dataset import Example
from ..tasks.base import Task
from .protocol import VOCAB, normalised

#: Probability mass a simulated model puts on tokens other than the label words.
OTHER_MASS = 0.05


@dataclass(frozen=True, slots=True)
class Reading:
    """What a prompt shows: the target example (None: not one of the dataset's, e.g. the
    content-free input of calibration) and the demonstrations as (example, label)."""

    target: int | None
    demos: tuple[tuple[int, int], ...]


class PromptReader:
    """Finds the examples in a prompt made of ``render(x_j) + label + "\\n\\n"`` blocks
    followed by ``render(x_i)`` (the scorer's prompt format)."""

    def __init__(self, task: Task, examples: Sequence[Example]) -> None:
        self.labels = task.labels
        self.index = {task.render(ex): i for i, ex in enumerate(examples)}
        if len(self.index) != len(examples):
            raise ValueError("two examples render to the same text: a reader cannot tell them")
        self._demos: dict[str, tuple[int, int] | None] = {}  # block -> (example, label)

    def _demo(self, block: str) -> tuple[int, int] | None:
        if block in self._demos:
            return self._demos[block]
        found = None
        for y, word in enumerate(self.labels):
            if block.endswith(word) and (j := self.index.get(block[: -len(word)])) is not None:
                found = (j, y)
                break
        if len(self._demos) < 1 << 16:
            self._demos[block] = found
        return found

    def read(self, prompt: str) -> Reading:
        pieces = prompt.split("\n\n")
        demos: list[tuple[int, int]] = []
        block = ""
        for piece in pieces[:-1]:
            block = f"{block}\n\n{piece}" if block else piece
            if (found := self._demo(block)) is not None:
                demos.append(found)
                block = ""
        target_text = f"{block}\n\n{pieces[-1]}" if block else pieces[-1]
        return Reading(self.index.get(target_text), tuple(demos))


class SimulatedModel:
    """Base of the regimes: ``logit(reading)`` is log P(label 0) - log P(label 1)."""

    #: True when the prediction ignores the demonstrations (the ceiling is then exact).
    context_free = False

    def __init__(self, task: Task, examples: Sequence[Example], gold: Sequence[int]) -> None:
        if len(task.labels) != 2:
            raise ValueError("simulated models are binary: the task must have two labels")
        if len(gold) != len(examples) or any(y not in (0, 1) for y in gold):
            raise ValueError("gold must hold one label index (0 or 1) per example")
        missing = [w for w in task.labels if w not in VOCAB]
        if missing:
            raise ValueError(f"label words {missing} are not in the stand-in vocabulary")
        self.task = task
        self.examples = tuple(examples)
        self.gold = tuple(gold)
        self.reader = PromptReader(task, examples)

    def logit(self, reading: Reading) -> float:
        base, weights = self.linear(reading.target, [j for j, _ in reading.demos])
        return base + sum(w * _sign(y) for w, (_, y) in zip(weights, reading.demos, strict=True))

    def linear(self, target: int | None, demos: Sequence[int]) -> tuple[float, list[float]]:
        """Every regime is linear in the demonstrations' labels: the log-odds for ``target``
        after ``demos`` labeled ``y`` is ``base + sum_j w_j s_j`` (``s_j`` = +1 for label 0,
        -1 for label 1). Returns ``(base, [w_j])``; the ceiling uses it to move fast."""
        raise NotImplementedError

    def __call__(self, prompt: str) -> list[tuple[str, float]]:
        z = self.logit(self.reader.read(prompt))
        p0 = 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))
        first, second = self.task.labels
        rest = [t for t in VOCAB if t not in (first, second)]
        mass = [(first, (1 - OTHER_MASS) * p0), (second, (1 - OTHER_MASS) * (1 - p0))]
        mass += [(t, OTHER_MASS / len(rest)) for t in rest]
        return normalised([(t, math.log(max(m, 1e-300))) for t, m in mass])


def _sign(label: int) -> float:
    return 1.0 if label == 0 else -1.0


class Oracle(SimulatedModel):
    """Knows every answer: log-odds ``margin`` towards gold, whatever the context."""

    context_free = True

    def __init__(
        self, task: Task, examples: Sequence[Example], gold: Sequence[int], margin: float = 4.0
    ) -> None:
        super().__init__(task, examples, gold)
        self.margin = margin

    def linear(self, target: int | None, demos: Sequence[int]) -> tuple[float, list[float]]:
        base = 0.0 if target is None else self.margin * _sign(self.gold[target])
        return base, [0.0] * len(demos)


class Noisy(SimulatedModel):
    """Believes gold with probability ``p`` (drawn once per example from ``seed``), at a
    log-odds magnitude drawn from ``confidence``, whatever the context."""

    context_free = True

    def __init__(
        self,
        task: Task,
        examples: Sequence[Example],
        gold: Sequence[int],
        p: float = 0.9,
        *,
        confidence: tuple[float, float] = (1.0, 3.0),
        seed: int = 0,
    ) -> None:
        super().__init__(task, examples, gold)
        rng = random.Random(f"noisy\x00{seed}")
        self.belief = tuple(y if rng.random() < p else 1 - y for y in self.gold)
        self.strength = tuple(rng.uniform(*confidence) for _ in self.gold)

    def linear(self, target: int | None, demos: Sequence[int]) -> tuple[float, list[float]]:
        t = target
        return (0.0 if t is None else self.strength[t] * _sign(self.belief[t])), [0.0] * len(demos)


class InContext(SimulatedModel):
    """A kernel model of in-context learning.

    Example i has hidden features ``f_i = s(gold_i) e_1 + noise * N(0, I)`` in ``dim``
    dimensions (``s`` = +1 for label 0, -1 for label 1): the concept is one direction of the
    feature space, and examples whose noise carries them across are the ones the model gets
    wrong. The log-odds for target t after demonstrations D is

        prior_t + context * sum_{j in D} K(t, j) s(y_j) / |D|,   K(t, j) = <f_t, f_j>,

    the labels of the demonstrations weighted by their similarity to the target (a linear
    kernel: the model fits a linear rule to the demonstrations and applies it to the target),
    plus a weak zero-shot prior that agrees with gold with probability ``prior_accuracy``.
    A labeling that follows the concept makes every prediction confident; one that does not
    leaves the rule fitted to the demonstrations weak, whatever the context size. The
    concept's sign is left to the prior: gold and its complement are equally coherent.
    """

    def __init__(
        self,
        task: Task,
        examples: Sequence[Example],
        gold: Sequence[int],
        *,
        context: float = 4.0,
        prior: float = 1.0,
        prior_accuracy: float = 0.75,
        noise: float = 0.5,
        dim: int = 4,
        seed: int = 0,
    ) -> None:
        super().__init__(task, examples, gold)
        rng = random.Random(f"in-context\x00{seed}")
        self.context = context
        self.features = tuple(
            tuple((_sign(y) if d == 0 else 0.0) + rng.gauss(0.0, noise) for d in range(dim))
            for y in self.gold
        )
        self.prior = tuple(
            prior * rng.uniform(0.5, 1.5) * _sign(y if rng.random() < prior_accuracy else 1 - y)
            for y in self.gold
        )

    def kernel(self, i: int, j: int) -> float:
        return sum(a * b for a, b in zip(self.features[i], self.features[j], strict=True))

    def linear(self, target: int | None, demos: Sequence[int]) -> tuple[float, list[float]]:
        if target is None:  # a content-free input: no features, no prior
            return 0.0, [0.0] * len(demos)
        scale = self.context / len(demos) if demos else 0.0
        return self.prior[target], [scale * self.kernel(target, j) for j in demos]


class LabelCopying(SimulatedModel):
    """Predicts the majority label of its demonstrations (log-odds ``copy`` times the
    balance of their labels), with a faint zero-shot prior towards gold."""

    def __init__(
        self,
        task: Task,
        examples: Sequence[Example],
        gold: Sequence[int],
        *,
        copy: float = 4.0,
        prior: float = 0.3,
    ) -> None:
        super().__init__(task, examples, gold)
        self.copy, self.prior = copy, prior

    def linear(self, target: int | None, demos: Sequence[int]) -> tuple[float, list[float]]:
        zero_shot = 0.0 if target is None else self.prior * _sign(self.gold[target])
        return zero_shot, [self.copy / len(demos)] * len(demos) if demos else []


class TwoConcept(InContext):
    """``InContext`` with two concepts: example i has hidden features

        f_i = truth * s(gold_i) e_1 + spurious * s(h_i) e_2 + noise * N(0, I),

    where ``h_i`` is a hidden spurious label drawn independently of gold (a fair coin per
    example). Labeling by ``h`` makes the model's predictions almost as confident as
    labeling by gold (``spurious`` close to ``truth``), and neither can be reached from the
    other by a few flips: the search must find the truth among competing coherent
    labelings. The zero-shot prior is weak (right with probability ``prior_accuracy``) and
    knows nothing of ``h``. The defaults make gold the labeling of highest full-context U on
    the data shapes of ``data`` (tests/search/test_search_quality.py checks it).
    """

    def __init__(
        self,
        task: Task,
        examples: Sequence[Example],
        gold: Sequence[int],
        *,
        truth: float = 1.0,
        spurious: float = 0.8,
        context: float = 4.0,
        prior: float = 1.0,
        prior_accuracy: float = 0.67,
        noise: float = 0.3,
        dim: int = 4,
        seed: int = 0,
    ) -> None:
        SimulatedModel.__init__(self, task, examples, gold)
        if dim < 2:
            raise ValueError("two concepts need at least two feature dimensions")
        rng = random.Random(f"two-concept\x00{seed}")
        self.context = context
        self.spurious_labels = tuple(rng.randrange(2) for _ in self.gold)
        axes = (truth, spurious)
        self.features = tuple(
            tuple(
                (axes[d] * _sign((y, h)[d]) if d < 2 else 0.0) + rng.gauss(0.0, noise)
                for d in range(dim)
            )
            for y, h in zip(self.gold, self.spurious_labels, strict=True)
        )
        self.prior = tuple(
            prior * rng.uniform(0.5, 1.5) * _sign(y if rng.random() < prior_accuracy else 1 - y)
            for y in self.gold
        )
