"""Context strategies and the scorer that turns them into backend requests.

Context assembly is deterministic and documented, because cached scores and reproducible
runs depend on byte-identical prompts:

* a prompt is the demonstrations, each ``render(x_j) + label_word + "\\n\\n"``, in ascending
  dataset order, followed by ``render(x_i)`` of the target (which never ends in whitespace);
* ``exact`` uses every labeled example except the target (the paper's objective);
* ``bounded`` uses at most ``size`` labeled examples, those with the smallest keyed hash
  ``h(seed, group_i, id_j)``: a fixed pseudo-random preference per group of targets, so a
  label change at ``j`` re-scores only the targets whose context holds ``j``. Targets are
  dealt into groups of ``share`` by a keyed hash of their ids; a group's targets take the
  same demonstrations (none of them from the group itself while enough others are
  labeled), so their prompts differ only in the target's own text. Pinned examples (human
  labels, ``pins.py``) come before any other, up to half of the ``size``: a pin informs
  every prompt, and the search's own labels still fill the rest.

Dataset order (not a shuffle) keeps a long common prefix between the leave-one-out prompts of
neighbouring targets, and a group's prompts share their whole context; the server's prefix
cache turns both into saved prefill. The scorer sends the first prompt of each shared
context alone and the others once it is answered, so that they find it cached instead of
all computing it at the same time.

``calibrate=True`` applies contextual calibration (Zhao et al. 2021, "Calibrate Before Use"):
each target's label log-probabilities are divided by those of a content-free input (every
field "N/A") *in the same context*, ``log P(y | ctx, x_i) - log P(y | ctx, N/A)``. Small
models copy the labels of their demonstrations: without calibration an all-same labeling is
the most "predictable" one and the search collapses to it. The content-free prompt shares
the target's whole context, so the server's prefix cache makes the extra call cheap.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..aio import SingleFlight, gather
from ..backends.base import Backend, ScoreRequest, ScoreResult
from ..dataset import Example
from ..tasks.base import Task, demo_text
from .base import Assignment, Prediction


class ContextStrategy(Protocol):
    """Chooses the demonstrations (example indices, in prompt order) for a target."""

    @property
    def name(self) -> str: ...

    def context(self, target: int, labeled: Sequence[int]) -> list[int]:
        """``labeled``: the labeled indices, ascending (it may contain ``target``); the
        scorer passes one tuple for all the targets of a batch."""
        ...


@dataclass(frozen=True)
class ExactContext:
    """All other labeled examples: the paper's mutual predictability."""

    name: str = "exact"

    def context(self, target: int, labeled: Sequence[int]) -> list[int]:
        return [j for j in labeled if j != target]


class _Ranking:
    """One target's ranking of the examples met so far (see ``BoundedContext``)."""

    __slots__ = ("order", "ranks", "upto")

    def __init__(self) -> None:
        self.ranks: list[int] = []  # ``key << 32 | j``, ascending: by key, then index
        self.order: list[int] = []  # the ``j`` of each rank
        self.upto = 0  # how many of ``BoundedContext._met`` are ranked


