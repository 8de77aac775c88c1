"""Parsing first-position top-k logprobs from both server shapes, and the missing-label bound."""

from __future__ import annotations

import math

import pytest

from icm_client.backends.openai.logprobs import (
    TINY,
    label_logprobs,
    missing_label_bound,
    parse_top_logprobs,
)
from icm_client.errors import CapabilityError, PermanentBackendError

# Recorded from llama.cpp (xllamacpp) on gemma-3-270m, "The capital of France is", logprobs=3.
LLAMACPP = {
    "choices": [
        {
            "text": " the",
            "index": 0,
            "logprobs": {
                "content": [
                    {
                        "id": 506,
                        "token": " the",
                        "bytes": [32, 116, 104, 101],
                        "logprob": -1.5936475992202759,
                        "top_logprobs": [
                            {"id": 506, "token": " the", "bytes": [32], "logprob": -1.5936475992},
                            {"id": 496, "token": " a", "bytes": [32], "logprob": -2.2898948192},
                            {"id": 9079, "token": " Paris", "bytes": [32], "logprob": -2.41929697},
                        ],
                    }
                ]
            },
            "finish_reason": "length",
        }
    ],
    "object": "text_completion",
    "usage": {"completion_tokens": 1, "prompt_tokens": 6, "total_tokens": 7},
}

# vLLM's OpenAI legacy shape (completion/protocol.py), -inf clamped to -9999.0.
VLLM = {
    "id": "cmpl-1",
    "object": "text_completion",
    "choices": [
        {
            "index": 0,
            "text": " True",
            "logprobs": {
                "text_offset": [0],
                "token_logprobs": [-0.3],
                "tokens": [" True"],
                "top_logprobs": [{" True": -0.3, " False": -1.5, "\n": -9999.0}],
            },
            "finish_reason": "length",
        }
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13},
}


def test_llamacpp_shape() -> None:
    [top] = parse_top_logprobs(LLAMACPP)
    assert [t for t, _ in top] == [" the", " a", " Paris"]
    assert top[2][1] == pytest.approx(-2.41929697)


def test_vllm_shape_and_minus_9999_is_minus_inf() -> None:
    [top] = parse_top_logprobs(VLLM)
    assert dict(top) == {" True": -0.3, " False": -1.5, "\n": -math.inf}


def test_token_id_keys_are_just_tokens() -> None:
    body = {"choices": [{"logprobs": {"top_logprobs": [{"token_id:6288": -0.1}]}}]}
    assert parse_top_logprobs(body) == [[("token_id:6288", -0.1)]]


def test_choices_ordered_by_index() -> None:
    a = {"index": 1, "logprobs": {"top_logprobs": [{"b": -1.0}]}}
    b = {"index": 0, "logprobs": {"top_logprobs": [{"a": -1.0}]}}
    assert parse_top_logprobs({"choices": [a, b]}) == [[("a", -1.0)], [("b", -1.0)]]


@pytest.mark.parametrize(
    "choice",
    [
        {"text": "2", "index": 0, "logprobs": None},  # llama.cpp without 'logprobs'
        {"text": "2", "index": 0},
        {"logprobs": {"top_logprobs": None, "tokens": ["2"]}},
        {"logprobs": {"top_logprobs": [None]}},
        {"logprobs": {"top_logprobs": []}},
        {"logprobs": {"top_logprobs": [{}]}},  # empty top-k
        {"logprobs": {"content": []}},
        {"logprobs": {"content": [{"token": "x", "logprob": -1.0, "top_logprobs": []}]}},
    ],
)
def test_no_logprobs_is_a_capability_error(choice: dict[str, object]) -> None:
    with pytest.raises(CapabilityError, match=r"no logprobs|empty top-k") as info:
        parse_top_logprobs({"choices": [choice]}, endpoint="http://h/v1/completions")
    assert "http://h/v1/completions" in str(info.value)


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"error": "x"},
        {"choices": []},
        {"choices": "x"},
        {"choices": [3]},
        {"choices": [{"logprobs": "x"}]},
        {"choices": [{"logprobs": {"top_logprobs": ["x"]}}]},
        {"choices": [{"logprobs": {"top_logprobs": [{"a": "x"}]}}]},
        {"choices": [{"logprobs": {"top_logprobs": [{"a": True}]}}]},
        {"choices": [{"logprobs": {"top_logprobs": [{"a": 0.5}]}}]},
        {"choices": [{"logprobs": {"top_logprobs": [{"a": math.nan}]}}]},
        {"choices": [{"logprobs": {"content": [{"top_logprobs": [{"logprob": -1}]}]}}]},
    ],
)
def test_malformed_body_is_permanent(body: object) -> None:
    with pytest.raises(PermanentBackendError):
        parse_top_logprobs(body)


def test_labels_exact_match_with_leading_space() -> None:
    top = [(" True", -0.5), ("True", -1.0), (" False", -2.0)]
    values, bounded = label_logprobs(top, (" True", " False"))
    assert values == (-0.5, -2.0)
    assert bounded == (False, False)


def test_duplicate_token_text_is_log_sum_exp() -> None:
    top = [(" True", math.log(0.25)), (" True", math.log(0.25)), (" x", math.log(0.1))]
    values, bounded = label_logprobs(top, (" True",))
    assert values[0] == pytest.approx(math.log(0.5))
    assert bounded == (False,)


def test_missing_label_is_bounded_by_least_topk_prob() -> None:
    top = [(" a", math.log(0.5)), (" b", math.log(0.2)), (" c", math.log(0.1))]
    values, bounded = label_logprobs(top, (" a", " zz"))
    assert bounded == (False, True)
    # leftover mass 0.2 > p_min 0.1: the bound is p_min
    assert values[1] == pytest.approx(math.log(0.1))


def test_missing_label_is_bounded_by_leftover_mass() -> None:
    top = [(" a", math.log(0.7)), (" b", math.log(0.29))]
    assert missing_label_bound(top) == pytest.approx(math.log(0.01))


def test_bound_stays_finite_when_topk_holds_all_mass_or_minus_inf() -> None:
    assert missing_label_bound([(" a", 0.0)]) == pytest.approx(math.log(TINY))
    assert missing_label_bound([(" a", -0.1), ("\n", -math.inf)]) == pytest.approx(math.log(TINY))


def test_present_label_at_minus_inf_is_exact() -> None:
    values, bounded = label_logprobs([(" a", 0.0), (" b", -math.inf)], (" b",))
    assert values == (-math.inf,) and bounded == (False,)
