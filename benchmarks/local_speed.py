"""Embedded backend: prompt tokens/s of the old and new engine and settings, in one run.

    python benchmarks/local_speed.py [--rounds 4] [--blocks 40] [--no-scores] [--quick]
                                     [--new KEY=VALUE ...] [--old KEY=VALUE ...] [--out F]

Two embedded servers run side by side: "old" (the prebuilt ``xllamacpp`` engine with its
default Q8_0 weights: the embedded backend before the native engine) and "new"
(``EmbeddedServer()``'s defaults: the native engine with BF16 weights once
``python -m icm_client.local.native`` has built it, else the same as old). Each round sends
one fresh prompt (~``--blocks`` x 32 tokens, a unique header so nothing comes from the
prefix cache) to each server, one after the other, alternating which goes first; the figure
is prompt tokens / wall time of the request, summed over rounds. On a machine shared with
other jobs the absolute numbers move with their load (printed: load average before and
after); interleaving the two makes the ratio the figure to read.

Then, unless ``--no-scores``, both servers score every statement of the bundled cities
sample zero-shot (the README demo's data) and the script prints the mean and largest
|P(True) difference|, how many fall on the same side of 0.5, and each server's AUROC against
the sample's gold labels.

``--new weights=q8_0 --new threads=1`` (any ``EmbeddedServer`` keyword; ``omp_wait_policy=``
empty for OpenMP's default) tries other settings against the same baseline;
``--old weights=shipped --old omp_wait_policy=`` is the embedded backend as it first
shipped. The figures also go to ``--out`` (JSON, default
``benchmarks/results/local_speed.json``); ``--quick`` (1 round of short prompts, 16
statements) is the CI-sized run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from importlib import resources
from pathlib import Path
from typing import Any

import anyio
import httpx2
from _sim import key_values, machine

from icm_client.backends import OpenAICompletions
from icm_client.dataset import load_dataset
from icm_client.local import EmbeddedServer
from icm_client.scoring.context import ContextScorer
from icm_client.tasks import get_task

OLD: dict[str, Any] = {"engine": "prebuilt"}
NEW: dict[str, Any] = {}
RESULTS = Path(__file__).parent / "results"
BLOCK = "Question: What is {a}+{b}?\nClaim: The answer is {c}.\nI think this Claim is {label}\n\n"


def prompt(blocks: int, rng: random.Random) -> str:
    """ICM-like few-shot blocks after a header no other request has seen."""
    parts = [f"Run {rng.getrandbits(64):016x}.\n\n"]
    for _ in range(blocks):
        a, b = rng.randint(10, 999), rng.randint(10, 999)
        label = rng.choice(["True", "False"])
        parts.append(BLOCK.format(a=a, b=b, c=a + b + (label == "False"), label=label))
    return "".join(parts) + "Question: What is 2+2?\nClaim: The answer is 4.\nI think this Claim is"


async def timed(client: httpx2.AsyncClient, server: EmbeddedServer, text: str) -> tuple[int, float]:
    start = time.perf_counter()
    response = await client.post(
        server.base_url + "/completions",
        json={"prompt": text, "max_tokens": 1, "temperature": 0, "logprobs": 5},
    )
    elapsed = time.perf_counter() - start
    body = response.json()
    # prompt_n: tokens actually processed (not served from the cache).
    return int(body["timings"]["prompt_n"]), elapsed


async def p_true(server: EmbeddedServer, limit: int | None) -> tuple[list[float], list[bool]]:
    """Zero-shot P(True) of every statement of the bundled cities sample, and its gold."""
    sample = resources.files("icm_client.samples") / "cities_sample.jsonl"
    with resources.as_file(sample) as path:
        dataset = load_dataset(path, limit=limit)
    examples = list(dataset.examples)
    assert dataset.gold is not None
    gold = [dataset.gold.get(ex.id) == "True" for ex in examples]
    backend = OpenAICompletions(server.base_url, server.model_name, provider="llamacpp")
    try:
        scorer = ContextScorer(get_task("cities"), examples, backend)
        preds = await scorer.predict_many(list(range(len(examples))), {})
    finally:
        await backend.aclose()
    return [preds[i].prob(0) for i in range(len(examples))], gold


def auroc(scores: Sequence[float], gold: Sequence[bool]) -> float:
    pos = [s for s, g in zip(scores, gold, strict=True) if g]
    neg = [s for s, g in zip(scores, gold, strict=True) if not g]
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


async def main(args: argparse.Namespace) -> None:
    old_kw, new_kw = key_values(OLD, args.old), key_values(NEW, args.new)
    rng = random.Random(args.seed)
    doc: dict[str, Any] = {"benchmark": "local_speed", "machine": machine()}
    doc["load_before"] = os.getloadavg()
    doc["settings"] = {"old": old_kw, "new": new_kw}
    print(f"cores: {os.cpu_count()}, load average before: {os.getloadavg()}")
    try:
        await measure(args, old_kw, new_kw, rng, doc)
    finally:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"-> {args.out}")


async def measure(
    args: argparse.Namespace,
    old_kw: dict[str, Any],
    new_kw: dict[str, Any],
    rng: random.Random,
    doc: dict[str, Any],
) -> None:
    async with AsyncExitStack() as stack:
        started = time.perf_counter()
        new = await stack.enter_async_context(EmbeddedServer(**new_kw))
        print(
            f"new server ready in {time.perf_counter() - started:.1f} s (incl. first-use "
            f"conversion if any): {new_kw or 'defaults'} -> {new.engine} engine, "
            f"{new.weights}, {new.threads} threads"
        )
        old = await stack.enter_async_context(EmbeddedServer(**old_kw))
        print(f"old server: {old_kw} -> {old.engine} engine, {old.weights}, {old.threads} threads")
        doc["engines"] = {"old": old.engine, "new": new.engine}
        doc["weights"] = {"old": old.weights, "new": new.weights}
        client = await stack.enter_async_context(httpx2.AsyncClient(timeout=1800.0))
        await timed(client, old, prompt(2, rng))  # warm-up: first-request allocations
        await timed(client, new, prompt(2, rng))
        totals = {"old": [0, 0.0], "new": [0, 0.0]}
        servers = {"old": old, "new": new}
        for r in range(args.rounds):
            order = ["old", "new"] if r % 2 == 0 else ["new", "old"]
            line = []
            for name in order:
                tokens, seconds = await timed(client, servers[name], prompt(args.blocks, rng))
                totals[name][0] += tokens
                totals[name][1] += seconds
                line.append(f"{name} {tokens} tok {seconds:6.2f} s = {tokens / seconds:6.0f} tok/s")
            print(f"round {r + 1}: " + " | ".join(line) + f" | load {os.getloadavg()[0]:.1f}")
        rate = {name: n / s for name, (n, s) in totals.items()}
        doc["tokens_per_s"] = rate
        doc["ratio"] = rate["new"] / rate["old"]
        doc["prompt_tokens"] = {name: n for name, (n, _) in totals.items()}
        print(
            f"old: {rate['old']:.0f} prompt tok/s   new: {rate['new']:.0f} prompt tok/s   "
            f"ratio new/old: {rate['new'] / rate['old']:.2f}x"
        )
        print(f"load average after: {os.getloadavg()}")
        doc["load_after"] = os.getloadavg()
        if args.no_scores:
            return
        limit = 16 if args.quick else None
        old_p, gold = await p_true(old, limit)
        new_p, _ = await p_true(new, limit)
        diffs = [abs(a - b) for a, b in zip(old_p, new_p, strict=True)]
        same = sum((a > 0.5) == (b > 0.5) for a, b in zip(old_p, new_p, strict=True))
        print(
            f"cities sample, zero-shot P(True), {len(diffs)} statements: "
            f"mean |dP| {sum(diffs) / len(diffs):.4f}, max {max(diffs):.4f}, "
            f"same side of 0.5: {same}/{len(diffs)}"
        )
        print(f"AUROC vs gold: old {auroc(old_p, gold):.3f}, new {auroc(new_p, gold):.3f}")
        doc["scores"] = {
            "statements": len(diffs),
            "mean_abs_dp": sum(diffs) / len(diffs),
            "max_abs_dp": max(diffs),
            "same_side": same,
            "auroc_old": auroc(old_p, gold),
            "auroc_new": auroc(new_p, gold),
        }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--blocks", type=int, default=40, help="few-shot blocks per prompt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-scores", action="store_true", help="skip the score comparison")
    parser.add_argument("--old", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--new", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--quick", action="store_true", help="1 round, short prompts (CI)")
    parser.add_argument("--out", type=Path, default=RESULTS / "local_speed.json")
    parsed = parser.parse_args()
    if parsed.quick:
        parsed.rounds, parsed.blocks = 1, 4
    anyio.run(main, parsed)
