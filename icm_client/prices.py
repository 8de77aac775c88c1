"""What a run's prompt tokens cost on a hosted API, for the dollar line of a run's plan.

ICM sends prompt tokens and reads one generated token per call, so its bill is the prompt
tokens at the input price, less the discount on the tokens a provider's prefix cache served.
The table holds a few models per provider, each with the price's source and the date it was
read; prices change, so the plan says which entry it used, and ``--price-per-mtok`` (with
``--cached-discount``) overrides it. A model not in the table has no estimate unless given.
None of these prices was checked against a bill.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Price(BaseModel):
    """USD per million prompt tokens, the share taken off prompt tokens served from the
    provider's cache (``cached_discount``), USD per million generated tokens, and where the
    figures come from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_per_mtok: float = Field(ge=0)
    cached_discount: float = Field(0.0, ge=0, le=1)
    output_per_mtok: float = Field(0.0, ge=0)
    source: str = "given"


PRICES: dict[tuple[str, str], Price] = {
    ("openai", "gpt-4.1-mini"): Price(
        input_per_mtok=0.40,
        cached_discount=0.75,
        output_per_mtok=1.60,
        source="OpenAI pricing page at the model's launch (2025-04), not re-read",
    ),
    ("openai", "gpt-4o-mini"): Price(
        input_per_mtok=0.15,
        cached_discount=0.5,
        output_per_mtok=0.6,
        source="OpenAI pricing page (2024-2025), not re-read",
    ),
    ("together", "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo"): Price(
        input_per_mtok=0.18,
        output_per_mtok=0.18,
        source="Together pricing page (2025), not re-read; a 2026 third-party page says $0.20",
    ),
    ("fireworks", "*8b*"): Price(
        input_per_mtok=0.20,
        cached_discount=0.5,
        output_per_mtok=0.20,
        source="Fireworks pricing page, 4B-16B tier, cached prompt tokens at half price "
        "(2025), not re-read",
    ),
    ("tinker", "Qwen/Qwen3-8B-Base"): Price(
        input_per_mtok=0.13,
        cached_discount=0.8,
        output_per_mtok=0.40,
        source="tinker-docs.thinkingmachines.ai models & pricing (Qwen3-8B prefill, "
        "read 2026-01-05; cached prefill 80% off, read 2026-10-07)",
    ),
}
"""(provider, model) -> price; a model of ``*8b*`` matches any model whose name holds
``8b`` (case-insensitive)."""

ASSUMED_CACHED_SHARE = 0.3
"""Share of prompt tokens a provider's prefix cache serves, when nothing better is known:
29-43 % under ``--strategy bounded --context-size 8`` (benchmarks/README.md, Cost)."""


def find_price(provider: str, model: str | None) -> Price | None:
    """The table's price of ``model`` on ``provider``, or None."""
    if model is None:
        return None
    exact = PRICES.get((provider, model))
    if exact is not None:
        return exact
    name = model.lower()
    for (host, pattern), price in PRICES.items():
        if host == provider and pattern.startswith("*") and pattern.strip("*") in name:
            return price
    return None


def run_cost(
    price: Price, prompt_tokens: float, calls: float, cached_share: float = ASSUMED_CACHED_SHARE
) -> float:
    """USD for ``prompt_tokens`` over ``calls`` one-token answers, ``cached_share`` of the
    prompt tokens at the cached price."""
    prompt = prompt_tokens * price.input_per_mtok * (1 - cached_share * price.cached_discount)
    return (prompt + calls * price.output_per_mtok) / 1e6
