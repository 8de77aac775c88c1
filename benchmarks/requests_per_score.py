"""HTTP requests per score against a vLLM-shaped server, before and after, in one run.

    python benchmarks/requests_per_score.py [--quick] [--n 512] [--concurrency 32]

The server is the tests' vLLM stand-in (``icm_client.testing.token_server``: vLLM's ``/tokenize``,
token-id and list prompts, ``logprob_token_ids``), reached through ``httpx2.MockTransport``,
so every request the client makes is counted, ``/v1/models`` and ``/tokenize`` included.
N distinct TruthfulQA-shaped prompts (``_sim.synthetic_examples``, rendered by the
``truthfulqa`` task: they share the template's ending) are scored, ``--concurrency`` at once,
through ``ScoringClient(OpenAICompletions(..., provider="vllm"), cache=False)``, by:

* ``tokenize every score`` (the baseline): ``remember_label_tokens=False``, each score asks
  ``/tokenize`` for the prompt and for prompt + each label, then the completion;
* ``label ids learnt per ending``: the first prompt with an ending learns the label ids (and
  checks them against the ending alone); later prompts go as text, one request each;
* ``+ batched prompts``: the same, with concurrent prompts gathered into list requests.

Each configuration's scores (logprobs, bound flags) must be identical to the baseline's
(checked, and printed).
Target (issue 16): <= 1.1 HTTP requests per score.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import httpx2
from _sim import machine, table, write_json

from icm_client.backends import OpenAICompletions, ScoreRequest, ScoreResult
from icm_client.backends.openai.label_tokens import ENDING_CHARS
from icm_client.client import ScoringClient
from icm_client.tasks import get_task
from icm_client.testing.data import synthetic_examples
from icm_client.testing.token_server import TokenServer

RESULTS = Path(__file__).parent / "results"
TARGET = 1.1
CONFIGS: dict[str, dict[str, Any]] = {
    "tokenize every score": {"remember_label_tokens": False, "batch_size": 1},
    "label ids learnt per ending": {"batch_size": 1},
    "+ batched prompts": {},
}


async def run(requests: list[ScoreRequest], concurrency: int, options: dict[str, Any]) -> Any:
    server = TokenServer("vllm")
    # The stand-in numbers new words as it first meets them, and its toy model hashes the
    # ids: meet every word of the run up front, in one order, so that every configuration
    # talks to the same model whatever order its requests arrive in.
    for r in requests:
        for text in (r.prompt, r.prompt[-ENDING_CHARS:]):
            for label in r.labels:
                server.tokenize(text + label)
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(server))
    inner = OpenAICompletions("http://vllm.test/v1", provider="vllm", client=client, **options)
    results: list[ScoreResult | None] = [None] * len(requests)
    async with ScoringClient(inner, cache=False, max_concurrency=concurrency) as backend:

        async def one(i: int) -> None:
            results[i] = await backend.score(requests[i])

        async with anyio.create_task_group() as tg:
            for i in range(len(requests)):
                tg.start_soon(one, i)
    await client.aclose()
    scores = [(r.logprobs, r.bounded) for r in results if r is not None]
    return scores, Counter(server.paths()), server.completions(), backend.usage


async def bench(args: argparse.Namespace) -> dict[str, object]:
    task = get_task("truthfulqa")
    examples = synthetic_examples(args.n)
    requests = [ScoreRequest(task.render(ex), task.labels) for ex in examples]
    rows, figures, baseline = [], {}, None
    for name, options in CONFIGS.items():
        results, paths, completions, usage = await run(requests, args.concurrency, options)
        baseline = results if baseline is None else baseline
        prompts = sum(len(b["prompt"]) if _is_list(b["prompt"]) else 1 for b in completions)
        total = sum(paths.values())
        figures[name] = {
            "http_requests": total,
            "requests_per_score": total / len(requests),
            "tokenize_requests": paths["/tokenize"],
            "completion_requests": paths["/v1/completions"],
            "prompts_per_completion_request": prompts / max(paths["/v1/completions"], 1),
            "identical_to_baseline": results == baseline,
            "calls": usage.calls,
        }
        rows.append(
            [
                name,
                total,
                total / len(requests),
                paths["/tokenize"],
                paths["/v1/completions"],
                prompts / max(paths["/v1/completions"], 1),
                "yes" if results == baseline else "NO",
            ]
        )
    headers = ["client", "HTTP", "per score", "/tokenize", "/completions", "prompts/req", "same"]
    print(f"N = {args.n} scores, {args.concurrency} in flight, vLLM-shaped stand-in server")
    print(table(headers, rows))
    best = min(f["requests_per_score"] for f in figures.values())
    first = figures["tokenize every score"]["requests_per_score"]
    print(f"requests per score: {first:.3g} -> {best:.3g} (target <= {TARGET})")
    return {
        "benchmark": "requests_per_score",
        "machine": machine(),
        "n": args.n,
        "concurrency": args.concurrency,
        "target_requests_per_score": TARGET,
        "configs": figures,
    }


def _is_list(prompt: object) -> bool:
    """A list of prompts (strings or token-id lists), not one prompt of token ids."""
    return isinstance(prompt, list) and bool(prompt) and not isinstance(prompt[0], int)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="N = 64 (seconds)")
    p.add_argument("--n", type=int, default=512)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--out", type=Path, default=RESULTS / "requests_per_score.json")
    args = p.parse_args()
    if args.quick:
        args.n = 64
    write_json(args.out, anyio.run(bench, args))


if __name__ == "__main__":
    main()
