"""Zero-shot baselines: each example labeled alone, with no demonstrations and no search.

``zero_shot_argmax``: the base model ICM runs on, asked for nothing but the label word of
highest probability after the example's prompt, argmax over the label words of
P(label | x). It goes through the same backend (cache, budget, usage counts) as the run.
``icm label`` reports it beside ICM's agreement when the data carries gold labels: what the
same model gets without ICM.

``zero_shot_labels``: the paper's "zero-shot (chat)" baseline, a chat model. Every
example's prompt (``task.render``, which stops where the label word would start) is
followed by the question "which word comes next: True or False?", and the answer is read
strictly (``backends.one_word.parse_answer``): anything but a label word is no label (None),
never a guess. No demonstrations, no search: this is what ICM has to beat.

``chat`` is anything with ``async answer(question, *, context=None, system=...) -> str``
(``backends.anthropic.AnthropicChat``). Transient failures (429, 529 overloaded, 5xx,
timeouts) are retried under a ``Retry`` policy (full-jitter backoff that honours
``retry-after``), as the scoring client retries.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import anyio

from ..aio import gather
from ..backends.base import Backend
from ..backends.one_word import SYSTEM, instruction, label_words, parse_answer
from ..client.policies import Retry
from ..client.retry import retrying
from ..dataset import Example
from ..scoring.manyshot import predict
from ..tasks.base import Label, Task


class ChatModel(Protocol):
    async def answer(
        self, question: str, *, context: str | None = None, system: str | None = SYSTEM
    ) -> str: ...


@dataclass(frozen=True)
class ZeroShotResult:
    """One label per example, in order (None: the answer was not a label word)."""

    labels: tuple[Label | None, ...]
    answers: tuple[str, ...]

    @property
    def unparsed(self) -> int:
        return sum(1 for label in self.labels if label is None)


async def zero_shot_argmax(
    examples: Sequence[Example], task: Task, backend: Backend
) -> tuple[Label, ...]:
    """Each example's most probable label word with no demonstrations (uncalibrated: the
    model as it is), one call per example through ``backend``."""
    preds = await predict(task, examples, backend, [], {}, range(len(examples)))
    return tuple(preds[i].argmax() for i in range(len(examples)))


async def zero_shot_labels(
    examples: Sequence[Example],
    task: Task,
    chat: ChatModel,
    *,
    concurrency: int = 8,
    max_attempts: int = 6,
    max_wait: float = 60.0,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> ZeroShotResult:
    """Ask ``chat`` for each example's label word, ``concurrency`` at a time."""
    words = label_words(task.labels)
    question = instruction(words)
    prompts = [task.render(example) for example in examples]  # TaskError before any call
    limiter = anyio.CapacityLimiter(concurrency)
    policy = Retry(max_attempts=max_attempts, max_wait=max_wait, sleep=sleep)

    async def one(prompt: str) -> str:
        async def ask() -> str:
            async with limiter:
                return await chat.answer(f"{prompt}\n\n{question}")

        return await retrying(policy, ask, lambda: None)

    answers = await gather([functools.partial(one, p) for p in prompts])
    return ZeroShotResult(tuple(parse_answer(a, words) for a in answers), tuple(answers))