@dataclass
class BoundedContext:
    """At most ``size`` demonstrations, chosen by a keyed hash of group and example ids.

    ``share`` targets form a group (dealt by a keyed hash of their ids) and take the same
    context: with ``share=1`` every target has its own pseudo-random demonstrations; a larger
    ``share`` lets a group's prompts share their whole context in the server's prefix cache
    (and, calibrated, one content-free prompt) at the same number of demonstrations.
    ``pinned`` examples rank before all others, at most ``size // 2`` of them a context.
    """

    ids: Sequence[str]
    size: int = 32
    seed: int = 0
    share: int = 1
    pinned: frozenset[int] = frozenset()
    name: str = "bounded"
    # Every example met so far in a ``labeled``, in order of arrival, and per group those
    # ranked by key then index (the order of a stable sort by key of the ascending
    # ``labeled``). The search calls ``context`` for every labeled target at every
    # evaluation: a call ranks the examples that arrived since its group's last call and
    # takes the first ``size`` wanted ones of its ranking (about ``size`` steps), instead of
    # a key lookup per labeled example. A tuple ``labeled`` (immutable) that is the same
    # object as in the last call reuses that call's set: the scorer passes one per batch.
    _met: list[int] = field(default_factory=list, repr=False)
    _met_set: set[int] = field(default_factory=set, repr=False)
    _rankings: dict[int, _Ranking] = field(default_factory=dict, repr=False)
    _last: tuple[tuple[int, ...], frozenset[int]] | None = field(default=None, repr=False)
    _group: list[int] = field(default_factory=list, repr=False)  # example -> its group

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError("bounded context size must be at least 1")
        if self.share < 1:
            raise ValueError("bounded context share must be at least 1")
        if self.share == 1:
            self._group = list(range(len(self.ids)))
        else:
            dealt = sorted(range(len(self.ids)), key=lambda i: (self._hash(self.ids[i]), i))
            self._group = [0] * len(self.ids)
            for rank, i in enumerate(dealt):
                self._group[i] = rank // self.share

    def _hash(self, *parts: str) -> int:
        text = "\x00".join([str(self.seed), *parts])
        return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")

    def _key(self, target: int, other: int) -> int:
        """The preference of ``target``'s group for ``other`` (smaller: preferred)."""
        first = -(1 << 64) if other in self.pinned else 0
        if self.share == 1:
            return first + self._hash(self.ids[target], self.ids[other])
        return first + self._hash(f"group {self._group[target]} of {self.share}", self.ids[other])

    def _members(self, labeled: Sequence[int]) -> frozenset[int]:
        if self._last is not None and self._last[0] is labeled:
            return self._last[1]
        members = frozenset(labeled)
        if fresh := members - self._met_set:
            self._met += sorted(fresh)
            self._met_set |= fresh
        if isinstance(labeled, tuple):
            self._last = (labeled, members)
        return members

    def context(self, target: int, labeled: Sequence[int]) -> list[int]:
        members = self._members(labeled)
        if len(members) - (target in members) <= self.size:
            return [j for j in labeled if j != target]
        group = self._group[target]
        ranking = self._rankings.get(group)
        if ranking is None:
            ranking = self._rankings[group] = _Ranking()
        if ranking.upto < len(self._met):
            met = self._met[ranking.upto :]
            ranking.upto = len(self._met)
            new = [(self._key(target, j) << 32 | j, j) for j in met]
            if len(new) <= 8:  # the usual case: an example or two labeled since the last call
                for rank, j in new:
                    at = bisect.bisect(ranking.ranks, rank)
                    ranking.ranks.insert(at, rank)
                    ranking.order.insert(at, j)
            else:
                merged = sorted([*zip(ranking.ranks, ranking.order, strict=True), *new])
                ranking.ranks = [rank for rank, _ in merged]
                ranking.order = [j for _, j in merged]
        chosen: list[int] = []
        fill: list[int] = []  # the group's own labeled examples, used only when others run out
        pins = 0
        for j in ranking.order:
            if j in members and j != target:
                if self._group[j] != group:
                    if j in self.pinned:  # ranked first; at most half the context
                        if pins >= self.size // 2:
                            continue
                        pins += 1
                    chosen.append(j)
                    if len(chosen) == self.size:
                        break
                elif len(fill) < self.size:
                    fill.append(j)
        chosen += fill[: self.size - len(chosen)]
        chosen.sort()
        return chosen


@dataclass
class ScorerStats:
    predictions: int = 0  # predictions asked for by the search
    memo_hits: int = 0  # answered from this run's memory (same prompt seen before)
    bounded: int = 0  # predictions in which a label came from a top-k bound


#: Calibration clamps -inf (a label the server says is impossible) to this, so that
#: ``target - content_free`` stays a number.
_FLOOR = -100.0


#: What a target's prompt is made of: (target, demonstrations in prompt order, their labels).
#: Equal keys make equal prompts (and equal content-free prompts).
_Key = tuple[int, tuple[int, ...], tuple[int, ...]]


