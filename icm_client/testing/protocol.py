"""The OpenAI-compatible completions protocol of the stand-in servers.

A stand-in model is a function from a prompt to its next-token distribution over a small
vocabulary (``NextToken``). This module turns one into what a real server answers: the
``/v1/completions`` body in the OpenAI/vLLM shape or llama.cpp's, ``/v1/models`` and vLLM's
``/tokenize``, with a toy tokenizer whose counts are close to a BPE tokenizer's on English.
``/v1/chat/completions`` serves the same model to chat messages through a toy chat template
(``chat.py``), so a chat route and a completions route of one model can be compared.
``CompletionsApp`` is the whole server as a function of (method, path, body); it serves as
an ``httpx2.MockTransport`` handler directly and under the loopback servers of the tests and
benchmarks, so every test double speaks one protocol.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import httpx2

from .chat import CHAT_MODEL_REFUSAL, chat_body, chat_prompt
from .vocab import VOCAB, NextToken, Shape, TokenCounter, token_ids, toy_tokenize

__all__ = [
    "CHAT_MODEL_REFUSAL",
    "VOCAB",
    "CompletionsApp",
    "NextToken",
    "Shape",
    "TokenCounter",
    "belief_logprobs",
    "chat_body",
    "chat_prompt",
    "completion_body",
    "error_body",
    "hash_logprobs",
    "normalised",
    "token_ids",
    "toy_tokenize",
]


def hash_logprobs(prompt: str) -> list[tuple[str, float]]:
    """A model with no beliefs: logits from the SHA-256 of the prompt (log-softmax, so they
    are real log-probabilities). The same prompt always gets the same answer."""
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    return normalised([(tok, digest[i] / 32.0) for i, tok in enumerate(VOCAB)])


def belief_logprobs(prompt: str) -> list[tuple[str, float]]:
    """A stand-in with beliefs: the noise of ``hash_logprobs``, but " True" and " False"
    lead, split by a fixed belief about the TARGET (the text after the last blank line) and
    only nudged by the context. A search over it grows its labeled set as over a real model;
    over ``hash_logprobs`` (pure noise) it seldom accepts a step and labels a handful."""
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    target = prompt.rpartition("\n\n")[2]
    belief = hashlib.sha256(target.encode("utf-8")).digest()[0] / 255.0 * 6.0 - 3.0
    nudge = digest[31] / 255.0 - 0.5
    logits = [digest[i] / 32.0 for i in range(len(VOCAB))]
    logits[0] = 9.0 + (belief + nudge) / 2  # " True"
    logits[1] = 9.0 - (belief + nudge) / 2  # " False"
    return normalised(list(zip(VOCAB, logits, strict=True)))


def normalised(logits: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Log-softmax over ``logits``, most likely first (ties by token)."""
    top = max(v for _, v in logits)
    norm = top + math.log(sum(math.exp(v - top) for _, v in logits))
    return sorted(((tok, v - norm) for tok, v in logits), key=lambda p: (-p[1], p[0]))


def completion_body(
    model: str, prompt: str, dist: list[tuple[str, float]], k: int, shape: Shape = "openai"
) -> dict[str, Any]:
    """A one-token completion of ``prompt`` with its top-``k`` logprobs (k=0: none)."""
    choices = [_choice(0, prompt, dist, k, shape)]
    n_prompt = len(toy_tokenize(prompt))
    return {
        "id": "cmpl-stand-in",
        "object": "text_completion",
        "created": 0,
        "model": model,
        "choices": choices,
        "usage": {"prompt_tokens": n_prompt, "completion_tokens": 1, "total_tokens": n_prompt + 1},
    }


def _choice(
    index: int, prompt: str, dist: list[tuple[str, float]], k: int, shape: Shape
) -> dict[str, Any]:
    top = dist[: max(1, min(k, len(dist)))]
    token, logprob = top[0]
    choice: dict[str, Any] = {"index": index, "text": token, "finish_reason": "length"}
    if not k:
        choice["logprobs"] = None
    elif shape == "openai":
        choice["logprobs"] = {
            "tokens": [token],
            "token_logprobs": [logprob],
            "top_logprobs": [dict(top)],
            "text_offset": [len(prompt)],
        }
    else:
        entries = [
            {"id": VOCAB.index(t), "token": t, "logprob": lp, "bytes": list(t.encode())}
            for t, lp in top
        ]
        choice["logprobs"] = {"content": [entries[0] | {"top_logprobs": entries}]}
    return choice


