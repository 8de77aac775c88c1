"""Context strategies and the scorer that turns them into backend requests.

Context assembly is deterministic and documented, because cached scores and reproducible
runs depend on byte-identical prompts:

* a prompt is the demonstrations, each ``render(x_j) + label_word + "\\n\\n"``, in ascending
  dataset order, followed by ``render(x_i)`` of the target (which never ends in whitespace);
* ``exact`` uses every labeled example except the target (the paper's objective);
* ``bounded`` uses at most ``size`` labeled examples, those with the smallest keyed hash
  ``h(seed, id_i, id_j)``: a fixed pseudo-random preference per target, so a label change at
  ``j`` re-scores only the targets whose context holds ``j``.

Dataset order (not a shuffle) keeps a long common prefix between the leave-one-out prompts of
neighbouring targets, which the server's prefix cache turns into saved prefill.

``calibrate=True`` applies contextual calibration (Zhao et al. 2021, "Calibrate Before Use"):
each target's label log-probabilities are divided by those of a content-free input (every
field "N/A") *in the same context*, ``log P(y | ctx, x_i) - log P(y | ctx, N/A)``. Small
models copy the labels of their demonstrations: without calibration an all-same labeling is
the most "predictable" one and the search collapses to it. The content-free prompt shares
the target's whole context, so the server's prefix cache makes the extra call cheap.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import anyio

from ..aio import gather
from ..backends.base import Backend, ScoreRequest, ScoreResult
from ..dataset import Example
from ..tasks.base import Task
from .base import Assignment, Prediction


class ContextStrategy(Protocol):
    """Chooses the demonstrations (example indices, in prompt order) for a target."""

    @property
    def name(self) -> str: ...

    def context(self, target: int, labeled: Sequence[int]) -> list[int]:
        """``labeled`` is the sorted list of labeled indices (it may contain ``target``)."""
        ...


@dataclass(frozen=True)
class ExactContext:
    """All other labeled examples: the paper's mutual predictability."""

    name: str = "exact"

    def context(self, target: int, labeled: Sequence[int]) -> list[int]:
        return [j for j in labeled if j != target]


