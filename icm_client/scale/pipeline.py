"""Label a dataset far larger than one context: ICM on a seed set in batches, then propagation.

1. ``plan``: a seed set of whole components (all examples by default) in batches that each
   fit one context, and the rest in chunks.
2. One ICM search per batch (``label``), ``parallel_batches`` at a time over the one shared
   backend (its concurrency limit, cache and replicas serve them all). Batch ``b`` searches
   with seed ``seed + b``.
3. Each chunk is labeled by many-shot prediction after demonstrations drawn from the labels
   so far: the seed set's, or, in ``iterative`` mode, also every earlier chunk's (chunk j+1
   after demonstrations from the batches and chunks up to j).

With ``run_dir`` everything finished is kept there and a killed run continues
(``runs.scale_store``).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field

from ..aio import gather
from ..backends.base import Backend
from ..dataset import Example, GoldLabels, examples_of
from ..run import LabelConfig, LabelResult, label
from ..runs.identity import RunIdentity
from ..runs.rundir import RunDir
from ..runs.scale_store import ScaleStore
from ..search.anneal import Step
from ..tasks.base import Label, Task
from .plan import Plan, plan
from .propagate import propagate_chunk

Phase = Literal["icm", "propagate"]


class ScaleConfig(BaseModel):
    """How to label a large dataset; the defaults suit a server with a 4,096-token context."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: LabelConfig = LabelConfig(strategy="bounded", context_size=16)
    batch_tokens: int = Field(
        3072, ge=16, description="tokens of one ICM batch, all its examples as demonstrations"
    )
    seed_examples: int | None = Field(
        None, ge=1, description="examples labeled by ICM (whole groups); None: all of them"
    )
    chunk_size: int = Field(1000, ge=1, description="examples per propagation chunk")
    max_demo_tokens: int = Field(3072, ge=16, description="demonstrations per propagation prompt")
    iterative: bool = Field(False, description="earlier chunks' labels join the demonstrations")
    parallel_batches: int = Field(4, ge=1, description="ICM searches running at once")
    seed: int = 0


