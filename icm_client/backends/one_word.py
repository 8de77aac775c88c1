"""Asking a chat model for one label word, reading its answer strictly, and turning sampled
answers into an estimate.

Chat models give no logprobs (Anthropic) or give them only for chat-formatted text, so the
honest measurement is: ask for exactly one of the label words, accept an answer only if it
IS one of them (surrounding whitespace, quotes, markdown emphasis and one final period
aside; case-insensitive unless the label words differ only by case), and count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ConfigError
from .base import ScoreResult

SYSTEM = (
    "You label text. You answer with exactly one word from the list you are given, "
    "with no explanation, punctuation or other text."
)

Z95 = 1.959963984540054
"""Two-sided 95% normal quantile, for the Wilson intervals."""


def label_words(labels: Sequence[str]) -> tuple[str, ...]:
    """The label words as a chat model should say them: without their leading space."""
    words = tuple(label.strip() for label in labels)
    if len(set(words)) != len(words) or not all(words):
        raise ConfigError(
            f"label words must be distinct and non-empty once stripped: {list(labels)!r}",
            field="labels",
        )
    return words


def instruction(words: Sequence[str]) -> str:
    """The question that follows the text: which label word comes next."""
    listed = ", ".join(words[:-1]) + f" or {words[-1]}" if len(words) > 1 else words[0]
    return (
        f"The text above stops just before its next word. Which word comes next: {listed}? "
        "Answer with exactly that one word."
    )


def parse_answer(text: str, words: Sequence[str]) -> int | None:
    """The index of the label word ``text`` is, or None if it is anything else."""
    answer = text.strip().strip("\"'`*_").strip()
    if answer.endswith(".") and not answer.endswith(".."):
        answer = answer[:-1].rstrip()
    if answer in words:
        return words.index(answer)
    folded = [i for i, w in enumerate(words) if w.casefold() == answer.casefold()]
    return folded[0] if len(folded) == 1 else None


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ((0, 1) with no trials)."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True, slots=True)
class SampledScore(ScoreResult):
    """An ESTIMATE of the label probabilities from sampled answers, not a measurement.

    ``logprobs`` are log of Laplace-smoothed frequencies, ``(count + 1) / (valid + L)``, so
    no label is probability zero (a log of zero would end the search's arithmetic).
    ``interval`` is the 95% Wilson interval of each label's probability from ``counts`` over
    the valid answers: the sampling bound. ``unparsed`` answers were no label word and count
    for no label. Survives the disk cache's JSON (extra keys, ignored by plain readers).
    """

    samples: int = 0
    unparsed: int = 0
    counts: tuple[int, ...] = ()
    interval: tuple[tuple[float, float], ...] = ()

    def to_json(self) -> dict[str, object]:
        return ScoreResult.to_json(self) | {
            "approximate": True,
            "samples": self.samples,
            "unparsed": self.unparsed,
            "counts": list(self.counts),
            "interval": [list(pair) for pair in self.interval],
        }


def estimate(
    answers: Sequence[int | None], n_labels: int, prompt_tokens: int = 0, cached_tokens: int = 0
) -> SampledScore:
    """The smoothed estimate and its sampling bound from parsed answers (None: unparsed)."""
    counts = tuple(sum(1 for a in answers if a == i) for i in range(n_labels))
    valid = sum(counts)
    logprobs = tuple(math.log((c + 1) / (valid + n_labels)) for c in counts)
    return SampledScore(
        logprobs,
        (False,) * n_labels,
        prompt_tokens,
        cached_tokens,
        samples=len(answers),
        unparsed=len(answers) - valid,
        counts=counts,
        interval=tuple(wilson(c, valid) for c in counts),
    )
