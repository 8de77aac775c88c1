"""Datasets larger than one context: the plan, propagation, resume, and ``icm scale``."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
from fault_server import FaultServer, fault_server
from hash_backend import HashBackend
from processes import HANG_S

from icm_client.dataset import Example, GoldLabels, examples_of
from icm_client.errors import ConfigError, PermanentBackendError
from icm_client.run import LabelConfig
from icm_client.scale import ScaleConfig, label_large, plan, propagate_chunk
from icm_client.scale.plan import example_tokens
from icm_client.search.config import SearchConfig
from icm_client.tasks import get_task
from icm_client.tasks.components import components

ROOT = Path(__file__).parents[2]
TASK = get_task("gsm8k")


def _word_problems() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "word_problems", ROOT / "examples/word_problems.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


WP = _word_problems()


def problems(n: int, seed: int = 0) -> tuple[list[Example], dict[str, bool]]:
    records = list(WP.problems(n, seed))
    examples = [
        Example(str(r["id"]), {"question": r["question"], "cot": r["cot"]}) for r in records
    ]
    return examples, {str(r["id"]): bool(r["label"]) for r in records}


# -- the plan --------------------------------------------------------------------------------


def test_the_plan_keeps_groups_whole_and_batches_within_their_token_budget() -> None:
    examples, _ = problems(600)
    cut = plan(examples, TASK, batch_tokens=1500, seed_examples=200, chunk_size=100, seed=3)
    part: dict[int, tuple[str, int]] = {}
    for b, batch in enumerate(cut.batches):
        assert sum(example_tokens(TASK, examples[i]) for i in batch) <= 1500
        part.update({i: ("batch", b) for i in batch})
    for k, chunk in enumerate(cut.chunks):
        assert list(chunk) == sorted(chunk)
        part.update({i: ("chunk", k) for i in chunk})
    assert sorted(part) == list(range(600))  # every example exactly once
    assert cut.seed_size + cut.rest_size == 600
    assert 200 <= cut.seed_size < 204  # whole questions of 4
    assert len(cut.batches) > 1 and all(len(c) >= 100 for c in cut.chunks[:-1])
    for comp in components(examples, TASK):  # no group or constraint is ever cut
        assert len({part[i] for i in comp}) == 1
    again = plan(examples, TASK, batch_tokens=1500, seed_examples=200, chunk_size=100, seed=3)
    other = plan(examples, TASK, batch_tokens=1500, seed_examples=200, chunk_size=100, seed=4)
    assert again == cut and other.batches != cut.batches


def test_a_group_larger_than_a_batch_is_a_clear_error() -> None:
    examples, _ = problems(8)
    with pytest.raises(ConfigError, match=r"consistency group of 4 examples.*--context-window"):
        plan(examples, TASK, batch_tokens=100, seed_examples=None, chunk_size=10)


def test_all_examples_are_the_seed_set_by_default() -> None:
    examples, _ = problems(40)
    cut = plan(examples, TASK, batch_tokens=10_000, seed_examples=None, chunk_size=10)
    assert cut.seed_size == 40 and cut.chunks == ()


# -- propagation -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_propagation_uses_only_pool_demos_within_budget_and_enforces_the_relation() -> None:
    examples, _ = problems(48)
    exs = examples_of(examples)
    pool = {i: i % 2 for i in range(16)}  # labels of examples 0..15
    chunk = list(range(16, 48))
    backend = HashBackend()
    got = await propagate_chunk(TASK, exs, backend, pool, chunk, seed=1, max_demo_tokens=400)
    assert sorted(got.labels) == chunk and sorted(got.confidence) == chunk
    assert all(0 < got.confidence[i] <= 1 for i in chunk)
    assert 1 <= got.demos < 16
    sub = [exs[i] for i in chunk]
    for c in TASK.constraints(sub):  # the relation holds after the repair
        assert c.satisfied(got.labels[chunk[c.i]], got.labels[chunk[c.j]])
    for prompt in backend.prompts:
        blocks = prompt.split("\n\n")
        demos, target = blocks[:-1], blocks[-1]
        assert sum(len(d) for d in demos) / 4 <= 400
        assert any(target == TASK.render(exs[i]) for i in chunk)
        for d in demos:  # every demonstration is a pool example with its pool label
            match = [i for i in pool if d.startswith(TASK.render(exs[i]))]
            assert len(match) == 1
            assert d == TASK.render(exs[match[0]]) + TASK.labels[pool[match[0]]]


# -- the pipeline ------------------------------------------------------------------------------

CONFIG = ScaleConfig(
    label=LabelConfig(strategy="bounded", context_size=4, search=SearchConfig(steps=12)),
    batch_tokens=900,
    seed_examples=48,
    chunk_size=40,
    max_demo_tokens=500,
)


@pytest.mark.anyio
async def test_label_large_labels_everything_and_says_how() -> None:
    examples, gold = problems(200)
    result = await label_large(examples, TASK, HashBackend(), CONFIG)
    rows = result.rows
    assert [r.id for r in rows] == [ex.id for ex in examples]
    assert all(r.label in ("True", "False") for r in rows if r.source == "propagated")
    s = result.summary
    assert sum(r.source == "icm" for r in rows) == s.seed_examples == 48
    assert s.batches > 1 and s.chunks == 4 and s.examples == 200
    assert {r.part for r in rows if r.source == "propagated"} == {0, 1, 2, 3}
    assert sum(s.label_counts.values()) == sum(r.label is not None for r in rows)
    assert s.calls > 0 and s.resumed_batches == 0
    graded = result.with_gold(GoldLabels({k: "True" if v else "False" for k, v in gold.items()}))
    assert graded.summary.gold_agreement_icm is not None
    assert graded.summary.gold_agreement_propagated is not None


@pytest.mark.anyio
async def test_iterative_mode_takes_demonstrations_from_earlier_chunks() -> None:
    examples, _ = problems(200)
    exs = examples_of(examples)
    seed_ids: set[str] = set()

    async def demo_ids(iterative: bool) -> list[set[str]]:
        backend = HashBackend()
        config = CONFIG.model_copy(update={"iterative": iterative})
        result = await label_large(examples, TASK, backend, config)
        seed_ids.update(r.id for r in result.rows if r.source == "icm")
        rendered = {TASK.render(ex): ex.id for ex in exs}
        out = []
        for prompt in backend.prompts:
            blocks = prompt.split("\n\n")[:-1]
            out.append({rendered[b.removesuffix(" True").removesuffix(" False")] for b in blocks})
        return out

    plain = set().union(*await demo_ids(False))
    assert plain <= seed_ids  # demonstrations come from the ICM seed set only
    iterative = set().union(*await demo_ids(True))
    assert iterative - seed_ids, "no earlier chunk ever served as a demonstration"


@pytest.mark.anyio
async def test_a_failed_run_resumes_to_the_result_of_an_uninterrupted_one(tmp_path: Path) -> None:
    examples, _ = problems(200)
    backend = HashBackend()
    icm_calls: list[int] = []

    def progress(phase: str, n: int) -> None:
        if phase == "propagate" and not icm_calls:
            icm_calls.append(backend.usage.calls)

    reference = await label_large(
        examples, TASK, backend, CONFIG, run_dir=tmp_path / "ref", on_progress=progress
    )
    run_dir = tmp_path / "run"
    with pytest.raises(PermanentBackendError):  # inside the ICM batches
        await label_large(
            examples, TASK, HashBackend(fail_after=icm_calls[0] // 2), CONFIG, run_dir=run_dir
        )
    cut = plan(examples, TASK, batch_tokens=900, seed_examples=48, chunk_size=40)
    third = frozenset(TASK.render(examples[i]) for i in cut.chunks[2])
    with pytest.raises(PermanentBackendError):  # during propagation, at the third chunk
        await label_large(examples, TASK, HashBackend(fail_on=third), CONFIG, run_dir=run_dir)
    lines = (run_dir / "propagated.jsonl").read_bytes()
    (run_dir / "propagated.jsonl").write_bytes(lines + b'{"chunk": 3, "labe')  # a torn line
    resumed = await label_large(examples, TASK, HashBackend(), CONFIG, run_dir=run_dir)
    assert resumed.rows == reference.rows
    assert resumed.summary.resumed_batches == resumed.summary.batches
    assert resumed.summary.resumed_chunks == 2  # chunks 0 and 1; the torn line was dropped
    journal = (run_dir / "propagated.jsonl").read_text().splitlines()
    assert [json.loads(line)["chunk"] for line in journal] == [0, 1, 2, 3]
    other = CONFIG.model_copy(update={"chunk_size": 50})
    with pytest.raises(ConfigError, match=r"different run.*the settings: chunk_size 40 -> 50"):
        await label_large(examples, TASK, HashBackend(), other, run_dir=run_dir)


# -- the command -------------------------------------------------------------------------------


def scale_command(data: Path, server: FaultServer, work: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "icm_client.cli",
        "scale",
        str(data),
        "--task",
        "gsm8k",
        "--base-url",
        server.base_url,
        "--out",
        str(work / "labels.jsonl"),
        "--cache-dir",
        str(work / "cache"),
        "--context-window",
        "1000",
        "--seed-examples",
        "40",
        "--chunk-size",
        "60",
        "--context-size",
        "4",
        "--steps",
        "10",
        "--quiet",
    ]


# Behind the benchmark marker: kill -9 and resume: tests/runs/test_resume.py; scale resume:
# test_a_failed_run_resumes_to_the_result_of_an_uninterrupted_one
@pytest.mark.benchmark
def test_icm_scale_killed_mid_run_resumes_to_the_same_labels(tmp_path: Path) -> None:
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in WP.problems(400, 0)))
    with fault_server() as server:
        ref = tmp_path / "ref"
        ref.mkdir()
        done = subprocess.run(
            scale_command(data, server, ref), capture_output=True, text=True, timeout=HANG_S
        )
        assert done.returncode == 0, done.stderr
        assert "by propagation" in done.stdout and "agreement with gold" in done.stdout
        work = tmp_path / "work"
        work.mkdir()
        proc = subprocess.Popen(
            scale_command(data, server, work), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        journal = work / "labels.jsonl.run" / "propagated.jsonl"
        deadline = time.monotonic() + HANG_S
        while not (journal.exists() and journal.stat().st_size) and proc.poll() is None:
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.01)
        proc.kill()  # a no-op if it already ended
        if proc.wait() == 0:  # a busy machine slept past its last chunk: nothing to resume
            pytest.skip("the run finished before it could be killed")
        assert not (work / "labels.jsonl").exists()
        again = subprocess.run(
            scale_command(data, server, work), capture_output=True, text=True, timeout=HANG_S
        )
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stderr and "resumed:" in again.stdout
    assert (work / "labels.jsonl").read_text() == (ref / "labels.jsonl").read_text()
    summary = json.loads((work / "labels.jsonl.summary.json").read_text())["summary"]
    assert summary["examples"] == 400 and summary["resumed_chunks"] >= 1
    # The labels go on to the next step like those of ``icm label``.
    from icm_client.cli import main

    chat = tmp_path / "chat.jsonl"
    argv = ["export", str(work / "labels.jsonl"), "--format", "chat", "--out", str(chat)]
    assert main([*argv, "--data", str(data), "--task", "gsm8k", "--min-confidence", "0.5"]) == 0
    rows = [json.loads(line) for line in chat.read_text().splitlines()]
    assert 0 < len(rows) <= 400
    assert all(r["messages"][-1]["content"] in ("True", "False") for r in rows)


def test_icm_scale_rejects_bad_settings_before_any_call(tmp_path: Path) -> None:
    from icm_client.cli import main

    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in WP.problems(8, 0)))
    out = tmp_path / "labels.jsonl"
    base = ["scale", str(data), "--task", "gsm8k", "--out", str(out)]
    base += ["--base-url", "http://127.0.0.1:9/v1", "--provider", "generic"]
    assert main([*base, "--context-window", "40"]) == 2
    assert main([*base, "--chunk-size", "0"]) == 2
    assert main([*base, "--parallel-batches", "0"]) == 2
    assert not out.exists()
