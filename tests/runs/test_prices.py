"""The plan's dollar estimate: the price table, its lookup and the arithmetic."""

from __future__ import annotations

import pytest

from icm_client.prices import Price, find_price, run_cost


def test_lookup_by_exact_name_and_by_pattern() -> None:
    assert find_price("openai", "gpt-4.1-mini") is not None
    fireworks = find_price("fireworks", "accounts/fireworks/models/llama-v3p1-8B-instruct")
    assert fireworks is not None and fireworks.input_per_mtok == 0.20
    assert find_price("openai", "no-such-model") is None and find_price("openai", None) is None


def test_cost_counts_cached_tokens_at_their_discount_and_one_output_token_a_call() -> None:
    price = Price(input_per_mtok=2.0, cached_discount=0.5, output_per_mtok=10.0)
    # 1M prompt tokens, 30 % cached at half price: 2.0 * (0.7 + 0.15) = 1.70; 1,000 calls
    # of one output token: 0.01
    assert run_cost(price, 1e6, 1000, cached_share=0.3) == pytest.approx(1.71)
    assert run_cost(price, 1e6, 0, cached_share=0.0) == pytest.approx(2.0)
