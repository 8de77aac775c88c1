"""Hosted APIs' own answer shapes: Together's cached tokens, Fireworks' token ids."""

from __future__ import annotations

from icm_client.backends.openai.logprobs import parse_top_entries
from icm_client.backends.transport import token_counts


def test_cached_tokens_in_each_shape() -> None:
    openai = {"usage": {"prompt_tokens": 900, "prompt_tokens_details": {"cached_tokens": 512}}}
    together = {"usage": {"prompt_tokens": 900, "cached_tokens": 256}}
    neither = {"usage": {"prompt_tokens": 900}}
    assert token_counts(openai) == (900, 512)
    assert token_counts(together) == (900, 256)
    assert token_counts(neither) == (900, 0)


def test_fireworks_chat_entries_keep_their_token_ids() -> None:
    entry = {"token": "True", "logprob": -0.25, "token_id": 2575, "bytes": [84]}
    body = {
        "choices": [
            {
                "index": 0,
                "logprobs": {
                    "content": [
                        entry
                        | {
                            "top_logprobs": [
                                entry,
                                {"token": "False", "logprob": -1.5, "token_id": 4139},
                            ]
                        }
                    ]
                },
            }
        ]
    }
    [top] = parse_top_entries(body)
    assert top == [(2575, "True", -0.25), (4139, "False", -1.5)]
