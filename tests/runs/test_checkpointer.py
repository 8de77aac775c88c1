"""Checkpointer: a checkpoint is written at once after a step that asked the backend, held
back after steps answered from the cache, and written at the end of a run all the same."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hash_backend import HashBackend

from icm_client.client import ScoringClient
from icm_client.dataset import Example
from icm_client.run import LabelConfig, label
from icm_client.runs.checkpoint import Checkpointer, RunStore
from icm_client.search.anneal import Checkpoint
from icm_client.search.config import SearchConfig
from icm_client.tasks import get_task

pytestmark = pytest.mark.anyio


def checkpoint(n: int) -> Checkpoint:
    return Checkpoint(n, {0: n % 2}, random.Random(n).getstate())


def written(store: RunStore) -> int | None:
    if not store.checkpoint_path.exists():
        return None
    n = json.loads(store.checkpoint_path.read_text())["checkpoint"]["n"]
    assert isinstance(n, int)
    return n


def test_steps_that_asked_nothing_wait_for_a_paid_step_or_the_flush(tmp_path: Path) -> None:
    store, calls = RunStore(tmp_path, "fp"), [5]
    saver = Checkpointer(store, lambda: calls[0], every_s=3600)
    saver.save(checkpoint(0))
    assert written(store) is None  # nothing asked since the saver started
    calls[0] += 2
    saver.save(checkpoint(1))
    assert written(store) == 1
    saver.save(checkpoint(2))
    saver.save(checkpoint(3))
    assert written(store) == 1
    calls[0] += 1
    saver.save(checkpoint(4))  # the latest state, at once
    assert written(store) == 4
    saver.save(checkpoint(5))
    saver.flush()
    assert written(store) == 5
    saver.flush()  # nothing held back: nothing written
    assert written(store) == 5


def test_with_no_interval_every_checkpoint_is_written(tmp_path: Path) -> None:
    store = RunStore(tmp_path, "fp")
    saver = Checkpointer(store, lambda: 0, every_s=0)
    for n in range(3):
        saver.save(checkpoint(n))
        assert written(store) == n


async def test_a_run_from_the_cache_ends_with_its_last_checkpoint_written(tmp_path: Path) -> None:
    examples = [
        Example(f"e{i}", {"statement": f"C{i} is in K{i % 3}.", "city": f"C{i}", "country": "K"})
        for i in range(24)  # enough that the 30 steps accept some (8 seed labels)
    ]
    # One chain: checkpoints follow chain 0, while the result's trajectory is the winner's.
    search = SearchConfig(steps=30, seed=2, chains=1)
    task, config = get_task("cities"), LabelConfig(search=search)
    paid, replay, resumed = HashBackend(), HashBackend(), HashBackend()
    caches = [
        ScoringClient(backend, cache=tmp_path / "cache", retry=None)
        for backend in (paid, replay, resumed)
    ]
    first = await label(examples, task, caches[0], config)
    again = await label(examples, task, caches[1], config, run_dir=tmp_path / "run")
    assert paid.usage.calls > 0 and replay.usage.calls == 0 and again.rows == first.rows
    accepted = [n for s in again.trajectory if s["accepted"] and isinstance(n := s["n"], int)]
    assert accepted, "the premise: a run whose last checkpoint follows an accepted step"
    last = max(accepted)
    assert isinstance(last, int)
    assert written(RunStore(tmp_path / "run", "")) == last
    done = await label(examples, task, caches[2], config, run_dir=tmp_path / "run")
    assert done.summary.resumed_from_step == last and done.rows == first.rows
    assert resumed.usage.calls == 0
    for cache in caches:
        await cache.aclose()