class ContextScorer:
    """Scores targets through a backend, one request per distinct prompt.

    Raw scores are memoised by a digest of the exact prompt text, so an assignment that was
    scored once is never paid for twice in a run (the disk cache does the same across runs).
    Predictions are memoised by the prompt's parts (``_Key``): the search asks for every
    labeled target at every evaluation and most of those prompts were built before, so a
    repeat costs a tuple of indices instead of joining and hashing kilobytes of text, and
    no prompt text stays in memory.
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
        self._memo: dict[bytes, ScoreResult] = {}  # prompt digest -> raw score
        self._in_flight: SingleFlight[bytes, None] = SingleFlight(share_errors=False)
        self._predictions: dict[_Key, Prediction] = {}

    def prompt(self, target: int, labels: Assignment, labeled: Sequence[int] | None = None) -> str:
        key = self._prompt_key(target, labels, sorted(labels) if labeled is None else labeled)
        return self._text(key[1], key[2]) + self._rendered[target]

    def _prompt_key(self, target: int, labels: Assignment, labeled: Sequence[int]) -> _Key:
        ctx = tuple(self.strategy.context(target, labeled))
        return target, ctx, tuple(map(labels.__getitem__, ctx))

    def _text(self, ctx: Sequence[int], labs: Sequence[int]) -> str:
        return "".join([self._demo(j, y) for j, y in zip(ctx, labs, strict=True)])

    def _demo(self, j: int, label: int) -> str:
        text = self._demos.get((j, label))
        if text is None:
            text = demo_text(self._rendered[j], self.task.labels[label])
            self._demos[(j, label)] = text
        return text

    async def predict_many(
        self, targets: Sequence[int], labels: Assignment
    ) -> dict[int, Prediction]:
        labeled = tuple(sorted(labels))  # one immutable object: see BoundedContext
        keys = {t: self._prompt_key(t, labels, labeled) for t in targets}
        known = self._predictions
        missing = sorted(t for t, k in keys.items() if k not in known)
        self.stats.predictions += len(keys)
        self.stats.memo_hits += (len(keys) - len(missing)) * self._prompts_per_target
        if missing:
            await self._predict(missing, keys)
        return {t: known[k] for t, k in keys.items()}

    async def _predict(self, targets: list[int], keys: dict[int, _Key]) -> None:
        """Score the prompts of ``targets`` that no earlier call scored, and memoise."""
        # Requests go out in target order: neighbouring targets share the longest prefixes.
        # The prompts of one context (a group's targets and their content-free prompt) wait
        # for the first of them, so that the server computes that context once and serves
        # the others from its prefix cache.
        texts: dict[bytes, str] = {}
        prompts: dict[int, tuple[bytes, bytes | None]] = {}
        shared: dict[tuple[tuple[int, ...], tuple[int, ...]], list[bytes]] = {}
        for t in targets:
            _, ctx, labs = keys[t]
            context = self._text(ctx, labs)
            prompt = self._add(texts, context + self._rendered[t])
            null = self._add(texts, context + self._content_free) if self.calibrate else None
            prompts[t] = (prompt, null)
            same = shared.setdefault((ctx, labs), [])
            same += [d for d in (prompt, null) if d is not None and d not in same]
        todo = [d for d in texts if d not in self._memo]
        self.stats.memo_hits += len(targets) * self._prompts_per_target - len(todo)
        if todo:
            runs = [[d for d in same if d not in self._memo] for same in shared.values()]
            await gather([functools.partial(self._score_shared, run, texts) for run in runs if run])
        for t, (prompt, null) in prompts.items():
            self._predictions[keys[t]] = self._prediction(prompt, null)

    async def _score_shared(self, digests: list[bytes], texts: dict[bytes, str]) -> None:
        """Score prompts that share a context: the first alone, then the rest together."""
        first, *rest = digests
        await self._score(first, texts[first])
        if rest:
            await gather([functools.partial(self._score, d, texts[d]) for d in rest])

    @property
    def _prompts_per_target(self) -> int:
        return 2 if self.calibrate else 1

    @staticmethod
    def _add(texts: dict[bytes, str], prompt: str) -> bytes:
        digest = hashlib.blake2b(prompt.encode(), digest_size=16).digest()
        texts.setdefault(digest, prompt)
        return digest

    def _prediction(self, prompt: bytes, null: bytes | None) -> Prediction:
        raw = self._memo[prompt]
        if null is None:
            return Prediction.from_raw(raw.logprobs, any(raw.bounded))
        base = self._memo[null]
        calibrated = [
            max(x, _FLOOR) - max(b, _FLOOR)
            for x, b in zip(raw.logprobs, base.logprobs, strict=True)
        ]
        return Prediction.from_raw(calibrated, any(raw.bounded) or any(base.bounded))

    async def _score(self, digest: bytes, prompt: str) -> None:
        # Concurrent evaluations (ConsistencyFix options) often need the same prompt: the
        # first asks the backend, the others wait for its answer instead of paying again
        # (and where it failed, the next one asks).
        if digest not in self._memo:
            await self._in_flight.run(digest, functools.partial(self._ask, digest, prompt))

    async def _ask(self, digest: bytes, prompt: str) -> None:
        result = await self.backend.score(ScoreRequest(prompt, self.task.labels))
        if any(result.bounded):
            self.stats.bounded += 1
        self._memo[digest] = result
