"""A stand-in server at the level of token ids, for ``httpx2.MockTransport``: vLLM's or
llama.cpp's request and response shapes over a toy model, with switches for what a given
build honours.

``CompletionsApp`` (``protocol.py``) serves a model of text; the host profiles of
``OpenAICompletions`` need one of token ids: vLLM's ``/tokenize`` and llama.cpp's, prompts
given as token ids or lists, ``logprob_token_ids``, ``return_tokens_as_token_ids``, ``echo``,
a ``--max-logprobs`` cap, and labels that are several tokens. ``TokenServer`` is that server.

The toy tokenizer splits text into words that keep their leading space (" True") and cuts
words longer than 5 characters into 5-character pieces (" Truth" "fulne" "ss"), so labels can
be multi-token. The toy model's next-token distribution over a fixed vocabulary comes from
the SHA-256 of the prompt's token ids (log-softmax: real log-probabilities); every token
outside that vocabulary has probability zero, which vLLM reports as -9999.0.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

import httpx2

BOS = 1
VOCAB: tuple[str, ...] = (
    " True",
    " False",
    " the",
    " a",
    " is",
    "\n",
    " Truth",
    "fulne",
    "ss",
    " Yes",
    " No",
)
VOCAB += tuple(f" w{i}" for i in range(25))  # more than k=20, as a real vocabulary
_WORD = re.compile(r"\s*\S+|\s+")


def toy_logprobs(ids: list[int], vocab_ids: list[int]) -> dict[int, float]:
    """The toy model: log P(next token | ids) over ``vocab_ids`` (others: -inf)."""
    digest = hashlib.sha256(json.dumps(ids).encode()).digest()
    logits = [digest[i % len(digest)] / 16.0 for i in range(len(vocab_ids))]
    top = max(logits)
    norm = top + math.log(sum(math.exp(x - top) for x in logits))
    return {tid: x - norm for tid, x in zip(vocab_ids, logits, strict=True)}


class TokenServer:
    """Callable handler for ``httpx2.MockTransport``; records the JSON bodies it got.

    ``shape``: "vllm" or "llamacpp" (tokenize endpoint and top-k shape). ``explicit``: a vLLM
    build that honours ``logprob_token_ids`` (older ones ignore unknown fields). ``max_k``:
    the server's ``--max-logprobs``. ``echo``: whether ``echo`` is honoured.
    """

    def __init__(
        self,
        shape: str = "vllm",
        *,
        explicit: bool = True,
        max_k: int = 20,
        echo: bool = True,
        tokenize: bool = True,
    ) -> None:
        self.shape = shape
        self.explicit = explicit
        self.max_k = max_k
        self.echo = echo
        self.has_tokenize = tokenize
        self.vocab: dict[str, int] = {"<bos>": BOS}
        self.vocab_ids = [self.token_id(t) for t in VOCAB]
        self.requests: list[tuple[str, dict[str, Any]]] = []

    # -- toy tokenizer ------------------------------------------------------------------

    def token_id(self, piece: str) -> int:
        return self.vocab.setdefault(piece, 100 + len(self.vocab))

    def piece(self, tid: int) -> str:
        return next(p for p, i in self.vocab.items() if i == tid)

    def tokenize(self, text: str, bos: bool = True) -> list[int]:
        ids = [BOS] if bos else []
        for word in _WORD.findall(text):
            cut = 6 if word.startswith(" ") else 5
            head, rest = word[:cut], word[cut:]
            ids.append(self.token_id(head))
            ids += [self.token_id(rest[i : i + 5]) for i in range(0, len(rest), 5)]
        return ids

    def model(self, ids: list[int]) -> dict[int, float]:
        return toy_logprobs(ids, self.vocab_ids)

    # -- HTTP ----------------------------------------------------------------------------

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    def completions(self) -> list[dict[str, Any]]:
        return [body for path, body in self.requests if path == "/v1/completions"]

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content) if request.content else {}
        self.requests.append((request.url.path, body))
        if request.url.path == "/tokenize":
            return self._tokenize(body)
        if request.url.path == "/v1/models":
            return httpx2.Response(200, json={"object": "list", "data": [{"id": "toy"}]})
        if request.url.path == "/v1/completions":
            return self._complete(body)
        return httpx2.Response(404, json={"error": {"message": "Not Found"}})

    def _error(self, message: str) -> httpx2.Response:
        return httpx2.Response(400, json={"object": "error", "message": message, "code": 400})

    def _tokenize(self, body: dict[str, Any]) -> httpx2.Response:
        if not self.has_tokenize:
            return httpx2.Response(404, json={"error": {"message": "Not Found"}})
        if self.shape == "llamacpp":
            if "content" not in body:
                return self._error("'content' missing")
            ids = self.tokenize(body["content"], bos=bool(body.get("add_special")))
            return httpx2.Response(200, json={"tokens": ids})
        if "prompt" not in body:
            return self._error("1 validation error: prompt Field required")
        ids = self.tokenize(body["prompt"], bos=body.get("add_special_tokens", True))
        return httpx2.Response(200, json={"count": len(ids), "max_model_len": 4096, "tokens": ids})

    def _prompts(self, prompt: Any) -> list[list[int]]:
        if isinstance(prompt, str):
            return [self.tokenize(prompt)]
        if prompt and all(isinstance(t, int) for t in prompt):
            return [prompt]
        return [p if isinstance(p, list) else self.tokenize(p) for p in prompt]

    def _complete(self, body: dict[str, Any]) -> httpx2.Response:
        k = body.get("logprobs")
        if k is not None and k > self.max_k:
            return self._error(
                f"Requested sample logprobs of {k}, which is greater than max allowed: {self.max_k}"
            )
        wanted = body.get("logprob_token_ids") if self.explicit and self.shape == "vllm" else None
        if wanted is not None and k is None:
            return self._error("when using `logprob_token_ids`, `logprobs` must be set.")
        as_ids = bool(body.get("return_tokens_as_token_ids")) and self.shape == "vllm"
        echo = bool(body.get("echo")) and self.echo
        choices = []
        prompt_tokens = 0
        for index, ids in enumerate(self._prompts(body["prompt"])):
            prompt_tokens += len(ids)
            dist = self.model(ids)
            best = max(dist, key=lambda t: dist[t])
            choice: dict[str, Any] = {"index": index, "text": self.piece(best)}
            if k is not None:
                if wanted is not None:
                    picked = [best, *(t for t in wanted if t != best)]
                else:
                    picked = sorted(dist, key=lambda t: -dist[t])[:k]
                entries = [(t, dist.get(t, -math.inf)) for t in picked]
                choice["logprobs"] = self._shape(entries, best, dist, as_ids, ids if echo else None)
            choices.append(choice)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(choices)}
        if self.shape == "llamacpp":  # as llama.cpp's server: the first prompt's usage only
            first = self._prompts(body["prompt"])[0]
            usage = {"prompt_tokens": len(first), "completion_tokens": 1}
        return httpx2.Response(
            200, json={"object": "text_completion", "choices": choices, "usage": usage}
        )

    def _key(self, tid: int, as_ids: bool) -> str:
        return f"token_id:{tid}" if as_ids else self.piece(tid)

    def _shape(
        self,
        entries: list[tuple[int, float]],
        best: int,
        dist: dict[int, float],
        as_ids: bool,
        echoed: list[int] | None,
    ) -> dict[str, Any]:
        if self.shape == "llamacpp":
            items = [
                {"id": t, "token": self.piece(t), "bytes": [], "logprob": lp} for t, lp in entries
            ]
            return {"content": [items[0] | {"top_logprobs": items}]}
        tokens, lps, tops = [], [], []
        if echoed is not None:
            for i, t in enumerate(echoed):
                tokens.append(self._key(t, as_ids))
                lp = None if i == 0 else max(self.model(echoed[:i]).get(t, -math.inf), -9999.0)
                lps.append(lp)
                tops.append(None if lp is None else {self._key(t, as_ids): lp})
        tokens.append(self._key(best, as_ids))
        lps.append(dist[best])
        tops.append({self._key(t, as_ids): max(lp, -9999.0) for t, lp in entries})
        return {
            "text_offset": list(range(len(tokens))),
            "token_logprobs": lps,
            "tokens": tokens,
            "top_logprobs": tops,
        }