@dataclass
class BoundedContext:
    """At most ``size`` demonstrations, chosen by a keyed hash of the two example ids."""

    ids: Sequence[str]
    size: int = 32
    seed: int = 0
    name: str = "bounded"
    # Per target, every example met so far in its ``labeled``, ranked: ``key << 32 | j``,
    # sorted, i.e. by key then index (the order of a stable sort by key of the ascending
    # ``labeled``). The search calls ``context`` for every labeled target at every
    # evaluation; walking this ranking costs about ``size`` steps instead of a key lookup
    # per labeled example.
    _ranked: dict[int, list[int]] = field(default_factory=dict, repr=False)
    _met: dict[int, set[int]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError("bounded context size must be at least 1")

    def _key(self, target: int, other: int) -> int:
        digest = hashlib.blake2b(
            f"{self.seed}\x00{self.ids[target]}\x00{self.ids[other]}".encode(), digest_size=8
        ).digest()
        return int.from_bytes(digest, "big")

    def context(self, target: int, labeled: Sequence[int]) -> list[int]:
        wanted = set(labeled)
        wanted.discard(target)
        if len(wanted) <= self.size:
            return [j for j in labeled if j != target]
        ranked = self._ranked.setdefault(target, [])
        met = self._met.setdefault(target, set())
        new = wanted - met
        if new:
            met |= new
            ranked += [self._key(target, j) << 32 | j for j in new]
            ranked.sort()
        chosen: list[int] = []
        for rank in ranked:
            j = rank & 0xFFFFFFFF
            if j in wanted:
                chosen.append(j)
                if len(chosen) == self.size:
                    break
        return sorted(chosen)


@dataclass
class ScorerStats:
    predictions: int = 0  # predictions asked for by the search
    memo_hits: int = 0  # answered from this run's memory (same prompt seen before)
    bounded: int = 0  # predictions in which a label came from a top-k bound


#: Calibration clamps -inf (a label the server says is impossible) to this, so that
#: ``target - content_free`` stays a number.
_FLOOR = -100.0


class ContextScorer:
    """Scores targets through a backend, one request per distinct prompt.

    Raw scores are memoised by the exact prompt text, so an assignment that was scored once
    is never paid for twice in a run (the disk cache does the same across runs).
    """

    def __init__(
        self,
        task: Task,
        examples: Sequence[Example],
        backend: Backend,
        strategy: ContextStrategy | None = None,
        *,
        calibrate: bool = False,
    ) -> None:
        self.task = task
        self.examples = tuple(examples)
        self.backend = backend
        self.strategy: ContextStrategy = strategy or ExactContext()
        self.calibrate = calibrate
        self.stats = ScorerStats()
        self._rendered = [task.render(ex) for ex in self.examples]
        fields = dict.fromkeys(k for ex in self.examples for k in ex.fields)
        self._content_free = task.render(Example("content-free", dict.fromkeys(fields, "N/A")))
        self._demos: dict[tuple[int, int], str] = {}
        self._memo: dict[str, ScoreResult] = {}
        self._pending: dict[str, anyio.Event] = {}

    def prompt(self, target: int, labels: Assignment, labeled: Sequence[int] | None = None) -> str:
        return self._context(target, labels, labeled) + self._rendered[target]

    def _context(
        self, target: int, labels: Assignment, labeled: Sequence[int] | None = None
    ) -> str:
        if labeled is None:
            labeled = sorted(labels)
        return "".join(self._demo(j, labels[j]) for j in self.strategy.context(target, labeled))

    def _demo(self, j: int, label: int) -> str:
        text = self._demos.get((j, label))
        if text is None:
            text = f"{self._rendered[j]}{self.task.labels[label]}\n\n"
            self._demos[(j, label)] = text
        return text

    async def predict_many(
        self, targets: Sequence[int], labels: Assignment
    ) -> dict[int, Prediction]:
        labeled = sorted(labels)
        contexts = {t: self._context(t, labels, labeled) for t in targets}
        prompts = {t: c + self._rendered[t] for t, c in contexts.items()}
        nulls = {t: c + self._content_free for t, c in contexts.items()} if self.calibrate else {}
        self.stats.predictions += len(prompts)
        # Requests go out in target order: neighbouring targets share the longest prefixes;
        # a target's content-free prompt right after it shares its whole context.
        wanted = [q for t in sorted(prompts) for q in (prompts[t], nulls.get(t)) if q is not None]
        todo = list(dict.fromkeys(q for q in wanted if q not in self._memo))
        self.stats.memo_hits += len(wanted) - len(todo)
        if todo:
            await gather([functools.partial(self._score, q) for q in todo])
        return {t: self._prediction(p, nulls.get(t)) for t, p in prompts.items()}

    def _prediction(self, prompt: str, null: str | None) -> Prediction:
        raw = self._memo[prompt]
        if null is None:
            return Prediction.from_raw(raw.logprobs, any(raw.bounded))
        base = self._memo[null]
        calibrated = [
            max(x, _FLOOR) - max(b, _FLOOR)
            for x, b in zip(raw.logprobs, base.logprobs, strict=True)
        ]
        return Prediction.from_raw(calibrated, any(raw.bounded) or any(base.bounded))

    async def _score(self, prompt: str) -> None:
        # Concurrent evaluations (ConsistencyFix options) often need the same prompt: the
        # first asks the backend, the others wait for its answer instead of paying again.
        while prompt not in self._memo:
            pending = self._pending.get(prompt)
            if pending is not None:
                await pending.wait()
                continue
            self._pending[prompt] = event = anyio.Event()
            try:
                result = await self.backend.score(ScoreRequest(prompt, self.task.labels))
                if any(result.bounded):
                    self.stats.bounded += 1
                self._memo[prompt] = result
            finally:
                del self._pending[prompt]
                event.set()