def error_body(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": code}}


class CompletionsApp:
    """A well-behaved OpenAI-compatible server around a stand-in model.

    ``prompt`` may be one string or a list of strings (one choice per prompt, by ``index``).
    Counts what it served: ``requests`` (HTTP requests by path) and ``prompts`` (completions).
    ``completions=False`` is a chat-only server: ``/v1/completions`` answers 404 as OpenAI does
    for a chat model. ``chat_continue``: a final assistant turn is continued when the request
    says ``continue_final_message`` (vLLM; the ``llamacpp`` shape continues it always).
    ``max_top_logprobs``: chat requests asking for more are refused (400), as OpenAI does.
    """

    def __init__(
        self,
        model: NextToken = hash_logprobs,
        *,
        name: str = "stand-in-1",
        shape: Shape = "openai",
        n_ctx: int = 1 << 20,
        tokenizer: bool = True,
        completions: bool = True,
        chat_continue: bool = True,
        max_top_logprobs: int = 20,
    ) -> None:
        self.model, self.name, self.shape = model, name, shape
        self.n_ctx, self.tokenizer = n_ctx, tokenizer
        self.completions, self.chat_continue = completions, chat_continue
        self.max_top_logprobs = max_top_logprobs
        self.requests: dict[str, int] = {}
        self.prompts = 0
        self.prompt_tokens = 0
        self._count = TokenCounter()

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        self.requests[path] = self.requests.get(path, 0) + 1
        if method == "GET" and path == "/v1/models":
            return 200, {
                "object": "list",
                "data": [{"id": self.name, "object": "model", "max_model_len": self.n_ctx}],
            }
        if method != "POST":
            return 404, error_body(f"no route {method} {path}", "not_found")
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            return 400, error_body("request body is not JSON", "invalid_request_error")
        if not isinstance(payload, dict):
            return 400, error_body("request body is not an object", "invalid_request_error")
        if path == "/tokenize" and self.tokenizer:
            text = payload.get("content", payload.get("prompt"))
            if not isinstance(text, str):
                return 400, error_body("'content' is required", "invalid_request_error")
            ids = token_ids(text)
            return 200, {"tokens": ids, "count": len(ids), "max_model_len": self.n_ctx}
        if path == "/v1/chat/completions":
            return self._chat(payload)
        if path != "/v1/completions":
            return 404, error_body(f"no route {path}", "not_found")
        if not self.completions:
            return 404, error_body(CHAT_MODEL_REFUSAL, "invalid_request_error")
        return self._complete(payload)

    def _chat(self, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        messages = payload.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            return 400, error_body("'messages' must be a list of objects", "invalid_request_error")
        if payload.get("model") != self.name:
            message = f"The model `{payload.get('model')}` does not exist."
            return 404, error_body(message, "invalid_request_error", "model_not_found")
        k = int(payload.get("top_logprobs") or 0) if payload.get("logprobs") else 0
        if k > self.max_top_logprobs:
            message = f"top_logprobs must be at most {self.max_top_logprobs}, got {k}"
            return 400, error_body(message, "invalid_request_error")
        continue_final = self.chat_continue and (
            self.shape == "llamacpp" or bool(payload.get("continue_final_message"))
        )
        text, new_turn = chat_prompt(messages, continue_final)
        self.prompts += 1
        self.prompt_tokens += self._count(text)
        ids = self.shape == "llamacpp"
        return 200, chat_body(self.name, text, self.model(text), k, new_turn, ids)

    def _complete(self, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        prompts = payload.get("prompt")
        if isinstance(prompts, str):
            prompts = [prompts]
        if (
            not isinstance(prompts, list)
            or not prompts
            or not all(isinstance(p, str) for p in prompts)
        ):
            return 400, error_body("'prompt' must be a string or strings", "invalid_request_error")
        if payload.get("model") != self.name:
            message = f"The model `{payload.get('model')}` does not exist."
            return 404, error_body(message, "invalid_request_error", "model_not_found")
        k = int(payload.get("logprobs") or 0)
        choices, total = [], 0
        for index, prompt in enumerate(prompts):
            n_prompt = self._count(prompt)
            if n_prompt + 1 > self.n_ctx:
                message = (
                    f"This model's maximum context length is {self.n_ctx} tokens, however you "
                    f"requested {n_prompt + 1} tokens. Please reduce your prompt."
                )
                return 400, error_body(message, "invalid_request_error", "context_length_exceeded")
            choices.append(_choice(index, prompt, self.model(prompt), k, self.shape))
            total += n_prompt
        self.prompts += len(prompts)
        self.prompt_tokens += total
        return 200, {
            "id": "cmpl-stand-in",
            "object": "text_completion",
            "created": 0,
            "model": self.name,
            "choices": choices,
            "usage": {
                "prompt_tokens": total,
                "completion_tokens": len(prompts),
                "total_tokens": total + len(prompts),
            },
        }

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        """The ``httpx2.MockTransport`` handler."""
        status, data = self.handle(request.method, request.url.path, request.content)
        return httpx2.Response(status, json=data)
