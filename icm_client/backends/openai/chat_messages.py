"""A scorer prompt as chat messages, and the label words read back from a chat answer.

The scorer's prompt is ``render(x_j) + label + "\\n\\n"`` blocks (the demonstrations)
followed by ``render(x_i)`` (the target). A chat endpoint takes it in one of two styles:

* ``continue``: the whole prompt as a pre-filled assistant turn that the server continues
  (vLLM's ``continue_final_message``, llama.cpp's assistant prefill), after a user turn that
  asks for the text to be continued. The next token is the one a base model would predict
  after the prompt, so the label words match as they do on ``/v1/completions``, leading
  space included.
* ``turns``: each demonstration a user turn (the rendered example) answered by an assistant
  turn (the label word), the target the last user turn, and a system turn naming the label
  words. The first token of the answer carries no leading space, so a label word matches a
  token equal to it with or without its leading space (their probabilities add).

Blocks are found by their ending: a block that ends in a label word before a blank line is a
demonstration; anything else (an example whose text holds a blank line) joins the next block.
Pure functions: no I/O.
"""

from __future__ import annotations

from typing import Literal

from .logprobs import TopK, label_logprobs

ChatStyle = Literal["continue", "turns"]

CONTINUE_INSTRUCTION = "Continue the text."


def instruction(labels: tuple[str, ...]) -> str:
    """The system turn of the ``turns`` style: answer with one of the label words."""
    words = ", ".join(word.strip() for word in labels)
    return f"Answer each message with exactly one word, one of: {words}."


def split_prompt(prompt: str, labels: tuple[str, ...]) -> tuple[list[tuple[str, str]], str]:
    """(demonstrations as (rendered example, label word), the target's text)."""
    demos: list[tuple[str, str]] = []
    pieces = prompt.split("\n\n")
    block = ""
    for piece in pieces[:-1]:
        block = f"{block}\n\n{piece}" if block else piece
        word = next((w for w in labels if block.endswith(w) and len(block) > len(w)), None)
        if word is not None:
            demos.append((block[: -len(word)], word))
            block = ""
    target = f"{block}\n\n{pieces[-1]}" if block else pieces[-1]
    return demos, target


def chat_messages(prompt: str, labels: tuple[str, ...], style: ChatStyle) -> list[dict[str, str]]:
    """The messages that carry ``prompt`` in ``style`` (see the module docstring)."""
    if style == "continue":
        return [
            {"role": "user", "content": CONTINUE_INSTRUCTION},
            {"role": "assistant", "content": prompt},
        ]
    demos, target = split_prompt(prompt, labels)
    messages = [{"role": "system", "content": instruction(labels)}]
    for text, word in demos:
        messages.append({"role": "user", "content": text})
        messages.append({"role": "assistant", "content": word.strip()})
    messages.append({"role": "user", "content": target})
    return messages


def chat_label_logprobs(
    top: TopK, labels: tuple[str, ...], style: ChatStyle
) -> tuple[tuple[float, ...], tuple[bool, ...]]:
    """Per-label logprobs from the answer's first top-k (``bounded`` where absent).

    ``continue``: by exact text, as on completions. ``turns``: a token equal to a label word
    with or without its leading space counts as that word (``"True"`` and ``" True"`` add).
    """
    if style == "continue":
        return label_logprobs(top, labels)
    by_bare = {word.lstrip(): word for word in labels}
    folded = [(by_bare.get(tok.lstrip(), tok), lp) for tok, lp in top]
    return label_logprobs(folded, labels)
