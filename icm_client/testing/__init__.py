"""Simulated base models for testing ICM where a real model cannot show it.

The embedded 270M model is at chance on every task, so whether the search reaches what a
model knows is proven on models whose beliefs we set: ``Oracle`` (knows every answer),
``Noisy`` (right with probability p), ``InContext`` (a kernel model of in-context
learning), ``TwoConcept`` (the same with a salient spurious concept beside the truth) and
``LabelCopying`` (copies its demonstrations' labels, as small models do). Each is a
next-token function served over the real HTTP path, in memory (``mock_client``) or on
loopback (``LoopbackServer``), so prompts are rendered, sent and parsed as in production.
``ceiling`` finds the labeling of highest full-context U (the bar every strategy is judged
against) and ``full_context_u`` scores any labeling on that scale; the generators in
``data`` make task-shaped examples with gold labels for them.

    data = gsm8k_like(128, seed=0)
    task = get_task(data.task)
    model = Noisy(task, data.examples, data.gold, p=0.9)
    async with OpenAICompletions(MOCK_URL, "stand-in-1", client=mock_client(model)) as backend:
        result = await label(data.examples, task, backend)
    best = ceiling(model)  # best.labels, best.energy vs full_context_u(model, labels)
"""

from .ceiling import Ceiling, ceiling, full_context_u
from .data import SHAPES, SimulatedData, comparison_like, gsm8k_like, truthfulqa_like
from .harness import REGIMES, SimulatedRun, simulate, simulated_ceiling, simulated_model
from .models import (
    InContext,
    LabelCopying,
    Noisy,
    Oracle,
    PromptReader,
    Reading,
    SimulatedModel,
    TwoConcept,
)
from .protocol import VOCAB, CompletionsApp, NextToken, hash_logprobs, toy_tokenize
from .ratelimit import RateLimitedApp
from .server import MOCK_URL, LoopbackServer, mock_client
from .token_server import TokenServer

__all__ = [
    "MOCK_URL",
    "REGIMES",
    "SHAPES",
    "VOCAB",
    "Ceiling",
    "CompletionsApp",
    "InContext",
    "LabelCopying",
    "LoopbackServer",
    "NextToken",
    "Noisy",
    "Oracle",
    "PromptReader",
    "RateLimitedApp",
    "Reading",
    "SimulatedData",
    "SimulatedModel",
    "SimulatedRun",
    "TokenServer",
    "TwoConcept",
    "ceiling",
    "comparison_like",
    "full_context_u",
    "gsm8k_like",
    "hash_logprobs",
    "mock_client",
    "simulate",
    "simulated_ceiling",
    "simulated_model",
    "toy_tokenize",
    "truthfulqa_like",
]
