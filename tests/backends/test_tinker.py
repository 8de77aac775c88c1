"""The Tinker backend against the SDK's own request and response types, with the service
replaced by a stand-in ``SamplingClient`` (skipped where the ``tinker`` extra is absent).

Not mocked at the HTTP layer: the SDK sends its requests through its own session, futures
poller and HTTP client (``pyqwest``), whose wire format is not documented; the stand-in
takes the place of ``SamplingClient.sample``, whose signature and ``SampleResponse`` are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import anyio
import pytest

from icm_client.backends.base import ScoreRequest
from icm_client.errors import CapabilityError
from icm_client.testing.protocol import belief_logprobs, toy_tokenize

tinker = pytest.importorskip("tinker")
from icm_client.backends.tinker import TinkerBackend  # noqa: E402

BOS = 1


class ToyTokenizer:
    """Words, punctuation and whitespace runs as tokens; " True" and " False" split in two
    so that a label of several tokens is exercised."""

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}
        self.pieces: dict[int, str] = {}

    def _id(self, piece: str) -> int:
        if piece not in self.vocab:
            self.vocab[piece] = len(self.vocab) + 2
            self.pieces[self.vocab[piece]] = piece
        return self.vocab[piece]

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        pieces: list[str] = []
        for token in toy_tokenize(text):
            pieces += [token[:3], token[3:]] if token in (" True", " False") else [token]
        return ([BOS] if add_special_tokens else []) + [self._id(p) for p in pieces]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.pieces.get(i, "") for i in ids)


class StandInSampler:
    """``SamplingClient.sample`` over the stand-in model: the prompt logprob of each token is
    ``belief_logprobs`` of the text before it (each label piece read as its whole word, a
    second piece as certain), and a prefix seen before is a cache hit."""

    def __init__(self, tokenizer: ToyTokenizer) -> None:
        self.tokenizer = tokenizer
        self.requests: list[dict[str, Any]] = []
        self.seen: set[tuple[int, ...]] = set()

    async def sample(
        self,
        prompt: Any,
        num_samples: int,
        sampling_params: Any,
        include_prompt_logprobs: bool = False,
        prompt_logprobs_last_n: int | None = None,
    ) -> Any:
        assert isinstance(prompt, tinker.types.ModelInput)
        assert isinstance(sampling_params, tinker.types.SamplingParams)
        ids = prompt.to_ints()
        self.requests.append({"ids": ids, "last_n": prompt_logprobs_last_n})
        n = prompt_logprobs_last_n or len(ids) - 1
        logprobs: list[float | None] = [None] * (len(ids) - n)
        for i in range(len(ids) - n, len(ids)):
            before = self.tokenizer.decode(ids[1:i])
            piece = self.tokenizer.decode([ids[i]])
            if piece in (" Tr", " Fa"):
                word = " True" if piece == " Tr" else " False"
                logprobs.append(dict(belief_logprobs(before))[word])
            else:
                logprobs.append(0.0)
        context = tuple(ids[: len(ids) - n])
        hits = len(context) if context in self.seen else 0
        self.seen.add(context)
        return tinker.types.SampleResponse(
            sequences=[], _prompt_logprobs_list=logprobs, prompt_cache_hit_tokens=hits
        )


PROMPT = "The city of Paris is in France. This statement is True\n\nBerlin is in Spain. It is"


def test_multi_token_labels_are_scored_exactly_with_the_prefix_reused() -> None:
    tokenizer = ToyTokenizer()
    sampler = StandInSampler(tokenizer)
    backend = TinkerBackend(sampler, tokenizer, model="meta-llama/Llama-3.1-8B")
    result = anyio.run(backend.score, ScoreRequest(PROMPT, (" True", " False")))
    expected = dict(belief_logprobs(PROMPT))
    assert result.logprobs == pytest.approx((expected[" True"], expected[" False"]))
    assert result.bounded == (False, False)
    # one request per label, each scoring its two label tokens only (last_n), same context
    assert sorted(r["last_n"] for r in sampler.requests) == [2, 2]
    contexts = {tuple(r["ids"][:-2]) for r in sampler.requests}
    assert len(contexts) == 1 and result.cached_tokens == len(next(iter(contexts)))
    assert backend.usage.calls == 2 and backend.identity == "tinker:meta-llama/Llama-3.1-8B:exact"
    assert math.isfinite(sum(result.logprobs))


def test_a_label_that_merges_with_the_prompt_is_refused() -> None:
    tokenizer = ToyTokenizer()
    backend = TinkerBackend(StandInSampler(tokenizer), tokenizer, model="m")
    with pytest.raises(CapabilityError, match="merges"):
        anyio.run(backend.score, ScoreRequest("It is tr", ("ue", " False")))