class ScaleRow(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    label: str | None
    confidence: float | None
    source: Literal["icm", "propagated"]
    part: int = Field(description="the batch (icm) or chunk (propagated) that labeled it")


class ScaleSummary(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    task: str
    backend: str
    examples: int
    seed_examples: int
    batches: int
    chunks: int
    iterative: bool
    label_counts: dict[str, int]
    icm_inconsistencies: int
    icm_accepted_steps: int
    propagation_repairs: int
    calls: int
    prompt_tokens: int
    cached_tokens: int
    cache_hits: int
    retries: int
    wall_time_s: float
    resumed_batches: int = 0
    resumed_chunks: int = 0
    gold_agreement_icm: float | None = None
    gold_agreement_propagated: float | None = None


class ScaleResult(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    rows: list[ScaleRow]
    summary: ScaleSummary

    def with_gold(self, gold: GoldLabels | None) -> ScaleResult:
        """Agreement with gold labels, per source. Evaluation only: nothing above saw them."""
        if gold is None or not len(gold):
            return self
        update: dict[str, float] = {}
        for source in ("icm", "propagated"):
            known = [
                (r.label, gold.get(r.id))
                for r in self.rows
                if r.source == source and r.label is not None and gold.get(r.id) is not None
            ]
            if known:
                agree = sum(a == b for a, b in known) / len(known)
                update[f"gold_agreement_{source}"] = agree
        return self.model_copy(update={"summary": self.summary.model_copy(update=update)})


async def label_large(
    examples: Sequence[Example],
    task: Task,
    backend: Backend,
    config: ScaleConfig | None = None,
    *,
    run_dir: str | os.PathLike[str] | RunDir | None = None,
    on_progress: Callable[[Phase, int], None] | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> ScaleResult:
    """Label ``examples`` (no gold labels) by ICM on a seed set and propagation to the rest.

    ``on_plan`` sees the plan before any call; ``on_progress(phase, n)`` counts finished
    annealing steps ("icm") and propagated examples ("propagate"). ``run_dir`` is locked
    for the run (``RunDir``), unless it is a ``RunDir`` the caller holds.
    """
    if run_dir is not None and not isinstance(run_dir, RunDir):
        with RunDir(run_dir) as held:
            return await label_large(
                examples,
                task,
                backend,
                config,
                run_dir=held,
                on_progress=on_progress,
                on_plan=on_plan,
            )
    config = config or ScaleConfig()
    exs = examples_of(examples)
    start = time.perf_counter()
    await backend.prepare()
    cut = plan(
        exs,
        task,
        batch_tokens=config.batch_tokens,
        seed_examples=config.seed_examples,
        chunk_size=config.chunk_size,
        seed=config.seed,
    )
    if on_plan is not None:
        on_plan(cut)
    identity = RunIdentity.of(task, exs, config.model_dump(), backend.identity)
    store = ScaleStore(run_dir.path, identity) if run_dir is not None else None
    progress = on_progress or (lambda phase, n: None)
    words = [w.strip() for w in task.labels]

    batch_results: dict[int, dict[str, Any]] = {}
    resumed_batches = 0
    if store is not None:
        for b in range(len(cut.batches)):
            done = store.batch(b)
            if done is not None and _fits(done, [exs[i].id for i in cut.batches[b]], words):
                batch_results[b] = done
                resumed_batches += 1
                progress("icm", done["steps"])

    async def one_batch(b: int, limiter: anyio.CapacityLimiter) -> None:
        async with limiter:
            members = [exs[i] for i in cut.batches[b]]
            search = config.label.search.model_copy(update={"seed": config.label.search.seed + b})
            cfg = config.label.model_copy(update={"search": search})
            seen = 0

            def on_step(step: Step) -> None:
                nonlocal seen
                seen += 1
                progress("icm", 1)

            sub = store.batch_dir(b) if store is not None else None
            result = await label(members, task, backend, cfg, on_step, sub)
            done = _batch_json(result)
            progress("icm", max(0, done["steps"] - seen))
            if store is not None:
                store.save_batch(b, done)
            batch_results[b] = done

    limiter = anyio.CapacityLimiter(config.parallel_batches)
    todo = [b for b in range(len(cut.batches)) if b not in batch_results]
    await gather([partial(one_batch, b, limiter) for b in todo])

    index = {ex.id: i for i, ex in enumerate(exs)}
    pool: dict[int, Label] = {}
    rows: dict[int, ScaleRow] = {}
    for b, done in batch_results.items():
        for r in done["rows"]:
            i = index[r["id"]]
            if r["label"] is not None:
                pool[i] = words.index(r["label"])
            rows[i] = ScaleRow(
                id=r["id"], label=r["label"], confidence=r["confidence"], source="icm", part=b
            )

    finished = store.chunks() if store is not None else {}
    finished = {  # a line that is not this chunk's (a hand-edited file) is done again
        k: line
        for k, line in finished.items()
        if 0 <= k < len(cut.chunks) and _fits_chunk(line, {exs[i].id for i in cut.chunks[k]}, words)
    }
    resumed_chunks = len(finished)
    repairs = 0
    for k, chunk in enumerate(cut.chunks):
        if k in finished:
            line = finished[k]
        else:
            got = await propagate_chunk(
                task,
                exs,
                backend,
                pool,
                chunk,
                seed=config.seed + k,
                max_demo_tokens=config.max_demo_tokens,
                calibrate=config.label.calibrate,
            )
            line = {
                "chunk": k,
                "demos": got.demos,
                "repairs": got.repairs,
                "labels": {exs[i].id: [words[y], got.confidence[i]] for i, y in got.labels.items()},
            }
            if store is not None:
                store.save_chunk(line)
        repairs += line["repairs"]
        for ex_id, (word, conf) in line["labels"].items():
            i = index[ex_id]
            rows[i] = ScaleRow(id=ex_id, label=word, confidence=conf, source="propagated", part=k)
            if config.iterative:
                pool[i] = words.index(word)
        progress("propagate", len(chunk))

    out = [rows[i] for i in range(len(exs))]
    usage = backend.counted()
    summary = ScaleSummary(
        task=task.name,
        backend=backend.identity,
        examples=len(exs),
        seed_examples=cut.seed_size,
        batches=len(cut.batches),
        chunks=len(cut.chunks),
        iterative=config.iterative,
        label_counts=dict(Counter(r.label for r in out if r.label is not None)),
        icm_inconsistencies=sum(d["inconsistencies"] for d in batch_results.values()),
        icm_accepted_steps=sum(d["accepted"] for d in batch_results.values()),
        propagation_repairs=repairs,
        **usage.spent().counts(),
        wall_time_s=round(time.perf_counter() - start, 3),
        resumed_batches=resumed_batches,
        resumed_chunks=resumed_chunks,
    )
    return ScaleResult(rows=out, summary=summary)


def _fits(done: dict[str, Any], ids: list[str], words: list[str]) -> bool:
    """A saved batch is this batch's: its rows are the members, with label words or null."""
    rows = done.get("rows")
    if not isinstance(rows, list) or len(rows) != len(ids):
        return False
    for r, want in zip(rows, ids, strict=True):
        if not isinstance(r, dict) or r.get("id") != want:
            return False
        label, conf = r.get("label"), r.get("confidence")
        if not (label is None or label in words):
            return False
        if not (conf is None or (isinstance(conf, float | int) and not isinstance(conf, bool))):
            return False
    return True


def _fits_chunk(line: dict[str, Any], ids: set[str], words: list[str]) -> bool:
    """A saved chunk is this chunk's: a label word and a confidence for each member."""
    labels = line.get("labels")
    if not isinstance(labels, dict) or set(labels) != ids or type(line.get("repairs")) is not int:
        return False
    for pair in labels.values():
        if not (isinstance(pair, list) and len(pair) == 2 and pair[0] in words):
            return False
        if not (
            pair[1] is None or (isinstance(pair[1], float | int) and not isinstance(pair[1], bool))
        ):
            return False
    return True


def _batch_json(result: LabelResult) -> dict[str, Any]:
    s = result.summary
    return {
        "rows": [{"id": r.id, "label": r.label, "confidence": r.confidence} for r in result.rows],
        "steps": s.steps,
        "accepted": s.accepted,
        "inconsistencies": s.inconsistencies,
    }
