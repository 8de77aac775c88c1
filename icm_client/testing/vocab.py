"""The stand-in models' vocabulary and toy tokenizer, shared by the completions and chat
protocols of the stand-in servers (``protocol.py``, ``chat.py``)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Literal

VOCAB = (
    " True",
    " False",
    " Yes",
    " No",
    " A",
    " B",
    " C",
    " D",
    " the",
    " a",
    " is",
    " not",
    " and",
    " of",
    ",",
    ".",
    "\n",
    " 1",
    " 2",
    " I",
    " it",
    " maybe",
    " true",
    " false",
)
"""Every token a stand-in model can predict."""

#: A stand-in model: the next-token distribution after a prompt, most likely first.
NextToken = Callable[[str], list[tuple[str, float]]]
Shape = Literal["openai", "llamacpp"]

_TOKEN_RE = re.compile(r"\s?[A-Za-z0-9]+|\s?[^\sA-Za-z0-9]|\s+")


def toy_tokenize(text: str) -> list[str]:
    """Words (with their leading space), punctuation marks and runs of whitespace."""
    return _TOKEN_RE.findall(text)


class TokenCounter:
    """``len(toy_tokenize(prompt))`` block by block: a prompt of many demonstrations is cut
    at its blank lines and each block's count is remembered, so the long leave-one-out
    prompts of a search (the same blocks over and over) are counted in a few dictionary
    lookups. Equal to the whole-prompt count when no block starts or ends in whitespace,
    as the scorer's blocks never do. Bounded: at most ``size`` blocks are remembered."""

    def __init__(self, size: int = 1 << 16) -> None:
        self.size = size
        self._blocks: dict[str, int] = {}

    def __call__(self, prompt: str) -> int:
        blocks = prompt.split("\n\n")
        total = len(blocks) - 1  # each blank line is one whitespace token
        memo = self._blocks
        for block in blocks:
            n = memo.get(block)
            if n is None:
                n = len(_TOKEN_RE.findall(block))
                if len(memo) < self.size:
                    memo[block] = n
            total += n
        return total


def token_ids(text: str) -> list[int]:
    """Stable ids of ``toy_tokenize(text)`` (what ``/tokenize`` answers)."""
    return [
        int.from_bytes(hashlib.sha256(t.encode()).digest()[:3], "big") for t in toy_tokenize(text)
    ]
