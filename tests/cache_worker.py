"""One of several processes sharing a score cache directory (run by test_cache_integrity).

``python cache_worker.py DIR N SEED GO_FILE``: waits for GO_FILE (so that the processes start
together), scores prompts 0..N-1 in an order shuffled by SEED through a ``ScoringClient``
over a deterministic stand-in backend, checks every answer, scores them all again (they must all be
hits now, whoever wrote them), and prints a JSON report on stdout.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import time
import warnings
from pathlib import Path

import anyio
from processes import HANG_S

from icm_client.backends import Backend, ScoreRequest, ScoreResult, Usage
from icm_client.client import ScoringClient

LABELS = (" True", " False")


def expected(prompt: str) -> ScoreResult:
    h = hashlib.sha256(prompt.encode()).digest()
    return ScoreResult((-h[0] / 16, -h[1] / 16), (False, h[2] % 2 == 0), len(prompt), h[3])


class Stand(Backend):
    identity = "stand-in:shared-cache-test"

    def __init__(self) -> None:
        self.usage: Usage = Usage()

    async def score(self, request: ScoreRequest) -> ScoreResult:
        self.usage.calls += 1
        await anyio.sleep(0)
        return expected(request.prompt)

    async def aclose(self) -> None:
        pass


async def work(directory: str, n: int, seed: int) -> dict[str, object]:
    prompts = [f"Shared prompt number {i}. I think this Claim is" for i in range(n)]
    random.Random(seed).shuffle(prompts)
    cache = ScoringClient(Stand(), cache=directory, retry=None)
    wrong: list[str] = []
    limiter = anyio.CapacityLimiter(16)

    async def one(prompt: str) -> None:
        async with limiter:
            if await cache.score(ScoreRequest(prompt, LABELS)) != expected(prompt):
                wrong.append(prompt)

    async with anyio.create_task_group() as tg:
        for p in prompts:
            tg.start_soon(one, p)
    first = cache.usage.as_dict()
    async with anyio.create_task_group() as tg:
        for p in reversed(prompts):
            tg.start_soon(one, p)
    second = cache.usage.as_dict()
    await cache.aclose()
    return {
        "wrong": wrong,
        "calls": first["calls"],
        "hits": first["cache_hits"],
        "second_calls": second["calls"] - first["calls"],
        "second_hits": second["cache_hits"] - first["cache_hits"],
    }


def main() -> None:
    directory, n, seed, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    deadline = time.monotonic() + HANG_S
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = anyio.run(work, directory, n, seed)
    report["warnings"] = [str(w.message) for w in caught]
    print(json.dumps(report))


if __name__ == "__main__":
    main()
