"""The chat-completions side of the stand-in servers: a toy chat template that turns the
messages back into the text a stand-in model reads, and the one-token chat answer with the
first token's ``top_logprobs``."""

from __future__ import annotations

from typing import Any

from .vocab import VOCAB, toy_tokenize

CHAT_MODEL_REFUSAL = (
    "This is a chat model and not supported in the v1/completions endpoint. "
    "Did you mean to use v1/chat/completions?"
)
"""What OpenAI answers (HTTP 404) when a chat model is asked on the legacy endpoint."""


def _strip_space(token: str) -> str:
    return token[1:] if token.startswith(" ") else token


def chat_prompt(messages: list[dict[str, Any]], continue_final: bool) -> tuple[str, bool]:
    """The stand-in's chat template: the text its model reads, and whether the answer starts
    a new turn (then its first token carries no leading space).

    A final assistant turn that is continued is read as the raw text it holds. Otherwise each
    user turn answered by an assistant turn reads ``user + " " + answer + "\\n\\n"``, the last
    user turn ``user``; system turns are not read. This inverts the client's ``turns`` style,
    so a simulated model answers a chat prompt as it answers the completions prompt.
    """
    if continue_final and messages and messages[-1].get("role") == "assistant":
        return str(messages[-1].get("content", "")), False
    text, pending = "", ""
    for message in messages:
        role, content = message.get("role"), str(message.get("content", ""))
        if role == "user":
            text += pending
            pending = content
        elif role == "assistant" and pending:
            text += f"{pending} {content}\n\n"
            pending = ""
    return text + pending, True


def chat_body(
    model: str, text: str, dist: list[tuple[str, float]], k: int, new_turn: bool, ids: bool
) -> dict[str, Any]:
    """A one-token chat completion with the first token's ``top_logprobs`` (OpenAI's shape;
    with ``ids``, llama.cpp's ``id`` on each entry)."""
    top = dist[: max(1, min(k, len(dist)))]
    shown = [(_strip_space(t) if new_turn else t, t, lp) for t, lp in top]
    entries = []
    for token, original, lp in shown:
        entry: dict[str, Any] = {"token": token, "logprob": lp, "bytes": list(token.encode())}
        if ids:
            entry["id"] = VOCAB.index(original)
        entries.append(entry)
    n_prompt = len(toy_tokenize(text))
    return {
        "id": "chatcmpl-stand-in",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": shown[0][0]},
                "logprobs": {"content": [entries[0] | {"top_logprobs": entries if k else []}]},
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": n_prompt, "completion_tokens": 1, "total_tokens": n_prompt + 1},
    }
